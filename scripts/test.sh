#!/usr/bin/env bash
# Set up with the dev extras (see setup.sh) and run the whole test suite, slow and multi-process tests
# included. Pass pytest arguments through, e.g. `bash scripts/test.sh -m "not slow"`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
# RANKRL_WITH_VLLM=1 also builds .venv-vllm, so the tests against a real vLLM engine run.
if [ "${RANKRL_WITH_VLLM:-0}" = 1 ]; then
  RANKRL_VLLM_PYTHON="$(bash scripts/setup_vllm.sh | tail -1)"
  export RANKRL_VLLM_PYTHON
fi
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false WANDB_MODE=offline
exec "${RANKRL_VENV:-.venv}/bin/python" -m pytest -q --durations=25 "$@"

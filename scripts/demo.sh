#!/usr/bin/env bash
# Set up (see setup.sh) and run the demo: SFT then GRPO of a tiny reranker on a toy task, on CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${RANKRL_VENV:-.venv}/bin/rankrl" demo "$@"

#!/usr/bin/env bash
# Create .venv (or $RANKRL_VENV) and install rankrl with the pinned versions of constraints.txt.
# torch==2.13.0 resolves to the CPU wheel on machines that carry it locally and to PyPI's CUDA build
# elsewhere; on a machine without a GPU and without a local wheel, set
# TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu to avoid downloading the multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${RANKRL_VENV:-.venv}"
extras="${1:-}"
python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' || { echo "rankrl needs Python 3.10+" >&2; exit 1; }
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)
torch_index=()
[ -n "${TORCH_INDEX_URL:-}" ] && torch_index=(--index-url "$TORCH_INDEX_URL")
"$venv/bin/python" -c 'import torch' 2>/dev/null || "${pip[@]}" "${torch_index[@]}" "torch==2.13.0"
"${pip[@]}" -c constraints.txt -e ".${extras:+[$extras]}"

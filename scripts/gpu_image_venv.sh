#!/usr/bin/env bash
# gpu_image_venv.sh: build .gpu-image-venv, an interpreter laid out like the lent GPU machines' image,
# so `gpu_check.sh --device cpu` rehearses the GPU run on the same software before GPU minutes start.
#
#   bash scripts/gpu_image_venv.sh            build (or re-check) $ROOT/.gpu-image-venv; ~3 GB of wheels
#   PYTHON=.gpu-image-venv/bin/python bash scripts/gpu_check.sh --device cpu
#
# The image (issue 20): Python 3.12.3 with torch 2.11.0+cu130, torchvision 0.26, timm, numpy 2.5,
# pillow, scipy, scikit-image, onnx 1.23.1, onnxruntime 1.30 (CPU build), pytest; no network, no
# TensorRT, no onnxruntime-gpu, no vapoursynth. EXACTLY those packages (and their own dependencies)
# are installed here, nothing of the project's lock beyond them: what gpu_check needs on top must come
# from gpu_wheels/ as it will on the GPU machine. torch is PyPI's default build (CUDA 13.0; it runs on
# the CPU). Versions the image list leaves open are pinned to the project's lock (requirements.txt).
# Idempotent: a stamp of the pins skips the install when nothing changed. Logs go to stderr.
# The interpreter is found the way scripts/setup.sh finds one (its --find-python), and must be 3.12.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.gpu-image-venv"
log() { echo "[gpu-image-venv] $*" >&2; }

PINS=(
    torch==2.11.0 torchvision==0.26.0 numpy==2.5.5 pillow==13.0.0 scipy==1.16.3 scikit-image==0.26.0
    onnx==1.23.1 onnxruntime==1.30.0 pytest==8.4.2 timm==1.0.31
)
# What the image does NOT have: the rehearsal must not find these in the interpreter itself.
ABSENT=(vapoursynth tensorrt platformdirs cv2)

STAMP="$VENV/.pins.sha256"
WANT="$(printf '%s\n' "${PINS[@]}" | sha256sum | cut -d' ' -f1)"
if ! "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' >/dev/null 2>&1; then
    PY="$(VSCOLORMNET_PYTHON="${VSCOLORMNET_PYTHON:-python3.12}" bash "$ROOT/scripts/setup.sh" --find-python)"
    if ! "$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))'; then
        log "error: the image runs Python 3.12 and the interpreter found is $("$PY" -V 2>&1) ($PY);" \
            "set VSCOLORMNET_PYTHON to a Python 3.12 ('pyenv install 3.12' or 'apt-get install python3.12-venv')"
        exit 1
    fi
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
    log "created $VENV with $PY"
fi
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
    log "installing ${PINS[*]} (about 3 GB with torch's CUDA libraries; minutes)"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${PINS[@]}" >&2
    echo "$WANT" > "$STAMP"
fi
# Check it is the image's layout: the pinned torch/onnxruntime, and none of what the image lacks.
"$VENV/bin/python" - "${ABSENT[@]}" <<'EOF' >&2
import importlib.util, sys
import onnx, onnxruntime, torch, torchvision
assert torch.__version__.startswith("2.11.0"), torch.__version__
assert torchvision.__version__.startswith("0.26.0"), torchvision.__version__
assert onnxruntime.__version__.startswith("1.30."), onnxruntime.__version__
assert "CUDAExecutionProvider" not in onnxruntime.get_available_providers(), "onnxruntime-gpu is installed"
present = [name for name in sys.argv[1:] if importlib.util.find_spec(name) is not None]
assert not present, f"the image does not have {present}, but this venv does"
print(f"[gpu-image-venv] ready: Python {sys.version.split()[0]}, torch {torch.__version__}, "
      f"torchvision {torchvision.__version__}, onnx {onnx.__version__}, onnxruntime {onnxruntime.__version__}")
EOF

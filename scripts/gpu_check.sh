#!/usr/bin/env bash
# gpu_check.sh: verify the GPU path on a machine with an NVIDIA GPU, in one command, offline.
#
#   bash scripts/gpu_check.sh [--json PATH] [--weights CKPT] [--budget-s 420]
#
# Prints one table on stdout (progress on stderr): parity of every tests/data/parity case on
# PyTorch CUDA fp32 with TF32 off, the fp16/bf16 deviation, order independence through Colorize
# on CUDA, bench fps at 384/512 fp32/fp16 with key batch 1 and the default (host syncs per frame,
# peak VRAM), and ONNX Runtime CUDA / TensorRT rows when those are installed ("not installed"
# otherwise). Exit 1 if a row FAILs or errors. Rebuilds the seeded checkpoint itself (~500 MB in
# $TMPDIR). Estimated 2-4 minutes on an H200 (about 20 model loads dominate); each ORT/TensorRT row
# starts only while --budget-s (420 s) leaves it room (a TensorRT parity row ~150 s: six engine
# builds), else says "skipped: time budget", so it ends within 8 minutes.
# Without a GPU: "gpu_check: skipped: CUDA is not available (...)", exit 0.
# (--device cpu: the same code on the CPU, small; used by tests/test_scripts.py.)
#
# Needs: a python3 with PyTorch (CUDA build) and the torchvision that matches it (timm imports it;
# never carried), numpy, pillow, scipy, scikit-image and pytest; set PYTHON to choose the
# interpreter. NOT the project's venv, and nothing is downloaded. Missing pure-Python/binary
# wheels are installed from gpu_wheels/ (or $GPU_WHEELS) into a temporary --target folder, never
# into the interpreter's site-packages. Prepare that folder on a machine
# with network access, from the repository root (Python 3.12, x86_64 Linux target):
#
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 -d gpu_wheels \
#       timm==1.0.31 platformdirs==4.5.0 vapoursynth==81
#
# which saves (8.8 MiB together):
#   timm-1.0.31-py3-none-any.whl                                                2.7 MiB (the model)
#   platformdirs-4.5.0-py3-none-any.whl                                          18 KiB (ORT/TRT caches)
#   vapoursynth-81-cp312-abi3-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl   6.1 MiB (Colorize rows)
# Add scikit_image / pytest wheels the same way if the target lacks them. Without vapoursynth the
# Colorize rows say "vapoursynth not installed"; onnxruntime-gpu and tensorrt are never carried.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
WHEELS="${GPU_WHEELS:-$ROOT/gpu_wheels}"
if ! command -v "$PY" >/dev/null 2>&1; then
    echo "gpu_check: error: no Python interpreter '$PY' (set PYTHON to the python3 that has PyTorch)" >&2
    exit 1
fi
SITE="$(mktemp -d "${TMPDIR:-/tmp}/gpu_check_site.XXXXXX")"
trap 'rm -rf "$SITE"' EXIT
export PYTHONPATH="$SITE:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 PIP_ROOT_USER_ACTION=ignore

# Wheels for what is missing (or too old), from the carried folder.
mapfile -t missing < <("$PY" "$ROOT/scripts/gpu_check.py" --missing-deps "$@")
wheels=()
for name in "${missing[@]}"; do
    [ -n "$name" ] || continue
    found=""
    if [ -d "$WHEELS" ]; then
        found="$(find "$WHEELS" -maxdepth 1 -iname "${name}-*.whl" | sort | tail -n 1)"
    fi
    if [ -n "$found" ]; then
        wheels+=("$found")
    else
        echo "gpu_check: $name is missing here and $WHEELS has no wheel for it (see the header of $0)" >&2
    fi
done
if [ "${#wheels[@]}" -gt 0 ]; then
    echo "gpu_check: installing ${wheels[*]##*/} into $SITE" >&2
    for w in "${wheels[@]}"; do
        if "$PY" -m pip --version >/dev/null 2>&1; then
            "$PY" -m pip install -q --no-index --no-deps --no-compile --disable-pip-version-check \
                --target "$SITE" "$w" >&2 \
                || echo "gpu_check: could not install ${w##*/} for $PY; its rows will say why" >&2
        else    # no pip: a wheel is a zip laid out for site-packages
            "$PY" -m zipfile -e "$w" "$SITE"
        fi
    done
fi

status=0
"$PY" "$ROOT/scripts/gpu_check.py" "$@" || status=$?
exit "$status"

#!/usr/bin/env bash
# gpu_check.sh: verify the GPU path on a machine with an NVIDIA GPU, in one command, offline.
#
#   bash scripts/gpu_check.sh [--json PATH] [--weights CKPT] [--budget-s 480]
#   PYTHON=.gpu-image-venv/bin/python bash scripts/gpu_check.sh --device cpu     # the rehearsal
#
# Prints one table on stdout (progress on stderr) of rows that PASS or FAIL (scripts/gpu_check.py
# says which; gpu_plan.py the sizes and targets): TensorRT and ONNX Runtime CUDA first when installed
# (never skipped), parity of every tests/data/parity case on PyTorch CUDA fp32 with TF32 off, fp16/bf16
# deviation, order independence through Colorize, bench at 384/512 with fps targets (torch fp16 ≥ 100,
# TensorRT fp16 ≥ 200 at 512), host syncs per frame in the pipeline (0), peak VRAM of a 3-shot clip
# ≤ 2 GiB, DDColor parity, and the check's wall time ≤ 480 s. Rows that cannot run say "CUDA-only" or
# "not installed" and never count as passes. Exit 1 if a row FAILs or errors. Rebuilds the seeded
# checkpoint itself (~500 MB in $TMPDIR). Without a GPU: "gpu_check: skipped: CUDA is not available
# (...)", exit 0. `--device cpu` rehearses the same rows, small, on the CPU (see the README).
#
# Made for the lent GPU machines' image: Python 3.12 with torch 2.11.0+cu130, torchvision 0.26, timm,
# numpy 2.5, pillow, scipy, scikit-image, onnx 1.23.1, onnxruntime 1.30 (CPU build), pytest; no
# vapoursynth, TensorRT, onnxruntime-gpu or opencv (scripts/gpu_image_venv.sh builds that layout here).
# Set PYTHON to choose the interpreter; NOT the project's venv, and nothing is downloaded. What the
# interpreter lacks is installed from gpu_wheels/ (or $GPU_WHEELS) into a temporary --target folder,
# never into its site-packages. Prepare that folder on a machine with network access, from the
# repository root (Python 3.12, x86_64 Linux target):
#
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 -d gpu_wheels \
#       platformdirs==4.5.0 vapoursynth==81
#
# which saves (6.1 MiB together, what the image lacks):
#   platformdirs-4.5.0-py3-none-any.whl                                          18 KiB (ORT/TRT caches)
#   vapoursynth-81-cp312-abi3-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl   6.1 MiB (Colorize rows)
# An interpreter without timm, scikit-image or pytest needs timm==1.0.31 (2.7 MiB) etc. the same way.
# Never carried: torchvision (must match the torch build), onnxruntime-gpu and tensorrt (too big), and
# opencv-python-headless (61 MiB: the DDColor row says "not installed" without it).
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

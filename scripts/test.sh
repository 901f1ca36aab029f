#!/usr/bin/env bash
# Set everything up (venv, ffmpeg, vapoursynth config) and run the test suite on CPU.
#   scripts/test.sh              the whole suite (what CI runs, via .ci/run) but the `large` tier
#   scripts/test.sh --fast       skip the tiers marked slow, vspipe, onnx, gpu and large (pytest.ini)
#   scripts/test.sh --large      everything, the `large` tier too (the large DDColor graph through ORT:
#                                the same property as its tiny case, ~2 more minutes of export; the
#                                gpu_check rehearsals: `--large -k rehearsal` before a GPU session)
# Other arguments go to pytest (e.g. tests/media/test_color.py, -k name, -x). The suite runs on every
# core (pytest-xdist, -n auto; a file's tests on one worker, files in tests/conftest.py's order; the ONNX
# graphs are exported once into a folder the workers share);
# -n N or -p no:xdist passes through instead. Setup logs and the wall time of the pytest run go to
# stderr; pytest's report goes to stdout.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FAST_EXPR="not slow and not vspipe and not onnx and not gpu and not large"
ARGS=(-m "not large")
PARALLEL=(-n auto --dist loadgroup --no-loadscope-reorder)
for a in "$@"; do
    case "$a" in
        --fast) ARGS+=(-m "$FAST_EXPR") ;;
        --large) ARGS+=(-m "") ;;
        -n|-n*|--numprocesses*|no:xdist) PARALLEL=(); ARGS+=("$a") ;;
        *) ARGS+=("$a") ;;
    esac
done
"$ROOT/scripts/setup.sh"
cd "$ROOT"
export HF_HUB_OFFLINE=1 PATH="$ROOT/.venv/bin:$PATH"
# Bytecode caches (the checkout's __pycache__, git-ignored) even where the shell sets PYTHONDONTWRITEBYTECODE:
# otherwise every worker re-rewrites the test modules' asserts (collection 6 s → 2 s) and every subprocess
# recompiles the package.
unset PYTHONDONTWRITEBYTECODE
start=$(date +%s.%N)
rc=0
"$ROOT/.venv/bin/python" -m pytest -q ${PARALLEL[@]+"${PARALLEL[@]}"} ${ARGS[@]+"${ARGS[@]}"} || rc=$?
awk -v s="$start" -v e="$(date +%s.%N)" -v rc="$rc" \
    'BEGIN { printf "test: pytest ran %.1f s (exit %d)\n", e - s, rc }' >&2
exit "$rc"

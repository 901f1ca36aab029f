#!/usr/bin/env bash
# Create (or reuse) .venv in the repository root with everything vscolormnet needs.
# Idempotent: a second run only re-checks. Used by scripts/demo.sh and scripts/test.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
log() { echo "[setup] $*" >&2; }

find_python() {
    # VapourSynth R74+ wheels are cp312-abi3: we need CPython >= 3.12 with a shared libpython.
    local candidates=()
    [ -n "${VSCOLORMNET_PYTHON:-}" ] && candidates+=("$VSCOLORMNET_PYTHON")
    candidates+=(python3.13 python3.12 python3)
    if command -v pyenv >/dev/null 2>&1; then
        local root; root="$(pyenv root)"
        for d in "$root"/versions/3.1[2-9]*; do
            [ -d "$d" ] && candidates+=("$d/bin/python3")
        done
    fi
    for c in /usr/bin/python3.13 /usr/bin/python3.12 /usr/local/bin/python3.13 /usr/local/bin/python3.12; do
        candidates+=("$c")
    done
    for c in "${candidates[@]}"; do
        if "$c" -c 'import sys, venv; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; then
            command -v "$c" 2>/dev/null || echo "$c"
            return 0
        fi
    done
    return 1
}

if ! command -v ffmpeg >/dev/null 2>&1; then
    log "ffmpeg missing: installing it with apt-get"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq ffmpeg >&2
fi

STAMP="$VENV/.requirements.sha256"
WANT="$(sha256sum "$ROOT/requirements.txt" "$ROOT/setup.py" | sha256sum | cut -d' ' -f1)"
if [ ! -x "$VENV/bin/python" ]; then
    PY="$(find_python)" || {
        echo "setup: no Python >= 3.12 found (VapourSynth needs it). Install one (e.g. 'pyenv install 3.12')" \
             "or point VSCOLORMNET_PYTHON at it." >&2
        exit 1
    }
    log "creating $VENV with $PY"
    "$PY" -m venv "$VENV"
fi
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
    log "installing pinned requirements (about 3 GB, 1-2 minutes)"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$ROOT/requirements.txt" >&2
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps -e "$ROOT" >&2
    echo "$WANT" > "$STAMP"
fi
# vspipe finds its Python through a per-venv-location entry: (re)write it every time.
"$VENV/bin/vapoursynth" config >/dev/null 2>&1 || "$VENV/bin/vapoursynth" config >&2
log "ready: $VENV"

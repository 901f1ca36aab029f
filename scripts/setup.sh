#!/usr/bin/env bash
# Create (or reuse) .venv in the repository root with everything vscolormnet needs: the lock
# (requirements.txt) plus the package itself (editable, --no-deps), ffmpeg, `vapoursynth config`.
# Idempotent: a second run only re-checks. Used by scripts/demo.sh and scripts/test.sh.
# Nothing goes to stdout (logs go to stderr), except the interpreter printed by --find-python.
#
#   scripts/setup.sh                 set up .venv
#   scripts/setup.sh --find-python   print the interpreter setup would use (checked in a temp venv)
#
# Interpreter search, first usable wins: $VSCOLORMNET_PYTHON; pyenv's 3.12.x then 3.13+ (the pyenv
# root comes from $PYENV_ROOT, the pyenv executable's location, `pyenv root`, ~/.pyenv and the
# account's home from the password database, so another $HOME does not hide it); python3.12,
# python3.13, python3 on PATH; /usr/local/bin and /usr/bin. "Usable" = CPython >= 3.12 (the
# VapourSynth wheels are cp312-abi3) that can create a venv (Debian's python needs python3.X-venv).
# VSCOLORMNET_PYTHON_CANDIDATES (space-separated) replaces that search (tests, unusual setups).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
log() { echo "[setup] $*" >&2; }

pyenv_roots() {
    # Every place a pyenv installation may live, independent of $HOME; duplicates are harmless.
    [ -n "${PYENV_ROOT:-}" ] && echo "$PYENV_ROOT"
    local exe
    if exe="$(command -v pyenv 2>/dev/null)" && [ -n "$exe" ]; then
        exe="$(readlink -f "$exe" 2>/dev/null || echo "$exe")"       # …/bin/pyenv -> …/libexec/pyenv
        dirname "$(dirname "$exe")"
        pyenv root 2>/dev/null || true
    fi
    [ -n "${HOME:-}" ] && echo "$HOME/.pyenv"
    local home
    home="$(getent passwd "$(id -u)" 2>/dev/null | cut -d: -f6)" || true
    [ -n "$home" ] && echo "$home/.pyenv"
    return 0
}

candidates() {
    if [ -n "${VSCOLORMNET_PYTHON_CANDIDATES:-}" ]; then
        printf '%s\n' $VSCOLORMNET_PYTHON_CANDIDATES
        return 0
    fi
    [ -n "${VSCOLORMNET_PYTHON:-}" ] && echo "$VSCOLORMNET_PYTHON"
    local root d
    while read -r root; do
        for d in "$root"/versions/3.12.* "$root"/versions/3.1[3-9]*; do
            [ -x "$d/bin/python3" ] && echo "$d/bin/python3"
        done
    done < <(pyenv_roots)
    echo python3.12; echo python3.13; echo python3
    echo /usr/local/bin/python3.12; echo /usr/bin/python3.12; echo /usr/local/bin/python3.13; echo /usr/bin/python3.13
    return 0
}

# make_venv DEST: create a venv at DEST with the first usable candidate; print that interpreter.
# A candidate whose venv creation fails (no ensurepip) gets one line and the next one is tried.
make_venv() {
    local dest="$1" c ver out seen=" " venv_fix=""
    while read -r c; do
        case "$seen" in *" $c "*) continue ;; esac
        seen="$seen$c "
        ver="$("$c" -c 'import sys; print("%d.%d" % sys.version_info[:2]) if sys.version_info >= (3, 12) else sys.exit(1)' 2>/dev/null)" \
            || continue
        [ -n "$ver" ] || continue
        rm -rf "$dest"
        if out="$("$c" -m venv "$dest" 2>&1)" && [ -x "$dest/bin/python" ]; then
            command -v "$c" 2>/dev/null || echo "$c"
            return 0
        fi
        rm -rf "$dest"
        case "$out" in
            *ensurepip*) out="ensurepip is not available" ;;
            *) out="$(printf '%s\n' "$out" | sed -e 's/^[[:space:]]*//' -e '/^$/d' | tail -n 1)" ;;
        esac
        echo "setup: $c (Python $ver) cannot create a venv${out:+ ($out)}; trying the next interpreter." >&2
        venv_fix="apt-get install python$ver-venv"
    done < <(candidates)
    if [ -n "$venv_fix" ]; then
        echo "setup: no Python >= 3.12 that can create a venv was found. Fix: '$venv_fix' (Debian/Ubuntu)," \
             "or 'pyenv install 3.12', or point VSCOLORMNET_PYTHON at a Python >= 3.12 with venv/ensurepip." >&2
    else
        echo "setup: no Python >= 3.12 found (VapourSynth needs it). Fix: 'pyenv install 3.12'," \
             "'apt-get install python3.12 python3.12-venv', or point VSCOLORMNET_PYTHON at one." >&2
    fi
    return 1
}

if [ "${1:-}" = "--find-python" ]; then
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    make_venv "$tmp/venv"          # the only output on stdout: the interpreter
    exit $?
fi

# One setup at a time (demo.sh and test.sh may start together on a fresh machine).
exec 9<"${BASH_SOURCE[0]}"
flock 9 2>/dev/null || true

if ! command -v ffmpeg >/dev/null 2>&1; then
    log "ffmpeg missing: installing it with apt-get"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq ffmpeg >&2
fi

STAMP="$VENV/.requirements.sha256"
WANT="$(cat "$ROOT/requirements.txt" "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if ! "$VENV/bin/python" -c '' >/dev/null 2>&1; then     # missing, or its interpreter is gone
    PY="$(make_venv "$VENV")" || exit 1
    log "created $VENV with $PY"
fi
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
    log "installing the pinned requirements.txt (about 3 GB, 1-2 minutes)"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$ROOT/requirements.txt" >&2
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps -e "$ROOT" >&2
    echo "$WANT" > "$STAMP"
fi
# vspipe finds its Python through an entry keyed by the venv's location, written to
# $XDG_CONFIG_HOME/vapoursynth (default ~/.config/vapoursynth): (re)write it every time.
"$VENV/bin/vapoursynth" config >/dev/null 2>&1 || "$VENV/bin/vapoursynth" config >&2
"$VENV/bin/vspipe" --version >/dev/null 2>&1 \
    || log "warning: vspipe does not start (needs a shared libpython): $("$VENV/bin/vspipe" --version 2>&1 | tail -n 1)"
log "ready: $VENV"

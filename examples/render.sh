#!/usr/bin/env bash
# Render a .vpy to a video file: ./examples/render.sh SCRIPT.vpy OUT.mkv [vspipe -a args...]
set -euo pipefail
script="$1"; out="$2"; shift 2
args=(); for a in "$@"; do args+=(-a "$a"); done
vspipe -c y4m "${args[@]}" "$script" - | ffmpeg -hide_banner -loglevel error -y -f yuv4mpegpipe -i - \
    -c:v libx264 -crf 16 -preset medium "$out"

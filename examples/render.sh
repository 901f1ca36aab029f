#!/usr/bin/env bash
# Render a .vpy to a video file: ./examples/render.sh SCRIPT.vpy OUT.mkv [key=value ... (vspipe -a)]
# The stream is tagged with the output's range, matrix, primaries and transfer (y4m carries none of
# them), read from the script's frame 0 by vscolormnet.media.colour_tags. PYTHON: the interpreter with
# vscolormnet (default: python3).
set -euo pipefail
script="$1"; out="$2"; shift 2
args=(); for a in "$@"; do args+=(-a "$a"); done
read -r -a tags <<< "$("${PYTHON:-python3}" -m vscolormnet.media.colour_tags "$script" "$@")"
vspipe -c y4m ${args[@]+"${args[@]}"} "$script" - | ffmpeg -hide_banner -loglevel error -y -f yuv4mpegpipe -i - \
    ${tags[@]+"${tags[@]}"} -c:v libx264 -crf 16 -preset medium "$out"

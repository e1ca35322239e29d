#!/bin/sh
# Renders the PNG sizes and the ICO of every icon from its SVG source (assets/icons/src/*.svg).
# The outputs are checked in: building and packaging never need these tools. Re-run after editing
# an SVG. Needs `rsvg-convert` (Debian: librsvg2-bin) and ImageMagick's `convert` (imagemagick).
set -eu
cd "$(dirname "$0")/icons"
sizes="16 22 24 32 48 64 128 256"
for svg in src/*.svg; do
  name=$(basename "$svg" .svg)
  for size in $sizes; do
    mkdir -p "${size}x${size}"
    rsvg-convert --width "$size" --height "$size" --keep-aspect-ratio "$svg" \
      --output "${size}x${size}/${name}.png"
  done
  mkdir -p ico
  # One multi-resolution ICO per icon (Windows tray and installer use 16/24/32/48/256).
  convert 16x16/"$name".png 24x24/"$name".png 32x32/"$name".png 48x48/"$name".png \
    256x256/"$name".png ico/"$name".ico
done

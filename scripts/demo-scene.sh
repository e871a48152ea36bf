#!/usr/bin/env bash
# Makes the demo camera's pictures: a directory that frame-producer plays in
# name order, looped (its files source), showing darknet's person.jpg for
# PERSON_S seconds and then dog.jpg (no person: today's model knows only
# people) for EMPTY_S seconds, at FPS frames a second. The frames are
# symbolic links to one copy of each picture, so the scene takes 280 KB
# however long it runs. scripts/run.sh and the Docker image use it so that a
# newcomer sees boxes, an event and its clip within a minute.
#
#   scripts/demo-scene.sh OUT_DIR [PICTURES_DIR]   # PICTURES_DIR: where person.jpg and dog.jpg are
set -euo pipefail
out=${1:?usage: demo-scene.sh OUT_DIR [PICTURES_DIR]}
pictures=${2:-/usr/share/darknet/data}
FPS=${FPS:-10}
PERSON_S=${PERSON_S:-10}
EMPTY_S=${EMPTY_S:-20}
for p in person.jpg dog.jpg; do
  [ -s "$pictures/$p" ] || { echo "demo-scene: $pictures/$p is missing (scripts/setup.sh unpacks Debian's darknet pictures)" >&2; exit 1; }
done
rm -rf "$out"
mkdir -p "$out/pictures"
cp "$pictures/person.jpg" "$pictures/dog.jpg" "$out/pictures/"
n=0
link() { # picture, frames
  for _ in $(seq 1 "$2"); do
    ln -s "pictures/$1" "$out/$(printf '%05d' "$n").jpg"
    n=$((n + 1))
  done
}
link person.jpg $((FPS * PERSON_S))
link dog.jpg $((FPS * EMPTY_S))

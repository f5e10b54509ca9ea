#!/usr/bin/env bash
# Build the offline lmdeploy bundle that bench/lmdeploy_site.sh lays out on the GPU device: lmdeploy 0.18.0's
# PyTorch engine (never TurboMind) for a machine with no network whose own Python 3.12 already has torch 2.11
# (cu130), transformers 5.x, peft, accelerate, numpy, triton, tokenizers, safetensors, httpx, anyio, click, h11,
# aiohttp, prometheus-client, protobuf, pillow, opencv-python-headless, einops, sentencepiece, tiktoken, uvloop,
# pyyaml, rich, ... (the "Python packages already there" list of the device's KINDS.md) but not lmdeploy nor its
# serving stack.
#
#   bash bench/build_lmdeploy_bundle.sh [OUT_DIR]       OUT_DIR defaults to .whl/lmdeploy (gitignored)
#
# then, on the device (with OUT_DIR carried there):
#     LMPY=$(bash bench/lmdeploy_site.sh .whl/lmdeploy /tmp/lm/site)
#     "$LMPY" -m lmdeploy serve api_server MODEL --backend pytorch --adapters a=DIR
#
# OUT_DIR gets (about 11 MB in all):
#   *.whl   cp312 x86_64 wheels, downloaded with --no-deps from PyPI, of exactly the packages that
#           `import lmdeploy`, `lmdeploy.pipeline`, the PyTorch engine (its executors and model agent) and
#           `lmdeploy serve api_server` import and the device lacks (PKGS below; checked by importing every
#           lmdeploy module from the laid-out folder on a Python 3.12 with the device's packages, and by building
#           the server's FastAPI app around a stub engine). Left out on purpose, since that path never imports
#           them: ray (--distributed-executor-backend ray only), rdkit, tilelang and flash-linear-attention (the
#           Qwen3-Next/Qwen3.5 and DeepSeek-V3.2/V4 kernels), openai_harmony (GPT-OSS only: without it the server
#           logs one warning at start and uses the default response parser), fire (`lmdeploy chat` only),
#           partial_json_parser (unused by 0.18.0), jiter (only the openai client's streaming helpers),
#           torchvision/timm/opencv (already on the device), the nvidia-*-cu12 libraries (the device's torch
#           brings CUDA 13) and TurboMind.
#           Pins: fastapi 0.141.1 is the last release before fastapi imports opentelemetry (not on the device) at
#           module level, and was current when lmdeploy 0.18.0 came out, as were starlette 1.7.0 and pydantic
#           2.13.5 (which, with typing-inspection 0.4.2, needs only typing-extensions>=4.14.1 from the device;
#           pydantic 2.14 needs 4.16). openai stays on 2.x (lmdeploy imports openai.types only).
#   lmdeploy-0.18.0-pytorch.tar.xz
#           lmdeploy/ and lmdeploy-0.18.0.dist-info/ from the lmdeploy 0.18.0 cp312 wheel, without
#           turbomind/_turbomind*.so (~360 MB) and turbomind/lib64/ (lmdeploy.turbomind then reports itself
#           unavailable, which --backend pytorch never needs); the dist-info keeps importlib.metadata working.
# The lmdeploy wheel itself (~107 MB) is downloaded once into LMDEPLOY_WHEEL_DIR (default /tmp/lmdl) and never
# left in OUT_DIR. Running the script again downloads nothing already there, rebuilds the tarball (byte for byte
# the same) and removes wheels of OUT_DIR that PKGS no longer names (lmdeploy_site.sh installs every *.whl).
set -euo pipefail
OUT=${1:-.whl/lmdeploy}
LMVER=0.18.0
CACHE=${LMDEPLOY_WHEEL_DIR:-/tmp/lmdl}
PIP=${PIP:-pip}
PLAT=(--only-binary=:all: --python-version 3.12 --implementation cp --abi cp312 --abi abi3 --abi none
      --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_24_x86_64
      --platform manylinux_2_26_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_28_x86_64
      --platform any)
PKGS=(
  # OpenAI-compatible server: lmdeploy.serve.openai.api_server
  fastapi==0.141.1 starlette==1.7.0 uvicorn==0.55.0 shortuuid==1.0.13 openai==2.54.0 distro==1.9.0 sniffio==1.3.1
  # pydantic: lmdeploy.messages (so `import lmdeploy`), the server's protocol
  pydantic==2.13.5 pydantic-core==2.46.5 annotated-types==0.8.0 typing-inspection==0.4.2
  # PyTorch engine: guided decoding (the model agent imports xgrammar at module level) and the ZeroMQ RPC of its
  # multiprocess engine, which api_server always uses
  xgrammar==0.2.9 apache-tvm-ffi==0.1.11 pyzmq==27.3.0
  # `import lmdeploy` itself: mmengine's Registry (lmdeploy.model, the parsers), pybase64 (lmdeploy.vl media decoding)
  mmengine-lite==0.10.7 addict==2.4.0 yapf==0.43.0 platformdirs==4.14.9 termcolor==3.3.0 pybase64==1.5.1
)

mkdir -p "$OUT" "$CACHE"
OUT=$(cd "$OUT" && pwd)

echo "build_lmdeploy_bundle: downloading ${#PKGS[@]} wheels into $OUT" >&2
nice -n 19 "$PIP" download -q --no-deps "${PLAT[@]}" -d "$OUT" "${PKGS[@]}" 2> >(grep -v 'is ignored: it is neither' >&2)

# drop wheels left from other pins (lmdeploy_site.sh installs every *.whl in the folder)
want=$(printf '%s\n' "${PKGS[@]}" | sed 's/==/-/; s/[-_.]\+/_/g' | tr 'A-Z' 'a-z')
shopt -s nullglob
for whl in "$OUT"/*.whl; do
  key=$(basename "$whl" | awk -F- '{print $1"-"$2}' | sed 's/[-_.]\+/_/g' | tr 'A-Z' 'a-z')
  grep -qxF "$key" <<<"$want" || { echo "build_lmdeploy_bundle: removing stale $(basename "$whl")" >&2; rm -f "$whl"; }
done
WHEELS=("$OUT"/*.whl)
shopt -u nullglob
[ ${#WHEELS[@]} -eq ${#PKGS[@]} ] || { echo "build_lmdeploy_bundle: want ${#PKGS[@]} wheels, have ${#WHEELS[@]}" >&2; exit 1; }

# -- lmdeploy itself, without TurboMind ---------------------------------------------------------------------
lmwheel() { ls "$CACHE"/lmdeploy-$LMVER-cp312-cp312-*x86_64*.whl 2>/dev/null | head -n 1; }
if [ -z "$(lmwheel)" ]; then
  echo "build_lmdeploy_bundle: downloading lmdeploy $LMVER (~107 MB) into $CACHE" >&2
  nice -n 19 "$PIP" download -q --no-deps "${PLAT[@]}" -d "$CACHE" "lmdeploy==$LMVER" 2> >(grep -v 'is ignored: it is neither' >&2)
fi
LMWHL=$(lmwheel)
[ -n "$LMWHL" ] || { echo "build_lmdeploy_bundle: no lmdeploy $LMVER cp312 wheel in $CACHE" >&2; exit 1; }
rm -f "$OUT"/lmdeploy-*.whl "$OUT"/lmdeploy-*.tar.xz
TMP=$(mktemp -d /tmp/lmb-pkg.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
unzip -q "$LMWHL" -d "$TMP" -x 'lmdeploy/turbomind/_turbomind*.so' 'lmdeploy/turbomind/lib64/*'
[ -f "$TMP/lmdeploy/__init__.py" ] && [ -d "$TMP/lmdeploy-$LMVER.dist-info" ] \
  || { echo "build_lmdeploy_bundle: $LMWHL has no lmdeploy/ or dist-info" >&2; exit 1; }
TAR=$OUT/lmdeploy-$LMVER-pytorch.tar.xz
# fixed order, owner and times: the same wheel gives the same tarball
( cd "$TMP" && find lmdeploy "lmdeploy-$LMVER.dist-info" -print0 | LC_ALL=C sort -z \
    | nice -n 19 tar --no-recursion --owner=0 --group=0 --numeric-owner --mtime=@0 --null -T - -cf - \
    | nice -n 19 xz -9 -T0 > "$TAR.part" )
mv "$TAR.part" "$TAR"

echo "build_lmdeploy_bundle: $OUT" >&2
ls -lS "$OUT" | tail -n +2 >&2
du -sh "$OUT"

#!/usr/bin/env bash
# Build the training bundle ("trainsite") that lets `workbench train` run XTuner 0.2.0 on a machine whose own
# Python has only torch + a newer transformers (the H100 device: torch 2.11 cu130, transformers 5.17, peft 0.21.0,
# accelerate, Python 3.12; no xtuner, mmengine, deepspeed, bitsandbytes, datasets).
#
#   bench/build_trainsite.sh PYVER OUT_DIR [--no-xz]       e.g.  bench/build_trainsite.sh 312 .whl/train
#   (TOKENIZER_SRC=DIR takes the tokenizer files from DIR instead of the tiny world `workbench demo --build-only --world tiny` makes)
#
# It downloads cp$PYVER manylinux wheels from PyPI (no torch, numpy or triton: the machine's own are used), installs
# them with --no-deps into a plain folder, trims what training never loads, strips the shared objects and packs
# the folder as OUT_DIR/trainsite-cp$PYVER.tar.xz. Used as:
#     mkdir -p /tmp/trainsite/site-packages && tar xJf trainsite-cp312.tar.xz -C /tmp/trainsite/site-packages
#     PYTHONPATH=/tmp/trainsite/site-packages:$PYTHONPATH   # only for the training and conversion children
# (the folder's path must contain "site-packages": dill, which datasets uses for fingerprints, pickles modules from
# anywhere else by value, and that fails on pyarrow's types)
# so transformers 4.48.0 (xtuner's pin), tokenizers 0.21 and huggingface_hub 0.36 shadow the machine's newer ones
# in those children only. Two stand-ins are in it, both because training imports but never uses them:
#   cv2/           mmengine's visualizer imports OpenCV at module level (opencv-python-headless is ~50 MB);
#   _stubs/M/      xtuner.dataset imports torchvision (InternVL dataset) and skimage.io (RefCOCO dataset); add
#                  /tmp/trainsite/_stubs/M to PYTHONPATH only where `import M` fails (bench/device_issue8.sh does).
# bitsandbytes keeps only its CPU and CUDA 13.0 libraries (libbitsandbytes_cuda130.so); BNB_CUDA_VERSION must not
# point elsewhere. pyarrow loses Flight, S3, Substrait, ORC and its headers (datasets uses none of them).
set -euo pipefail
PYVER=${1:?usage: build_trainsite.sh PYVER OUT_DIR [--no-xz]}
OUT=${2:?usage: build_trainsite.sh PYVER OUT_DIR [--no-xz]}
XZ=1; [ "${3:-}" = "--no-xz" ] && XZ=0
HERE=$(cd "$(dirname "$0")/.." && pwd)
DL=${TRAINSITE_DL:-/tmp/trainsite-dl-cp$PYVER}
TREE=${TRAINSITE_TREE:-/tmp/trainsite-cp$PYVER/site-packages}
mkdir -p "$DL" "$OUT"; OUT=$(cd "$OUT" && pwd)
PLAT=(--only-binary=:all: --python-version "${PYVER:0:1}.${PYVER:1}" --implementation cp --abi "cp$PYVER" --abi abi3
      --abi none --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_24_x86_64
      --platform manylinux_2_27_x86_64 --platform manylinux_2_28_x86_64 --platform any)
PKGS=(
  transformers==4.48.0 tokenizers==0.21.4 huggingface_hub==0.36.2 xtuner==0.2.0 mmengine==0.10.6
  datasets==5.0.1 pyarrow==26.0.1 pandas==3.1.1 python-dateutil==4.0.0 tzdata==2026.6 dill==0.4.1
  multiprocess==0.70.19 xxhash==4.1.0 fsspec==2026.6.0 requests==2.34.2 urllib3==2.8.0 idna==3.20
  certifi==2026.10.18 charset-normalizer==3.5.2 einops==0.8.2 addict==2.4.0 yapf==0.43.0 platformdirs==4.14.7
  termcolor==3.3.0 rich==15.0.0 markdown-it-py==4.3.0 mdurl==0.1.2 pygments==2.21.0 loguru==0.7.3 hjson==3.1.0
  msgpack==1.2.4 ninja==1.13.2 py-cpuinfo==9.0.0 pydantic==2.14.3 pydantic_core==2.50.4 annotated-types==0.8.0
  typing-inspection==0.4.5 bitsandbytes==0.48.2 matplotlib==3.11.2 contourpy==1.3.3 kiwisolver==1.5.1
  cycler==0.12.1 pyparsing==3.3.3 pillow==13.0.0 six==1.17.0 fonttools==4.68.0
)
pip download -q --no-deps "${PLAT[@]}" -d "$DL" "${PKGS[@]}"
# deepspeed publishes only an sdist; its DS_BUILD_OPS=0 wheel is pure Python (ops are JIT-built when used).
if ! ls "$DL"/deepspeed-0.16.2-*.whl >/dev/null 2>&1; then
  DS_BUILD_OPS=0 "${DS_BUILD_PYTHON:-$HERE/.venv/bin/python}" -m pip wheel -q --no-deps --no-build-isolation \
    deepspeed==0.16.2 -w "$DL"
fi
rm -rf "$TREE"
pip install -q --no-index --no-deps --no-compile --target "$TREE" "${PLAT[@]}" "$DL"/*.whl
cd "$TREE"
rm -rf bin ./*.data
# -- trim what training never loads ------------------------------------------------------------------------
rm -rf pyarrow/include pyarrow/tests pyarrow/src pyarrow/libarrow_flight* pyarrow/_flight* pyarrow/libarrow_s3* \
       pyarrow/_s3fs* pyarrow/_substrait* pyarrow/_orc* pyarrow/orc.py \
       pyarrow/*.pyx pyarrow/*.pxd pyarrow/*.pxi pyarrow/includes pyarrow/lib.h pyarrow/lib_api.h
rm -f pyarrow/libarrow_python_flight* pyarrow/_pyarrow_cpp_tests* pyarrow/_hdfs* pyarrow/_gcsfs* pyarrow/_azurefs* \
      pyarrow/_dataset_orc*
# the wheel holds libX.so, libX.so.N and libX.so.N.M.P as three copies: keep one, link the other names to it
( cd pyarrow && for real in lib*.so.*.*.*; do [ -f "$real" ] || continue
    base=${real%%.so.*}.so; major=${real%.*.*}
    rm -f "$base" "$major"; ln -s "$real" "$base"; ln -s "$real" "$major"; done )
find bitsandbytes -name 'libbitsandbytes_*.so' ! -name 'libbitsandbytes_cuda130.so' ! -name 'libbitsandbytes_cpu.so' -delete
rm -rf pandas/tests matplotlib/tests mpl_toolkits/*/tests matplotlib/mpl-data/sample_data matplotlib/mpl-data/images
find matplotlib/mpl-data/fonts -type f ! -name 'DejaVuSans.ttf' ! -name 'DejaVuSans-Bold.ttf' -delete
find fontTools -name "*.so" -delete  # optional speedups: fontTools has pure-Python fallbacks
rm -f PIL/_avif* pillow.libs/libavif* PIL/_webp* pillow.libs/libwebp*mux*
# xtuner's shipped configs: only the DeepSpeed presets are read (`--deepspeed deepspeed_zero2`)
find xtuner/configs -mindepth 1 -maxdepth 1 ! -name deepspeed ! -name __init__.py -exec rm -rf {} +
find . -name __pycache__ -type d -prune -exec rm -rf {} +
find . -name '*.so*' -type f -exec strip --strip-unneeded {} + 2>/dev/null || true
# -- stand-ins --------------------------------------------------------------------------------------------
mkdir -p cv2 _stubs/torchvision/torchvision/transforms _stubs/skimage/skimage
cat > cv2/__init__.py <<'EOF'
"""Stand-in for OpenCV in workbench's training bundle (bench/build_trainsite.sh).

mmengine imports cv2 at module level (its visualizer) and calls cv2.setNumThreads when a runner starts; XTuner's
text fine-tuning never draws or decodes an image. Any other use fails loudly.
"""
__version__ = "0.0.0+workbench.stub"


def setNumThreads(n):  # noqa: N802 - OpenCV's name
    return None


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    raise AttributeError(f"cv2.{name}: OpenCV is not in workbench's training bundle (a stand-in module)")
EOF
cat > _stubs/torchvision/torchvision/__init__.py <<'EOF'
"""Stand-in for torchvision in workbench's training bundle: xtuner.dataset imports it for the InternVL dataset,
which a text fine-tune never builds. Only put on PYTHONPATH where the real torchvision cannot be imported."""
__version__ = "0.0.0+workbench.stub"
EOF
cat > _stubs/torchvision/torchvision/transforms/__init__.py <<'EOF'
def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)

    class _Missing:
        def __init__(self, *args, **kwargs):
            raise RuntimeError(f"torchvision.transforms.{name}: torchvision is a stand-in here")
    _Missing.__name__ = name
    return _Missing
EOF
cat > _stubs/torchvision/torchvision/transforms/functional.py <<'EOF'
import enum


class InterpolationMode(enum.Enum):
    NEAREST = "nearest"
    NEAREST_EXACT = "nearest-exact"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    BOX = "box"
    HAMMING = "hamming"
    LANCZOS = "lanczos"
EOF
cat > _stubs/skimage/skimage/__init__.py <<'EOF'
"""Stand-in for scikit-image in workbench's training bundle: xtuner.dataset imports skimage.io for the RefCOCO
dataset, which a text fine-tune never builds. Only put on PYTHONPATH where the real one cannot be imported."""
__version__ = "0.0.0+workbench.stub"
EOF
cat > _stubs/skimage/skimage/io.py <<'EOF'
def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    raise AttributeError(f"skimage.io.{name}: scikit-image is a stand-in here")
EOF
du -sh "$TREE"
# -- beside the bundle: workbench's own runtime wheels for the machine's Python, and the tiny world's tokenizer ----
# (bench/device_issue8.sh installs site/*.whl with pip --target and gives tokenizer/ to the random model)
mkdir -p "$OUT/site" "$OUT/tokenizer"
pip download -q --no-deps "${PLAT[@]}" -d "$OUT/site" platformdirs==4.14.7 rapidfuzz==3.14.6
WORLD=${TOKENIZER_SRC:-$(cd "$HERE" && "$HERE/.venv/bin/python" -m workbench demo --build-only --world tiny --json | \
  "$HERE/.venv/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["path"])')}
for f in config.json generation_config.json special_tokens_map.json tokenizer.json tokenizer_config.json; do
  cp "$WORLD/$f" "$OUT/tokenizer/"
done
if [ "$XZ" = 1 ]; then
  tar -C "$TREE" -cf - . | xz -9 -T"${XZ_THREADS:-2}" > "$OUT/trainsite-cp$PYVER.tar.xz.tmp"
  mv "$OUT/trainsite-cp$PYVER.tar.xz.tmp" "$OUT/trainsite-cp$PYVER.tar.xz"
  ls -la "$OUT/trainsite-cp$PYVER.tar.xz"
fi

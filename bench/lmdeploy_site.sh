#!/usr/bin/env bash
# Lay out an lmdeploy 0.18.0 site folder (PyTorch engine only, never TurboMind) on a GPU machine whose own
# Python 3.12 already has torch, transformers, peft, accelerate, numpy, triton, tokenizers, safetensors, httpx,
# anyio, click, h11, ... but not lmdeploy nor its serving stack, so that the lmdeploy backend's
#     python3 -m lmdeploy serve api_server MODEL --backend pytorch --adapters a=DIR ...
# runs from it. SRC_DIR (normally .whl/lmdeploy) holds cp312 x86_64 wheels (fastapi, starlette, uvicorn, openai
# 2.x, pydantic + pydantic-core, xgrammar, apache-tvm-ffi, pyzmq, mmengine-lite, ...) and
# lmdeploy-*.tar.xz: the lmdeploy/ package of the lmdeploy 0.18.0 cp312 wheel without turbomind/_turbomind*.so
# and turbomind/lib64/ (lmdeploy.turbomind then reports itself unavailable, which --backend pytorch never needs).
#
#   bash bench/lmdeploy_site.sh SRC_DIR TARGET_DIR      e.g.  bash bench/lmdeploy_site.sh .whl/lmdeploy /tmp/lm/site
#
# It installs every SRC_DIR/*.whl with `pip install --no-index --no-deps --no-compile --target TARGET_DIR`,
# unpacks the lmdeploy tarball into TARGET_DIR, and writes TARGET_DIR/../lmpy: a /bin/sh wrapper that sets
# PYTHONPATH=TARGET_DIR itself (workbench drops its own PYTHONPATH before starting the lmdeploy child) and execs
# python3. Its path is the last line printed on stdout (everything else goes to stderr), so
#     LMPY=$(bash bench/lmdeploy_site.sh .whl/lmdeploy /tmp/lm/site)
#     "$LMPY" -m lmdeploy serve api_server MODEL --backend pytorch --adapters a=DIR
# (or `workbench ... --backend lmdeploy` with the lmdeploy Python set to "$LMPY"). PYTHON=... picks another
# interpreter than python3 (it must be a CPython 3.12 on x86_64 Linux); the wrapper then execs that one.
# Running it again over the same TARGET_DIR replaces what it installed there.
set -euo pipefail
usage() { echo "usage: bash bench/lmdeploy_site.sh SRC_DIR TARGET_DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
SRC=$1 TARGET=$2
PY=${PYTHON:-python3}
[ -d "$SRC" ] || { echo "lmdeploy_site: no such folder: $SRC" >&2; exit 2; }
SRC=$(cd "$SRC" && pwd)
mkdir -p "$TARGET"
TARGET=$(cd "$TARGET" && pwd)
case "$TARGET$PY" in *"'"*) echo "lmdeploy_site: paths with a single quote are not supported" >&2; exit 2 ;; esac

shopt -s nullglob
WHEELS=("$SRC"/*.whl)
TARS=("$SRC"/lmdeploy-*.tar.xz)
shopt -u nullglob
[ ${#WHEELS[@]} -gt 0 ] || { echo "lmdeploy_site: no wheels in $SRC" >&2; exit 1; }
[ ${#TARS[@]} -eq 1 ] || { echo "lmdeploy_site: want exactly one lmdeploy-*.tar.xz in $SRC, found ${#TARS[@]}" >&2; exit 1; }

ver=$("$PY" -c 'import sys, platform; print("%d.%d-%s" % (sys.version_info[0], sys.version_info[1], platform.machine()))')
[ "$ver" = "3.12-x86_64" ] || echo "lmdeploy_site: warning: $PY is $ver; the wheels are for CPython 3.12 on x86_64" >&2

echo "lmdeploy_site: installing ${#WHEELS[@]} wheels into $TARGET" >&2
if "$PY" -m pip --version >/dev/null 2>&1; then
  # --upgrade: on a second run pip replaces the packages already in TARGET instead of skipping them
  "$PY" -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$TARGET" "${WHEELS[@]}" >&2
else
  # no pip for this Python: unzip the wheels (none of them has a .data/ folder, so that is all pip would do)
  echo "lmdeploy_site: $PY has no pip; unzipping the wheels instead" >&2
  "$PY" - "$TARGET" "${WHEELS[@]}" <<'PYEOF'
import sys, zipfile
for whl in sys.argv[2:]:
    with zipfile.ZipFile(whl) as z:
        z.extractall(sys.argv[1])
PYEOF
fi

echo "lmdeploy_site: unpacking $(basename "${TARS[0]}")" >&2
rm -rf "$TARGET/lmdeploy" "$TARGET"/lmdeploy-*.dist-info
tar -xJf "${TARS[0]}" -C "$TARGET"
[ -f "$TARGET/lmdeploy/__init__.py" ] || { echo "lmdeploy_site: the tarball held no lmdeploy/ package" >&2; exit 1; }

WRAP=$(dirname "$TARGET")/lmpy
cat > "$WRAP" <<EOF
#!/bin/sh
# Written by bench/lmdeploy_site.sh: $PY with the lmdeploy site folder first on sys.path.
PYTHONPATH='$TARGET'\${PYTHONPATH:+:\$PYTHONPATH}
export PYTHONPATH
exec '$PY' "\$@"
EOF
chmod +x "$WRAP"

# light check that needs no GPU and no torch: the serving stack imports from the folder
if ! "$WRAP" -c 'import fastapi, starlette, uvicorn, pydantic, pydantic_core, openai, zmq, shortuuid, pybase64, mmengine' >&2; then
  echo "lmdeploy_site: warning: the serving packages did not import through $WRAP" >&2
fi
echo "$WRAP"

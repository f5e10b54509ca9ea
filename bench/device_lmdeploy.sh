#!/usr/bin/env bash
# lmdeploy on the GPU in one device call (issue 18, parts 2 and 5). Stages, each under its own time limit, output
# in $OUT/<stage>.txt and a summary in $OUT/summary.txt:
#   model   a random-weight model of InternLM2-1.8B's shape on the GPU (the tiny world's tokenizer from .whl/tiny)
#   gap     bench/lmdeploy_gap.py: lmdeploy's own pipeline against LmdeployBackend (batch 1 and BATCH in flight, base
#           and adapter, workbench's client and raw clients); SERVER_ARGS="--max-batch-size 128" adds server flags,
#           GAP_ARGS="--engine-variant inproc --engine-variant mp --server-variant mp --server-variant inproc" the
#           variants (the engine in or out of the server's process)
#   setup   `workbench setup lmdeploy --use LMPY --model /tmp/m18`: adopt the carried lmdeploy, start the real server,
#           get a reply, record the interpreter in settings.toml; then `workbench setup lmdeploy --wheels` offline,
#           which must fail with one line naming what pip could not find
# Carry: .whl (site/ = platformdirs + rapidfuzz cp312 wheels, tiny/ = the tiny world's tokenizer files,
# lmdeploy/ = the bundle of bench/build_lmdeploy_bundle.sh).
#   bash bench/device_lmdeploy.sh [STAGE ...]     (default: gap setup; the model is made first). TOTAL_S (default 560).
set -u
STAGES=" ${*:-gap setup} "
T0=$(date +%s); TOTAL=${TOTAL_S:-560}
OUT=${OUT:-/tmp/device-lmdeploy}; mkdir -p "$OUT"
ROOT=$(cd "$(dirname "$0")/.." && pwd); cd "$ROOT"
PY=${PYTHON:-python3}
export WORKBENCH_HOME=/tmp/wbh PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
SUMMARY=$OUT/summary.txt; : > "$SUMMARY"
. "$ROOT/bench/device_stages.sh"
site_and_versions
LMPY=$(bash bench/lmdeploy_site.sh .whl/lmdeploy /tmp/lm/site 2>"$OUT/site.txt" | tail -n 1)
note "lmdeploy site: $LMPY ($("$LMPY" -c 'import lmdeploy; print(lmdeploy.__version__)' 2>&1 | tail -n 1))"

[ -f /tmp/m18/config.json ] || stage model "$(cap 90 200)" "$PY" -c '
import time; t = time.perf_counter()
from workbench.demo.random_model import make_random_model
make_random_model("internlm2-1_8b", "/tmp/m18", device="cuda", tokenizer=".whl/tiny")
print(f"made /tmp/m18 in {time.perf_counter() - t:.1f}s")'

# shellcheck disable=SC2086
want gap && stage gap "$(cap 500 $(want setup && echo 150 || echo 5))" "$PY" bench/lmdeploy_gap.py --model /tmp/m18 \
  --lmdeploy-python "$LMPY" --make-adapters --batch "${BATCH:-64}" --json "$OUT/gap.json" \
  $(for a in ${SERVER_ARGS:-}; do echo --server-arg=$a; done) ${GAP_ARGS:-}
grep -E "tok/s|^engine done" "$OUT/gap.txt" 2>/dev/null | sed 's/^/  gap| /' >> "$SUMMARY"

if want setup; then
  stage setup "$(cap 200 15)" "$PY" -m workbench setup lmdeploy --use "$LMPY" --model /tmp/m18
  grep -E "lmdeploy_python" /tmp/wbh/config/settings.toml >> "$SUMMARY" 2>&1
  mkdir -p /tmp/offline-wheels && cp .whl/site/*.whl /tmp/offline-wheels/
  stage setup-offline "$(cap 60 5)" "$PY" -m workbench setup lmdeploy --wheels /tmp/offline-wheels --env /tmp/lmenv \
    --python "$PY" --model /tmp/m18
  tail -n 2 "$OUT/setup-offline.txt" | sed 's/^/  setup-offline| /' >> "$SUMMARY"
fi
note "done"

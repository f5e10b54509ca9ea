#!/usr/bin/env bash
# Chat on the GPU in one device call (the models issue): is the fast path right, how fast is it, and the real
# lmdeploy server through workbench's backend. Stages, each under its own time limit, output in $OUT/<stage>.txt:
#   switch   bench/gpu_switch_check.py: the tiny world + real checkpoints of its identity run (.pth read directly,
#            and the same checkpoint converted by XTuner), fast path vs generate() token for token, fp32 and bf16,
#            adapters switched back and forth, the CPU as a second reference
#   model    a random-weight model of InternLM2-1.8B's shape on the GPU, the tiny world's tokenizer
#   decode   bench/gpu_decode.py on it: batch-1 decode against the bandwidth bound, switch times, base after switches
#   reload   bench/gpu_reload_check.py: loading models again in one process (a new chat session) keeps CUDA graphs
#   lmdeploy bench/lmdeploy_device.py: the real `lmdeploy serve api_server` through LmdeployBackend (when .whl/lmdeploy
#            exists; made by the steps in bench/lmdeploy_site.sh)
# Carry: .whl (site/ = platformdirs + rapidfuzz cp312 wheels, tiny/ = the tiny world, tinyrun/ = iter_80.pth,
# iter_300.pth, their config and iter_300_hf/ from `pth_to_hf --fp32`, lmdeploy/ = the lmdeploy bundle).
#   bash bench/device_chat.sh [STAGE ...]     stages: switch reload decode lmdeploy (default: all three; the model is made
#                                            when decode or lmdeploy needs it). TOTAL_S (default 560) bounds the call.
set -u
STAGES=" ${*:-switch decode lmdeploy} "
want() { [[ "$STAGES" == *" $1 "* ]]; }
T0=$(date +%s); TOTAL=${TOTAL_S:-560}
OUT=${OUT:-/tmp/device-chat}; mkdir -p "$OUT"
ROOT=$(cd "$(dirname "$0")/.." && pwd); cd "$ROOT"
PY=${PYTHON:-python3}
export WORKBENCH_HOME=/tmp/wbh PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
SUMMARY=$OUT/summary.txt; : > "$SUMMARY"
. "$ROOT/bench/device_stages.sh"
"$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/site/*.whl > "$OUT/setup.txt" 2>&1 \
  || note "setup: pip install of .whl/site failed"
export PYTHONPATH=/tmp/site:$ROOT
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >> "$SUMMARY" 2>&1
"$PY" -c 'import torch, transformers, peft; print("torch", torch.__version__, "transformers", transformers.__version__, "peft", peft.__version__)' >> "$SUMMARY" 2>&1

R=.whl/tinyrun
want switch && stage switch "$(cap 220 $(want decode && echo 200 || echo 0))" "$PY" bench/gpu_switch_check.py --model .whl/tiny --adapter iter_80=$R/iter_80.pth \
  --adapter iter_300=$R/iter_300.pth --adapter iter_300_hf=$R/iter_300_hf --prompts 24 --max-new-tokens 32 \
  --cpu-reference --json "$OUT/switch.json"

want reload && WORKBENCH_DEBUG=1 stage reload "$(cap 150 $(want lmdeploy && echo 300 || echo 0))" "$PY" \
  bench/gpu_reload_check.py --model .whl/tiny --adapter iter_300=$R/iter_300.pth --json "$OUT/reload.json"

{ want decode || want lmdeploy; } && [ ! -f /tmp/m18/config.json ] && stage model "$(cap 60 100)" "$PY" -c '
import time; t = time.perf_counter()
from workbench.demo.random_model import make_random_model
make_random_model("internlm2-1_8b", "/tmp/m18", device="cuda", tokenizer=".whl/tiny")
print(f"made /tmp/m18 in {time.perf_counter() - t:.1f}s")'

DEC=$(cap 300 $(want lmdeploy && echo 240 || echo 5))
want decode && stage decode "$DEC" "$PY" bench/gpu_decode.py --model /tmp/m18 --adapters 2 --json "$OUT/decode.json" --budget-s $(( DEC - 10 ))

if want lmdeploy && [ -d .whl/lmdeploy ]; then
  bash bench/lmdeploy_site.sh .whl/lmdeploy /tmp/lm/site > "$OUT/lmdeploy_setup.txt" 2>&1 || note "lmdeploy setup failed"
  stage lmdeploy "$(cap 240 3)" "$PY" bench/lmdeploy_device.py --model /tmp/m18 --lmdeploy-python /tmp/lm/lmpy \
    --make-adapters --repeats 3
fi
note done
cat "$SUMMARY"

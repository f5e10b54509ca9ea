#!/usr/bin/env bash
# Chat on the GPU in one device call (the models issues): is the fast path right, how fast is it, and the real
# lmdeploy server through workbench's backend. Stages, each under its own time limit, output in $OUT/<stage>.txt:
#   switch   bench/gpu_switch_check.py: the tiny world + real checkpoints of its identity run (.pth read directly,
#            and the same checkpoint converted by XTuner), the fused decoder and today's static-cache loop vs
#            generate() and vs each other, token for token, fp32 and bf16, adapters switched back and forth, the CPU
#            as a second reference
#   model    a random-weight model of InternLM2-1.8B's shape on the GPU, the tiny world's tokenizer
#   decode   bench/gpu_decode.py on it: batch-1 decode against the bandwidth bound (HF generate, the static-cache
#            loop, the fused decoder and VARIANTS of its step), switch times, base after switches
#   fourbit  bench/gpu_4bit.py on it: nf4 (bitsandbytes from .whl/bnb) against bf16, memory and tok/s
#   reload   bench/gpu_reload_check.py: loading models again in one process (a new chat session) keeps CUDA graphs
#   lmdeploy bench/lmdeploy_device.py: the real `lmdeploy serve api_server` through LmdeployBackend (when .whl/lmdeploy
#            exists; made by the steps in bench/lmdeploy_site.sh)
# Carry: .whl (site/ = platformdirs + rapidfuzz cp312 wheels, tiny/ = the tiny world, tinyrun/ = iter_20.pth,
# iter_60.pth of workbench/configs/tiny_cpu_lora.py, its config and iter_60_hf/ from `pth_to_hf --fp32`, bnb/ = bitsandbytes
# unpacked with only its CPU and CUDA 13.0 libraries, lmdeploy/ = the lmdeploy bundle).
#   bash bench/device_chat.sh [STAGE ...]     stages: switch decode fourbit reload lmdeploy (default: switch decode
#                                            lmdeploy; the model is made when a stage needs it). TOTAL_S (default 560)
#                                            bounds the call; VARIANTS="cd reduce-no-cd" picks the decode variants,
#                                            FOURBIT_LOADS="bf16-hf nf4 bf16" the loads of the fourbit stage.
set -u
STAGES=" ${*:-switch decode lmdeploy} "
T0=$(date +%s); TOTAL=${TOTAL_S:-560}
OUT=${OUT:-/tmp/device-chat}; mkdir -p "$OUT"
ROOT=$(cd "$(dirname "$0")/.." && pwd); cd "$ROOT"
PY=${PYTHON:-python3}
export WORKBENCH_HOME=/tmp/wbh PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
SUMMARY=$OUT/summary.txt; : > "$SUMMARY"
. "$ROOT/bench/device_stages.sh"
site_and_versions

R=.whl/tinyrun
{ want decode || want lmdeploy || want fourbit; } && [ ! -f /tmp/m18/config.json ] && stage model "$(cap 60 100)" "$PY" -c '
import time; t = time.perf_counter()
from workbench.demo.random_model import make_random_model
make_random_model("internlm2-1_8b", "/tmp/m18", device="cuda", tokenizer=".whl/tiny")
print(f"made /tmp/m18 in {time.perf_counter() - t:.1f}s")'

# reserve time for the stages after this one
AFTER_FB=$(( $(want switch && echo 150 || echo 0) + $(want reload && echo 90 || echo 0) + $(want lmdeploy && echo 240 || echo 0) + 5 ))
RES_DEC=$(( $(want fourbit && echo 100 || echo 0) + AFTER_FB ))
DEC=$(cap 330 $RES_DEC)
# shellcheck disable=SC2046
want decode && WORKBENCH_DEBUG=1 stage decode "$DEC" "$PY" bench/gpu_decode.py --model /tmp/m18 --adapters 2 \
  --json "$OUT/decode.json" --budget-s $(( DEC - 10 )) $(for v in ${VARIANTS-cd reduce-no-cd}; do echo --variant $v; done)

FB=$(cap 150 $AFTER_FB)
# shellcheck disable=SC2046
want fourbit && PYTHONPATH=$PWD/.whl/bnb:$PYTHONPATH stage fourbit "$FB" "$PY" bench/gpu_4bit.py --model /tmp/m18 \
  --json "$OUT/fourbit.json" --budget-s $(( FB - 10 )) $(for l in ${FOURBIT_LOADS-bf16-hf nf4 bf16}; do echo --load $l; done)

want switch && WORKBENCH_DEBUG=1 stage switch "$(cap 200 $(( $(want reload && echo 90 || echo 0) + $(want lmdeploy && echo 240 || echo 5) )))" "$PY" \
  bench/gpu_switch_check.py --model .whl/tiny --adapter iter_20=$R/iter_20.pth --adapter iter_60=$R/iter_60.pth \
  --adapter iter_60_hf=$R/iter_60_hf --prompts 24 --max-new-tokens 32 --cpu-reference

want reload && WORKBENCH_DEBUG=1 stage reload "$(cap 150 $(want lmdeploy && echo 240 || echo 5))" "$PY" \
  bench/gpu_reload_check.py --model .whl/tiny --adapter iter_60=$R/iter_60.pth

if want lmdeploy && [ -d .whl/lmdeploy ]; then
  bash bench/lmdeploy_site.sh .whl/lmdeploy /tmp/lm/site > "$OUT/lmdeploy_setup.txt" 2>&1 || note "lmdeploy setup failed"
  stage lmdeploy "$(cap 240 3)" "$PY" bench/lmdeploy_device.py --model /tmp/m18 --lmdeploy-python /tmp/lm/lmpy \
    --make-adapters --repeats 3
fi
note done
cat "$SUMMARY"

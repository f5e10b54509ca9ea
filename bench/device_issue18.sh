#!/usr/bin/env bash
# Issue 18 part 3 on the GPU in one call: a QLoRA run (bitsandbytes 4-bit nf4) through workbench's runs core (what
# `workbench train` starts: bench/gpu_train.py) with a checkpoint every 50 iterations, then the CLI itself:
# `workbench convert RUN` (the last checkpoint, XTuner's pth_to_hf in a child), `workbench merge --run RUN --iter N`,
# `workbench eval --run RUN` (the base and every checkpoint) and `workbench eval --parity ADAPTER MERGED`.
# Every step has its own time limit; its time, exit status and peak GPU memory (nvidia-smi, whole GPU, sampled every
# 0.2 s) go into $OUT/steps.json, rewritten after each step, so a slow or failing step still leaves its figures.
#
#   bash bench/device_issue18.sh             on the device (carry .whl/train, made by bench/build_trainsite.sh 312
#                                            .whl/train; TOTAL_S, default 500 s)
#   bash bench/device_issue18.sh --cpu       the same steps on a CPU: the tiny shape, fp32, no 4-bit, 20 iterations
#                                            (PYTHON, TRAINSITE_DIR may be set; TRAINSITE_DIR=none: the Python's own)
#
# The model: `make_random_model` (what `workbench demo --random-model` runs) on the GPU, with the tokenizer from
# .whl/train/tokenizer. SHAPE (default internlm2-1_8b) and LAYERS (default 6: the 1.8B's widths, a quarter of its
# 24 layers, ~0.76B parameters with its 92,544-row embeddings) choose it: QLoRA on the full 1.8B ran at 0.5-0.8
# iter/s (docs/benchmarks.md), so 300 iterations would not fit beside the other steps in one call.
# (Measured: on 2026-12-03 at 6 layers, 4.8-5.3 iter/s, 300 iterations in 116 s with the start; on 2026-12-04 at
# LAYERS=24, the whole 1.889B shape, 1.96 iter/s, 300 iterations in 195 s, the call in 339 s with RESERVE_S=200.)
# Files in $OUT (at most 8 come back): steps.json, train.json, eval.json, parity.json, log.txt, summary.txt.
set -u
T0=$(date +%s)
CPU=0; [ "${1:-}" = "--cpu" ] && CPU=1
TOTAL=${TOTAL_S:-$([ "$CPU" = 1 ] && echo 1500 || echo 500)}
OUT=${OUT:-/tmp/issue18-out}; mkdir -p "$OUT"
PY=${PYTHON:-python3}
ROOT=$(cd "$(dirname "$0")/.." && pwd); cd "$ROOT"
export WORKBENCH_HOME=${WORKBENCH_HOME:-/tmp/wbh18} PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
SUMMARY=$OUT/summary.txt; : > "$SUMMARY"; LOG=$OUT/log.txt; : > "$LOG"; STEPS=$OUT/steps.jsonl; : > "$STEPS"
LOGS=/tmp/issue18-logs; rm -rf "$LOGS"; mkdir -p "$LOGS"
now() { echo $(( $(date +%s) - T0 )); }
left() { echo $(( TOTAL - $(date +%s) + T0 )); }
note() { echo "[$(now)s] $*" | tee -a "$SUMMARY"; }
cap() { local a=$(( $(left) - $2 )); [ "$a" -lt "$1" ] && echo "$a" || echo "$1"; }
HAVE_SMI=0; command -v nvidia-smi > /dev/null 2>&1 && HAVE_SMI=1
write_steps() {  # steps.jsonl -> steps.json (one object: the steps in order, the call's elapsed time)
  "$PY" - "$STEPS" "$OUT/steps.json" "$(now)" <<'EOF'
import json, os, sys
steps = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
tmp = sys.argv[2] + ".tmp"
json.dump({"elapsed_s": int(sys.argv[3]), "steps": steps}, open(tmp, "w"), indent=1)
os.replace(tmp, sys.argv[2])
EOF
}
# step NAME LIMIT CMD...: CMD under timeout, output in $LOGS/NAME.txt (appended to log.txt), GPU memory sampled
step() {
  local name=$1 limit=$2; shift 2
  if [ "$limit" -lt 10 ]; then
    note "$name: skipped (only ${limit}s left)"
    echo "{\"step\": \"$name\", \"skipped\": \"only ${limit}s left\"}" >> "$STEPS"; write_steps; return 124
  fi
  local t; t=$(date +%s.%N); local mp=""
  if [ "$HAVE_SMI" = 1 ]; then
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 > "$LOGS/mem_$name.txt" 2>/dev/null &
    mp=$!
  fi
  timeout -k 5 "$limit" "$@" > "$LOGS/$name.txt" 2>&1
  local rc=$?
  [ -n "$mp" ] && kill "$mp" 2>/dev/null && wait "$mp" 2>/dev/null
  local secs; secs=$("$PY" -c "import time; print(round(time.time() - $t, 1))")
  local peak=null
  [ -s "$LOGS/mem_$name.txt" ] && peak=$(sort -n "$LOGS/mem_$name.txt" | tail -1 | tr -dc 0-9)
  [ -z "$peak" ] && peak=null
  echo "{\"step\": \"$name\", \"rc\": $rc, \"seconds\": $secs, \"limit_s\": $limit, \"peak_gpu_mib_nvidia_smi\": $peak, \"timed_out\": $([ "$rc" = 124 ] || [ "$rc" = 137 ] && echo true || echo false)}" >> "$STEPS"
  write_steps
  { echo "===== $name (rc=$rc, ${secs}s, limit ${limit}s, peak ${peak} MiB)"; tail -c 6000 "$LOGS/$name.txt"; } >> "$LOG"
  note "$name: rc=$rc in ${secs}s (limit ${limit}s), peak GPU ${peak} MiB"
  [ "$rc" = 0 ] || tail -n 8 "$LOGS/$name.txt" | sed "s/^/  $name| /" | tee -a "$SUMMARY"
  return $rc
}

# -- setup --------------------------------------------------------------------------------------------------
SITE=/tmp/site18
if [ "$CPU" = 0 ] && [ ! -d "$SITE/rapidfuzz" ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" .whl/train/site/*.whl > "$LOGS/pip.txt" 2>&1 \
    || note "setup: pip install of .whl/train/site failed: $(tail -2 "$LOGS/pip.txt")"
fi
export PYTHONPATH=$SITE:$ROOT
PYV=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')
TS=${TRAINSITE_DIR:-/tmp/trainsite/site-packages}
if [ "$TS" = none ]; then TS=/tmp/issue18-empty-site/site-packages; mkdir -p "$TS"
elif [ ! -d "$TS/xtuner" ]; then
  t=$(date +%s); mkdir -p "$TS" && tar xJf ".whl/train/trainsite-cp$PYV.tar.xz" -C "$TS" \
    && note "setup: training bundle unpacked in $(( $(date +%s) - t ))s ($(du -sh "$TS" | cut -f1))" \
    || note "setup: could not unpack .whl/train/trainsite-cp$PYV.tar.xz"
fi
STUBS=(); STUBPATH=""
for m in torchvision skimage; do
  "$PY" -c "import $m" > /dev/null 2>&1 || { [ -d "$TS/_stubs/$m" ] && STUBS+=(--stub "$TS/_stubs/$m") && STUBPATH+="$TS/_stubs/$m:"; }
done
NVJ=$("$PY" - <<'EOF' 2>/dev/null
import glob, importlib.util, os, sysconfig
want = ("libcudart.so.13", "libcublas.so.13", "libcublasLt.so.13", "libcusparse.so.12", "libnvJitLink.so.13")
roots = {os.path.join(sysconfig.get_paths()["purelib"], "nvidia")}
for name in ("torch", "nvidia"):
    spec = importlib.util.find_spec(name)
    for loc in (spec.submodule_search_locations or []) if spec else []:
        roots.add(os.path.join(os.path.dirname(loc), "nvidia"))
dirs = sorted({os.path.dirname(p) for r in roots for w in want
               for p in glob.glob(os.path.join(r, "**", w + "*"), recursive=True)})
print(":".join(dirs))
EOF
)
export LD_LIBRARY_PATH=${NVJ:+$NVJ${LD_LIBRARY_PATH:+:}}${LD_LIBRARY_PATH:-}
note "setup: python $PYV, bundle $TS, stand-ins: ${STUBS[*]:-none}, CUDA library dirs: ${NVJ:-none}"
# workbench's CLI with the bundle AFTER this machine's packages (eval unpickles iter_N.pth: mmengine), or FIRST
# (convert: its child runs XTuner's pth_to_hf, which needs the bundle's transformers 4.48)
WB_AFTER=("$PY" -c 'import os, sys; sys.path.append(os.environ["WB_TS"]); sys.argv[0] = "workbench"
from workbench.cli import main; sys.exit(main())')
WB_FIRST=(env "PYTHONPATH=$TS:$STUBPATH$PYTHONPATH" "$PY" -m workbench)
export WB_TS=$TS
[ "$HAVE_SMI" = 1 ] && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >> "$SUMMARY"
( timeout 60 env PYTHONPATH="$TS:$STUBPATH$PYTHONPATH" "$PY" -c '
import torch, transformers, peft, mmengine, xtuner
print("training children: torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__,
      "peft", peft.__version__, "mmengine", mmengine.__version__, "xtuner", xtuner.__version__)
if torch.cuda.is_available():
    import bitsandbytes as bnb, bitsandbytes.functional as F
    w = torch.randn(256, 256, device="cuda", dtype=torch.bfloat16)
    q, s = F.quantize_4bit(w, quant_type="nf4")
    print("bitsandbytes", bnb.__version__, "4-bit round trip: mean abs error", round((F.dequantize_4bit(q, s) - w).abs().mean().item(), 4))' > "$LOGS/versions.txt" 2>&1; echo "rc=$?" >> "$LOGS/versions.txt" ) &
VPID=$!
"$PY" -c 'import torch, transformers, peft; print("workbench process: torch", torch.__version__, "transformers", transformers.__version__, "peft", peft.__version__)' >> "$SUMMARY" 2>&1

# -- the model ------------------------------------------------------------------------------------------------
if [ "$CPU" = 1 ]; then SHAPE=${SHAPE:-tiny}; LAYERS=${LAYERS:-4}; DEV=cpu; TOK=${TOKENIZER:-.whl/tiny}
else SHAPE=${SHAPE:-internlm2-1_8b}; LAYERS=${LAYERS:-6}; DEV=cuda; TOK=${TOKENIZER:-.whl/train/tokenizer}; fi
MODEL=/tmp/m18-${SHAPE}-${LAYERS}l
[ "${SKIP_TRAIN:-0}" = 1 ] || step make_model 120 "$PY" -c "
import time
import workbench.demo.random_model as rm
shape = '$SHAPE-${LAYERS}l'
rm.SHAPES[shape] = dict(rm.SHAPES['$SHAPE'], num_hidden_layers=$LAYERS)
t = time.perf_counter()
out = rm.make_random_model(shape, '$MODEL', device='$DEV', tokenizer='$TOK')
import math
from safetensors import safe_open
n = 0
for f in out.glob('*.safetensors'):
    with safe_open(str(f), 'pt') as s:
        n += sum(math.prod(s.get_slice(k).get_shape()) for k in s.keys())
print(f'made {out} ({shape}: {rm.SHAPES[shape]}) in {time.perf_counter() - t:.1f}s, {n / 1e9:.3f}B parameters')
" || { note "no model: stopping"; exit 1; }

# -- training (QLoRA, 4-bit nf4 on the GPU) -----------------------------------------------------------------
CONFIG=workbench/configs/internlm2_chat_1_8b_qlora_self_cognition.py
if [ "$CPU" = 1 ]; then TRAIN=(--iters ${ITERS:-20} --save-every ${SAVE_EVERY:-5} --hook-tokens 4 --hook-every 10 --cpu); RESERVE=400
else TRAIN=(--iters ${ITERS:-300} --save-every ${SAVE_EVERY:-50} --hook-tokens 8 --hook-every 100); RESERVE=${RESERVE_S:-150}; fi
wait "$VPID"; { echo "===== versions"; cat "$LOGS/versions.txt"; } >> "$LOG"; note "versions: $(grep -v Warn "$LOGS/versions.txt" | tr "\n" " " | cut -c1-400)"
TL=$(cap 400 "$RESERVE")
if [ "${SKIP_TRAIN:-0}" != 1 ]; then
rm -rf /tmp/wd18
step train "$TL" "$PY" bench/gpu_train.py --config "$CONFIG" --model "$MODEL" --work-dir /tmp/wd18/qlora --name qlora \
  "${TRAIN[@]}" --budget-s $(( TL - 25 )) --total-s $(( TL - 5 )) --convert-min-s 100000 --train-site "$TS" \
  "${STUBS[@]}" --json "$OUT/train.json"
"$PY" -m workbench stop qlora --grace 3 > /dev/null 2>&1  # a backstop: an error when the run has ended
fi
LAST=$("$PY" -c "
import json
r = json.load(open('$OUT/train.json'))
c = [c['iter'] for c in r.get('checkpoints', []) if c.get('complete')]
print(max(c) if c else '')" 2>/dev/null)
note "train: iterations $("$PY" -c "import json; r = json.load(open('$OUT/train.json')); print(r.get('iters_done'), 'of', r.get('iters'), 'iter/s', r.get('iter_per_s'), 'arrivals', r.get('iter_per_s_from_log_arrivals'), 'loss', r.get('first_loss'), '->', r.get('final_loss'), 'mmengine MB', r.get('peak_memory_mb_mmengine'), 'first metrics after', r.get('first_metrics_after_s'), 's, checkpoints', [c['iter'] for c in r.get('checkpoints', [])])" 2>&1)"
[ -n "$LAST" ] || { note "no complete checkpoint: nothing to convert, merge or sweep"; exit 1; }

# -- convert, merge, eval --run, parity (the CLI itself) ----------------------------------------------------
step convert "$(cap 60 95)" "${WB_FIRST[@]}" convert qlora --iter "$LAST" --json
ADAPTER=$(ls -d /tmp/wd18/qlora/hf/iter_"$LAST" 2>/dev/null || ls -d /tmp/wd18/qlora/hf/*"$LAST"* 2>/dev/null | head -1)
step merge "$(cap 60 65)" "${WB_AFTER[@]}" merge --run qlora --iter "$LAST"
MERGED=/tmp/wd18/qlora/merged/iter_$LAST
if [ "$CPU" = 1 ]; then EV=(--device cpu); else EV=(--device cuda); fi
step eval_run "$(cap 120 25)" "${WB_AFTER[@]}" eval --run qlora "${EV[@]}" --format json --out "$OUT/eval.json" -q
step parity "$(cap 60 0)" "${WB_AFTER[@]}" eval --parity "$ADAPTER" "$MERGED" --base "$MODEL" "${EV[@]}" --format json --out "$OUT/parity.json" -q
note "done (adapter $ADAPTER, merged $MERGED)"
"$PY" - "$OUT" <<'EOF' >> "$SUMMARY" 2>&1
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
try:
    e = json.loads((out / "eval.json").read_text())
    keys = list(e) if isinstance(e, dict) else []
    print("eval.json keys:", keys[:20])
except Exception as exc:
    print("eval.json:", exc)
try:
    print("parity.json:", (out / "parity.json").read_text()[:1500])
except Exception as exc:
    print("parity.json:", exc)
EOF
cat "$SUMMARY"

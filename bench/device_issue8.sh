#!/usr/bin/env bash
# Issue 8 on the GPU in one call. Stages, in order: setup (workbench's wheels, the training bundle, versions and a
# bitsandbytes 4-bit check), nvidia-smi, the random 1.8B model, the decode figures (bench/gpu_decode.py), QLoRA training
# (bench/gpu_train.py, 200 iterations, a checkpoint every 25), the eval sweep on its checkpoints against the naive loop
# (bench/gpu_sweep.py), then ZeRO-2 training with what time is left. Every stage has its own time limit and writes
# $OUT/<stage>.txt (and .json) as it goes, so one failing or slow stage never takes the others with it;
# $OUT/summary.txt at the end.
#
#   bash bench/device_issue8.sh                 on the device (carry .whl/train; about 470 s in all)
#   bash bench/device_issue8.sh --cpu-dry-run   the same stages on a CPU with the tiny world (tiny sizes, no 4-bit,
#                                               no compile); PYTHON, TRAINSITE_DIR, SITE_DIR, TOTAL_S may be set
# DECODE_S (default 150) is the decode stage's limit (bench/gpu_decode.py gets 10 s less as its --budget-s).
#
# .whl/train (made by `bench/build_trainsite.sh 312 .whl/train`) holds:
#   trainsite-cp312.tar.xz   transformers 4.48 + xtuner 0.2.0 + mmengine + deepspeed + bitsandbytes (CUDA 13) + datasets
#                            ...: only the training and conversion children get it, first on PYTHONPATH
#   site/*.whl               workbench's own runtime wheels (platformdirs, rapidfuzz) for this process's Python
#   tokenizer/               the tiny world's tokenizer (no weights): the random 1.8B model's tokenizer
set -u
T0=$(date +%s)
DRY=0; [ "${1:-}" = "--cpu-dry-run" ] && DRY=1
TOTAL=${TOTAL_S:-$([ "$DRY" = 1 ] && echo 900 || echo 470)}
OUT=${OUT:-/tmp/issue8-out}; mkdir -p "$OUT"
PY=${PYTHON:-python3}
ROOT=$(cd "$(dirname "$0")/.." && pwd); cd "$ROOT"
export WORKBENCH_HOME=${WORKBENCH_HOME:-/tmp/wbh} PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1  # no network there: never wait on a hub
SUMMARY=$OUT/summary.txt; : > "$SUMMARY"
. "$ROOT/bench/device_stages.sh"

# -- setup: workbench's own wheels, the training bundle, stand-ins, the model --------------------------------
if [ -n "${SITE_DIR:-}" ]; then SITE=$SITE_DIR
else
  SITE=/tmp/site
  [ -d "$SITE/rapidfuzz" ] || "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" .whl/train/site/*.whl \
    > "$OUT/setup_site.txt" 2>&1 || note "setup: pip install of .whl/train/site failed (see setup_site.txt)"
fi
export PYTHONPATH=$SITE:$ROOT
PYV=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')
if [ -n "${TRAINSITE_DIR:-}" ]; then TS=$TRAINSITE_DIR
else
  TS=/tmp/trainsite/site-packages  # a path with "site-packages" in it: dill (datasets' fingerprints) then pickles
  # the bundle's modules by reference, as for any installed package, not by value (which fails on pyarrow types)
  if [ ! -d "$TS/xtuner" ]; then
    t=$(date +%s); mkdir -p "$TS" && tar xJf ".whl/train/trainsite-cp$PYV.tar.xz" -C "$TS" \
      && note "setup: training bundle unpacked in $(( $(date +%s) - t ))s ($(du -sh "$TS" | cut -f1))" \
      || note "setup: could not unpack .whl/train/trainsite-cp$PYV.tar.xz"
  fi
fi
STUBS=(); STUBPATH=""
for m in torchvision skimage; do
  "$PY" -c "import $m" > /dev/null 2>&1 || { STUBS+=(--stub "$TS/_stubs/$m"); STUBPATH+="$TS/_stubs/$m:"; }
done
# bitsandbytes' CUDA 13 library needs libcudart/libcublas/libcublasLt.so.13, libcusparse.so.12 and libnvJitLink.so.13,
# which torch's wheel keeps under site-packages/nvidia (torch loads some of them itself, not necessarily all)
NVJ=$("$PY" - <<'EOF' 2>/dev/null
import glob, importlib.util, os, sysconfig
want = ("libcudart.so.13", "libcublas.so.13", "libcublasLt.so.13", "libcusparse.so.12", "libnvJitLink.so.13")
roots = {os.path.join(sysconfig.get_paths()["purelib"], "nvidia")}
for name in ("torch", "nvidia"):  # wherever torch and the nvidia-* wheels really are
    spec = importlib.util.find_spec(name)
    for loc in (spec.submodule_search_locations or []) if spec else []:
        roots.add(os.path.join(os.path.dirname(loc), "nvidia"))
dirs = sorted({os.path.dirname(p) for r in roots for w in want
               for p in glob.glob(os.path.join(r, "**", w + "*"), recursive=True)})
print(":".join(dirs))
EOF
)
# only for the stages that load bitsandbytes (versions, training, sweep), not for the decode figures
TLD=${NVJ:+$NVJ${LD_LIBRARY_PATH:+:}}${LD_LIBRARY_PATH:-}
note "setup: python $PYV, site $SITE, bundle $TS, stand-ins: ${STUBS[*]:-none}, CUDA library dirs for bitsandbytes: ${NVJ:-none}"

cat > /tmp/wb_versions_train.py <<'EOF'
import torch, transformers, tokenizers, huggingface_hub, peft, mmengine, xtuner, datasets, deepspeed
import bitsandbytes as bnb
print("training children: transformers", transformers.__version__, "tokenizers", tokenizers.__version__, "hub",
      huggingface_hub.__version__, "peft", peft.__version__, "mmengine", mmengine.__version__, "xtuner", xtuner.__version__,
      "datasets", datasets.__version__, "deepspeed", deepspeed.__version__, "bitsandbytes", bnb.__version__)
if torch.cuda.is_available():
    import bitsandbytes.functional as F
    w = torch.randn(256, 256, device="cuda", dtype=torch.bfloat16)
    q, state = F.quantize_4bit(w, quant_type="nf4")
    print("bitsandbytes 4-bit round trip on cuda: mean abs error", round((F.dequantize_4bit(q, state) - w).abs().mean().item(), 4))
EOF
# (in the background, beside the model's creation: both only need the CPU)
( "$PY" -c 'import torch, transformers, peft, accelerate; print("workbench process: torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__, "peft", peft.__version__, "accelerate", accelerate.__version__)' > "$OUT/versions.txt" 2>&1
  LD_LIBRARY_PATH=$TLD PYTHONPATH=$TS:$STUBPATH$PYTHONPATH timeout 90 "$PY" /tmp/wb_versions_train.py >> "$OUT/versions.txt" 2>&1
  echo "rc=$?" >> "$OUT/versions.txt" ) &
VPID=$!
[ "$DRY" = 0 ] && stage nvidia_smi 20 nvidia-smi

# The model: `workbench demo --random-model SHAPE --out DIR` (internlm2-1_8b here, tiny in the dry run), with the tiny
# world's tokenizer taken from .whl/train/tokenizer instead of building the tiny world first (that trains it on the
# CPU: a minute we lack). transformers 5 saves the tokenizer as "TokenizersBackend", a class the training children's
# transformers 4.48 does not know: the original tokenizer files are put back (both versions load them).
if [ "$DRY" = 1 ]; then SHAPE=tiny; MODEL=/tmp/m-tiny-random; else SHAPE=internlm2-1_8b; MODEL=/tmp/m18; fi
if [ ! -f "$MODEL/config.json" ]; then
  stage make_model "$(cap 90 330)" "$PY" - <<EOF
import shutil, time
from pathlib import Path
from types import SimpleNamespace
import workbench.demo.world as world
from workbench.demo.random_model import make_random_model
tok = Path("$ROOT/.whl/train/tokenizer")
world.ensure_world = lambda *a, **k: SimpleNamespace(path=str(tok))
t = time.perf_counter()
out = make_random_model("$SHAPE", "$MODEL")
for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
    shutil.copy(tok / name, out / name)
print(f"made $MODEL ($SHAPE) in {time.perf_counter() - t:.1f}s:", sorted(p.name for p in out.iterdir()))
EOF
fi
wait "$VPID"; note "versions: $(tr '\n' ' ' < "$OUT/versions.txt" | cut -c1-600)"

# -- decode figures (bench/gpu_decode.py) ------------------------------------------------------------------
if [ -f bench/gpu_decode.py ]; then
  if [ "$DRY" = 1 ]; then
    stage decode 60 "$PY" bench/gpu_decode.py --model "$MODEL" --adapters 2 --json "$OUT/decode.json" --budget-s 30 --device cpu --new-tokens 16 --no-compile
  else
    DL=$(cap "${DECODE_S:-150}" 250)
    stage decode "$DL" "$PY" bench/gpu_decode.py --model "$MODEL" --adapters 2 --json "$OUT/decode.json" --budget-s $(( DL - 10 ))
  fi
else
  note "decode: bench/gpu_decode.py not found, skipped"
fi

# -- training through the runs core -----------------------------------------------------------------------
rm -rf /tmp/wd
if [ "$DRY" = 1 ]; then
  TRAIN=(--iters 20 --save-every 5 --hook-tokens 4 --hook-every 10 --cpu)
  SW=(--checkpoints 4 --prompts 8 --max-new-tokens 8 --batch-size 8 --naive-prompts 2 --device cpu)
  QL=$(cap 240 400); SW_MAX=200; SW_RES=150; ZL_MAX=300
else
  TRAIN=(--iters 200 --save-every 25 --hook-tokens 8 --hook-every 100)
  SW=(--checkpoints 8 --prompts 200 --max-new-tokens 128 --batch-size 200 --naive-prompts 2)
  QL=$(cap 105 150); SW_MAX=90; SW_RES=60; ZL_MAX=120
fi
# Order: QLoRA, then the sweep on its checkpoints (the headline figure), then ZeRO-2 with what is left. Each run is
# stopped (workbench stop) TAIL seconds before its limit so the last checkpoint can still be converted.
LD_LIBRARY_PATH=$TLD stage train_qlora "$QL" "$PY" bench/gpu_train.py --config workbench/configs/internlm2_chat_1_8b_qlora_self_cognition.py \
  --model "$MODEL" --work-dir /tmp/wd/qlora --name qlora "${TRAIN[@]}" --budget-s $(( QL - 35 )) \
  --total-s $(( QL - 5 )) --convert-min-s 20 --train-site "$TS" "${STUBS[@]}" --json "$OUT/train_qlora.json"
# a stage killed by its timeout stops its run itself; this is the backstop (an error when the run has ended)
"$PY" -m workbench stop qlora --grace 3 > /dev/null 2>&1

# -- eval sweep vs the naive loop (on the QLoRA run's checkpoints) ------------------------------------------
LD_LIBRARY_PATH=$TLD stage sweep "$(cap $SW_MAX $SW_RES)" "$PY" bench/gpu_sweep.py --run qlora "${SW[@]}" \
  --train-json "$OUT/train_qlora.json" --train-site "$TS" --json "$OUT/sweep.json"

# -- ZeRO-2 ---------------------------------------------------------------------------------------------------
ZL=$(cap $ZL_MAX 3)
LD_LIBRARY_PATH=$TLD stage train_zero2 "$ZL" "$PY" bench/gpu_train.py --config workbench/configs/internlm2_chat_1_8b_qlora_self_cognition_zero2.py \
  --model "$MODEL" --work-dir /tmp/wd/zero2 --name zero2 "${TRAIN[@]}" --budget-s $(( ZL - 30 )) \
  --total-s $(( ZL - 5 )) --convert-min-s 20 --train-site "$TS" "${STUBS[@]}" --json "$OUT/train_zero2.json"
"$PY" -m workbench stop zero2 --grace 3 > /dev/null 2>&1

# -- summary ------------------------------------------------------------------------------------------------
"$PY" - "$OUT" <<'EOF' >> "$SUMMARY" 2>&1
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
def load(name):
    try:
        return json.loads((out / name).read_text())
    except Exception as exc:
        return {"missing": f"{name}: {exc}"}
for name in ("train_qlora.json", "train_zero2.json"):
    r = load(name)
    keys = ("status", "exit_code", "reason", "iters_done", "iter_per_s", "iter_per_s_from_log_arrivals", "peak_memory_mb_mmengine",
            "peak_gpu_memory_mib_nvidia_smi", "first_loss", "final_loss", "train_wall_s", "first_metrics_after_s", "stopped_by_budget", "missing")
    print(name, {k: r.get(k) for k in keys if k in r})
    print("  checkpoints:", [c["iter"] for c in r.get("checkpoints", [])], "convert:", r.get("convert"), "errors:", r.get("errors"))
s = load("sweep.json")
print("sweep:", {k: s.get("sweep", {}).get(k) for k in ("wall_s", "targets", "items", "tokens", "expected_tokens", "tok_per_s", "peak_gpu_memory_mib")},
      "checkpoints:", s.get("checkpoints_swept"), s.get("missing", ""), s.get("error", ""))
print("naive:", s.get("naive"))
print("speedup naive/sweep:", s.get("speedup_naive_over_sweep"), s.get("speedup_note", ""))
EOF
note "done"
cat "$SUMMARY"

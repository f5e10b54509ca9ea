#!/usr/bin/env bash
# Issue 8's eval-sweep figure in one device call of under 170 s, with no training first:
#   1. setup: workbench's own wheels (.whl/train/site: platformdirs, rapidfuzz) into /tmp/site
#   2. ckpts: bench/gpu_sweep_ckpts.py writes the random InternLM2-1.8B-shaped Llama (initialised on the GPU, the tiny
#      world's tokenizer from .whl/train/tokenizer) and an XTuner-style QLoRA work dir beside it: iter_25..iter_200.pth
#      of random r=64 LoRA weights (+ AdamW state) in XTuner's key format, the config copy, last_checkpoint
#   3. sweep: bench/gpu_sweep.py --work-dir: the eval core's sweep (what `workbench eval --checkpoints DIR` runs)
#      over base + 8 checkpoints x 200 prompts x 128 new tokens at batch 200, fixed lengths; then the naive loop on one
#      checkpoint (workbench's reader converting iter_N.pth to a PEFT folder, a fresh base + adapter load, 2 prompts
#      one at a time), extrapolated to 8 checkpoints x 200 prompts. Under its time budget the sweep may stop early and
#      extrapolate the targets it did not run (it says so); the naive part always gets at least one prompt.
# Every stage has its own `timeout`; $OUT/ckpts.json, sweep.json, sweep.txt (the sweep's log); the summary is printed
# last (and kept in $OUT/summary.txt).
#
#   bash bench/device_sweep.sh                 on the device (carry .whl/train/site and .whl/train/tokenizer)
#   bash bench/device_sweep.sh --cpu-dry-run   the same stages on this CPU: tiny model, 2 checkpoints, 8 prompts,
#                                              8 tokens (PYTHON defaults to .venv/bin/python; no wheel install)
# TOTAL_S (default 165 on the device) bounds the whole script; NAIVE_RESERVE_S (default 35) is what the sweep leaves
# for the naive part.
set -u
T0=$(date +%s)
DRY=0; [ "${1:-}" = "--cpu-dry-run" ] && DRY=1
TOTAL=${TOTAL_S:-$([ "$DRY" = 1 ] && echo 300 || echo 165)}
OUT=${OUT:-/tmp/sweep-out}; mkdir -p "$OUT"
ROOT=$(cd "$(dirname "$0")/.." && pwd); cd "$ROOT"
PY=${PYTHON:-$([ "$DRY" = 1 ] && [ -x .venv/bin/python ] && echo "$ROOT/.venv/bin/python" || echo python3)}
export WORKBENCH_HOME=${WORKBENCH_HOME:-/tmp/wbh-sweep} PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1  # no network there: never wait on a hub
SUMMARY=$OUT/summary.txt; : > "$SUMMARY"
. "$ROOT/bench/device_stages.sh"

# -- 1. setup --------------------------------------------------------------------------------------------------
if [ "$DRY" = 1 ]; then
  SITE=${SITE_DIR:-}  # the CPU venv has platformdirs and rapidfuzz (the carried wheels are for Python 3.12)
  SHAPE=tiny; MODEL=/tmp/m-tiny-sweep; N=2; P=8; T=8; B=8; DEV=(--device cpu)
else
  SITE=${SITE_DIR:-/tmp/site}
  [ -d "$SITE/rapidfuzz" ] || "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" \
    .whl/train/site/*.whl > "$OUT/setup_site.txt" 2>&1 || note "setup: pip install of .whl/train/site failed"
  SHAPE=internlm2-1_8b; MODEL=/tmp/m18; N=8; P=200; T=128; B=200; DEV=()
  note "gpu: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -1)"
fi
export PYTHONPATH=${SITE:+$SITE:}$ROOT
WD=/tmp/wd/sweep
note "setup: python $("$PY" -c 'import sys; print(sys.version.split()[0])'), site ${SITE:-none}, shape $SHAPE, $N checkpoints x $P prompts x $T tokens, batch $B"

# -- 2. the model and the work dir ---------------------------------------------------------------------------------
# (about 20 s on an H100; up to 90 s where the model must fall back to a CPU init: 53 s there)
L=$(( $(left) - 60 )); [ "$L" -gt 90 ] && L=90
stage ckpts "$L" "$PY" bench/gpu_sweep_ckpts.py --work-dir "$WD" --model "$MODEL" --make-model "$SHAPE" \
  --tokenizer .whl/train/tokenizer --checkpoints "$N" --every 25 "${DEV[@]}" --json "$OUT/ckpts.json"
grep -E "^(model|work dir)" "$OUT/ckpts.txt" | tee -a "$SUMMARY"

# -- 3. the sweep and the naive loop ---------------------------------------------------------------------------
L=$(( $(left) - 4 ))
stage sweep "$L" "$PY" bench/gpu_sweep.py --work-dir "$WD" --checkpoints "$N" --prompts "$P" --max-new-tokens "$T" \
  --batch-size "$B" --naive-prompts 2 --reader-convert --budget-s $(( L - 6 )) \
  --naive-reserve-s "${NAIVE_RESERVE_S:-35}" "${DEV[@]}" --json "$OUT/sweep.json"

# -- summary ---------------------------------------------------------------------------------------------------
"$PY" - "$OUT" <<'EOF' >> "$SUMMARY" 2>&1
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
def load(name):
    try:
        return json.loads((out / name).read_text())
    except Exception as exc:
        return {"missing": f"{name}: {exc}"}
c, s = load("ckpts.json"), load("sweep.json")
print("work dir:", {k: c.get(k) for k in ("device", "make_model_s", "checkpoints", "r", "alpha", "lora_params",
                                           "checkpoint_mb", "optimizer_state", "write_s", "missing") if k in c})
sw = s.get("sweep") or {}
if s.get("error") or s.get("missing"):
    print("sweep: ERROR", s.get("error") or s.get("missing"))
print(f"sweep ({'measured whole' if sw.get('measured_whole') else 'PARTLY EXTRAPOLATED'}): "
      f"{sw.get('wall_s')} s for {sw.get('targets')} targets (base + {sw.get('checkpoint_targets')} checkpoints) x "
      f"{sw.get('items')} prompts x {s.get('max_new_tokens')} tokens, batch {s.get('batch_size')}; backend "
      f"{sw.get('meta_backend')}; peak GPU memory {sw.get('peak_gpu_memory_mib')} MiB")
if sw.get("measured_whole"):
    print(f"  tokens {sw.get('tokens')} of {sw.get('expected_tokens')} expected, {sw.get('tok_per_s')} tok/s")
    for t in sw.get("per_target", []):
        print(f"  {t['target']:>9}: {t['seconds']:7.2f} s generate, switch {t['switch_seconds']:.3f} s, "
              f"{t['tokens']} tokens, {t['tok_per_s']} tok/s")
else:
    print("  cut:", sw.get("cut"), "| measured:", sw.get("measured_s"), "s for", sw.get("targets_measured"),
          "targets | extrapolation:", sw.get("extrapolation"))
    for r in sw.get("per_target_s", []):
        print(f"  {r['target']:>9}: done at {r['at_s']} s ({r['target_s']} s)")
nv = s.get("naive") or {}
m, e = nv.get("measured") or {}, nv.get("extrapolated") or {}
if nv.get("error") or not m:
    print("naive:", nv.get("error") or "not reached")
else:
    print(f"naive, measured on iter_{nv.get('checkpoint')}: convert {m.get('convert_s')} s ({m.get('convert_source')});"
          f" reload base + adapter {m.get('reload_s')} s; {m.get('prompts')} prompts one at a time: {m.get('prompt_s')}"
          f" s ({m.get('tokens')} tokens, {m.get('tok_per_s')} tok/s){'; ' + m['skipped'] if m.get('skipped') else ''}")
    print(f"naive, extrapolated: {e.get('formula')} = {e.get('checkpoints')} x {e.get('per_checkpoint_s')} s = "
          f"{e.get('total_s')} s")
x = s.get("speedup_naive_over_sweep")
print(f"SPEEDUP naive / sweep: {x}x (goal >= 100x: {'met' if x and x >= 100 else 'NOT met' if x else 'n/a'})",
      s.get("speedup_note", ""))
EOF
note "done"
echo "================ summary ($OUT/summary.txt) ================"
cat "$SUMMARY"

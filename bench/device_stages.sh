# Shared by the device scripts (bench/device_*.sh), sourced after they set T0, TOTAL, OUT and SUMMARY:
#   now / left           seconds since T0 / left of TOTAL
#   note MSG             a timestamped line, printed and appended to $SUMMARY
#   cap LIMIT RESERVE    LIMIT, or less so that RESERVE seconds of TOTAL stay for the stages after this one
#   stage NAME LIMIT CMD run CMD under `timeout`, its output in $OUT/NAME.txt; a failure's last lines in the summary
#   want STAGE           whether STAGE is among the script's $STAGES
#   site_and_versions    workbench's runtime wheels (.whl/site) into /tmp/site, on PYTHONPATH with $ROOT; the GPU and
#                        the torch/transformers/peft versions into the summary
now() { echo $(( $(date +%s) - T0 )); }
left() { echo $(( TOTAL - $(date +%s) + T0 )); }
note() { echo "[$(now)s] $*" | tee -a "$SUMMARY"; }
cap() { local a=$(( $(left) - $2 )); [ "$a" -lt "$1" ] && echo "$a" || echo "$1"; }
stage() {
  local name=$1 limit=$2; shift 2
  if [ "$limit" -lt 10 ]; then note "$name: skipped (only ${limit}s available)"; return 124; fi
  local t=$(date +%s)
  timeout -k 5 "$limit" "$@" > "$OUT/$name.txt" 2>&1
  local rc=$?
  note "$name: rc=$rc in $(( $(date +%s) - t ))s (limit ${limit}s)"
  [ "$rc" = 0 ] || tail -n 15 "$OUT/$name.txt" | sed "s/^/  $name| /" | tee -a "$SUMMARY"
  return $rc
}
want() { [[ "$STAGES" == *" $1 "* ]]; }
site_and_versions() {
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/site/*.whl > /tmp/setup.txt 2>&1 \
    || note "setup: pip install of .whl/site failed"
  export PYTHONPATH=/tmp/site:$ROOT
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >> "$SUMMARY" 2>&1
  "$PY" -c 'import torch, transformers, peft; print("torch", torch.__version__, "transformers", transformers.__version__,
      "peft", peft.__version__)' >> "$SUMMARY" 2>&1
}

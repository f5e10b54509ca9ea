# Shared by the device scripts (bench/device_*.sh), sourced after they set T0, TOTAL, OUT and SUMMARY:
#   now / left           seconds since T0 / left of TOTAL
#   note MSG             a timestamped line, printed and appended to $SUMMARY
#   cap LIMIT RESERVE    LIMIT, or less so that RESERVE seconds of TOTAL stay for the stages after this one
#   stage NAME LIMIT CMD run CMD under `timeout`, its output in $OUT/NAME.txt; a failure's last lines in the summary
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

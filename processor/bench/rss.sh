#!/usr/bin/env bash
# Runs `tributary run -q -f PIPELINE` (a release build) and samples its RSS
# every second from /proc; prints every sample, the max and median, and the
# mean and max of each quarter of the run (flat quarters = bounded state).
#
#   processor/bench/rss.sh PIPELINE.yaml [INTERVAL_SECONDS]
#
# Env: TRIBUTARY_BIN (default $CARGO_TARGET_DIR/release/tributary, built
# with `cargo build --release -p tributary-processor --bin tributary`).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
PIPELINE="${1:?usage: rss.sh PIPELINE.yaml [INTERVAL_SECONDS]}"
EVERY="${2:-1}"
BIN="${TRIBUTARY_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/tributary}"
[[ -x "$BIN" ]] || { echo "no binary at $BIN: build it or set TRIBUTARY_BIN" >&2; exit 2; }
SAMPLES="$(mktemp)"
trap 'rm -f "$SAMPLES"' EXIT

start=$(date +%s)
"$BIN" run -q -f "$PIPELINE" >/dev/null &
pid=$!
# VmRSS of the process, in KiB, until it exits.
while kill -0 "$pid" 2>/dev/null; do
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
  [[ -n "$rss" ]] && echo "$rss" >> "$SAMPLES"
  sleep "$EVERY"
done
status=0
wait "$pid" || status=$?
elapsed=$(( $(date +%s) - start ))

echo "pipeline: $PIPELINE"
echo "binary:   $BIN"
echo "exit status $status after ${elapsed}s; $(wc -l < "$SAMPLES") samples every ${EVERY}s"
echo "samples (MB): $(awk '{printf "%d ", $1/1024}' "$SAMPLES")"
sort -n "$SAMPLES" | awk '{a[NR]=$1} END {
  if (NR == 0) { print "no samples"; exit }
  m = (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2
  printf "max %.0f MB, median %.0f MB, min %.0f MB\n", a[NR]/1024, m/1024, a[1]/1024
}'
awk '{a[NR]=$1} END {
  if (NR < 4) exit
  printf "per quarter (mean / max MB):"
  for (q = 0; q < 4; q++) {
    lo = int(q * NR / 4) + 1; hi = int((q + 1) * NR / 4); s = 0; mx = 0
    for (i = lo; i <= hi; i++) { s += a[i]; if (a[i] > mx) mx = a[i] }
    printf " Q%d %.0f / %.0f", q + 1, s / (hi - lo + 1) / 1024, mx / 1024
  }
  printf "\n"
}' "$SAMPLES"

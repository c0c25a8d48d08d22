#!/usr/bin/env bash
# Runs the peer benchmark job (../../../shared/bench) through `tributary run`
# and, when a Flink venv is present, through PyFlink in the same run; checks
# every output with the brute-force checker; prints whole-process time and
# peak memory of each.
#
#   processor/bench/peer.sh [EVENTS]      (default 5000000)
#
# Env: BENCH_DIR (default /tmp/bench), FLINK_PY (a python with apache-flink),
#      SHARED (default ../shared from the repo root).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
SHARED="${SHARED:-$ROOT/../shared}/bench"
N="${1:-5000000}"
DIR="${BENCH_DIR:-/tmp/bench}"
mkdir -p "$DIR"
EVENTS="$DIR/events-$N.jsonl"
[[ -s "$EVENTS" ]] || python3 "$SHARED/gen_events.py" "$N" "$EVENTS"
cargo build --release -q -p tributary-processor --bin tributary
BIN="$ROOT/target/release/tributary"
sed -e "s#EVENTS#$EVENTS#" -e "s#OUT#$DIR/tributary-out.jsonl#" "$ROOT/processor/bench/peer-tumbling.yaml" > "$DIR/peer-tumbling.yaml"

measure() { # name, command...
  local name=$1; shift
  /usr/bin/time -f "$name: %e s wall, %U s user, %S s sys, peak RSS %M KiB" "$@"
}
for i in 1 2 3; do
  measure "tributary run #$i" python3 "$SHARED/treerss.py" -- "$BIN" run -q -f "$DIR/peer-tumbling.yaml" 2>&1 | grep -v '"level"' || true
done
python3 "$SHARED/check_windows.py" "$EVENTS" "$DIR/tributary-out.jsonl"

if [[ -n "${FLINK_PY:-}" && -x "${FLINK_PY}" ]]; then
  rm -rf "$DIR/flink-out"
  measure "flink p1" python3 "$SHARED/treerss.py" -- "$FLINK_PY" "$SHARED/flink_tumbling.py" "$EVENTS" "$DIR/flink-out" --parallelism 1
  python3 "$SHARED/check_windows.py" "$EVENTS" "$DIR/flink-out"
fi

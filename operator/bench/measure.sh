#!/usr/bin/env bash
# Measures the operator on the test bed (`e2e/testbed up` first):
#   1. create → Ready latency: LATENCY pipelines created one at a time, each
#      timed from the end of `kubectl apply` (the object exists) to the
#      moment a watch sees `Ready=True` (kwok makes the Deployment available);
#   2. the operator's RSS (ps -o rss) once PIPELINES pipelines are all Ready.
# It starts its own operator (release build if present) on a fresh
# namespace and deletes that namespace at the end.
#
#   operator/bench/measure.sh [LATENCY=5] [PIPELINES=100]
set -euo pipefail
latency=${1:-5}
pipelines=${2:-100}
root=$(cd "$(dirname "$0")/../.." && pwd)
. "${TRIBUTARY_TESTBED_ENV:-${TRIBUTARY_TESTBED_DIR:-/tmp/tributary-testbed}/env}"
export PATH="$TRIBUTARY_TESTBED_BIN:$PATH"
# TRIBUTARY_OPERATOR_BIN, else the release build, else the debug build
# (under CARGO_TARGET_DIR when set, as e2e/run.sh builds them).
target=${CARGO_TARGET_DIR:-$root/target}
bin=${TRIBUTARY_OPERATOR_BIN:-$target/release/tributary-operator}
[ -x "$bin" ] || bin=$target/debug/tributary-operator
[ -x "$bin" ] || { echo "build the operator first: cargo build --release -p tributary-operator" >&2; exit 1; }
need=$((latency + pipelines))
# allocatable.pods is a quantity: kwok nodes report "1k".
capacity=$(kubectl get nodes -o 'jsonpath={range .items[*]}{.status.allocatable.pods}{"\n"}{end}' |
  awk '/k$/ {s += substr($1, 1, length($1) - 1) * 1000; next} {s += $1} END {print s + 0}')
used=$(kubectl get pods -A --no-headers --field-selector=status.phase!=Succeeded,status.phase!=Failed | wc -l)
if [ $((capacity - used)) -lt "$need" ]; then
  echo "the test bed's nodes have room for $((capacity - used)) more pods, $need needed;" \
    "delete leftover test namespaces first" >&2
  exit 1
fi
ns=measure-$$
work=$(mktemp -d)
kubectl apply --server-side --force-conflicts -f "$root/crds/generated/streampipeline.yaml" >/dev/null
kubectl wait --for=condition=Established crd/streampipelines.tributary.dev --timeout=60s >/dev/null
kubectl create namespace "$ns" >/dev/null
# Discovery can lag behind a (re)applied CRD; the watch below needs `sp`.
for _ in $(seq 1 60); do
  kubectl -n "$ns" get sp >/dev/null 2>&1 && break
  sleep 1
done
"$bin" --leader-elect false --namespace "$ns" --metrics-addr 127.0.0.1:0 2>"$work/operator.log" &
op=$!
cleanup() {
  kill "$watch" 2>/dev/null || true
  kill -TERM "$op" 2>/dev/null || true
  kubectl delete namespace "$ns" --wait=false >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

pipeline() { # name
  cat <<YAML
apiVersion: tributary.dev/v1alpha1
kind: StreamPipeline
metadata: {name: $1}
spec:
  source: {generator: {profile: clickstream, rate: 100, keys: 10}}
  steps:
    - window: {type: tumbling, size: 10s, keyBy: [event.userId], aggregate: [{name: clicks, fn: count}]}
  sinks: [{name: out, stdout: {}}]
  replicas: 1
---
YAML
}

# Every status change, stamped when the watch delivers it.
kubectl -n "$ns" get sp --watch --no-headers \
  -o 'custom-columns=N:.metadata.name,R:.status.conditions[?(@.type=="Ready")].status' |
  while read -r name ready; do echo "$(date +%s.%N) $name $ready"; done >"$work/watch" &
watch=$!
sleep 1

echo "create → Ready latency ($bin, $latency pipelines, one at a time):"
for i in $(seq 1 "$latency"); do
  pipeline "lat-$i" | kubectl -n "$ns" apply -f - >/dev/null
  t0=$(date +%s.%N)
  kubectl -n "$ns" wait --for=condition=Ready "sp/lat-$i" --timeout=60s >/dev/null
  t1=
  for _ in $(seq 1 100); do # the watch may print a moment after `wait` returns
    t1=$(awk -v n="lat-$i" '$2 == n && $3 == "True" {print $1; exit}' "$work/watch")
    [ -n "$t1" ] && break
    sleep 0.1
  done
  awk -v a="$t0" -v b="$t1" -v n="lat-$i" 'BEGIN {printf "  %s: %.0f ms\n", n, (b - a) * 1000}'
done

echo "RSS with $pipelines pipelines:"
for i in $(seq 1 "$pipelines"); do pipeline "rss-$i"; done >"$work/many.yaml"
t0=$(date +%s.%N)
kubectl -n "$ns" create -f "$work/many.yaml" >/dev/null # one POST each
t1=$(date +%s.%N)
kubectl -n "$ns" wait --for=condition=Ready sp --all --timeout=300s >/dev/null
t2=$(date +%s.%N)
ready=$(kubectl -n "$ns" get sp \
  -o 'jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c True)
awk -v a="$t0" -v b="$t1" -v c="$t2" -v n="$pipelines" -v r="$ready" 'BEGIN {
  printf "  kubectl create of %d pipelines took %.1f s; all %d in the namespace Ready %.1f s after it returned\n", n, b - a, r, c - b }'
echo "  operator RSS: $(ps -o rss= -p "$op") KiB, CPU time $(ps -o time= -p "$op") (pid $op)"
echo "  machine load: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"

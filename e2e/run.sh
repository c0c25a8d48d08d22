#!/usr/bin/env bash
# The e2e stage of the test command: bring the test bed up, build the
# processor, run the e2e tests against the test bed, and tear it down again
# (also when something fails). Exits with the tests' status.
#
# Env: TRIBUTARY_TESTBED_KEEP=1 keeps the test bed running afterwards;
# E2E_TEST_THREADS (default 2) sets cargo test's --test-threads.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TESTBED="$ROOT/e2e/testbed"

# One e2e stage per test bed directory at a time: a second run would reuse
# the first one's test bed and tear it down under it. Wait for the lock.
LOCK="${TRIBUTARY_TESTBED_DIR:-/tmp/tributary-testbed}.lock"
exec 9>"$LOCK"
if ! flock -n 9; then
  echo "e2e: another e2e run holds $LOCK; waiting for it" >&2
  flock 9
fi

# shellcheck disable=SC2317  # invoked by the EXIT trap
teardown() {
  local rc=$?
  if [[ "${TRIBUTARY_TESTBED_KEEP:-}" == 1 ]]; then
    echo "e2e: keeping the test bed up (TRIBUTARY_TESTBED_KEEP=1); stop it with e2e/testbed down" >&2
  else
    "$TESTBED" down || true
  fi
  exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT TERM

start=$SECONDS
# 9>&-: the test bed's servers must not inherit (and keep) the lock.
"$TESTBED" up 9>&-
echo "e2e: test bed up after $((SECONDS - start))s" >&2
# shellcheck disable=SC1090
. "$("$TESTBED" env-file)"

# Every connector, Pulsar included (its build needs protoc, which the test
# bed installs).
cargo build -p tributary-processor --bin tributary --features pulsar
export TRIBUTARY_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/tributary"
# The operator e2e tests run it as a local process (kwok runs no pods).
cargo build -p tributary-operator --bin tributary-operator
export TRIBUTARY_OPERATOR_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/tributary-operator"

set +e
cargo test -p tributary-e2e --no-fail-fast -- --test-threads="${E2E_TEST_THREADS:-2}"
rc=$?
set -e
echo "e2e: stage took $((SECONDS - start))s (tests exit $rc)" >&2
if [[ $rc != 0 ]]; then
  "$TESTBED" status || true
fi
exit "$rc"

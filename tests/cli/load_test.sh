#!/usr/bin/env bash
# The load test, briefly (docs/reliability.md, "Load"): 16 processes mixing I/O, metadata,
# reflink, DAX stores and poison against a real daxfs mount for SECONDS (default 30); no
# unexpected error, flat daemon memory, fsck clean, every file equal to its model.
# Usage: load_test.sh BUILD_DIR [SECONDS]. Prints one "ok"/"not ok" line (TAP-like) after the
# load test's own summary, and exits non-zero on failure. scripts/test --slow runs 600 s.
set -u
build=${1:?usage: $0 BUILD_DIR [SECONDS]}
seconds=${2:-30}
source "$(dirname "$0")/tap.sh"
prog="$build/tests/load/load_test"
if [ ! -x "$prog" ]; then
  bad "load_test is not built"
  tap_done
  exit
fi
out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$prog" --seconds "$seconds" >"$out" 2>&1
rc=$?
cat "$out"
if [ $rc -eq 0 ] && [ "$(tail -n 1 "$out")" = "load: PASS" ]; then
  ok "load test, $seconds s: $(grep -E '^load: ops ' "$out" | sed -E 's/^load: ops ([0-9]+):.*/\1/') ops, $(grep -E '^load: expected errors' "$out" | sed 's/.*(\(.*\))/\1/') expected errors"
else
  bad "load test, $seconds s (rc=$rc): $(grep -E '^load: problem' "$out" | head -3 | tr '\n' ' ')"
fi
tap_done

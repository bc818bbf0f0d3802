#!/usr/bin/env bash
# The crash-state explorer's small corpus (docs/reliability.md): every workload of
# tests/crash/workloads must come through every crash state clean, and the explorer must catch
# each deliberately broken journal commit (one fence or flush removed) within the same corpus.
# Usage: crashtest_test.sh BUILD_DIR [SAMPLES]. Prints "ok"/"not ok" lines (TAP-like), the
# explorer's "crash-states: N checked, N failed" line, and exits non-zero on failure.
set -u
build=${1:?usage: $0 BUILD_DIR [SAMPLES]}
samples=${2:-300}
explorer="$build/tests/crash/crashtest"
workloads=$(dirname "$0")/../crash/workloads
source "$(dirname "$0")/tap.sh"
out=$(mktemp)
trap 'rm -f "$out"' EXIT

if [ ! -x "$explorer" ]; then
  bad "crashtest is not built (it needs fs/fsck)"
  tap_done
  exit
fi

# The corpus, clean.
"$explorer" --samples "$samples" "$workloads"/*.wl >"$out" 2>&1
rc=$?
cat "$out"
for wl in "$workloads"/*.wl; do
  name=$(basename "$wl")
  line=$(grep -E "^$name: .* states checked, 0 failed" "$out")
  if [ -n "$line" ]; then ok "crash states of $name"; else bad "crash states of $name: $(grep -E "^(FAIL )?$name" "$out" | head -3)"; fi
done
if [ $rc -eq 0 ] && grep -qE '^crash-states: [0-9]+ checked, 0 failed$' "$out"; then
  ok "the small corpus: $(tail -n 1 "$out")"
else
  bad "the small corpus (rc=$rc): $(tail -n 1 "$out")"
fi

# Each broken commit is caught (exit 1 and a failure count above zero).
for bug in no-fence-before-commit no-fence-after-apply no-flush-apply; do
  "$explorer" --samples "$samples" --inject-bug "$bug" "$workloads"/*.wl >"$out" 2>&1
  rc=$?
  summary=$(tail -n 1 "$out")
  if [ $rc -eq 1 ] && [[ $summary =~ ^crash-states:\ [0-9]+\ checked,\ [1-9][0-9]*\ failed$ ]]; then
    ok "a journal commit with $bug is caught: $summary"
  else
    bad "a journal commit with $bug is not caught (rc=$rc): $summary"
  fi
done
tap_done

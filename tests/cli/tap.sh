# TAP-like helpers for the shell tests (source it): "ok N - NAME" / "not ok N - NAME" lines, which
# scripts/test counts, and tap_done to print the summary and set the exit status.
fails=0 n=0
ok() { n=$((n+1)); echo "ok $n - $1"; }
bad() { n=$((n+1)); fails=$((fails+1)); echo "not ok $n - $1"; }
expect() { # expect NAME CMD...: CMD succeeds
  local name=$1; shift
  local out
  if out=$("$@" 2>&1); then ok "$name"; else bad "$name: $out"; fi
}
expect_fail() { # expect_fail NAME PATTERN CMD...: fails with one stderr line matching PATTERN
  local name=$1 pat=$2; shift 2
  local err; err=$("$@" 2>&1 >/dev/null); local rc=$?
  if [ $rc -ne 0 ] && [ "$(printf '%s\n' "$err" | wc -l)" -eq 1 ] && grep -qE "$pat" <<<"$err"; then
    ok "$name"
  else
    bad "$name (rc=$rc): $err"
  fi
}
tap_done() {
  echo "# $((n-fails)) passed, $fails failed"
  [ $fails -eq 0 ]
}

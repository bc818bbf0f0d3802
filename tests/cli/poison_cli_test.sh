#!/usr/bin/env bash
# End-to-end test of `daxfsctl inject-error | clear-error | list-errors` on a device file:
# the acceptance scenario of the foundation issue, plus every bad-input error line.
# Usage: poison_cli_test.sh BUILD_DIR. Prints "ok"/"not ok" lines (TAP-like); exits non-zero on failure.
set -u
build=${1:?usage: $0 BUILD_DIR}
ctl="$build/fs/daxfsctl"
dir=$(mktemp -d /dev/shm/daxfs-cli-XXXXXX)
trap 'rm -rf "$dir"' EXIT
dev="$dir/pmem0"
truncate -s 4G "$dev"
source "$(dirname "$0")/tap.sh"

expect "inject 8K+4K" "$ctl" inject-error "$dev" --offset 8K --length 4K
json=$("$ctl" list-errors "$dev" --json)
if python3 -c 'import json,sys; j=json.load(sys.stdin); assert j["badblocks"]==[{"offset":8192,"length":4096}], j; assert j["badblock_count"]==1' <<<"$json"; then
  ok "list-errors --json shows the range"
else
  bad "list-errors --json: $json"
fi
json=$("$ctl" inject-error "$dev" --offset 1M --length 1 --json)
if python3 -c 'import json,sys; j=json.load(sys.stdin); assert j["offset"]==1048576 and j["length"]==512 and j["held"] is False' <<<"$json"; then
  ok "inject-error --json rounds out to a sector"
else
  bad "inject-error --json: $json"
fi
expect "clear 1M" "$ctl" clear-error "$dev" --offset 1M --length 512
# The list lives beside the device and survives a reopen (each command is a new process).
if "$ctl" list-errors "$dev" | grep -q "offset 8192 length 4096"; then ok "list survives reopen"; else bad "list after reopen"; fi
[ -f "$dev.ctl" ] && ok "badblocks kept beside the media file" || bad "no $dev.ctl"
expect "clear 8K+4K" "$ctl" clear-error "$dev" --offset 8K --length 4K
if "$ctl" list-errors "$dev" | grep -q "no badblocks"; then ok "cleared list is empty"; else bad "list not empty after clear"; fi

expect_fail "offset past the end" "^daxfsctl: inject-error: offset 9G is past the end of the device \(4G\)$" \
  "$ctl" inject-error "$dev" --offset 9G
expect_fail "range past the end" "runs past the end of the device" "$ctl" inject-error "$dev" --offset 4095M --length 2M
expect_fail "zero length" "length must be greater than zero" "$ctl" inject-error "$dev" --offset 0 --length 0
expect_fail "overflowing length" "overflows" "$ctl" inject-error "$dev" --offset 16777215T --length 2T
expect_fail "junk offset" "invalid offset 'abc'" "$ctl" inject-error "$dev" --offset abc
expect_fail "negative length" "invalid length '-5'" "$ctl" clear-error "$dev" --offset 0 --length -5
expect_fail "missing device" "No such file or directory" "$ctl" list-errors "$dir/nope"
expect_fail "a directory that is not a mount" "not a daxfs mount point or device file" "$ctl" list-errors "$dir"
expect_fail "missing --offset" "offset" "$ctl" inject-error "$dev"
if "$ctl" inject-error --help | grep -q -- "--offset"; then ok "--help"; else bad "--help"; fi
# Nothing was half-done by the refused commands.
if "$ctl" list-errors "$dev" | grep -q "no badblocks"; then ok "refused commands changed nothing"; else bad "list changed"; fi

tap_done

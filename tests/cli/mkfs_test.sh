#!/usr/bin/env bash
# mkfs.daxfs end to end: devices are created private (0600, the control file too) so that other
# users cannot read file data from the media, the daemon warns about a device others can read,
# and a refused or failed mkfs leaves the device exactly as it was (a new file is removed).
# Usage: mkfs_test.sh BUILD_DIR. Prints "ok"/"not ok" lines (TAP-like); exits non-zero on failure.
set -u
build=$(cd "${1:?usage: $0 BUILD_DIR}" && pwd)
mkfs="$build/fs/mkfs.daxfs"
daemon="$build/fs/daxfs"
dir=$(mktemp -d /dev/shm/daxfs-mkfs-XXXXXX)
mnt="$dir/mnt"
mkdir "$mnt"
chmod 755 "$dir"  # the unprivileged user must reach the device: only its own mode protects it
cleanup() {
  mountpoint -q "$mnt" && { umount "$mnt" || umount -l "$mnt"; }
  rm -rf "$dir"
}
trap cleanup EXIT
source "$(dirname "$0")/tap.sh"
check() { # check NAME CMD...: CMD succeeds
  local name=$1; shift
  if "$@"; then ok "$name"; else bad "$name"; fi
}
mode() { stat -c %a "$1"; }
size() { stat -c %s "$1"; }
as_nobody() { setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"; }
# mount_dev DEV ERRFILE: mounts DEV on $mnt (the daemon backgrounds itself), stderr to ERRFILE.
mount_dev() {
  "$daemon" "$1" "$mnt" 2>"$2" || return 1
  for _ in $(seq 100); do mountpoint -q "$mnt" && return 0; sleep 0.05; done
  return 1
}
unmount() {
  umount "$mnt" || return 1
  # The daemon exits after the unmount; wait until it lets go of the device.
  for _ in $(seq 200); do pgrep -f "^$daemon $1 " >/dev/null || return 0; sleep 0.05; done
  return 1
}

# --- Issue 7 item 2: the device is private to its owner. ---
dev="$dir/pmem0"
# umask 0: the mode must come from mkfs, not from the caller's umask.
if (umask 000 && "$mkfs" -s 32M "$dev" >/dev/null); then ok "mkfs -s 32M creates a device"; else bad "mkfs -s 32M"; fi
[ "$(mode "$dev")" = 600 ] && ok "the device is created 0600" || bad "device mode $(mode "$dev")"
[ "$(mode "$dev.ctl")" = 600 ] && ok "its control file is created 0600" || bad "control file mode $(mode "$dev.ctl")"
secret=daxfs-secret-$RANDOM$RANDOM
if mount_dev "$dev" "$dir/err"; then
  [ -s "$dir/err" ] && bad "mount of a 0600 device printed: $(cat "$dir/err")" || ok "no warning for a 0600 device"
  (umask 077 && printf '%s\n' "$secret" >"$mnt/private") && ok "a root-only file" || bad "write the root-only file"
  unmount "$dev" && ok "unmount" || bad "unmount"
else
  bad "mount: $(cat "$dir/err")"
fi
grep -q "$secret" "$dev" && ok "the file's data is in the media" || bad "the secret is not in the device"
if as_nobody grep -q "$secret" "$dev" 2>/dev/null; then
  bad "an unprivileged user read a root-only file's data from the device"
else
  ok "an unprivileged user cannot read the device"
fi
as_nobody head -c 1 "$dev" >/dev/null 2>&1 && bad "nobody opened the device" || ok "nobody cannot open the device"
as_nobody head -c 1 "$dev.ctl" >/dev/null 2>&1 && bad "nobody opened the control file" ||
  ok "nobody cannot open the control file"

# A device the user made with another mode keeps it (mkfs does not chmod), with a warning.
open_dev="$dir/open0"
truncate -s 32M "$open_dev" && chmod 644 "$open_dev"
err=$("$mkfs" "$open_dev" 2>&1 >/dev/null); rc=$?
[ $rc -eq 0 ] && ok "mkfs formats an existing 0644 file" || bad "mkfs of a 0644 file (rc=$rc): $err"
[ "$(mode "$open_dev")" = 644 ] && ok "an existing file keeps its mode" || bad "mode changed to $(mode "$open_dev")"
grep -qE "^mkfs.daxfs: warning: $open_dev is readable by other users \(mode 0644\).*chmod 600 $open_dev$" <<<"$err" &&
  ok "mkfs warns about a device others can read" || bad "mkfs warning: $err"
# expect_mount_warning NAME PATTERN: mounting $open_dev prints exactly one stderr line, matching.
expect_mount_warning() {
  if mount_dev "$open_dev" "$dir/err"; then
    if [ "$(wc -l <"$dir/err")" -eq 1 ] && grep -qE "$2" "$dir/err"; then ok "$1"; else bad "$1: $(cat "$dir/err")"; fi
    unmount "$open_dev" || bad "unmount $open_dev"
  else
    bad "$1: the mount failed: $(cat "$dir/err")"
  fi
}
expect_mount_warning "mount of a 0644 device warns in one line" \
  "^daxfs: warning: $open_dev is readable by other users \(mode 0644\): they can read every file's data; chmod 600 $open_dev$"
chmod 600 "$open_dev" && chmod 666 "$open_dev.ctl"
expect_mount_warning "mount narrows a control file others could write to the device's mode, in one line" \
  "^pmemdev: $open_dev.ctl was mode 0666, more open than the device: narrowed to 0600$"
[ "$(mode "$open_dev.ctl")" = 600 ] && ok "the control file is 0600 again" || bad "control file mode $(mode "$open_dev.ctl")"

# A device another user owns (planted in /dev/shm before mkfs -s, say) or may write is never
# served suid or dev: libfuse mounts nosuid,nodev by default, and `-o suid,dev` is overridden
# with one line (remounts: tests/cli/mount8_test.sh). mount_flags: mountinfo's per-mount options.
mount_flags() { awk -v m="$mnt" '$5 == m { print $6 }' /proc/self/mountinfo; }
has_flags() { [[ ",$(mount_flags)," == *,nosuid,* && ",$(mount_flags)," == *,nodev,* ]]; }
# mount_checked NAME WANT_FLAGS(yes|no) ERR_PATTERN(or "" for a silent mount) DAEMON-OPTIONS...
mount_checked() {
  local name=$1 want=$2 pattern=$3
  shift 3
  if "$daemon" "$open_dev" "$mnt" "$@" 2>"$dir/err" && mountpoint -q "$mnt"; then
    local flags_ok=no
    has_flags && flags_ok=yes
    local err_ok=no  # silent, or the pattern's line and at most the exposure warning besides
    if [ -z "$pattern" ]; then
      [ -s "$dir/err" ] || err_ok=yes
    elif grep -qE "$pattern" "$dir/err" && ! grep -vqE "$pattern|^daxfs: warning: $open_dev is " "$dir/err"; then
      err_ok=yes
    fi
    if [ "$flags_ok" = "$want" ] && [ "$err_ok" = yes ]; then
      ok "$name"
    else
      bad "$name: flags $(mount_flags): $(cat "$dir/err")"
    fi
    unmount "$open_dev" || bad "unmount $open_dev"
  else
    bad "$name: the mount failed: $(cat "$dir/err")"
  fi
}
chown nobody:nogroup "$open_dev"
mount_checked "a device nobody owns is mounted nosuid,nodev" yes ""
mount_checked "-o suid,dev on a device nobody owns: nosuid,nodev, and a line that says so" yes \
  "^daxfs: $open_dev can be written by another user \(owned by uid 65534\): mounted nosuid,nodev$" -o suid,dev
chown root:root "$open_dev" && chmod 620 "$open_dev"
mount_checked "-o suid on a group-writable device: nosuid,nodev, and a line that says so" yes \
  "^daxfs: $open_dev can be written by another user \(mode 0620\): mounted nosuid,nodev$" -o suid
chmod 600 "$open_dev"
mount_checked "root's 0600 device: nosuid,nodev by default" yes ""
mount_checked "root's 0600 device with -o suid,dev: suid and dev" no "" -o suid,dev

# --- Issue 7 item 7: a refused or failed mkfs changes nothing. ---
cp --sparse=always "$dev" "$dir/before"
expect_fail "an existing daxfs is refused without -f" "already contains a daxfs \(use -f" "$mkfs" -s 128M "$dev"
[ "$(size "$dev")" = $((32 << 20)) ] && ok "the refusal left the size" || bad "size is now $(size "$dev")"
cmp -s "$dev" "$dir/before" && ok "the refusal left the bytes" || bad "the device changed"
rm "$dev.ctl"
expect_fail "refused again, without a control file" "already contains a daxfs" "$mkfs" -s 64M "$dev"
[ -e "$dev.ctl" ] && bad "the refusal created $dev.ctl" || ok "the refusal created no control file"

expect_fail "1P is above the limit" "^mkfs.daxfs: size 1P is larger than .*\(max 64T\)" "$mkfs" -s 1P "$dir/huge"
[ -e "$dir/huge" ] || [ -e "$dir/huge.ctl" ] && bad "a refused new device was left behind" || ok "no file left for 1P"
expect_fail "1P with -f on an existing daxfs" "^mkfs.daxfs: size 1P is larger than .*\(max 64T\)" "$mkfs" -f -s 1P "$dev"
[ "$(size "$dev")" = $((32 << 20)) ] && cmp -s "$dev" "$dir/before" && ok "1P left the device as it was" ||
  bad "1P changed the device (size $(size "$dev"))"
truncate -s 1P "$dir/sparse1p"
expect_fail "an existing 1P file is refused" "sparse1p.*1P.* is larger than .*\(max 64T\)" "$mkfs" "$dir/sparse1p"
[ "$(size "$dir/sparse1p")" = $((1 << 50)) ] && [ ! -e "$dir/sparse1p.ctl" ] && ok "the 1P file is untouched" ||
  bad "the 1P file changed"
rm -f "$dir/sparse1p"

# Larger than the free space of the device's filesystem (but under the 64T limit).
avail=$(df -B1 --output=avail "$dir" | tail -n 1)
toobig=$(( (avail >> 30) + 2 ))G
if [ $(( (avail >> 30) + 2 )) -lt $((64 << 10)) ]; then
  expect_fail "a new device larger than the free space" "^mkfs.daxfs: size $toobig is larger than the free space .*\(max [0-9]+[KMGT]?\)" \
    "$mkfs" -s "$toobig" "$dir/big"
  [ -e "$dir/big" ] || [ -e "$dir/big.ctl" ] && bad "a device was left behind" || ok "no file left for $toobig"
  expect_fail "extending past the free space" "larger than the free space" "$mkfs" -f -s "$toobig" "$dev"
  [ "$(size "$dev")" = $((32 << 20)) ] && cmp -s "$dev" "$dir/before" && ok "the device is as it was" ||
    bad "the device changed (size $(size "$dev"))"
else
  ok "# skip: $dir has more than 64T free"; ok "# skip"; ok "# skip"; ok "# skip"
fi

# A failure after the file was created or extended (no address space for the mapping) undoes it.
err=$( (ulimit -v 200000; "$mkfs" -s 2G "$dir/nomap") 2>&1 >/dev/null); rc=$?
[ $rc -ne 0 ] && grep -q "Cannot allocate memory" <<<"$err" && ok "mkfs fails when it cannot map" ||
  bad "mkfs without address space (rc=$rc): $err"
[ -e "$dir/nomap" ] || [ -e "$dir/nomap.ctl" ] && bad "the failed mkfs left $(ls "$dir"/nomap*)" ||
  ok "the failed mkfs removed the file it created"
truncate -s 32M "$dir/plain" && printf 'user data' | dd of="$dir/plain" conv=notrunc status=none
cp "$dir/plain" "$dir/plain.before"
err=$( (ulimit -v 200000; "$mkfs" -s 2G "$dir/plain") 2>&1 >/dev/null); rc=$?
[ $rc -ne 0 ] && ok "mkfs fails to extend when it cannot map" || bad "extend without address space (rc=$rc)"
[ "$(size "$dir/plain")" = $((32 << 20)) ] && cmp -s "$dir/plain" "$dir/plain.before" && [ ! -e "$dir/plain.ctl" ] &&
  ok "the failed mkfs left the existing file as it was" || bad "the existing file changed (size $(size "$dir/plain"))"

# The contract's other refusals are one line and leave nothing behind.
expect_fail "missing device without -s" "No such file or directory \(use -s SIZE" "$mkfs" "$dir/missing"
expect_fail "too small" "too small" "$mkfs" -s 1M "$dir/tiny"
[ -e "$dir/tiny" ] && bad "a too-small device was left" || ok "no file left for a too-small size"
expect_fail "a directory" "Is a directory|not a regular file" "$mkfs" -f "$dir/mnt"
expect_fail "a missing directory" "No such file or directory" "$mkfs" -s 32M "$dir/nodir/dev"
if "$mkfs" -f -s 64M "$dev" >/dev/null && [ "$(size "$dev")" = $((64 << 20)) ] && [ "$(mode "$dev")" = 600 ]; then
  ok "-f -s extends an existing daxfs and keeps its mode"
else
  bad "-f -s 64M"
fi

tap_done

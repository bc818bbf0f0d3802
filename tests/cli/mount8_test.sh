#!/usr/bin/env bash
# mount(8) integration: `mount -t fuse.daxfs DEV MNT -o OPTS` finds `daxfs` on the system PATH
# through mount.fuse3, `mount -o remount,ro` remounts in place, `umount` stops the daemon.
# Runs in a private mount namespace with a tmpfs over /usr/local/bin holding a link to the built
# daxfs, so nothing is installed on the machine. Usage: mount8_test.sh BUILD_DIR
set -u
build=$(cd "${1:?usage: $0 BUILD_DIR}" && pwd)
dir=$(mktemp -d /dev/shm/daxfs-mount8-XXXXXX)
trap 'rm -rf "$dir"' EXIT
"$build/fs/mkfs.daxfs" -s 32M "$dir/dev" >/dev/null || { echo "not ok 1 - mkfs"; exit 1; }
mkdir "$dir/mnt"
unshare -m --propagation private bash -s "$build" "$dir" <<'INNER'
build=$1 dir=$2 n=0 fails=0
ok() { n=$((n+1)); echo "ok $n - $1"; }
bad() { n=$((n+1)); fails=$((fails+1)); echo "not ok $n - $1"; }
mount -t tmpfs tmpfs /usr/local/bin && ln -s "$build/fs/daxfs" /usr/local/bin/daxfs
if mount -t fuse.daxfs "$dir/dev" "$dir/mnt" -o dax=never; then ok "mount -t fuse.daxfs"; else bad "mount -t fuse.daxfs"; fi
line=$(grep " $dir/mnt " /proc/self/mountinfo)
if [[ $line == *" - fuse $dir/dev "* ]]; then ok "source is the device, type is fuse"; else bad "mountinfo: $line"; fi
echo data > "$dir/mnt/file" && ok "write" || bad "write"
# As fstests does (_scratch_remount): the type names the helper, which reaches daxfs.
if mount -t fuse.daxfs -o remount,ro "$dir/dev" "$dir/mnt"; then ok "mount -t fuse.daxfs -o remount,ro"; else bad "remount"; fi
if touch "$dir/mnt/new" 2>/dev/null; then bad "read-only after remount"; else ok "read-only after remount"; fi
[ "$(grep -c " $dir/mnt " /proc/self/mountinfo)" = 1 ] && ok "no second mount" || bad "a second mount appeared"
# MS_REMOUNT replaces every per-mount flag: a remount keeps the mount's own and changes only
# what its options name. (mount.fuse3 adds "dev,suid" to what root's mount(8) passes, so these
# call the daemon directly.)
flags() { awk -v m="$dir/mnt" '$5 == m { print $6 }' /proc/self/mountinfo; }
has() { [[ ",$(flags)," == *",$1,"* ]]; }
"$build/fs/daxfs" "$dir/dev" "$dir/mnt" -o remount,nosuid,nodev && has ro && has nosuid && has nodev &&
  ok "remount,nosuid,nodev kept ro" || bad "after remount,nosuid,nodev: $(flags)"
"$build/fs/daxfs" "$dir/dev" "$dir/mnt" -o remount,noexec && has ro && has noexec && has nosuid && has nodev &&
  ok "remount,noexec kept ro,nosuid,nodev" || bad "after remount,noexec: $(flags)"
"$build/fs/daxfs" "$dir/dev" "$dir/mnt" -o remount,rw,exec,suid && ! has ro && ! has noexec && ! has nosuid &&
  has nodev && ok "remount,rw,exec,suid changed those three and kept nodev" || bad "after remount,rw,exec,suid: $(flags)"
# A device another user can write stays nosuid,nodev through a remount that asks for suid.
chown nobody "$dir/dev"
err=$(mount -t fuse.daxfs -o remount,suid,dev "$dir/dev" "$dir/mnt" 2>&1)
has nosuid && has nodev && [[ $err == *"can be written by another user (owned by uid 65534): kept nosuid,nodev"* ]] &&
  ok "a device nobody owns stays nosuid,nodev through remount,suid,dev, with a line" ||
  bad "device nobody owns, remount,suid,dev: $(flags): $err"
chown root "$dir/dev"
mount -t fuse.daxfs -o remount,ro "$dir/dev" "$dir/mnt" || bad "remount,ro again"
if umount "$dir/mnt"; then ok "umount"; else bad "umount"; fi
for i in $(seq 100); do pgrep -f "daxfs $dir/dev" >/dev/null || break; sleep 0.05; done
pgrep -f "daxfs $dir/dev" >/dev/null && bad "daemon still running" || ok "daemon exited"
echo "# $((n-fails)) passed, $fails failed"
[ $fails -eq 0 ]
INNER

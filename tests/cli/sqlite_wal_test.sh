#!/usr/bin/env bash
# SQLite in WAL mode on a default (dax=always) mount: WAL maps its -shm file MAP_SHARED, which
# failed with ENODEV ("disk I/O error") before the daemon negotiated FUSE_DIRECT_IO_ALLOW_MMAP.
# Two processes write the same database; after a remount the rows are all there.
# Usage: sqlite_wal_test.sh BUILD_DIR. TAP-like output; exits non-zero on failure.
set -u
build=$(cd "${1:?usage: $0 BUILD_DIR}" && pwd)
dir=$(mktemp -d /dev/shm/daxfs-sqlite-XXXXXX)
pid=""
cleanup() {
  mountpoint -q "$dir/mnt" && umount "$dir/mnt"
  [ -n "$pid" ] && kill "$pid" 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT
source "$(dirname "$0")/tap.sh"
mkdir "$dir/mnt"
"$build/fs/mkfs.daxfs" -s 64M "$dir/dev" >/dev/null || { echo "not ok 1 - mkfs"; exit 1; }
start() {
  "$build/fs/daxfs" "$dir/dev" "$dir/mnt" -f & pid=$!
  for _ in $(seq 200); do mountpoint -q "$dir/mnt" && return 0; sleep 0.05; done
  return 1
}
stop() { umount "$dir/mnt" && wait "$pid"; pid=""; }
start || { echo "not ok 1 - mount"; exit 1; }

writer='
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=30)
assert db.execute("pragma journal_mode=wal").fetchone()[0] == "wal"
db.execute("create table if not exists t(who, i)")
for i in range(200):
    db.execute("insert into t values (?, ?)", (sys.argv[2], i))
    db.commit()
'
expect "WAL mode, one writer" python3 -c "$writer" "$dir/mnt/db" first
python3 -c "$writer" "$dir/mnt/db" a & a=$!
python3 -c "$writer" "$dir/mnt/db" b & b=$!
wait $a && wait $b && ok "two processes write the same WAL database at once" || bad "concurrent WAL writers"
count() { python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("select count(*) from t").fetchone()[0])' "$1"; }
[ "$(count "$dir/mnt/db")" = 600 ] && ok "600 rows" || bad "rows: $(count "$dir/mnt/db")"
stop && start || bad "remount"
[ "$(count "$dir/mnt/db")" = 600 ] && ok "600 rows after a remount" || bad "rows after remount: $(count "$dir/mnt/db")"
res=$(python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("pragma integrity_check").fetchone()[0])' "$dir/mnt/db")
[ "$res" = ok ] && ok "integrity_check" || bad "integrity_check: $res"
stop
tap_done

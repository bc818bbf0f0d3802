# A longer mix for the slow group: files growing and shrinking, renames across directories,
# clones of clones, dedupe back, DAX stores into clones, xattrs, and an orphan at the end.
mkdir /a
mkdir /a/b
create /a/f
write /a/f 0 131072 1
create /a/b/g
clone /a/f /a/b/g
write /a/b/g 65536 8192 2
dax-store /a/b/g 4096 8192 3
create /h
clone /a/b/g /h
fallocate /h 131072 65536 keep-size
write /h 140000 20000 4
fallocate /h 0 16384 punch
dedupe /a/f 0 /a/b/g 0 4096
unshare /h 16384 65536
setxattr /h user.tag hello
rename /h /a/b/h
rename /a/b /c
link /c/h /c/h2
create /tmp
write /tmp 0 30000 5
rename /tmp /c/h2                # over a hard link: /c/h keeps the inode
truncate /a/f 70000
fallocate /a/f 8192 8192 zero
fallocate /a/f 4096 4096 collapse
copy /c/h 0 /a/f 0 16384
setacl /a/f u::rw-,g::r--,m::r--,u:42:rw-,o::---
open /c/h
unlink /c/h
dax-store /c/h 0 4096 6
write /c/h 200000 100 7
close /c/h
!removexattr /c/g user.none

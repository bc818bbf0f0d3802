# POSIX namespace and data: create, write, append, overwrite, rename (also over an existing
# file), link, unlink of an open file, truncate, fsync.
mkdir /d
create /d/a
write /d/a 0 10000 1          # allocating write: new blocks, size
write /d/a 10000 5000 2       # append inside and past the last block
write /d/a 4000 300 3         # overwrite in place
fsync /d/a
create /b
write /b 0 4096 4
rename /b /d/b
create /c
write /c 0 100 5
rename /c /d/b                # over an existing file: its blocks are freed
link /d/a /d/hard
open /d/hard
unlink /d/hard
unlink /d/a                   # open, unlinked: an orphan
write /d/hard 0 20 6          # writes to the orphan
close /d/hard                 # freed
truncate /d/b 50
truncate /d/b 9000
fdatasync /d/b
rename /d/b /top noreplace
!rename /top /d noreplace

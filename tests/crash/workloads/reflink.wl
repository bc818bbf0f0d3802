# Reflink: clone (whole file and ranges), copy-on-write writes, dedupe, unshare, copy_file_range.
create /src
write /src 0 40960 1
create /dst
clone /src /dst
write /dst 4096 4096 2        # a CoW write of a whole shared block: all or nothing
write /dst 100 50 3           # a CoW write of part of a block
clone /src /dst 16384 0 8192  # a range over the start of dst
create /same
write /same 0 40960 1         # the same bytes as /src
dedupe /src 0 /same 0 40960
unshare /same 8192 8192
create /cp
copy /src 0 /cp 0 12288
unlink /src                   # the blocks stay shared with /dst and /same

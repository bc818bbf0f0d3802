# Copy-on-write, many times over: writes, unshares and DAX stores into blocks a clone shares, each
# copying old bytes to new blocks that the transaction then maps (the data must be durable before
# the commit record that maps it).
create /a
write /a 0 65536 1
create /b
clone /a /b
write /b 0 4096 2             # whole shared blocks: all or nothing
write /b 8192 8192 3
write /b 20000 100 4          # part of a shared block: the rest is copied
unshare /b 32768 16384
dax-store /b 49152 4096 5     # a CoW write fault
dax-store /b 53248 200 6
create /c
clone /b /c
write /c 0 65536 7            # every block shared with /b
unshare /a 0 65536

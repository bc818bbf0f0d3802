# DAX stores and their flush: into a hole, into preallocated (unwritten) blocks, into written
# blocks in place, and into shared blocks (a CoW fault).
create /m
truncate /m 65536
dax-store /m 0 6000 1         # a write fault in a hole: zeroed blocks allocated
fallocate /m 16384 16384 keep-size
dax-store /m 20000 4000 2     # unwritten blocks zeroed and converted
dax-store /m 100 200 3        # in place, written blocks
create /m2
clone /m /m2
dax-store /m2 4096 4096 4     # shared: the fault copies, the clone keeps the old bytes

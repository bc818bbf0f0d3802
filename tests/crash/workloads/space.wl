# Preallocation and hole punching: fallocate (size-changing and keep-size), writes into
# unwritten blocks, punch, zero range, collapse and insert.
create /f
fallocate /f 0 65536
write /f 8192 4096 1          # converts unwritten blocks
fallocate /f 65536 32768 keep-size
write /f 60000 10000 2        # extends into the keep-size preallocation
fallocate /f 4096 8192 punch
fallocate /f 100 5000 zero    # partial blocks zeroed in place
fallocate /f 16384 8192 collapse
fallocate /f 0 4096 insert
truncate /f 5000

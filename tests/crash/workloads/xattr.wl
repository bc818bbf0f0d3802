# Extended attributes (inline and in a block), POSIX ACLs, modes, directories, symlinks.
create /x
setxattr /x user.small v1
setxattr /x user.small v2-replaced
setxattr /x user.big 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
removexattr /x user.small
setacl /x u::rw-,u:1000:r--,g::r--,m::r--,o::---
chmod /x 0640
mkdir /dir
symlink /x /dir/ln
symlink /a/very/long/target/path/that/does/not/fit/inline/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa /dir/long
rename /dir/ln /ln
unlink /dir/long
rmdir /dir

// Extended attributes, POSIX ACLs and the FS_IOC_FS[GS]ETXATTR flags.
// Xattrs of an inode are one blob in contiguous blocks, replaced copy-on-write: the new blob is
// persisted in new blocks, then one transaction points the inode at it and frees the old one.
// With FUSE_CAP_POSIX_ACL the kernel enforces ACLs and the filesystem keeps the mode in sync with
// system.posix_acl_access and applies default ACLs to new inodes (Linux posix_acl_create()).
#include <linux/fs.h>
#include <sys/xattr.h>

#include <cstdio>
#include <cstring>

#include "fs/filesystem.h"
#include "fs/ondisk/codec.h"

namespace daxfs::fs {

namespace {
using ondisk::AclEntry;
using ondisk::kAclAccess;
using ondisk::kAclDefault;
using ondisk::kAclGroupObj;
using ondisk::kAclMask;
using ondisk::kAclOther;
using ondisk::kAclUserObj;
static_assert(ondisk::kMaxXattrValue == XATTR_SIZE_MAX);

// The kernel's ACL format, as the mount and fsck.daxfs read it (fs/ondisk/codec.h).
bool parse_acl(const std::string& v, std::vector<AclEntry>& out) {
  auto acl = ondisk::decode_acl(v);
  if (!acl) return false;
  out = std::move(acl).value();
  return true;
}

bool acl_equivalent_to_mode(const std::vector<AclEntry>& acl) { return acl.size() == 3; }

// The mode bits an access ACL implies (posix_acl_equiv_mode()).
uint32_t acl_mode(const std::vector<AclEntry>& acl, uint32_t mode) {
  uint32_t m = mode & ~0777u;
  uint16_t group = 0, mask = 0xffff;
  for (auto& e : acl) {
    if (e.tag == kAclUserObj) m |= e.perm << 6;
    if (e.tag == kAclGroupObj) group = e.perm;
    if (e.tag == kAclMask) mask = e.perm;
    if (e.tag == kAclOther) m |= e.perm;
  }
  m |= (mask != 0xffff ? mask : group) << 3;
  return m;
}

// posix_acl_chmod(): the ACL follows a new mode.
void chmod_acl(std::vector<AclEntry>& acl, uint32_t mode) {
  bool has_mask = false;
  for (auto& e : acl) has_mask |= e.tag == kAclMask;
  for (auto& e : acl) {
    if (e.tag == kAclUserObj) e.perm = (mode >> 6) & 7;
    if (e.tag == kAclOther) e.perm = mode & 7;
    if (e.tag == kAclMask || (e.tag == kAclGroupObj && !has_mask)) e.perm = (mode >> 3) & 7;
  }
}

}  // namespace

Status Filesystem::setxattr(uint64_t ino, std::string_view name, std::string_view value, int flags) {
  std::unique_lock lock(mu_);
  TRY(check_writable());
  Inode* in = TRY(inodes_.find(ino));
  if (name.empty() || name.size() > kNameMax) return error(ERANGE);
  if (value.size() > ondisk::kMaxXattrValue) return error(E2BIG);
  if (!ondisk::xattr_namespace_ok(name)) return error(EOPNOTSUPP);
  std::string key(name);
  bool exists = in->xattrs.count(key);
  if ((flags & XATTR_CREATE) && exists) return error(EEXIST);
  if ((flags & XATTR_REPLACE) && !exists) return error(ENODATA);
  uint64_t blob_blocks = (in->d.xattr_length + name.size() + value.size() + 5 + kBlockSize - 1) / kBlockSize;
  TRY(space_.reserve_locked(blob_blocks));
  auto saved = in->xattrs;
  auto saved_mode = in->d.mode;
  auto saved_ctime = in->d.ctime;
  std::string v(value);
  if (key == kAclAccess || key == kAclDefault) {
    std::vector<AclEntry> acl;
    if (!parse_acl(v, acl)) return error(EINVAL);
    if (key == kAclDefault && !in->is_dir()) return error(EACCES);
    if (key == kAclAccess) {
      in->d.mode = acl_mode(acl, in->d.mode);
      if (acl_equivalent_to_mode(acl)) {
        in->xattrs.erase(key);  // the mode says it all (posix_acl_update_mode())
        v.clear();
      }
    }
  }
  if (!(key == kAclAccess && v.empty())) in->xattrs[key] = v;
  touch(*in, false, true);
  Txn txn;
  DirtyGuard guard(space_, txn);
  Status st = xattrs_.store_locked(txn, *in);
  if (!st) {
    in->xattrs = std::move(saved);
    in->d.mode = saved_mode;
    in->d.ctime = saved_ctime;
    return st;
  }
  return space_.commit_locked(txn);
}

Result<std::string> Filesystem::getxattr(uint64_t ino, std::string_view name) {
  std::shared_lock lock(mu_);
  TRY(check_alive());
  Inode* in = TRY(inodes_.find(ino));
  auto it = in->xattrs.find(std::string(name));
  if (it == in->xattrs.end()) return error(ENODATA);
  return it->second;
}

Result<std::string> Filesystem::listxattr(uint64_t ino) {
  std::shared_lock lock(mu_);
  TRY(check_alive());
  Inode* in = TRY(inodes_.find(ino));
  std::string out;
  for (auto& [name, value] : in->xattrs) {
    out.append(name);
    out.push_back('\0');
  }
  return out;
}

Status Filesystem::removexattr(uint64_t ino, std::string_view name) {
  std::unique_lock lock(mu_);
  TRY(check_writable());
  Inode* in = TRY(inodes_.find(ino));
  auto it = in->xattrs.find(std::string(name));
  if (it == in->xattrs.end()) return error(ENODATA);
  auto saved = in->xattrs;
  in->xattrs.erase(std::string(name));
  Txn txn;
  DirtyGuard guard(space_, txn);
  if (Status st = xattrs_.store_locked(txn, *in); !st) {
    in->xattrs = std::move(saved);  // store_locked changed nothing else
    return st;
  }
  touch(*in, false, true);
  store_inode(txn, *in);
  return space_.commit_locked(txn);
}

Status apply_create_acl(const Inode& dir, Inode& in, uint32_t umask) {
  if (in.is_symlink()) return {};
  auto def = dir.xattrs.find(kAclDefault);
  if (def == dir.xattrs.end()) {
    in.d.mode &= ~(umask & 0777);
    return {};
  }
  std::vector<AclEntry> acl;
  if (!parse_acl(def->second, acl)) {
    // Corrupt on media (setxattr validates): fsck's business; create as if there were none.
    fprintf(stderr, "daxfs: inode %llu has an unparsable default ACL; ignoring it\n",
            static_cast<unsigned long long>(dir.ino));
    in.d.mode &= ~(umask & 0777);
    return {};
  }
  if (in.is_dir()) in.xattrs[kAclDefault] = def->second;
  // posix_acl_create_masq(): the new ACL is the default one limited by the requested mode.
  uint32_t mode = in.d.mode;
  bool has_mask = false;
  for (auto& e : acl) has_mask |= e.tag == kAclMask;
  for (auto& e : acl) {
    if (e.tag == kAclUserObj) e.perm &= (mode >> 6) & 7;
    if (e.tag == kAclOther) e.perm &= mode & 7;
    if (e.tag == kAclMask || (e.tag == kAclGroupObj && !has_mask)) e.perm &= (mode >> 3) & 7;
  }
  in.d.mode = acl_mode(acl, mode);
  if (!acl_equivalent_to_mode(acl)) in.xattrs[kAclAccess] = ondisk::encode_acl(acl);
  return {};
}

Result<Filesystem::XAttrFlags> Filesystem::get_xflags(uint64_t ino) {
  std::shared_lock lock(mu_);
  TRY(check_alive());
  Inode* in = TRY(inodes_.find(ino));
  XAttrFlags f;
  f.xflags = (in->d.flags & kInodeDax) ? FS_XFLAG_DAX : 0;
  f.extsize = in->d.extsize;
  f.projid = in->d.projid;
  return f;
}

Status Filesystem::set_xflags(uint64_t ino, const XAttrFlags& f) {
  std::unique_lock lock(mu_);
  TRY(check_writable());
  Inode* in = TRY(inodes_.find(ino));
  if (f.xflags & ~static_cast<uint32_t>(FS_XFLAG_DAX)) return error(EOPNOTSUPP);
  if (f.extsize % kBlockSize != 0) return error(EINVAL);
  in->d.flags = (in->d.flags & ~kInodeDax) | ((f.xflags & FS_XFLAG_DAX) ? kInodeDax : 0);
  in->d.extsize = f.extsize;
  in->d.projid = f.projid;
  touch(*in, false, true);
  Txn txn;
  DirtyGuard guard(space_, txn);
  store_inode(txn, *in);
  return space_.commit_locked(txn);
}

// setattr's chmod keeps an access ACL in step (posix_acl_chmod()); called from inode.cc.
void chmod_access_acl(Inode& in) {
  auto it = in.xattrs.find(kAclAccess);
  if (it == in.xattrs.end()) return;
  std::vector<AclEntry> acl;
  if (!parse_acl(it->second, acl)) return;
  chmod_acl(acl, in.d.mode);
  it->second = ondisk::encode_acl(acl);
}

}  // namespace daxfs::fs

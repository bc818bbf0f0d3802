// Directories and names: entries in record blocks with an in-memory name index, and the
// namespace operations (create, link, unlink, rmdir, rename, readdir) as single transactions.
#include <dirent.h>
#include <linux/fs.h>

#include <cstring>

#include "fs/filesystem.h"
#include "fs/ondisk/codec.h"

namespace daxfs::fs {

namespace {
constexpr uint32_t kMaxLinks = 0x7fffffff;
}  // namespace

Result<struct stat> Filesystem::create_locked(uint64_t parent, std::string_view name, uint32_t mode,
                                              uint64_t rdev, const Cred& cred, std::string_view target) {
  TRY(check_writable());
  Inode* dir = TRY(inodes_.find_dir(parent));
  TRY(Directory::check_name(name));
  if (dir->d.nlink == 0) return error(ENOENT);  // the directory was removed while open
  if (dir->names.count(std::string(name))) return error(EEXIST);
  if (S_ISDIR(mode) && dir->d.nlink >= kMaxLinks) return error(EMLINK);
  TRY(space_.reserve_locked(4));
  Txn txn;
  DirtyGuard guard(space_, txn);
  Inode* in = TRY(inodes_.new_inode_locked(txn, mode, cred.uid, cred.gid, *dir, rdev));
  // Until the commit, a failure must leave memory as it was: the new inode goes away again and
  // blocks taken so far go back (nothing on media references them).
  std::vector<BlockRange> taken;
  auto undo = [&](int e) -> Errno {
    for (const BlockRange& r : taken) alloc_.free(r.start, r.length);
    inodes_.drop_locked(in->ino);
    txn.clear();  // memory is as it was: nothing to shut down for
    return error(e);
  };
  if (Status st = apply_create_acl(*dir, *in, cred.umask); !st) return undo(st.error());
  if (S_ISLNK(mode)) {
    auto r = space_.alloc_locked(1, 0);
    if (!r) return undo(r.error());
    taken.push_back(*r);
    char block[kBlockSize] = {};
    memcpy(block, target.data(), target.size());
    dev_->memcpy_persist(r->start * kBlockSize, block, sizeof block);  // before the commit
    in->d.head = r->start;
    in->d.size = target.size();
    in->symlink = std::string(target);
  }
  if (!in->xattrs.empty()) {
    Status st = xattrs_.store_locked(txn, *in);
    if (!st) return undo(st.error());
    taken.push_back({in->d.xattr_block, (in->d.xattr_length + kBlockSize - 1) / kBlockSize});
  }
  store_inode(txn, *in);
  if (dir->free_slots.empty() && alloc_.free_blocks() == 0) return undo(ENOSPC);
  TRY(dirs_.add_locked(txn, *dir, name, *in));  // cannot fail now: a block is free for it
  if (S_ISDIR(mode)) {
    dir->d.nlink++;
    dir->subdirs++;
  }
  touch(*dir, true, true);
  store_inode(txn, *dir);
  TRY(space_.commit_locked(txn));
  in->nlookup++;
  return to_stat(*in);
}

Result<struct stat> Filesystem::mknod(uint64_t parent, std::string_view name, uint32_t mode,
                                      uint64_t rdev, const Cred& cred) {
  uint32_t type = mode & S_IFMT;
  if (type == 0) mode |= S_IFREG;
  else if (type != S_IFREG && type != S_IFIFO && type != S_IFCHR && type != S_IFBLK && type != S_IFSOCK)
    return error(EINVAL);
  std::unique_lock lock(mu_);
  return create_locked(parent, name, mode, (type == S_IFCHR || type == S_IFBLK) ? rdev : 0, cred, {});
}

Result<struct stat> Filesystem::mkdir(uint64_t parent, std::string_view name, uint32_t mode, const Cred& cred) {
  std::unique_lock lock(mu_);
  return create_locked(parent, name, S_IFDIR | (mode & 07777), 0, cred, {});
}

Result<struct stat> Filesystem::symlink(uint64_t parent, std::string_view name, std::string_view target,
                                        const Cred& cred) {
  if (target.empty()) return error(ENOENT);
  if (target.size() > kSymlinkMax) return error(ENAMETOOLONG);
  // A NUL byte would make a target the readers refuse (ondisk::decode_symlink()).
  if (target.find('\0') != std::string_view::npos) return error(EINVAL);
  std::unique_lock lock(mu_);
  return create_locked(parent, name, S_IFLNK | 0777, 0, cred, target);
}

Result<std::string> Filesystem::readlink(uint64_t ino) {
  std::shared_lock lock(mu_);
  TRY(check_alive());
  Inode* in = TRY(inodes_.find(ino));
  if (!in->is_symlink()) return error(EINVAL);
  return in->symlink;
}

Result<struct stat> Filesystem::link(uint64_t ino, uint64_t new_parent, std::string_view new_name) {
  std::unique_lock lock(mu_);
  TRY(check_writable());
  Inode* in = TRY(inodes_.find(ino));
  Inode* dir = TRY(inodes_.find_dir(new_parent));
  if (in->is_dir()) return error(EPERM);
  TRY(Directory::check_name(new_name));
  if (dir->d.nlink == 0) return error(ENOENT);
  if (dir->names.count(std::string(new_name))) return error(EEXIST);
  if (in->d.nlink >= kMaxLinks) return error(EMLINK);
  if (in->d.nlink == 0) return error(ENOENT);  // linkat of an unlinked (O_TMPFILE-less) file
  TRY(space_.reserve_locked(1));
  Txn txn;
  DirtyGuard guard(space_, txn);
  TRY(dirs_.add_locked(txn, *dir, new_name, *in));
  in->d.nlink++;
  touch(*in, false, true);
  touch(*dir, true, true);
  store_inode(txn, *in);
  store_inode(txn, *dir);
  TRY(space_.commit_locked(txn));
  in->nlookup++;
  return to_stat(*in);
}

Status Filesystem::remove_locked(uint64_t parent, std::string_view name, bool rmdir) {
  TRY(check_writable());
  Inode* dir = TRY(inodes_.find_dir(parent));
  if (name == ".") return error(EINVAL);
  if (name == "..") return error(ENOTEMPTY);
  auto it = dir->names.find(std::string(name));
  if (it == dir->names.end()) return error(ENOENT);
  Inode* target = TRY(inodes_.find(dir->slots[it->second].ino));
  if (rmdir) {
    if (!target->is_dir()) return error(ENOTDIR);
    if (!target->names.empty()) return error(ENOTEMPTY);
  } else if (target->is_dir()) {
    return error(EISDIR);
  }
  Txn txn;
  DirtyGuard guard(space_, txn);
  dirs_.remove_locked(txn, *dir, name);
  if (rmdir) {
    target->d.nlink = 0;
    dir->d.nlink--;
    dir->subdirs--;
  } else {
    target->d.nlink--;
  }
  touch(*target, false, true);
  touch(*dir, true, true);
  store_inode(txn, *target);
  store_inode(txn, *dir);
  TRY(space_.commit_locked(txn));
  maybe_release_locked(*target);
  return {};
}

Status Filesystem::unlink(uint64_t parent, std::string_view name) {
  std::unique_lock lock(mu_);
  return remove_locked(parent, name, false);
}

Status Filesystem::rmdir(uint64_t parent, std::string_view name) {
  std::unique_lock lock(mu_);
  return remove_locked(parent, name, true);
}

Status Filesystem::rename(uint64_t parent, std::string_view name, uint64_t new_parent,
                          std::string_view new_name, uint32_t flags) {
  if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) return error(EINVAL);
  if ((flags & RENAME_NOREPLACE) && (flags & RENAME_EXCHANGE)) return error(EINVAL);
  std::unique_lock lock(mu_);
  TRY(check_writable());
  Inode* sdir = TRY(inodes_.find_dir(parent));
  Inode* ddir = TRY(inodes_.find_dir(new_parent));
  if (name == "." || name == ".." || new_name == "." || new_name == "..") return error(EBUSY);
  TRY(Directory::check_name(new_name));
  auto sit = sdir->names.find(std::string(name));
  if (sit == sdir->names.end()) return error(ENOENT);
  Inode* src = TRY(inodes_.find(sdir->slots[sit->second].ino));
  auto dit = ddir->names.find(std::string(new_name));
  Inode* dst = nullptr;
  if (dit != ddir->names.end()) dst = TRY(inodes_.find(ddir->slots[dit->second].ino));
  if (ddir->d.nlink == 0) return error(ENOENT);

  // A directory may not move below itself.
  // The walk is bounded: a parent-pointer loop (corruption the mount did not catch) must not
  // spin forever under the exclusive lock.
  auto is_ancestor = [&](const Inode* a, const Inode* d) -> bool {
    const Inode* p = d;
    for (size_t depth = 0; depth <= inodes_.size(); depth++) {
      if (p == a) return true;
      if (p->ino == inodes_.root()) return false;
      auto r = inodes_.find(p->d.parent);
      if (!r) return false;
      p = *r;
    }
    return true;  // a loop: refuse the move (EINVAL) rather than make it worse
  };
  if (flags & RENAME_EXCHANGE) {
    if (!dst) return error(ENOENT);
    if (src == dst) return {};
    if (src->is_dir() && sdir != ddir && is_ancestor(src, ddir)) return error(EINVAL);
    if (dst->is_dir() && sdir != ddir && is_ancestor(dst, sdir)) return error(EINVAL);
    Txn txn;
    DirtyGuard guard(space_, txn);
    dirs_.set_locked(txn, *sdir, name, *dst);
    dirs_.set_locked(txn, *ddir, new_name, *src);
    if (sdir != ddir) {
      if (src->is_dir()) {
        src->d.parent = ddir->ino;
        sdir->d.nlink--, sdir->subdirs--, ddir->d.nlink++, ddir->subdirs++;
      }
      if (dst->is_dir()) {
        dst->d.parent = sdir->ino;
        ddir->d.nlink--, ddir->subdirs--, sdir->d.nlink++, sdir->subdirs++;
      }
    }
    for (Inode* i : {src, dst}) touch(*i, false, true);
    for (Inode* i : {sdir, ddir}) touch(*i, true, true);
    for (Inode* i : {src, dst, sdir, ddir}) store_inode(txn, *i);
    return space_.commit_locked(txn);
  }
  if (dst) {
    if (flags & RENAME_NOREPLACE) return error(EEXIST);
    if (src == dst) return {};  // two links to one inode: POSIX says do nothing
    if (src->is_dir() && !dst->is_dir()) return error(ENOTDIR);
    if (!src->is_dir() && dst->is_dir()) return error(EISDIR);
    if (dst->is_dir() && !dst->names.empty()) return error(ENOTEMPTY);
  } else if (sdir == ddir && name == new_name) {
    return {};
  }
  if (src->is_dir() && sdir != ddir) {
    if (is_ancestor(src, ddir)) return error(EINVAL);
    if (!dst && ddir->d.nlink >= kMaxLinks) return error(EMLINK);
  }
  TRY(space_.reserve_locked(1));
  Txn txn;
  DirtyGuard guard(space_, txn);
  std::string sname(name);  // `name` may alias the slot we are about to rewrite
  if (dst) {
    dirs_.set_locked(txn, *ddir, new_name, *src);
    if (dst->is_dir()) {
      dst->d.nlink = 0;
      ddir->d.nlink--;
      ddir->subdirs--;
    } else {
      dst->d.nlink--;
    }
    touch(*dst, false, true);
    store_inode(txn, *dst);
  } else {
    TRY(dirs_.add_locked(txn, *ddir, new_name, *src));
  }
  dirs_.remove_locked(txn, *sdir, sname);
  if (src->is_dir() && sdir != ddir) {
    src->d.parent = ddir->ino;
    sdir->d.nlink--, sdir->subdirs--, ddir->d.nlink++, ddir->subdirs++;
  }
  touch(*src, false, true);
  touch(*sdir, true, true);
  touch(*ddir, true, true);
  for (Inode* i : {src, sdir, ddir}) store_inode(txn, *i);
  TRY(space_.commit_locked(txn));
  if (dst) maybe_release_locked(*dst);
  return {};
}

Status Filesystem::readdir(uint64_t ino, uint64_t offset, const std::function<bool(const DirEntry&)>& sink) {
  std::shared_lock lock(mu_);
  TRY(check_alive());
  Inode* dir = TRY(inodes_.find_dir(ino));
  // Offsets: 0 ".", 1 "..", 2 + i slot i. An entry's next_offset resumes after it; slot indexes
  // are stable while the directory lives, so offsets survive concurrent changes (POSIX telldir).
  uint64_t pos = offset;
  if (pos == 0) {
    if (!sink({".", dir->ino, DT_DIR, 1})) return {};
    pos = 1;
  }
  if (pos == 1) {
    if (!sink({"..", dir->d.parent, DT_DIR, 2})) return {};
    pos = 2;
  }
  for (uint64_t i = pos - 2; i < dir->slots.size(); i++) {
    const DirSlot& s = dir->slots[i];
    if (s.ino == 0) continue;
    if (!sink({s.name, s.ino, s.type, i + 3})) return {};
  }
  return {};
}

}  // namespace daxfs::fs

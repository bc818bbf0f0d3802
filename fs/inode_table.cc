// The inode table (fs/inode_table.h): in-memory inodes, inode slots and chunk allocation.
#include "fs/inode_table.h"

#include <time.h>

#include <cstddef>
#include <cstring>

#include "fs/ondisk/codec.h"

namespace daxfs::fs {

namespace {
Timespec now_ts() {
  timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  return {t.tv_sec, static_cast<uint32_t>(t.tv_nsec), 0};
}
timespec to_timespec(const Timespec& t) { return {t.sec, static_cast<long>(t.nsec)}; }
}  // namespace

void store_inode(Txn& txn, const Inode& in) { txn.write_obj(ondisk::inode_offset(in.ino), in.d); }

void touch(Inode& in, bool mtime, bool ctime) {
  Timespec t = now_ts();
  if (mtime) in.d.mtime = t;
  if (ctime) in.d.ctime = t;
}

void strip_setid(Inode& in) {
  // should_remove_suid(): setuid always; setgid only with group execute (else it is mandatory
  // locking's marker, which Linux leaves alone).
  in.d.mode &= ~static_cast<uint32_t>(S_ISUID);
  if ((in.d.mode & (S_ISGID | S_IXGRP)) == (S_ISGID | S_IXGRP)) in.d.mode &= ~static_cast<uint32_t>(S_ISGID);
}

struct stat to_stat(const Inode& in) {
  struct stat st {};
  st.st_ino = in.ino;
  st.st_mode = in.d.mode;
  st.st_nlink = in.d.nlink;
  st.st_uid = in.d.uid;
  st.st_gid = in.d.gid;
  st.st_rdev = in.d.rdev;
  st.st_blksize = kBlockSize;
  if (in.is_dir()) {
    st.st_size = static_cast<off_t>(in.record_blocks.size() * kBlockSize);
    st.st_blocks = static_cast<blkcnt_t>(in.record_blocks.size() * (kBlockSize / 512));
  } else {
    st.st_size = static_cast<off_t>(in.d.size);
    uint64_t blocks = in.data_blocks + (in.is_symlink() ? 1 : 0);
    st.st_blocks = static_cast<blkcnt_t>(blocks * (kBlockSize / 512));
  }
  st.st_atim = to_timespec(in.d.atime);
  st.st_mtim = to_timespec(in.d.mtime);
  st.st_ctim = to_timespec(in.d.ctime);
  return st;
}

void InodeTable::adopt(Map inodes, std::vector<uint64_t> free_inos, uint64_t root, uint64_t next_generation) {
  inodes_ = std::move(inodes);
  free_inos_ = std::move(free_inos);
  root_ = root;
  next_generation_ = next_generation;
  // The chain as the Loader walked (and validated) it.
  const auto* sb = reinterpret_cast<const SuperBlock*>(dev_.base());
  for (uint64_t c = sb->first_chunk; c != 0 && !chunk_next_.count(c);) {
    ChunkHeader ch;
    memcpy(&ch, dev_.base() + c * kBlockSize, sizeof ch);
    chunk_next_[c] = ch.next;
    c = ch.next;
  }
}

Result<Inode*> InodeTable::find(uint64_t ino) const {
  auto it = inodes_.find(ino);
  if (it == inodes_.end() || it->second->d.mode == 0) return error(ENOENT);
  return it->second.get();
}

Result<Inode*> InodeTable::find_dir(uint64_t ino) const {
  Inode* in = TRY(find(ino));
  if (!in->is_dir()) return error(ENOTDIR);
  return in;
}

Inode* InodeTable::get(uint64_t ino) const {
  auto it = inodes_.find(ino);
  return it == inodes_.end() ? nullptr : it->second.get();
}

Result<Inode*> InodeTable::new_inode_locked(Txn& txn, uint32_t mode, uint32_t uid, uint32_t gid,
                                            const Inode& parent, uint64_t rdev) {
  if (free_inos_.empty()) {
    // A new chunk, pushed at the head of the chain; its slots are zero (free) before it is linked.
    // It is linked by a transaction of its own, so that the chunk is valid on media whatever
    // becomes of the operation that needed it.
    const auto* sb = reinterpret_cast<const SuperBlock*>(dev_.base());
    BlockRange r = TRY(space_.alloc_locked(1, sb->first_chunk));
    char block[kBlockSize] = {};
    ChunkHeader ch{};
    ch.magic = kChunkMagic;
    ch.next = sb->first_chunk;
    memcpy(block, &ch, sizeof ch);
    dev_.memcpy_persist(r.start * kBlockSize, block, sizeof block);
    uint64_t head = r.start;
    Txn link;
    link.write(offsetof(SuperBlock, first_chunk), &head, sizeof head);
    TRY(space_.commit_locked(link));
    chunk_next_[r.start] = ch.next;
    for (uint32_t slot = kInodesPerChunk - 1; slot >= 1; slot--) free_inos_.push_back(make_ino(r.start, slot));
  }
  uint64_t ino = free_inos_.back();
  free_inos_.pop_back();
  auto in = std::make_unique<Inode>();
  in->ino = ino;
  in->d.mode = mode;
  in->d.uid = uid;
  in->d.gid = gid;
  // BSD group semantics on a setgid directory, as Linux's inode_init_owner().
  if (parent.d.mode & S_ISGID) {
    in->d.gid = parent.d.gid;
    if (S_ISDIR(mode)) in->d.mode |= S_ISGID;
  }
  in->d.nlink = S_ISDIR(mode) ? 2 : 1;
  in->d.rdev = rdev;
  in->d.generation = next_generation_++;
  in->d.parent = S_ISDIR(mode) ? parent.ino : 0;
  // DAX flag inheritance from the parent directory (XFS: XFS_DIFLAG2_DAX).
  in->d.flags = parent.d.flags & kInodeDax;
  Timespec t = now_ts();
  in->d.atime = in->d.mtime = in->d.ctime = in->d.btime = t;
  Inode* raw = in.get();
  inodes_[ino] = std::move(in);
  store_inode(txn, *raw);
  return raw;
}

void InodeTable::drop_locked(uint64_t ino) {
  inodes_.erase(ino);
  free_inos_.push_back(ino);
}

}  // namespace daxfs::fs

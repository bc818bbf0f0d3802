// The structural phases of the checker: the inode chunk chain, each inode's own fields, its
// record-block chain, symlink target, xattr blob and extents, and directory entry syntax. Every
// block met is claimed in the BlockMap, so a cycle or a block referenced twice shows up as a
// claim that fails. Every pointer, length and offset read from the media is range-checked before
// it is followed.
#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <unordered_set>

#include "fs/fsck/checker_impl.h"

namespace daxfs::fsck {

namespace {
namespace ondisk = fs::ondisk;
std::string num(uint64_t v) { return std::to_string(v); }
}  // namespace

void Checker::load_chunks() {
  uint64_t link = offsetof(fs::SuperBlock, first_chunk);  // where the pointer to `b` lives
  uint64_t b = sb_.first_chunk;
  if (b == 0) {
    report("chunk_chain", 0, "the superblock names no inode chunk (every inode is lost)");
    out_.evidence.head_broken = true;
  }
  while (b != 0) {
    std::string why;
    fs::ChunkHeader h{};
    if (!block_ok(b)) {
      why = "is outside the data area";
    } else if (map_.find(b, 1)) {
      why = "closes a cycle";  // only chunks are claimed yet: this one was met before
    } else {
      memcpy(&h, img_.block(b), sizeof h);
      if (const char* bad = ondisk::chunk_error(h)) why = bad;
    }
    if (!why.empty()) {
      bool cycle = why == "closes a cycle";
      size_t p = report("chunk_chain", 0,
                        "the inode chunk chain's link to block " + num(b) + " " + why + "; the chain is cut there" +
                            (cycle ? "" : " (the inodes of the rest of the chain are lost)"));
      plan_write(p, link, uint64_t{0});
      if (link == offsetof(fs::SuperBlock, first_chunk)) {
        sb_.first_chunk = 0;
        out_.evidence.head_broken = true;
      }
      break;
    }
    map_.claim(b, 1, {OwnerKind::kChunk, 0});
    out_.evidence.oldest_chunk = b;
    const char* p = img_.block(b);
    for (uint32_t slot = 1; slot < fs::kInodesPerChunk; slot++) {
      Node n;
      memcpy(&n.d, p + slot * fs::kInodeSize, sizeof n.d);
      uint64_t ino = fs::make_ino(b, slot);
      if (n.d.mode == 0)
        free_slots_.push_back(ino);
      else
        nodes_.emplace(ino, std::move(n));
    }
    link = b * fs::kBlockSize + offsetof(fs::ChunkHeader, next);
    b = h.next;
  }
  std::sort(free_slots_.begin(), free_slots_.end());
}

void Checker::check_inodes() {
  for (auto& [ino, n] : nodes_) {
    uint64_t at = inode_offset(ino);
    if (ondisk::inode_mode_error(n.d.mode)) {
      char mode[16];
      snprintf(mode, sizeof mode, "0%o", n.d.mode);
      drop_inode(ino, n, "inode_mode", std::string("the inode has an invalid mode ") + mode + "; it is cleared");
      continue;
    }
    if (ondisk::inode_flags_error(n.d)) {
      size_t p = report("inode_flags", ino, "unknown inode flags " + num(n.d.flags & ~fs::kInodeDax) + " are cleared");
      n.d.flags &= fs::kInodeDax;
      plan_write(p, at + offsetof(fs::DiskInode, flags), n.d.flags);
    }
    if (ondisk::inode_head_error(n.d)) {
      size_t p = report("inode_head", ino, "a special file has a block pointer (" + num(n.d.head) + "); it is cleared");
      n.d.head = 0;
      plan_write(p, at + offsetof(fs::DiskInode, head), n.d.head);
    }
    if (n.is_symlink() && ondisk::inode_size_error(n.d)) {
      drop_inode(ino, n, "symlink", "the symlink's length " + num(n.d.size) + " is outside 1..4095; it is cleared");
      continue;
    }
    if (ondisk::inode_xattr_length_error(n.d)) {
      size_t p =
          report("xattr", ino, "an xattr length of " + num(n.d.xattr_length) + " without an xattr block is cleared");
      n.d.xattr_length = 0;
      plan_write(p, at + offsetof(fs::DiskInode, xattr_length), n.d.xattr_length);
    }
  }
}

void Checker::claim_chains() {
  for (auto& [ino, n] : nodes_) {
    if (n.dropped || !(n.is_reg() || n.is_dir())) continue;
    uint64_t magic = n.is_reg() ? fs::kExtentMagic : fs::kDirMagic;
    OwnerKind kind = n.is_reg() ? OwnerKind::kExtentBlock : OwnerKind::kDirBlock;
    const char* what = n.is_reg() ? "extent" : "directory";
    uint64_t link = inode_offset(ino) + offsetof(fs::DiskInode, head);
    for (uint64_t b = n.d.head; b != 0;) {
      std::string why;
      fs::RecordBlockHeader h{};
      if (!block_ok(b)) {
        why = "is outside the data area";
      } else if (auto o = map_.find(b, 1)) {
        why = o->kind == kind && o->ino == ino ? "closes a cycle" : "is already " + describe(*o);
      } else {
        memcpy(&h, img_.block(b), sizeof h);
        if (ondisk::record_block_error(h, magic, ino))
          why = h.magic != magic ? std::string("is not a ") + what + " block (bad magic)"
                                 : "belongs to inode " + num(h.owner);
      }
      if (!why.empty()) {
        bool cycle = why == "closes a cycle";
        size_t p = report("record_chain", ino,
                          std::string("the ") + what + " block chain's link to block " + num(b) + " " + why +
                              "; the chain is cut there" +
                              (cycle ? ""
                                     : std::string(" (the rest of its ") + what +
                                           (n.is_reg() ? "s are" : " entries are") + " lost)"));
        plan_write(p, link, uint64_t{0});
        if (link == inode_offset(ino) + offsetof(fs::DiskInode, head)) n.d.head = 0;
        break;
      }
      map_.claim(b, 1, {kind, ino});
      n.blocks.push_back(b);
      link = b * fs::kBlockSize + offsetof(fs::RecordBlockHeader, next);
      b = h.next;
    }
  }
}

void Checker::claim_blobs() {
  for (auto& [ino, n] : nodes_) {
    if (!n.dropped && n.is_symlink()) check_symlink(ino, n);
    if (!n.dropped && n.d.xattr_block != 0) check_xattrs(ino, n);
  }
}

void Checker::check_symlink(uint64_t ino, Node& n) {
  uint64_t b = n.d.head;
  if (!block_ok(b)) {
    drop_inode(ino, n, "symlink", "the symlink's target block " + num(b) + " is outside the data area; it is cleared");
    return;
  }
  if (auto o = map_.find(b, 1)) {
    drop_inode(ino, n, "duplicate_block",
               "the symlink's target block " + num(b) + " is already " + describe(*o) + "; the symlink is cleared");
    return;
  }
  const char* target = img_.block(b);
  if (ondisk::decode_symlink(target, n.d.size)) {
    map_.claim(b, 1, {OwnerKind::kSymlink, ino});
    return;
  }
  // A NUL byte in the target (its length was checked with the inode): the target is cut there.
  const void* nul = memchr(target, 0, n.d.size);
  if (nul == target) {
    drop_inode(ino, n, "symlink", "the symlink's target is empty; it is cleared");
    return;
  }
  if (nul != nullptr) {
    uint64_t length = static_cast<uint64_t>(static_cast<const char*>(nul) - target);
    size_t p = report("symlink", ino,
                      "the symlink's target has a NUL byte; its length " + num(n.d.size) + " becomes " + num(length));
    n.d.size = length;
    plan_write(p, inode_offset(ino) + offsetof(fs::DiskInode, size), n.d.size);
  }
  map_.claim(b, 1, {OwnerKind::kSymlink, ino});
}

void Checker::claim_extents() {
  for (auto& [ino, n] : nodes_)
    if (!n.dropped && n.is_reg()) claim_file_extents(ino, n);
}

void Checker::claim_file_extents(uint64_t ino, Node& n) {
  std::map<uint64_t, uint64_t> logical;  // file block -> end, of the extents kept
  uint64_t max_end = 0;
  // Creation order (the chain runs newest first), as the mount reads them.
  for (auto bit = n.blocks.rbegin(); bit != n.blocks.rend(); ++bit) {
    for (uint32_t slot = 0; slot < fs::kExtentsPerBlock; slot++) {
      uint64_t off = *bit * fs::kBlockSize + sizeof(fs::RecordBlockHeader) + slot * sizeof(fs::DiskExtent);
      fs::DiskExtent e;
      memcpy(&e, img_.block(*bit) + (off % fs::kBlockSize), sizeof e);
      if (e.length == 0) continue;
      std::string where = "extent (file block " + num(e.logical) + ", device block " + num(e.physical) + ", " +
                          num(e.length) + " blocks)";
      if (ondisk::extent_logical_error(e)) {
        plan_write(report("extent", ino, "the " + where + " ends past the maximum file size; it is cleared"), off,
                   fs::DiskExtent{});
        continue;
      }
      if (!range_ok(e.physical, e.length)) {
        plan_write(report("extent", ino, "the " + where + " is outside the data area; it is cleared"), off,
                   fs::DiskExtent{});
        continue;
      }
      if (ondisk::overlaps(logical, e.logical, e.length, [](auto it) { return it->second; })) {
        plan_write(
            report("extent_overlap", ino, "the " + where + " overlaps another extent of the file; it is cleared"), off,
            fs::DiskExtent{});
        continue;
      }
      if (ondisk::extent_flags_error(e)) {
        size_t p = report(
            "extent_flags", ino,
            "the " + where + " has unknown flags " + num(e.flags & ~fs::kExtentUnwritten) + "; they are cleared");
        e.flags &= fs::kExtentUnwritten;
        plan_write(p, off + offsetof(fs::DiskExtent, flags), e.flags);
      }
      // Reflink: a data block may be mapped by any number of extents (the refcount records say
      // how many; refcounts.cc checks them). Without it, or against metadata, the block belongs
      // to whoever claimed it first.
      Sharing sharing = reflink() ? Sharing::kData : Sharing::kExclusive;
      bool unwritten = (e.flags & fs::kExtentUnwritten) != 0;
      std::vector<Range> parts = map_.unowned(e.physical, e.length, sharing);
      if (parts.size() != 1 || parts[0].length != e.length) {
        // The block belongs to someone claimed earlier: this file gives it up, keeping the rest
        // of the extent (in its record and, when the rest is split, in free records).
        auto owner = map_.find(e.physical, e.length, sharing);
        fs::Txn txn;
        std::string lost;
        std::vector<Range> kept;
        for (size_t i = 0; i < parts.size(); i++) {
          uint64_t rec = off;
          if (i > 0) {
            auto free = free_extent_record(n);
            if (!free) {
              lost += " " + num(parts[i].start) + "+" + num(parts[i].length);
              continue;
            }
            rec = *free;
          }
          fs::DiskExtent piece{e.logical + (parts[i].start - e.physical), parts[i].start,
                               static_cast<uint32_t>(parts[i].length), e.flags};
          txn.write_obj(rec, piece);
          kept.push_back(parts[i]);
        }
        if (parts.empty()) txn.write_obj(off, fs::DiskExtent{});
        std::string detail = "the " + where + " uses blocks that are already " +
                             (owner ? describe(*owner) : std::string("in use")) + "; the file loses them" +
                             (parts.empty() ? "" : " and keeps the rest");
        if (!lost.empty()) detail += " (except, for lack of free records, blocks" + lost + ")";
        plan(report("duplicate_block", ino, detail), std::move(txn));
        for (const Range& r : kept) {
          map_.claim(r.start, r.length, {OwnerKind::kData, ino}, sharing);
          n.data_blocks += r.length;
          n.mapped.push_back(r);
          n.extents.push_back({e.logical + (r.start - e.physical), r.start, r.length, unwritten});
        }
      } else {
        map_.claim(e.physical, e.length, {OwnerKind::kData, ino}, sharing);
        n.data_blocks += e.length;
        n.mapped.push_back({e.physical, e.length});
        n.extents.push_back({e.logical, e.physical, e.length, unwritten});
      }
      logical.emplace(e.logical, e.logical + e.length);
      max_end = std::max(max_end, e.logical + e.length);
    }
  }
  if (ondisk::inode_size_error(n.d)) {
    uint64_t size = std::min<uint64_t>(fs::kMaxFileSize, max_end * fs::kBlockSize);
    size_t p =
        report("inode_size", ino, "the file size " + num(n.d.size) + " is past the maximum; it becomes " + num(size));
    n.d.size = size;
    plan_write(p, inode_offset(ino) + offsetof(fs::DiskInode, size), n.d.size);
  }
}

void Checker::load_dirents() {
  for (auto& [ino, n] : nodes_) {
    if (n.dropped || !n.is_dir()) continue;
    std::unordered_set<std::string> names;
    // Creation order, as the mount reads them: of two entries with one name, the later goes.
    for (auto bit = n.blocks.rbegin(); bit != n.blocks.rend(); ++bit) {
      for (uint32_t slot = 0; slot < fs::kDirentsPerBlock; slot++) {
        uint64_t off = *bit * fs::kBlockSize + sizeof(fs::RecordBlockHeader) + slot * sizeof(fs::DiskDirent);
        fs::DiskDirent de;
        memcpy(&de, img_.block(*bit) + (off % fs::kBlockSize), sizeof de);
        if (de.ino == 0) continue;
        Entry e{std::string(de.name, de.name_length), de.ino, de.type, off};
        std::string shown = "'" + printable(e.name) + "'";
        if (de.name_length == 0) {
          remove_entry(e, "dirent_name", ino, "an entry with an empty name (inode " + num(de.ino) + ") is removed");
        } else if (!ondisk::decode_dirent_name(de)) {
          remove_entry(e, "dirent_name", ino, "the entry " + shown + " has an invalid name; it is removed");
        } else if (!names.insert(e.name).second) {
          remove_entry(e, "dirent_duplicate", ino, "a second entry named " + shown + " is removed");
        } else {
          n.entries.push_back(std::move(e));
        }
      }
    }
  }
}

}  // namespace daxfs::fsck

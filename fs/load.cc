// The Loader (load.h): reads every inode's metadata into memory at mount (time and memory follow
// the metadata, not the device size) and rebuilds the allocator from what it references. Each
// record is judged by the codec fsck.daxfs uses (fs/ondisk/codec.h); a record it refuses is
// corruption: the mount refuses with EUCLEAN and the reason, and fsck.daxfs repairs it.
#include "fs/load.h"

#include <algorithm>
#include <cstring>

namespace daxfs::fs {

namespace {
std::string num(uint64_t v) { return std::to_string(v); }
}  // namespace

Loader::Loader(const LoadTarget& target, std::string& why)
    : t_(target), why_(why), area_(ondisk::data_area(target.sb)) {}

const char* Loader::block(uint64_t b) const { return t_.dev.base() + b * kBlockSize; }

Status Loader::readable(uint64_t b, uint64_t n, const std::string& what) {
  if (!t_.dev.poisoned(b * kBlockSize, n * kBlockSize)) return {};
  const std::string& dev = t_.dev.path();
  why_ = "poisoned metadata: " + what + " (block " + num(b) + (n > 1 ? "+" + num(n) : "") +
         ") cannot be read, and nothing holds it in memory while unmounted. `fsck.daxfs -n " + dev +
         "` lists the poisoned blocks and their owners; `daxfsctl clear-error " + dev + " --offset " +
         num(b * kBlockSize) + " --length " + num(n * kBlockSize) + "`, then `fsck.daxfs -y " + dev +
         "`, repairs the structure (what the block held may be lost)";
  return error(EIO);
}

Errno Loader::corrupt(const std::string& what) {
  why_ = what + " (run fsck.daxfs)";
  return error(EUCLEAN);
}

Status Loader::load() {
  const SuperBlock& sb = t_.sb;
  t_.alloc.reset(area_.start, sb.block_count);
  t_.next_generation = sb.next_generation;
  TRY(load_chunks());
  for (auto& [ino, in] : t_.inodes) {
    TRY(load_inode(*in));
    // The superblock's copy is written only at a clean unmount: never reuse a generation.
    t_.next_generation = std::max(t_.next_generation, in->d.generation + 1);
  }
  TRY(load_refcounts());
  TRY(check_shared_blocks());
  auto root = t_.inodes.find(sb.root_ino);
  if (root == t_.inodes.end() || !root->second->is_dir()) return corrupt("the root directory is missing");
  t_.root = sb.root_ino;
  return check_namespace();
}

Status Loader::load_chunks() {
  for (uint64_t chunk = t_.sb.first_chunk; chunk != 0;) {
    if (!block_ok(chunk) || !t_.alloc.mark_used(chunk, 1))
      return corrupt("inode chunk " + num(chunk) + " is out of range or used twice");
    TRY(readable(chunk, 1, "an inode chunk"));
    const char* p = block(chunk);
    ChunkHeader ch;
    memcpy(&ch, p, sizeof ch);
    if (const char* why = ondisk::chunk_error(ch)) return corrupt("block " + num(chunk) + " " + why);
    for (uint32_t slot = 1; slot < kInodesPerChunk; slot++) {
      uint64_t ino = make_ino(chunk, slot);
      auto in = std::make_unique<Inode>();
      in->ino = ino;
      memcpy(&in->d, p + slot * kInodeSize, sizeof(DiskInode));
      if (in->d.mode == 0) {
        t_.free_inos.push_back(ino);
        continue;
      }
      t_.inodes[ino] = std::move(in);
    }
    chunk = ch.next;
  }
  // Newest chunk first in the chain: hand out low slots of the newest chunks first.
  std::reverse(t_.free_inos.begin(), t_.free_inos.end());
  return {};
}

Status Loader::load_inode(Inode& in) {
  std::string who = "inode " + num(in.ino);
  // Never trust an impossible size: the post-EOF trim at mount would free every block past it
  // (fsck.daxfs sets it from the extents instead, keeping the data).
  if (const char* why = ondisk::inode_error(in.d)) return corrupt(who + " " + why);
  if (in.is_reg()) {
    TRY(load_extents(in, who));
  } else if (in.is_dir()) {
    TRY(load_dirents(in, who));
  } else if (in.is_symlink()) {
    if (!block_ok(in.d.head) || !t_.alloc.mark_used(in.d.head, 1))
      return corrupt(who + " is a symlink with a bad target block");
    TRY(readable(in.d.head, 1, "the target of symlink " + who));
    auto target = ondisk::decode_symlink(block(in.d.head), in.d.size);
    if (!target) return corrupt(who + " is a symlink that " + target.why());
    in.symlink = std::move(target).value();
  }
  if (in.d.xattr_block != 0) TRY(load_xattrs(in, who));
  return {};
}

Status Loader::load_extents(Inode& in, const std::string& who) {
  in.record_blocks = TRY(chain(in, kExtentMagic));
  for (uint64_t b : in.record_blocks) {
    for (uint32_t slot = 0; slot < kExtentsPerBlock; slot++) {
      DiskExtent e;
      memcpy(&e, block(b) + sizeof(RecordBlockHeader) + slot * sizeof(DiskExtent), sizeof e);
      if (e.length == 0) {
        in.free_records.push_back({b, slot});
        continue;
      }
      std::string what = who + " extent (file block " + num(e.logical) + ", device blocks " + num(e.physical) + "+" +
                         num(e.length) + ")";
      if (const char* why = ondisk::extent_error(e, area_)) return corrupt(what + " " + why);
      auto end = [](auto it) { return it->first + it->second.length; };
      if (ondisk::overlaps(in.extents, e.logical, e.length, end)) return corrupt(what + " overlaps another");
      t_.owners.rmap().add(e.physical, e.length, in.ino, e.logical, e.flags & kExtentUnwritten);
      in.extents[e.logical] = Extent{e.physical, e.length, e.flags & kExtentUnwritten, {b, slot}};
      in.data_blocks += e.length;
    }
  }
  return {};
}

Status Loader::load_dirents(Inode& in, const std::string& who) {
  in.record_blocks = TRY(chain(in, kDirMagic));
  for (size_t ord = 0; ord < in.record_blocks.size(); ord++) {
    uint64_t b = in.record_blocks[ord];
    for (uint32_t slot = 0; slot < kDirentsPerBlock; slot++) {
      DiskDirent de;
      memcpy(&de, block(b) + sizeof(RecordBlockHeader) + slot * sizeof(DiskDirent), sizeof de);
      uint32_t index = static_cast<uint32_t>(ord * kDirentsPerBlock + slot);
      in.slots.emplace_back();
      if (de.ino == 0) {
        in.free_slots.push_back(index);
        continue;
      }
      auto name = ondisk::decode_dirent_name(de);
      if (!name) return corrupt(who + " has a directory entry whose name " + name.why());
      if (!in.names.emplace(*name, index).second) return corrupt(who + " has two entries named '" + *name + "'");
      in.slots.back() = DirSlot{de.ino, de.type, std::move(name).value()};
    }
  }
  std::reverse(in.free_slots.begin(), in.free_slots.end());  // lowest first from the back
  return {};
}

Status Loader::load_xattrs(Inode& in, const std::string& who) {
  uint64_t blocks = (uint64_t{in.d.xattr_length} + kBlockSize - 1) / kBlockSize;
  if (const char* why = ondisk::xattr_blob_error(in.d.xattr_block, in.d.xattr_length, area_))
    return corrupt(who + " has an xattr blob that " + why);
  if (!t_.alloc.mark_used(in.d.xattr_block, blocks)) return corrupt(who + " has an xattr blob in used blocks");
  TRY(readable(in.d.xattr_block, blocks, "the xattrs of " + who));
  auto xattrs = ondisk::decode_xattrs({block(in.d.xattr_block), in.d.xattr_length}, in.is_dir());
  if (!xattrs) return corrupt(who + " has an xattr blob that " + xattrs.why());
  in.xattrs = std::move(xattrs).value();
  return {};
}

// Walks a record-block chain; returns its blocks in creation order.
Result<std::vector<uint64_t>> Loader::chain(const Inode& in, uint64_t magic) {
  std::vector<uint64_t> blocks;
  for (uint64_t b = in.d.head; b != 0;) {
    if (!block_ok(b) || !t_.alloc.mark_used(b, 1))
      return corrupt("inode " + num(in.ino) + " record block out of range or used twice");
    TRY(readable(b, 1, std::string(magic == kDirMagic ? "a directory block" : "an extent-map block") + " of inode " +
                           num(in.ino)));
    RecordBlockHeader h;
    memcpy(&h, block(b), sizeof h);
    if (const char* why = ondisk::record_block_error(h, magic, in.ino))
      return corrupt("inode " + num(in.ino) + " record block " + num(b) + " " + why);
    blocks.push_back(b);
    b = h.next;
  }
  std::reverse(blocks.begin(), blocks.end());
  return blocks;
}

// The refcount chain and its records, each valid on its own and overlapping no other.
Status Loader::load_refcounts() {
  for (uint64_t b = t_.sb.refcount_head, n = 0; b != 0; n++) {
    if (!block_ok(b) || !t_.alloc.mark_used(b, 1) || n > t_.sb.block_count)
      return corrupt("refcount block " + num(b) + " is out of range or used twice");
    TRY(readable(b, 1, "a refcount record block"));
    RecordBlockHeader h;
    memcpy(&h, block(b), sizeof h);
    if (const char* why = ondisk::record_block_error(h, kRefcountMagic, 0))
      return corrupt("refcount block " + num(b) + " " + why);
    t_.owners.refcounts().load_block(b);
    for (uint32_t slot = 0; slot < kRefcountsPerBlock; slot++) {
      DiskRefcount r;
      memcpy(&r, block(b) + sizeof(RecordBlockHeader) + slot * sizeof(DiskRefcount), sizeof r);
      if (r.length == 0) {
        t_.owners.refcounts().load_free_slot({b, slot});
        continue;
      }
      std::string what = "the refcount record for blocks " + num(r.start) + "+" + num(r.length);
      if (const char* why = ondisk::refcount_error(r, area_)) return corrupt(what + " " + why);
      if (!t_.owners.refcounts().load(r.start, r, {b, slot})) return corrupt(what + " overlaps another");
    }
    b = h.next;
  }
  t_.owners.set_refcount_head(t_.sb.refcount_head);
  return {};
}

// Data blocks: each mapped block is allocated once however many files share it, and must not
// be metadata; the persistent refcount records must say exactly what the extent maps imply.
Status Loader::check_shared_blocks() {
  bool ok = true;
  std::string what;
  if (!(t_.sb.features & kFeatureReflink)) {
    // Without reflink nothing may be shared, and there are no refcounts.
    if (t_.sb.refcount_head != 0) return corrupt("refcount records on a filesystem without reflink");
    t_.owners.rmap().for_each_segment([&](uint64_t start, uint64_t, const std::vector<RmapOwner>& owners) {
      if (ok && owners.size() > 1) {
        ok = false;
        what = "block " + num(start) + " is mapped twice on a filesystem without reflink";
      }
    });
    if (!ok) return corrupt(what);
  }
  t_.owners.rmap().for_each_segment([&](uint64_t start, uint64_t length, const std::vector<RmapOwner>&) {
    if (ok && !t_.alloc.mark_used(start, length)) {
      ok = false;
      what = "data blocks " + num(start) + "+" + num(length) + " are also metadata or out of range";
    }
  });
  if (!ok) return corrupt(what);
  // Recorded counts against the counts the extent maps imply, both ways.
  // (No structured binding here: clang 14 cannot capture one in the lambda.)
  for (const auto& entry : t_.owners.refcounts().records()) {
    const uint64_t start = entry.first;
    const auto& rec = entry.second;
    t_.owners.rmap().for_each_count(start, rec.length, [&](uint64_t s, uint64_t, uint32_t c) {
      if (ok && c != rec.count) {
        ok = false;
        what = "block " + num(s) + " has refcount record " + num(rec.count) + " but " + num(c) + " mappings";
      }
    });
  }
  t_.owners.rmap().for_each_segment([&](uint64_t start, uint64_t length, const std::vector<RmapOwner>& owners) {
    if (ok && owners.size() >= 2) {
      for (uint64_t b = start; b < start + length && ok;) {
        auto it = t_.owners.refcounts().records().upper_bound(b);
        if (it == t_.owners.refcounts().records().begin() || std::prev(it)->first + std::prev(it)->second.length <= b) {
          ok = false;
          what = "block " + num(b) + " is shared without a refcount record";
          break;
        }
        --it;
        b = it->first + it->second.length;
      }
    }
  });
  if (!ok) return corrupt(what);
  return {};
}

// The namespace invariants an operation relies on (a wrong link count would let an unlink free
// an inode another entry still names; a parent loop would hang rename): every entry names a
// live inode of the type it says; a directory has exactly one entry, in the directory its
// parent pointer names; link counts match; everything live is reachable from the root.
Status Loader::check_namespace() {
  std::unordered_map<uint64_t, uint32_t> refs;
  for (auto& [ino, in] : t_.inodes) {
    if (!in->is_dir()) continue;
    for (const DirSlot& s : in->slots) {
      if (s.ino == 0) continue;
      std::string where = "directory " + std::to_string(ino) + " entry '" + s.name + "'";
      auto t = t_.inodes.find(s.ino);
      if (t == t_.inodes.end() || t->second->d.nlink == 0) {
        const char* bad = ondisk::ino_error(s.ino, area_);
        return corrupt(where + (bad ? " names inode " + num(s.ino) + ", which " + bad : " names a free inode"));
      }
      const Inode& target = *t->second;
      if (s.type != ((target.d.mode >> 12) & 15)) return corrupt(where + " has the wrong file type");
      if (target.is_dir()) {
        in->subdirs++;
        if (s.ino == t_.root || target.d.parent != ino) return corrupt(where + " disagrees with its parent pointer");
      }
      refs[s.ino]++;
    }
  }
  Inode& root = *t_.inodes.at(t_.root);
  if (root.d.parent != t_.root) return corrupt("the root directory's parent is not itself");
  for (auto& [ino, in] : t_.inodes) {
    uint32_t r = refs[ino];
    std::string who = "inode " + std::to_string(ino);
    if (in->d.nlink == 0) {
      if (r != 0) return corrupt(who + " has link count 0 but is named");
      continue;  // an orphan: freed below
    }
    if (in->is_dir()) {
      if (ino != t_.root && r != 1) return corrupt(who + " is a directory with " + std::to_string(r) + " names");
      if (in->d.nlink != 2 + in->subdirs) return corrupt(who + " has a wrong link count");
    } else if (in->d.nlink != r) {
      return corrupt(who + " has link count " + std::to_string(in->d.nlink) + " but " + std::to_string(r) + " names");
    }
  }
  // Reachability: a disconnected cycle of directories would satisfy every count above.
  std::vector<uint64_t> stack{t_.root};
  size_t reached = 0;
  std::unordered_map<uint64_t, bool> seen{{t_.root, true}};
  while (!stack.empty()) {
    Inode& d = *t_.inodes.at(stack.back());
    stack.pop_back();
    reached++;
    for (const DirSlot& s : d.slots)
      if (s.ino && !seen[s.ino]) {
        seen[s.ino] = true;
        if (t_.inodes.at(s.ino)->is_dir()) stack.push_back(s.ino);
        else reached++;
      }
  }
  size_t live = 0;
  for (auto& [ino, in] : t_.inodes) live += in->d.nlink != 0;
  if (reached != live) return corrupt(std::to_string(live - reached) + " inodes are not reachable from the root");
  return {};
}

}  // namespace daxfs::fs

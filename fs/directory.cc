// Directory entries (fs/directory.h): slots and the name index in memory, dirents on media.
#include "fs/directory.h"

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <string>

#include "fs/ondisk/codec.h"

namespace daxfs::fs {

namespace {
uint8_t dtype(uint32_t mode) { return static_cast<uint8_t>((mode >> 12) & 15); }
}  // namespace

// The name rule the mount and fsck.daxfs read entries by (fs/ondisk/codec.h), as errnos.
Status Directory::check_name(std::string_view name) {
  switch (ondisk::name_error(name)) {
    case ondisk::NameError::kNone: return {};
    case ondisk::NameError::kEmpty: return error(ENOENT);
    case ondisk::NameError::kTooLong: return error(ENAMETOOLONG);
    case ondisk::NameError::kDot: return error(EEXIST);
    case ondisk::NameError::kBadByte: return error(EINVAL);
  }
  return error(EINVAL);
}

Status Directory::add_locked(Txn& txn, Inode& dir, std::string_view name, const Inode& target) {
  if (dir.free_slots.empty()) {
    uint32_t base = static_cast<uint32_t>(dir.record_blocks.size() * kDirentsPerBlock);
    TRY(emap_.new_record_block_locked(txn, dir, kDirMagic));
    dir.slots.resize(dir.slots.size() + kDirentsPerBlock);
    for (uint32_t i = kDirentsPerBlock; i-- > 0;) dir.free_slots.push_back(base + i);
  }
  uint32_t index = dir.free_slots.back();
  dir.free_slots.pop_back();
  dir.slots[index] = DirSlot{target.ino, dtype(target.d.mode), std::string(name)};
  dir.names.emplace(std::string(name), index);
  RecordLoc loc = dir.dirent_loc(index);
  DiskDirent de{};
  de.ino = target.ino;
  de.type = dtype(target.d.mode);
  de.name_length = static_cast<uint8_t>(name.size());
  memcpy(de.name, name.data(), name.size());
  uint64_t off = loc.block * kBlockSize + sizeof(RecordBlockHeader) + loc.slot * sizeof(DiskDirent);
  txn.write(off, &de, static_cast<uint32_t>(offsetof(DiskDirent, name) + name.size()));
  return {};
}

void Directory::remove_locked(Txn& txn, Inode& dir, std::string_view name) {
  auto it = dir.names.find(std::string(name));
  if (it == dir.names.end()) abort();  // callers looked it up under the same lock
  uint32_t index = it->second;
  dir.names.erase(it);
  dir.slots[index] = DirSlot{};
  dir.free_slots.push_back(index);
  RecordLoc loc = dir.dirent_loc(index);
  uint64_t zero = 0;
  txn.write(loc.block * kBlockSize + sizeof(RecordBlockHeader) + loc.slot * sizeof(DiskDirent), &zero, sizeof zero);
}

void Directory::set_locked(Txn& txn, Inode& dir, std::string_view name, const Inode& target) {
  uint32_t index = dir.names.at(std::string(name));
  dir.slots[index].ino = target.ino;
  dir.slots[index].type = dtype(target.d.mode);
  RecordLoc loc = dir.dirent_loc(index);
  struct {
    uint64_t ino;
    uint8_t type;
  } __attribute__((packed)) rec{target.ino, dtype(target.d.mode)};
  txn.write(loc.block * kBlockSize + sizeof(RecordBlockHeader) + loc.slot * sizeof(DiskDirent), &rec, sizeof rec);
}

}  // namespace daxfs::fs

// format(): writes a new, empty daxfs onto a device (mkfs.daxfs).
// Persist order: superblock magic cleared first, then journal, inode chunk and root inode, and
// the superblock last, so a crash mid-format leaves a device that no mount accepts. A format that
// fails returns before its first store.
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>

#include "fs/filesystem.h"

namespace daxfs::fs {

Status format(pmemdev::Device& device, const FormatOptions& opts) {
  if (device.size() < kMinDeviceSize) return error(ENOSPC);
  if (opts.label.size() >= sizeof(SuperBlock::label)) return error(ENAMETOOLONG);
  // Everything that can fail comes before the first store: a refused format leaves the device
  // as it was.
  SuperBlock sb{};
  if (getrandom(sb.uuid, sizeof sb.uuid, 0) != sizeof sb.uuid) return error(EIO);
  uint64_t block_count = device.size() / kBlockSize;
  uint64_t zero = 0;
  device.memcpy_persist(offsetof(SuperBlock, magic), &zero, sizeof zero);  // invalidate an old filesystem first

  sb.magic = kSuperMagic;
  sb.version = kFormatVersion;
  sb.block_size = kBlockSize;
  sb.features = opts.reflink ? kFeatureReflink : 0;
  sb.block_count = block_count;
  sb.journal_start = 1;
  sb.journal_blocks = std::min<uint64_t>(1024, block_count / 16);
  uint64_t chunk = sb.journal_start + sb.journal_blocks;
  sb.first_chunk = chunk;
  sb.root_ino = make_ino(chunk, 1);
  sb.next_generation = 2;
  sb.clean = 1;
  memcpy(sb.label, opts.label.data(), opts.label.size());
  timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  sb.created_sec = static_cast<uint64_t>(now.tv_sec);

  Journal journal(device, sb.journal_start, sb.journal_blocks);
  journal.format();

  char block[kBlockSize] = {};
  ChunkHeader ch{};
  ch.magic = kChunkMagic;
  ch.next = 0;
  memcpy(block, &ch, sizeof ch);
  DiskInode root{};
  root.mode = S_IFDIR | 0755;
  root.uid = getuid();
  root.gid = getgid();
  root.nlink = 2;
  root.generation = 1;
  root.parent = sb.root_ino;
  Timespec ts{now.tv_sec, static_cast<uint32_t>(now.tv_nsec), 0};
  root.atime = root.mtime = root.ctime = root.btime = ts;
  memcpy(block + kInodeSize, &root, sizeof root);
  device.memcpy_persist(chunk * kBlockSize, block, sizeof block);  // chunk before the sb

  device.memcpy_persist(0, &sb, sizeof sb);  // the superblock last: the format's commit point
  return {};
}

}  // namespace daxfs::fs

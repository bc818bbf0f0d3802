// The superblock's geometry (block size, block count, the journal's start and size), decided on
// the evidence rather than taken from the fields: one flipped field must never make fsck cut away
// the metadata it no longer covers. Pure functions of an Image; no thread-safety concerns.
#pragma once

#include <string>
#include <vector>

#include "fs/format.h"
#include "fs/fsck/image.h"
#include "fs/fsck/problem.h"

namespace daxfs::fsck {

struct GeometryDecision {
  // `media` with the geometry fields decided (always possible by fs::geometry_error()'s rule
  // when `unrepairable` is empty).
  fs::SuperBlock sb{};
  // One "superblock" problem per corrected field; the superblock must be rewritten when this is
  // not empty.
  std::vector<Problem> problems;
  // Non-empty when no geometry can be repaired to: a device smaller than any daxfs, or truncated
  // below the metadata it holds. Says why and what to do (fsck exits 4, writing nothing).
  std::string unrepairable;
};

// Decides the geometry of `media` (the superblock on `image`, magic, version and features already
// accepted). A geometry that is exactly what mkfs.daxfs writes for this device is taken as it is.
// Otherwise every possible geometry the evidence suggests (the device's size, the fields, the
// journal mkfs.daxfs sizes for a block count, the oldest inode chunk's position right after the
// journal) is checked, and the one under which the most inodes are reached from the root, then
// the most data is kept, then the fewest errors are found, then whose block count the journal's
// size speaks for, then the fewest fields change, then whose journal ends where the oldest chunk
// begins, wins. So a geometry a mount accepts is kept unless another loses less or the journal
// contradicts its block count (a journal smaller than mkfs.daxfs makes, and a filesystem smaller
// than a device grown after mkfs, are legal).
GeometryDecision decide_geometry(const Image& image, const fs::SuperBlock& media);

// The journal mkfs.daxfs (fs/mkfs.cc) makes for a filesystem of `block_count` blocks.
inline uint64_t mkfs_journal_blocks(uint64_t block_count) {
  return block_count / 16 < 1024 ? block_count / 16 : 1024;
}

}  // namespace daxfs::fsck

// The superblock and the journal, checked before anything else: they decide whether there is a
// daxfs to check at all (exit 8 when not), where the journal is, and what a mount would replay.
// Pure functions over an Image; no thread-safety concerns.
#pragma once

#include <string>
#include <vector>

#include "fs/format.h"
#include "fs/fsck/image.h"
#include "fs/fsck/problem.h"

namespace daxfs::fsck {

struct SuperCheck {
  // The superblock as on the media, with every field fsck can correct corrected.
  fs::SuperBlock sb{};
  // One per corrected field; the superblock must be rewritten when this is not empty.
  std::vector<Problem> problems;
  // Not a daxfs fsck can check (wrong magic, newer version, unknown features, no superblock):
  // the reason, for an exit 8. Empty otherwise.
  std::string fatal;
  // A daxfs whose geometry cannot be repaired (a device smaller than any daxfs, or truncated
  // below its metadata): why, and what to do, for an exit 4 with nothing written. Empty otherwise.
  std::string unrepairable;
};

// Validates magic, version and features, then decides the geometry (block size, block count, the
// journal's place and size) on the evidence (geometry.h). The inode chunk chain and the root are
// the checker's business.
SuperCheck check_superblock(const Image& image);

enum class JournalState {
  kEmpty,      // nothing to replay
  kTorn,       // a commit record that was never completed (bad checksum): a mount discards it
  kCommitted,  // a committed transaction a mount would replay
  kCorrupt,    // a checksummed transaction with an impossible entry: a mount refuses the device
};

struct JournalScan {
  JournalState state = JournalState::kEmpty;
  uint64_t entries = 0;
  std::string why;  // kCorrupt: what is wrong
};

// Looks at the journal as Journal::recover() would, without changing anything.
JournalScan scan_journal(const Image& image, const fs::SuperBlock& sb);
// Applies a kCommitted transaction to the image's private overlay (fsck -n sees the state a
// mount would see, and the media stays untouched). false if the journal is not kCommitted.
bool replay_into_overlay(Image& image, const fs::SuperBlock& sb);

}  // namespace daxfs::fsck

// Printing a fsck Report: one line per problem and a summary line, or one JSON document.
// Pure functions; no thread-safety concerns.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "fs/fsck/fsck.h"

namespace daxfs::fsck {

// Lines ending in '\n': "DEVICE: inode N: KIND: DETAIL [fixed]" per problem, then the summary.
std::string format_text(const Report& report);
// {"device", "mode", "clean", "exit", "problems": [{"kind", "inode", "detail", "severity",
//  "repaired"}], "inodes", "directories", "files", "symlinks", "special", "block_count",
//  "used_blocks", "free_blocks", "shared_blocks", "refcount_records", "shared": [{"start",
//  "length", "count", "owners"}], "shared_truncated", "passes", "modified", "error" (only on an
//  exit 8)}.
nlohmann::json to_json(const Report& report);

}  // namespace daxfs::fsck

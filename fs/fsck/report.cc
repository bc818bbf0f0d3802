// Text and JSON renderings of a fsck Report (see report.h).
#include "fs/fsck/report.h"

#include <sstream>

namespace daxfs::fsck {

namespace {
const char* status(const Report& r, const Problem& p) {
  bool info = p.severity == Severity::kInfo;
  if (p.repaired) return "fixed";
  if (!p.fixable) return info ? "info" : "NOT FIXED: fsck.daxfs cannot repair this";
  if (r.mode == Mode::kCheck)
    return info ? "info; not done: checking only" : "not done: checking only; run fsck.daxfs -y";
  return info ? "info; NOT DONE" : "NOT FIXED";
}
}  // namespace

std::string format_text(const Report& r) {
  std::ostringstream out;
  for (const Problem& p : r.problems) {
    out << r.device << ": ";
    if (p.ino != 0) out << "inode " << p.ino << ": ";
    out << p.kind << ": " << p.detail << " [" << status(r, p) << "]\n";
  }
  if (!r.error.empty()) return out.str();  // the caller prints the one-line error
  const Stats& s = r.stats;
  size_t fixed = 0, left = 0;
  for (const Problem& p : r.problems) {
    if (p.repaired)
      fixed++;
    else if (p.severity == Severity::kError)
      left++;
  }
  if (r.passes == 0) {  // stopped at the superblock: there are no counts to show
    out << r.device << ": not checked further: " << left << " error" << (left == 1 ? "" : "s")
        << " left uncorrected\n";
    return out.str();
  }
  out << r.device << ": " << s.inodes << " inodes (" << s.directories << " directories, " << s.files << " files, "
      << s.symlinks << " symlinks, " << s.special << " special), " << s.used_blocks << "/" << s.block_count
      << " blocks used";
  if (s.shared_blocks > 0 || s.refcount_records > 0)
    out << " (" << s.shared_blocks << " shared, " << s.refcount_records << " refcount record"
        << (s.refcount_records == 1 ? "" : "s") << ")";
  out << ": ";
  if (left > 0)
    out << left << " error" << (left == 1 ? "" : "s") << " left uncorrected";
  else if (fixed > 0)
    out << fixed << " problem" << (fixed == 1 ? "" : "s") << " fixed";
  else
    out << "clean";
  out << "\n";
  return out.str();
}

nlohmann::json to_json(const Report& r) {
  nlohmann::json j;
  j["device"] = r.device;
  j["mode"] = r.mode == Mode::kRepair ? "repair" : "check";
  j["clean"] = r.clean;
  j["exit"] = r.exit_code;
  nlohmann::json problems = nlohmann::json::array();
  for (const Problem& p : r.problems) {
    problems.push_back({{"kind", p.kind},
                        {"inode", p.ino},
                        {"detail", p.detail},
                        {"severity", p.severity == Severity::kError ? "error" : "info"},
                        {"repaired", p.repaired}});
  }
  j["problems"] = std::move(problems);
  j["inodes"] = r.stats.inodes;
  j["directories"] = r.stats.directories;
  j["files"] = r.stats.files;
  j["symlinks"] = r.stats.symlinks;
  j["special"] = r.stats.special;
  j["block_count"] = r.stats.block_count;
  j["used_blocks"] = r.stats.used_blocks;
  j["free_blocks"] = r.stats.free_blocks;
  j["shared_blocks"] = r.stats.shared_blocks;
  j["refcount_records"] = r.stats.refcount_records;
  nlohmann::json shared = nlohmann::json::array();
  for (const SharedRange& sr : r.stats.shared)
    shared.push_back({{"start", sr.start}, {"length", sr.length}, {"count", sr.owners.size()}, {"owners", sr.owners}});
  j["shared"] = std::move(shared);
  j["shared_truncated"] = r.stats.shared_truncated;
  j["passes"] = r.passes;
  j["modified"] = r.modified;
  if (!r.error.empty()) j["error"] = r.error;
  return j;
}

}  // namespace daxfs::fsck

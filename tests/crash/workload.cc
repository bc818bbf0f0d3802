// Workload parsing, running and snapshots for the crash-state explorer (workload.h).
#include "tests/crash/workload.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/stat.h>

#include <cstring>
#include <functional>
#include <random>
#include <sstream>

#include "daxcore/daxfs_ioctl.h"

namespace daxfs::crash {

namespace {

// Verb -> number of arguments after it (min, max).
struct Verb {
  const char* name;
  size_t min, max;
};
constexpr Verb kVerbs[] = {
    {"mkdir", 1, 1},    {"rmdir", 1, 1},       {"create", 1, 1},      {"write", 3, 4},
    {"truncate", 2, 2}, {"rename", 2, 3},      {"link", 2, 2},        {"unlink", 1, 1},
    {"symlink", 2, 2},  {"open", 1, 1},        {"close", 1, 1},       {"fallocate", 3, 4},
    {"clone", 2, 5},    {"dedupe", 5, 5},      {"unshare", 3, 3},     {"copy", 5, 5},
    {"dax-store", 3, 4}, {"setxattr", 3, 3},   {"removexattr", 2, 2}, {"setacl", 2, 2},
    {"chmod", 2, 2},    {"fsync", 1, 1},       {"fdatasync", 1, 1},
};

uint64_t number(const std::string& s) { return std::stoull(s, nullptr, 0); }

// "u::rw-,u:1000:r--,g::r--,m::rwx,o::---" -> the system.posix_acl_access value (Linux's
// posix_acl_xattr format: version 2, then {tag, perm, id} entries).
Result<std::string> acl_value(const std::string& spec) {
  std::string out;
  auto put32 = [&](uint32_t v) { out.append(reinterpret_cast<const char*>(&v), 4); };
  auto put16 = [&](uint16_t v) { out.append(reinterpret_cast<const char*>(&v), 2); };
  put32(2);
  std::stringstream in(spec);
  std::string entry;
  while (std::getline(in, entry, ',')) {
    size_t a = entry.find(':'), b = entry.rfind(':');
    if (a == std::string::npos || a == b || entry.size() - b != 4) return error(EINVAL);
    std::string tag = entry.substr(0, a), id = entry.substr(a + 1, b - a - 1), perm = entry.substr(b + 1);
    uint16_t p = (perm[0] == 'r' ? 4 : 0) | (perm[1] == 'w' ? 2 : 0) | (perm[2] == 'x' ? 1 : 0);
    uint16_t t = tag == "u" ? (id.empty() ? 0x01 : 0x02) : tag == "g" ? (id.empty() ? 0x04 : 0x08)
                 : tag == "m" ? 0x10 : tag == "o" ? 0x20 : 0;
    if (t == 0) return error(EINVAL);
    put16(t);
    put16(p);
    put32(id.empty() ? UINT32_MAX : static_cast<uint32_t>(std::stoul(id)));
  }
  return out;
}

}  // namespace

std::string pattern(uint64_t seed, uint64_t offset, uint64_t length) {
  std::string out(length, '\0');
  for (uint64_t i = 0; i < length; i++) {
    uint64_t x = (seed + 1) * 0x9e3779b97f4a7c15ULL ^ ((offset + i) / 8) * 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 29;
    out[i] = static_cast<char>((x >> (8 * ((offset + i) % 8))) | 1);  // never a zero byte
  }
  return out;
}

Result<std::vector<Op>> parse_workload(const std::string& text, std::string& why) {
  std::vector<Op> ops;
  std::stringstream in(text);
  std::string line;
  for (int n = 1; std::getline(in, line); n++) {
    if (size_t hash = line.find('#'); hash != std::string::npos) line.resize(hash);
    std::stringstream words(line);
    Op op;
    op.line = n;
    for (std::string w; words >> w;) op.args.push_back(w);
    if (op.args.empty()) continue;
    std::string verb = op.args[0][0] == '!' ? op.args[0].substr(1) : op.args[0];
    const Verb* v = nullptr;
    for (const Verb& k : kVerbs)
      if (verb == k.name) v = &k;
    if (!v) {
      why = "line " + std::to_string(n) + ": unknown operation '" + verb + "'";
      return error(EINVAL);
    }
    size_t argc = op.args.size() - 1;
    if (argc < v->min || argc > v->max) {
      why = "line " + std::to_string(n) + ": '" + verb + "' takes " + std::to_string(v->min) +
            (v->max != v->min ? "-" + std::to_string(v->max) : "") + " arguments";
      return error(EINVAL);
    }
    op.text = line.substr(line.find_first_not_of(" \t"));
    while (!op.text.empty() && isspace(static_cast<unsigned char>(op.text.back()))) op.text.pop_back();
    ops.push_back(op);
  }
  return ops;
}

Runner::~Runner() { close_all(); }

void Runner::close_all() {
  for (auto& [path, ino] : open_) fs_.forget(ino, 1);
  open_.clear();
}

Result<uint64_t> Runner::resolve(const std::string& path, bool follow_last) {
  (void)follow_last;  // workloads name files by their paths; symlinks are read, not followed
  if (auto held = open_.find(path); held != open_.end()) return held->second;  // even unlinked
  uint64_t ino = fs_.root_ino();
  std::stringstream in(path);
  for (std::string part; std::getline(in, part, '/');) {
    if (part.empty()) continue;
    auto st = TRY(fs_.lookup(ino, part));
    fs_.forget(st.st_ino, 1);
    ino = st.st_ino;
  }
  return ino;
}

Result<std::pair<uint64_t, std::string>> Runner::parent_of(const std::string& path) {
  size_t slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "" : path.substr(0, slash);
  std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  return std::make_pair(TRY(resolve(dir)), name);
}

Status Runner::run(const Op& op, Atomicity& atomicity, std::string& path, std::string& why) {
  atomicity = Atomicity::kAll;
  const std::string verb = op.args[0][0] == '!' ? op.args[0].substr(1) : op.args[0];
  const auto& a = op.args;
  path = a.size() > 1 ? a[1] : "";
  auto fail = [&](int err, const std::string& what) -> Status {
    why = what + ": " + strerror(err);
    return error(err);
  };
#define STEP(expr)                                             \
  do {                                                         \
    auto _r = (expr);                                          \
    if (!_r) return fail(_r.error(), #expr);                   \
  } while (0)
  fs::Cred cred{0, 0, 022};
  if (verb == "mkdir") {
    auto [dir, name] = TRY(parent_of(a[1]));
    STEP(fs_.mkdir(dir, name, 0755, cred));
  } else if (verb == "rmdir") {
    auto [dir, name] = TRY(parent_of(a[1]));
    STEP(fs_.rmdir(dir, name));
  } else if (verb == "create") {
    auto [dir, name] = TRY(parent_of(a[1]));
    auto st = fs_.mknod(dir, name, S_IFREG | 0644, 0, cred);
    if (!st) return fail(st.error(), "mknod");
    fs_.forget(st->st_ino, 1);
  } else if (verb == "write") {
    uint64_t ino = TRY(resolve(a[1]));
    uint64_t off = number(a[2]), len = number(a[3]), seed = a.size() > 4 ? number(a[4]) : op.line;
    // A write into blocks that are all shared is a copy-on-write: all or nothing. Elsewhere it
    // stores in place.
    atomicity = Atomicity::kDataMix;
    auto rows = fs_.fiemap(ino, off, 4096);
    if (rows && !rows->empty()) {
      uint64_t covered = 0;
      bool all_shared = true;
      for (const auto& r : *rows) {
        uint64_t lo = std::max(off, r.logical), hi = std::min(off + len, r.logical + r.length);
        if (hi > lo) covered += hi - lo;
        if (!(r.flags & DAXFS_EXTENT_SHARED)) all_shared = false;
      }
      if (all_shared && covered == len) atomicity = Atomicity::kAll;
    }
    std::string data = pattern(seed, off, len);
    STEP(fs_.write(ino, off, data.data(), data.size()));
  } else if (verb == "truncate") {
    uint64_t ino = TRY(resolve(a[1]));
    fs::SetAttr s;
    s.valid = fs::SetAttr::kSize;
    s.size = number(a[2]);
    atomicity = Atomicity::kDataMix;  // the new last block's tail is zeroed in place
    STEP(fs_.setattr(ino, s));
  } else if (verb == "rename") {
    auto [from_dir, from] = TRY(parent_of(a[1]));
    auto [to_dir, to] = TRY(parent_of(a[2]));
    uint32_t flags = a.size() > 3 ? (a[3] == "noreplace" ? RENAME_NOREPLACE : a[3] == "exchange" ? RENAME_EXCHANGE : ~0u) : 0;
    if (flags == ~0u) return fail(EINVAL, "rename flag");
    STEP(fs_.rename(from_dir, from, to_dir, to, flags));
  } else if (verb == "link") {
    uint64_t ino = TRY(resolve(a[1]));
    auto [dir, name] = TRY(parent_of(a[2]));
    auto st = fs_.link(ino, dir, name);
    if (!st) return fail(st.error(), "link");
    fs_.forget(st->st_ino, 1);
  } else if (verb == "unlink") {
    auto [dir, name] = TRY(parent_of(a[1]));
    STEP(fs_.unlink(dir, name));
  } else if (verb == "symlink") {
    auto [dir, name] = TRY(parent_of(a[2]));
    auto st = fs_.symlink(dir, name, a[1], cred);
    if (!st) return fail(st.error(), "symlink");
    fs_.forget(st->st_ino, 1);
    path = a[2];
  } else if (verb == "open") {
    auto [dir, name] = TRY(parent_of(a[1]));
    auto st = fs_.lookup(dir, name);  // the reference an open file holds
    if (!st) return fail(st.error(), "lookup");
    open_.emplace(a[1], st->st_ino);
  } else if (verb == "close") {
    auto it = open_.find(a[1]);
    if (it == open_.end()) return fail(EBADF, "close of a file the workload did not open");
    uint64_t ino = it->second;
    open_.erase(it);
    fs_.forget(ino, 1);  // an unlinked file is freed here
  } else if (verb == "fallocate") {
    uint64_t ino = TRY(resolve(a[1]));
    int mode = 0;
    if (a.size() > 4) {
      mode = a[4] == "keep-size" ? FALLOC_FL_KEEP_SIZE
             : a[4] == "punch"   ? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
             : a[4] == "zero"    ? FALLOC_FL_ZERO_RANGE
             : a[4] == "collapse" ? FALLOC_FL_COLLAPSE_RANGE
             : a[4] == "insert"  ? FALLOC_FL_INSERT_RANGE
                                 : -1;
      if (mode < 0) return fail(EINVAL, "fallocate mode");
      // Partial blocks at the ends of a punch or zero are zeroed in place.
      if (a[4] == "punch" || a[4] == "zero") atomicity = Atomicity::kDataMix;
    }
    STEP(fs_.fallocate(ino, mode, number(a[2]), number(a[3])));
  } else if (verb == "clone") {
    uint64_t src = TRY(resolve(a[1]));
    Result<uint64_t> dst = resolve(a[2]);  // created first, as cp --reflink does (two calls)
    if (!dst) return fail(dst.error(), "resolve " + a[2]);
    path = a[2];
    uint64_t so = 0, dof = 0, len;
    if (a.size() == 6) {
      so = number(a[3]), dof = number(a[4]), len = number(a[5]);
    } else if (a.size() == 3) {
      auto st = TRY(fs_.getattr(src));
      len = static_cast<uint64_t>(st.st_size);
    } else {
      return fail(EINVAL, "clone takes SRC DST or SRC DST SRC_OFF DST_OFF LEN");
    }
    STEP(fs_.clone_range(src, so, *dst, dof, len));
  } else if (verb == "dedupe") {
    uint64_t src = TRY(resolve(a[1])), dst = TRY(resolve(a[3]));
    path = a[3];
    STEP(fs_.dedupe_range(src, number(a[2]), dst, number(a[4]), number(a[5])));
  } else if (verb == "unshare") {
    uint64_t ino = TRY(resolve(a[1]));
    STEP(fs_.unshare_range(ino, number(a[2]), number(a[3])));
  } else if (verb == "copy") {
    uint64_t src = TRY(resolve(a[1])), dst = TRY(resolve(a[3]));
    path = a[3];
    atomicity = Atomicity::kDataMix;
    STEP(fs_.copy_range(src, number(a[2]), dst, number(a[4]), number(a[5])));
  } else if (verb == "dax-store") {
    // A process's stores through a DAX mapping, then its flush (pmem_persist): the write fault
    // (iomap_begin with kIomapFault | kIomapWrite: blocks allocated, converted or copied in one
    // transaction), the stores straight into the device, the flush and fence.
    uint64_t ino = TRY(resolve(a[1]));
    uint64_t off = number(a[2]), len = number(a[3]), seed = a.size() > 4 ? number(a[4]) : op.line;
    atomicity = Atomicity::kDataMix;
    std::string data = pattern(seed, off, len);
    for (uint64_t pos = off; pos < off + len;) {
      uint64_t page = pos & ~uint64_t{4095};
      uint64_t page_end = std::min<uint64_t>((off + len + 4095) & ~uint64_t{4095}, page + (2u << 20));
      auto got = fs_.iomap_begin(ino, page, page_end - page, dax::kIomapFault | dax::kIomapWrite);
      if (!got) return fail(got.error(), "iomap_begin(fault|write)");
      const dax::Iomap& m = got->map;
      if (m.type != dax::IomapType::kMapped) return fail(EIO, "a write fault that did not map");
      uint64_t end = std::min(off + len, m.offset + m.length);
      dev_.memcpy_noflush(m.address + (pos - m.offset), data.data() + (pos - off), end - pos);
      dev_.flush(m.address + (pos - m.offset), end - pos);
      (void)fs_.iomap_end(ino, m, m.length, dax::kIomapFault | dax::kIomapWrite);
      pos = end;
    }
    dev_.drain();
  } else if (verb == "setxattr") {
    uint64_t ino = TRY(resolve(a[1]));
    STEP(fs_.setxattr(ino, a[2], a[3], 0));
  } else if (verb == "removexattr") {
    uint64_t ino = TRY(resolve(a[1]));
    STEP(fs_.removexattr(ino, a[2]));
  } else if (verb == "setacl") {
    uint64_t ino = TRY(resolve(a[1]));
    auto value = acl_value(a[2]);
    if (!value) return fail(EINVAL, "ACL spec (u::rw-,u:1000:r--,g::r--,m::rw-,o::---)");
    STEP(fs_.setxattr(ino, "system.posix_acl_access", *value, 0));
  } else if (verb == "chmod") {
    uint64_t ino = TRY(resolve(a[1]));
    fs::SetAttr s;
    s.valid = fs::SetAttr::kMode;
    s.mode = static_cast<uint32_t>(std::stoul(a[2], nullptr, 8));
    STEP(fs_.setattr(ino, s));
  } else if (verb == "fsync" || verb == "fdatasync") {
    // Every operation is durable when it returns (docs/interface.md), so the daemon's fsync has
    // nothing to write: the explorer checks exactly that, at every crash point after this line.
    TRY(resolve(a[1]));
  }
#undef STEP
  return {};
}

Result<Snapshot> snapshot(fs::Filesystem& fs, std::string& why) {
  Snapshot out;
  std::function<Status(uint64_t, const std::string&, int)> walk = [&](uint64_t ino, const std::string& path,
                                                                      int depth) -> Status {
    if (depth > 64) {
      why = path + ": directory loop";
      return error(ELOOP);
    }
    auto st = fs.getattr(ino);
    if (!st) {
      why = path + ": getattr: " + strerror(st.error());
      return error(st.error());
    }
    Node n;
    n.mode = st->st_mode, n.uid = st->st_uid, n.gid = st->st_gid;
    n.size = S_ISDIR(st->st_mode) ? 0 : static_cast<uint64_t>(st->st_size);
    n.nlink = st->st_nlink, n.blocks = S_ISDIR(st->st_mode) ? 0 : static_cast<uint64_t>(st->st_blocks);
    if (S_ISREG(st->st_mode)) {
      n.data.resize(n.size);
      for (uint64_t pos = 0; pos < n.size;) {
        auto got = fs.read(ino, pos, std::min<uint64_t>(n.size - pos, 1 << 20), n.data.data() + pos);
        if (!got || *got == 0) {
          why = path + ": read: " + (got ? "short" : strerror(got.error()));
          return error(got ? EIO : got.error());
        }
        pos += *got;
      }
    } else if (S_ISLNK(st->st_mode)) {
      auto target = fs.readlink(ino);
      if (!target) {
        why = path + ": readlink: " + strerror(target.error());
        return error(target.error());
      }
      n.data = *target;
    }
    auto names = fs.listxattr(ino);
    if (!names) {
      why = path + ": listxattr: " + strerror(names.error());
      return error(names.error());
    }
    for (size_t p = 0; p < names->size();) {
      std::string name(names->c_str() + p);
      p += name.size() + 1;
      auto v = fs.getxattr(ino, name);
      if (!v) {
        why = path + ": getxattr " + name + ": " + strerror(v.error());
        return error(v.error());
      }
      n.xattrs[name] = *v;
    }
    out[path] = n;
    if (!S_ISDIR(st->st_mode)) return {};
    std::vector<std::pair<std::string, uint64_t>> children;
    Status listed = fs.readdir(ino, 0, [&](const fs::DirEntry& e) {
      if (e.name != "." && e.name != "..") children.emplace_back(std::string(e.name), e.ino);
      return true;
    });
    if (!listed) {
      why = path + ": readdir: " + strerror(listed.error());
      return listed;
    }
    for (auto& [name, child] : children) TRY(walk(child, (path == "/" ? "" : path) + "/" + name, depth + 1));
    return {};
  };
  TRY(walk(fs.root_ino(), "/", 0));
  return out;
}

}  // namespace daxfs::crash

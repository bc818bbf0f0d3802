// The load test's file worker: I/O, namespace, xattr, reflink, copy_file_range and dedupe
// operations on its own directory, each checked against an in-memory model (names -> inodes,
// hard links sharing one inode), reading files back as it goes and all of them at the end.
// Single-threaded; one per process.
#include <dirent.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include <chrono>
#include <cstring>
#include <iostream>
#include <memory>
#include <set>

#include "tests/load/workers.h"

namespace daxfs::load {
namespace {

constexpr size_t kMaxSize = 256 * 1024;  // bytes per file: keeps the model and the device small
constexpr size_t kMaxFiles = 14;
constexpr size_t kMaxDirs = 4;
constexpr uint64_t kBlock = 4096;

struct Inode {
  std::string data;
  std::map<std::string, std::string> xattrs;
};

class FilesWorker : WorkerBase {
 public:
  explicit FilesWorker(const WorkerOptions& o) : WorkerBase(o, "") {}

  int run() {
    if (mkdir(o_.dir.c_str(), 0755) != 0) fail("mkdir", o_.dir, errno);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(o_.seconds);
    while (!stop_ && std::chrono::steady_clock::now() < deadline) step();
    if (!stop_) verify_all();
    return write_report(o_.report, tally_) ? 0 : 1;
  }

 private:
  std::string path(const std::string& name) const { return o_.dir + "/" + name; }

  // " (N links: a b ...)": the model's names of `name`'s inode, for the history.
  std::string links_of(const std::string& name) {
    std::string all;
    size_t n = 0;
    for (const auto& [other, i] : names_)
      if (i == names_[name]) all += " " + other, n++;
    return " (" + std::to_string(n) + " links:" + all + ")";
  }

  // The kernel's stale link count (docs/reliability.md, "The kernel's cached link count"): link(2)
  // said ENOENT, which vfs_link answers by itself, without asking the daemon, when the inode's
  // cached i_nlink is 0. When that cache says 0 while the daemon says the file has links, and the
  // link works once a statx(AT_STATX_FORCE_SYNC) has refreshed the cache, the filesystem was
  // right and the kernel's copy was not: an expected error, counted and printed. Anything else
  // (the daemon saying 0, or the retry failing) stays a failure.
  bool stale_link_count(const std::string& from, const std::string& to) {
    struct statx cached, fresh;
    if (statx(AT_FDCWD, path(from).c_str(), AT_SYMLINK_NOFOLLOW | AT_STATX_DONT_SYNC, STATX_NLINK, &cached) != 0 ||
        cached.stx_nlink != 0)
      return false;
    if (statx(AT_FDCWD, path(from).c_str(), AT_SYMLINK_NOFOLLOW | AT_STATX_FORCE_SYNC, STATX_NLINK, &fresh) != 0 ||
        fresh.stx_nlink == 0)
      return false;
    if (link(path(from).c_str(), path(to).c_str()) != 0) return false;
    std::cerr << "load: worker " << o_.id << ": link " << from << " -> " << to
              << ": ENOENT from the kernel's cached link count 0 (the daemon's: " << fresh.stx_nlink
              << "); linked once the cache was refreshed (expected: docs/reliability.md)\n";
    tally_.expected["kernel-stale-nlink"]++;
    return true;
  }

  // A failed rename, link or unlink, with what the mount says of the names involved: first the
  // kernel's cached link count (statx AT_STATX_DONT_SYNC: no round trip; vfs_link refuses an
  // inode whose cached count is 0 with ENOENT before asking the daemon), then the daemon's
  // (statx AT_STATX_FORCE_SYNC), and for link whether a retry works.
  void fail_namespace(const char* op, const std::string& from, const std::string& to, int e) {
    std::string seen;
    for (const std::string& n : {from, to}) {
      if (n.empty()) continue;
      struct statx cached, fresh;
      if (statx(AT_FDCWD, path(n).c_str(), AT_SYMLINK_NOFOLLOW | AT_STATX_DONT_SYNC, STATX_INO | STATX_NLINK, &cached) != 0) {
        seen += "; " + n + ": " + strerror(errno);
        continue;
      }
      seen += "; " + n + ": inode " + std::to_string(cached.stx_ino) + ", cached " + std::to_string(cached.stx_nlink) + " links";
      if (statx(AT_FDCWD, path(n).c_str(), AT_SYMLINK_NOFOLLOW | AT_STATX_FORCE_SYNC, STATX_INO | STATX_NLINK, &fresh) == 0)
        seen += ", daemon " + std::to_string(fresh.stx_nlink);
    }
    if (std::string(op) == "link") {
      int retry = link(path(from).c_str(), path(to).c_str()) == 0 ? 0 : errno;
      seen += std::string("; a second link: ") + (retry ? strerror(retry) : "succeeded");
    }
    fail(op, to.empty() ? from : from + " -> " + to, e, std::string(strerror(e)) + seen + (names_.count(from) ? links_of(from) : ""));
  }

  std::string any_name() {
    auto it = names_.begin();
    std::advance(it, static_cast<long>(rng_.below(names_.size())));
    return it->first;
  }
  std::string new_name() {
    std::string parent;
    if (!dirs_.empty() && rng_.chance(50)) {
      auto it = dirs_.begin();
      std::advance(it, static_cast<long>(rng_.below(dirs_.size())));
      parent = *it + "/";
    }
    return parent + "f" + std::to_string(next_++);
  }
  // Two names of different inodes, or false.
  bool two_inodes(std::string& a, std::string& b) {
    if (names_.size() < 2) return false;
    a = any_name();
    b = any_name();
    return names_[a] != names_[b];
  }

  void step() {
    if (names_.empty()) return create();
    uint64_t r = rng_.below(100);
    if (r < 6) return names_.size() < kMaxFiles ? create() : unlink_one();
    if (r < 20) return write_at();
    if (r < 27) return append();
    if (r < 31) return truncate_one();
    if (r < 36) return punch();
    if (r < 39) return preallocate();
    if (r < 44) return rename_one();
    if (r < 47) return names_.size() < kMaxFiles ? link_one() : unlink_one();
    if (r < 52) return unlink_one();
    if (r < 54) return make_dir();
    if (r < 56) return remove_dir();
    if (r < 61) return xattr();
    if (r < 65) return names_.size() < kMaxFiles ? clone_file() : unlink_one();
    if (r < 70) return clone_part();
    if (r < 75) return copy_part();
    if (r < 78) return dedupe();
    if (r < 79) return sync_one();
    return verify(any_name(), "read");
  }

  void create() {
    std::string name = new_name();
    Fd fd(open(path(name).c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644));
    if (!fd.ok()) return fail("create", name, errno);
    auto inode = std::make_shared<Inode>();
    inode->data = rng_.bytes(rng_.below(64 * 1024));
    if (!write_all(fd.fd, inode->data.data(), inode->data.size(), 0)) return fail("create+write", name, errno);
    names_[name] = inode;
    did("create " + name);
    count("create");
  }

  // Stores `bytes` at `offset` of the model (zero-filling a gap).
  static void model_write(Inode& inode, uint64_t offset, const std::string& bytes) {
    if (inode.data.size() < offset + bytes.size()) inode.data.resize(offset + bytes.size(), '\0');
    inode.data.replace(offset, bytes.size(), bytes);
  }

  void write_at() {
    std::string name = any_name();
    Inode& inode = *names_[name];
    uint64_t offset = rng_.below(std::min(inode.data.size() + 16 * 1024, kMaxSize));
    if (rng_.chance(30)) offset &= ~(kBlock - 1);  // often block-aligned: whole-block overwrites
    size_t length = std::min<size_t>(1 + rng_.below(32 * 1024), kMaxSize - offset);
    std::string bytes = rng_.bytes(length);
    Fd fd(open(path(name).c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd.ok() || !write_all(fd.fd, bytes.data(), length, static_cast<off_t>(offset)))
      return fail("write", name, errno);
    bool overwrite = offset + length <= inode.data.size();
    model_write(inode, offset, bytes);
    count(overwrite ? "overwrite" : "write");
  }

  void append() {
    std::string name = any_name();
    Inode& inode = *names_[name];
    if (inode.data.size() >= kMaxSize) return truncate_one();
    std::string bytes = rng_.bytes(std::min<size_t>(1 + rng_.below(16 * 1024), kMaxSize - inode.data.size()));
    Fd fd(open(path(name).c_str(), O_WRONLY | O_APPEND | O_CLOEXEC));
    if (!fd.ok()) return fail("append", name, errno);
    ssize_t n = write(fd.fd, bytes.data(), bytes.size());
    if (n != static_cast<ssize_t>(bytes.size())) return fail("append", name, errno, n >= 0 ? "short write" : "");
    inode.data += bytes;
    count("append");
  }

  void truncate_one() {
    std::string name = any_name();
    uint64_t size = rng_.below(kMaxSize);
    if (truncate(path(name).c_str(), static_cast<off_t>(size)) != 0) return fail("truncate", name, errno);
    names_[name]->data.resize(size, '\0');
    count("truncate");
  }

  void punch() {
    std::string name = any_name();
    Inode& inode = *names_[name];
    uint64_t offset = rng_.below(inode.data.size() + 1), length = 1 + rng_.below(64 * 1024);
    Fd fd(open(path(name).c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd.ok() || fallocate(fd.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                              static_cast<off_t>(length)) != 0)
      return fail("punch", name, errno);
    if (offset < inode.data.size())
      std::fill_n(inode.data.begin() + static_cast<long>(offset), std::min(length, inode.data.size() - offset), '\0');
    count("punch");
  }

  void preallocate() {
    std::string name = any_name();
    Inode& inode = *names_[name];
    uint64_t offset = rng_.below(std::min(inode.data.size() + 16 * 1024, kMaxSize));
    uint64_t length = 1 + rng_.below(std::min<uint64_t>(32 * 1024, kMaxSize - offset));
    bool keep = rng_.chance(50);
    Fd fd(open(path(name).c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd.ok() ||
        fallocate(fd.fd, keep ? FALLOC_FL_KEEP_SIZE : 0, static_cast<off_t>(offset), static_cast<off_t>(length)) != 0)
      return fail("fallocate", name, errno);
    if (!keep && inode.data.size() < offset + length) inode.data.resize(offset + length, '\0');
    count("fallocate");
  }

  void rename_one() {
    std::string from = any_name();
    std::string to = rng_.chance(30) ? any_name() : new_name();
    if (from == to) return;
    if (rename(path(from).c_str(), path(to).c_str()) != 0) return fail_namespace("rename", from, to, errno);
    // Two links of one inode: rename does nothing and both names stay (POSIX).
    if (!names_.count(to) || names_[to] != names_[from]) {
      names_[to] = names_[from];
      names_.erase(from);
    }
    did("rename " + from + " " + to + links_of(to));
    count("rename");
  }

  void link_one() {
    std::string from = any_name(), to = new_name();
    if (link(path(from).c_str(), path(to).c_str()) != 0) {
      int e = errno;
      if (e != ENOENT || !stale_link_count(from, to)) return fail_namespace("link", from, to, e);
    }
    names_[to] = names_[from];
    did("link " + from + " " + to + links_of(to));
    count("link");
  }

  void unlink_one() {
    std::string name = any_name();
    if (unlink(path(name).c_str()) != 0) return fail_namespace("unlink", name, "", errno);
    auto inode = names_[name];
    names_.erase(name);
    for (const auto& [n, i] : names_)
      if (i == inode) return did("unlink " + name + links_of(n)), count("unlink");
    did("unlink " + name + " (the last link)");
    count("unlink");
  }

  void make_dir() {
    if (dirs_.size() >= kMaxDirs) return remove_dir();
    std::string name = "d" + std::to_string(next_++);
    if (mkdir(path(name).c_str(), 0755) != 0) return fail("mkdir", name, errno);
    dirs_.insert(name);
    did("mkdir " + name);
    count("mkdir");
  }

  void remove_dir() {
    if (dirs_.empty()) return make_dir();
    auto it = dirs_.begin();
    std::advance(it, static_cast<long>(rng_.below(dirs_.size())));
    std::string name = *it;
    bool empty = true;
    for (const auto& [n, inode] : names_) empty = empty && n.rfind(name + "/", 0) != 0;
    int rc = rmdir(path(name).c_str());
    int e = errno;
    if (empty ? rc != 0 : (rc == 0 || e != ENOTEMPTY))
      return fail("rmdir", name, rc == 0 ? 0 : e, rc == 0 ? "removed a non-empty directory" : "");
    if (empty) dirs_.erase(name), did("rmdir " + name);
    count(empty ? "rmdir" : "rmdir-notempty");
  }

  void xattr() {
    std::string name = any_name();
    Inode& inode = *names_[name];
    if (!inode.xattrs.empty() && rng_.chance(30)) {
      std::string key = inode.xattrs.begin()->first;
      if (removexattr(path(name).c_str(), key.c_str()) != 0) return fail("removexattr", name, errno);
      inode.xattrs.erase(key);
      return count("removexattr");
    }
    std::string key = "user.k" + std::to_string(rng_.below(4)), value = rng_.bytes(1 + rng_.below(200));
    if (setxattr(path(name).c_str(), key.c_str(), value.data(), value.size(), 0) != 0)
      return fail("setxattr", name, errno);
    inode.xattrs[key] = value;
    count("setxattr");
  }

  // A whole-file reflink to a new name (FICLONE; the copy has no xattrs).
  void clone_file() {
    std::string from = any_name(), to = new_name();
    Fd src(open(path(from).c_str(), O_RDONLY | O_CLOEXEC));
    Fd dst(open(path(to).c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644));
    if (!src.ok() || !dst.ok()) return fail("clone-open", from + " -> " + to, errno);
    auto copy = std::make_shared<Inode>();
    names_[to] = copy;  // created, whatever the clone does
    if (int e = clone_range(src.fd, dst.fd, 0, 0, 0)) return fail("clone", from + " -> " + to, e);
    copy->data = names_[from]->data;
    did("clone " + from + " " + to);
    count("clone");
  }

  // A block-aligned range of one file cloned into another, at or before the destination's EOF.
  void clone_part() {
    std::string from, to;
    if (!two_inodes(from, to)) return write_at();
    Inode &s = *names_[from], &d = *names_[to];
    uint64_t src_blocks = s.data.size() / kBlock;
    if (src_blocks == 0) return write_at();
    uint64_t src_off = rng_.below(src_blocks) * kBlock;
    uint64_t length = (1 + rng_.below(src_blocks - src_off / kBlock)) * kBlock;
    uint64_t dst_off = rng_.below(d.data.size() / kBlock + 1) * kBlock;
    if (dst_off + length > kMaxSize) return punch();
    Fd src(open(path(from).c_str(), O_RDONLY | O_CLOEXEC)), dst(open(path(to).c_str(), O_WRONLY | O_CLOEXEC));
    if (!src.ok() || !dst.ok()) return fail("clone-range-open", from + " -> " + to, errno);
    if (int e = clone_range(src.fd, dst.fd, src_off, length, dst_off)) return fail("clone-range", from + " -> " + to, e);
    model_write(d, dst_off, s.data.substr(src_off, length));
    count("clone-range");
  }

  void copy_part() {
    std::string from, to;
    if (!two_inodes(from, to)) return write_at();
    Inode &s = *names_[from], &d = *names_[to];
    loff_t in = static_cast<loff_t>(rng_.below(s.data.size() + 1));
    loff_t out = static_cast<loff_t>(rng_.below(d.data.size() + 1));
    size_t length = std::min<size_t>(1 + rng_.below(64 * 1024), kMaxSize - static_cast<size_t>(out));
    size_t expect = std::min<size_t>(length, s.data.size() - static_cast<size_t>(in));
    std::string bytes = s.data.substr(static_cast<size_t>(in), expect);
    uint64_t at = static_cast<uint64_t>(out);
    Fd src(open(path(from).c_str(), O_RDONLY | O_CLOEXEC)), dst(open(path(to).c_str(), O_WRONLY | O_CLOEXEC));
    if (!src.ok() || !dst.ok()) return fail("copy-range-open", from + " -> " + to, errno);
    size_t done = 0;
    while (done < length) {
      ssize_t n = copy_file_range(src.fd, &in, dst.fd, &out, length - done, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return fail("copy_file_range", from + " -> " + to, errno);
      if (n == 0) break;
      done += static_cast<size_t>(n);
    }
    if (done != expect)
      return fail("copy_file_range", from + " -> " + to, 0,
                  "copied " + std::to_string(done) + " bytes, expected " + std::to_string(expect));
    model_write(d, at, bytes);
    count("copy-range");
  }

  // Dedupe of block ranges, made equal first half of the time: "differs" must match the model.
  void dedupe() {
    std::string from, to;
    if (!two_inodes(from, to)) return write_at();
    Inode &s = *names_[from], &d = *names_[to];
    uint64_t blocks = std::min(s.data.size(), d.data.size()) / kBlock;
    if (blocks == 0) return write_at();
    uint64_t src_off = rng_.below(blocks) * kBlock, dst_off = rng_.below(blocks) * kBlock;
    uint64_t length = (1 + rng_.below(blocks - std::max(src_off, dst_off) / kBlock)) * kBlock;
    Fd src(open(path(from).c_str(), O_RDONLY | O_CLOEXEC)), dst(open(path(to).c_str(), O_RDWR | O_CLOEXEC));
    if (!src.ok() || !dst.ok()) return fail("dedupe-open", from + " -> " + to, errno);
    if (rng_.chance(50)) {
      std::string same = s.data.substr(src_off, length);
      if (!write_all(dst.fd, same.data(), length, static_cast<off_t>(dst_off))) return fail("write", to, errno);
      model_write(d, dst_off, same);
      count("write");
    }
    bool want_differs = s.data.compare(src_off, length, d.data, dst_off, length) != 0, differs = false;
    if (int e = dedupe_range(src.fd, dst.fd, src_off, length, dst_off, &differs)) return fail("dedupe", from + " -> " + to, e);
    if (differs != want_differs)
      return fail("dedupe", from + " -> " + to, 0, want_differs ? "shared different bytes" : "said equal ranges differ");
    count(differs ? "dedupe-differs" : "dedupe");
  }

  void sync_one() {
    std::string name = any_name();
    Fd fd(open(path(name).c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.ok() || fsync(fd.fd) != 0) return fail("fsync", name, errno);
    count("fsync");
  }

  // Size and bytes (and with `full`, xattrs and the link count) equal to the model.
  void verify(const std::string& name, const char* op, bool full = false) {
    const Inode& inode = *names_[name];
    Fd fd(open(path(name).c_str(), O_RDONLY | O_CLOEXEC));
    struct stat st;
    if (!fd.ok() || fstat(fd.fd, &st) != 0) return fail(op, name, errno);
    std::string got(inode.data.size(), '\0');
    if (static_cast<size_t>(st.st_size) != inode.data.size())
      return fail(op, name, 0, "size " + std::to_string(st.st_size) + ", model " + std::to_string(inode.data.size()));
    if (!read_all(fd.fd, got.data(), got.size(), 0)) return fail(op, name, errno, errno ? "" : "short read");
    if (size_t at = first_difference(got, inode.data); at != std::string::npos)
      return fail(op, name, 0, "differs from the model at byte " + std::to_string(at));
    count(op);
    if (!full) return;
    nlink_t links = 0;
    for (const auto& [n, i] : names_) links += i == names_[name];
    if (st.st_nlink != links)
      return fail(op, name, 0, "link count " + std::to_string(st.st_nlink) + ", model " + std::to_string(links));
    char list[4096];
    ssize_t n = listxattr(path(name).c_str(), list, sizeof list);
    if (n < 0) return fail("listxattr", name, errno);
    std::set<std::string> keys;
    for (ssize_t i = 0; i < n; i += static_cast<ssize_t>(strlen(list + i)) + 1) keys.insert(list + i);
    for (const auto& [key, value] : inode.xattrs) {
      char buf[512];
      ssize_t len = getxattr(path(name).c_str(), key.c_str(), buf, sizeof buf);
      if (len < 0 || std::string(buf, static_cast<size_t>(len)) != value)
        return fail("getxattr", name + " " + key, len < 0 ? errno : 0, len < 0 ? "" : "value differs from the model");
      keys.erase(key);
    }
    if (!keys.empty()) return fail("listxattr", name, 0, "unexpected xattr " + *keys.begin());
  }

  // Every name the model has and nothing else, then every file against the model.
  void verify_all() {
    std::set<std::string> want, got;
    for (const auto& [n, i] : names_) want.insert(n);
    for (const auto& d : dirs_) want.insert(d);
    std::vector<std::string> todo = {""};
    while (!todo.empty() && !stop_) {
      std::string rel = todo.back();
      todo.pop_back();
      DIR* d = opendir((rel.empty() ? o_.dir : path(rel)).c_str());
      if (!d) return fail("opendir", rel, errno);
      while (dirent* e = readdir(d)) {
        std::string n = e->d_name;
        if (n == "." || n == "..") continue;
        std::string full = rel.empty() ? n : rel + "/" + n;
        got.insert(full);
        if (e->d_type == DT_DIR) todo.push_back(full);
      }
      closedir(d);
    }
    if (got != want) return fail("readdir", o_.dir, 0, "the names differ from the model");
    for (const auto& [n, i] : names_)
      if (!stop_) verify(n, "final-verify", true);
  }

  uint64_t next_ = 0;
  std::map<std::string, std::shared_ptr<Inode>> names_;
  std::set<std::string> dirs_;
};

}  // namespace

int run_files_worker(const WorkerOptions& options) { return FilesWorker(options).run(); }

}  // namespace daxfs::load

// libFuzzer harness "image": damaged filesystem images through fsck.daxfs (the fs/fsck library,
// check and repair) and the in-process mount (Filesystem::mount, as tests/fs do). Whatever the
// damage: never a crash, hang or out-of-bounds access; always a clear error or a repair.
//
// A device is at least 16 MiB, almost all of it data nobody reads, so the input is not an image
// but a list of patches to one of two templates made once per process (template_image.h):
//   0  mkfs + a populated tree: nested directories (one over a dirent block), small, sparse,
//      fragmented (two extent-record blocks) and fallocated (unwritten) files, hard links,
//      reflinks (a refcount chain), short and long symlinks, a fifo, small and large xattrs
//      (an xattr blob of several blocks);
//   1  the same, then one more operation whose commit stopped after its commit record (as if the
//      daemon died there): a committed journal transaction the mount and fsck must replay.
// Input: u8 template (bit 0), then patches until the input ends, each
//   u8 kind | u8 block | u16 offset | payload
// `block` picks one of the template's metadata blocks (superblock, journal blocks in use, inode
// chunks, extent-map, directory, symlink, xattr and refcount blocks, from its fsmap), or 255 and
// a u16: any block of the device. Kinds: raw bytes (u8 length, bytes), a 64- or 32-bit word of a
// chosen class (0, ~0, a block or inode number that exists, the old value plus or minus a little,
// a power of two, raw), a bit flip, zeroing a run.
//
// Asserted for every input, in order (FUZZ_CHECK aborts with the reason):
//   - fsck -n ends in 0 (clean), 4 (errors) or 8 (not a daxfs / cannot open);
//   - fsck -n and a read-only mount agree: a device the mount refuses is never called clean, and
//     one fsck cannot even open (exit 8) does not mount;
//   - fsck -y ends in 0, 1, 4 or 8, and
//       0 or 1: a second fsck -n is clean with no problem listed; the device mounts read-write;
//               every name reached from the root looks up, every directory lists, ".." is the
//               parent, every file reads, every symlink reads, every xattr listed reads; the
//               filesystem takes new work (create, write, clone, setxattr, unlink); after that
//               unmount fsck -n is still clean;
//       4:      fsck -y again copes (not 8);
//       8:      the mount refuses too.
#include <linux/falloc.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "daxcore/daxfs_ioctl.h"
#include "fs/fsck/fsck.h"
#include "fs/fsck/report.h"
#include "tests/fuzz/fuzz_util.h"
#include "tests/fuzz/template_image.h"

using namespace daxfs;
using daxfs::fuzz::Input;

namespace {

constexpr uint64_t kB = fs::kBlockSize;

// Fills a template: a bit of every kind of metadata, ~50 inodes over four chunks.
void populate(fs::Filesystem& f) {
  using fuzz::root_cred;
  const uint64_t root = f.root_ino();
  const uint64_t d1 = FUZZ_SETUP(f.mkdir(root, "d1", 0755, root_cred()))->st_ino;
  const uint64_t d2 = FUZZ_SETUP(f.mkdir(d1, "d2", 0700, root_cred()))->st_ino;
  const uint64_t big = FUZZ_SETUP(f.mkdir(root, "big", 0755, root_cred()))->st_ino;
  std::vector<uint64_t> files;
  for (int i = 0; i < 20; i++) {  // over one dirent block (14 entries each)
    uint64_t dir = i < 16 ? big : (i % 2 ? d1 : d2);
    auto st = FUZZ_SETUP(f.mknod(dir, "f" + std::to_string(i), S_IFREG | 0644, 0, root_cred()));
    std::string data(static_cast<size_t>(i % 4) * 3000 + 1, static_cast<char>('a' + i));
    (void)FUZZ_SETUP(f.write(st->st_ino, static_cast<uint64_t>(i % 3) * 2 * kB, data.data(), data.size()));
    files.push_back(st->st_ino);
  }
  // Extended attributes: small ones and a blob of several blocks.
  (void)FUZZ_SETUP(f.setxattr(files[0], "user.small", "v", 0));
  (void)FUZZ_SETUP(f.setxattr(files[1], "user.a", std::string(100, 'x'), 0));
  (void)FUZZ_SETUP(f.setxattr(files[1], "user.b", std::string(9000, 'y'), 0));
  (void)FUZZ_SETUP(f.setxattr(d1, "trusted.dir", "1", 0));
  // Hard links.
  (void)FUZZ_SETUP(f.link(files[2], root, "hard2"));
  (void)FUZZ_SETUP(f.link(files[3], d2, "hard3"));
  // A fragmented file: 200 one-block extents (two extent-record blocks).
  const uint64_t frag = FUZZ_SETUP(f.mknod(root, "frag", S_IFREG | 0644, 0, root_cred()))->st_ino;
  std::string block(kB, 'F');
  for (uint64_t b = 0; b < 400; b += 2) FUZZ_SETUP(f.write(frag, b * kB, block.data(), block.size()));
  // Sparse, and unwritten (fallocated past EOF too).
  const uint64_t sparse = FUZZ_SETUP(f.mknod(root, "sparse", S_IFREG | 0644, 0, root_cred()))->st_ino;
  (void)FUZZ_SETUP(f.write(sparse, uint64_t{1} << 40, "end", 3));
  (void)FUZZ_SETUP(f.fallocate(sparse, 0, 64 * kB, 16 * kB));
  (void)FUZZ_SETUP(f.fallocate(sparse, FALLOC_FL_KEEP_SIZE, (uint64_t{1} << 40) + kB, 8 * kB));
  // Reflinks: whole-file clones, a partial one, a file sharing with itself: a refcount chain.
  const uint64_t clone = FUZZ_SETUP(f.mknod(d1, "clone", S_IFREG | 0644, 0, root_cred()))->st_ino;
  (void)FUZZ_SETUP(f.clone_range(frag, 0, clone, 0, 40 * kB));
  (void)FUZZ_SETUP(f.clone_range(frag, 0, clone, 80 * kB, 40 * kB));
  (void)FUZZ_SETUP(f.clone_range(files[2], 0, files[2], 1 << 20, kB));
  (void)FUZZ_SETUP(f.clone_range(files[7], 0, files[11], 8 * kB, 4 * kB));
  // Symlinks (a short and a long target), a fifo, a device node.
  (void)FUZZ_SETUP(f.symlink(d1, "sym", "../f1", root_cred()));
  (void)FUZZ_SETUP(f.symlink(root, "longsym", std::string(2000, 'L'), root_cred()));
  (void)FUZZ_SETUP(f.mknod(d2, "fifo", S_IFIFO | 0600, 0, root_cred()));
  (void)FUZZ_SETUP(f.mknod(d2, "null", S_IFCHR | 0600, makedev(1, 3), root_cred()));
  // Freed inode slots and blocks.
  (void)FUZZ_SETUP(f.unlink(big, "f5"));
  (void)FUZZ_SETUP(f.unlink(big, "f6"));
}

// Template 1: a committed journal transaction left for recovery. The commit of the rename stops
// after its commit record; nothing later is written.
void populate_crashed(fs::Filesystem& f) {
  populate(f);
  const uint64_t root = f.root_ino();
  f.crash_commit_for_testing(fs::Journal::CrashPoint::kAfterCommitRecord);
  // Fails with EIO (the "crash"); its transaction stays in the journal, committed.
  (void)f.rename(root, "frag", root, "hard2", 0);
}

struct Template {
  std::unique_ptr<fuzz::TemplateImage> image;
  std::vector<uint64_t> meta_blocks;  // blocks worth damaging
  std::vector<uint64_t> inos;         // inode numbers in use
  uint64_t block_count = 0;
};

// The template's metadata blocks (fsmap rows other than data and free: the superblock, the
// journal, inode chunks, extent-map, dirent, symlink, xattr and refcount blocks) and its inodes.
void survey(Template& t) {
  std::string why;
  fs::MountOptions ro;
  ro.read_only = fs::ReadOnly::kYes;
  auto f = t.image->mount(ro, why);
  FUZZ_CHECK(f, "the template does not mount read-only: " + why);
  const fs::SuperBlock& sb = t.image->saved_super();
  t.block_count = sb.block_count;
  std::set<uint64_t> blocks, inos;
  uint64_t at = 0, skip = 0;
  for (;;) {
    auto rows = (*f)->fsmap(at, sb.block_count * kB, skip, 100);
    for (const auto& r : rows) {
      if (r.kind == DAXFS_OWN_DATA && r.ino) inos.insert(r.ino);
      if (r.kind == DAXFS_OWN_FREE || r.kind == DAXFS_OWN_DATA) continue;
      if (r.ino) inos.insert(r.ino);
      uint64_t first = r.physical / kB, end = (r.physical + r.length) / kB;
      // The journal: its header and the blocks its entries may use, not all of it.
      if (r.kind == DAXFS_OWN_JOURNAL) end = std::min(end, first + 4);
      for (uint64_t b = first; b < end && b < first + 64; b++) blocks.insert(b);
    }
    if (rows.size() < 100) break;
    // The next call starts at the last row's physical, skipping the rows already seen there.
    const uint64_t last = rows.back().physical;
    uint64_t at_last = 0;
    for (const auto& r : rows) at_last += r.physical == last;
    skip = last == at ? skip + at_last : at_last;
    at = last;
  }
  for (uint64_t chunk = sb.first_chunk, guard = 0; chunk != 0 && guard < 64; guard++) {
    blocks.insert(chunk);
    for (uint32_t slot = 1; slot < fs::kInodesPerChunk; slot++) {
      const auto* di = reinterpret_cast<const fs::DiskInode*>(t.image->saved() + chunk * kB + slot * fs::kInodeSize);
      if (di->mode != 0) inos.insert(fs::make_ino(chunk, slot));
    }
    chunk = reinterpret_cast<const fs::ChunkHeader*>(t.image->saved() + chunk * kB)->next;
  }
  t.meta_blocks.assign(blocks.begin(), blocks.end());
  t.inos.assign(inos.begin(), inos.end());
  FUZZ_CHECK(t.meta_blocks.size() > 8 && t.inos.size() > 20, "the template survey found too little");
}

Template& get_template(int which) {
  static Template templates[2];
  Template& t = templates[which];
  if (!t.image) {
    t.image = std::make_unique<fuzz::TemplateImage>(fuzz::WorkDir::get().file("image" + std::to_string(which)),
                                                    which == 0 ? populate : populate_crashed);
    survey(t);
  }
  return t;
}

// DAXFS_FUZZ_VERBOSE=1: the patches and fsck's reports on stderr (to replay an artifact).
bool verbose() {
  static const bool on = getenv("DAXFS_FUZZ_VERBOSE") != nullptr;
  return on;
}

// A 64-bit value of class `cls` for the word that held `old`.
uint64_t word_value(Input& in, const Template& t, uint8_t cls, uint64_t old) {
  const uint64_t v = in.u64();
  switch (cls % 10) {
    case 0: return 0;
    case 1: return ~uint64_t{0} - v % 4;
    case 2: return t.meta_blocks[v % t.meta_blocks.size()];
    case 3: return t.inos[v % t.inos.size()];
    case 4: return old + (v % 33) - 16;
    case 5: return uint64_t{1} << (v % 64);
    case 6: return t.block_count - 2 + v % 4;
    case 7: return (v % t.block_count) * kB;  // a byte offset of a block
    case 8: return fs::make_ino(t.meta_blocks[v % t.meta_blocks.size()], static_cast<uint32_t>(v >> 32) % 16);
    default: return v;
  }
}

// Applies the patches; returns how many there were.
int apply_patches(Input& in, Template& t) {
  uint8_t* media = t.image->media();
  int n = 0;
  while (!in.done() && n < 64) {
    n++;
    const uint8_t kind = in.u8();
    const uint8_t pick = in.u8();
    uint64_t block = pick == 255 ? in.u16() % t.block_count : t.meta_blocks[pick % t.meta_blocks.size()];
    uint64_t offset = in.u16() % kB;
    if (verbose()) fprintf(stderr, "patch %d: kind %u at block %llu + %llu\n", n, kind % 6,
                           static_cast<unsigned long long>(block), static_cast<unsigned long long>(offset));
    uint8_t* at = media + block * kB;
    switch (kind % 6) {
      case 0: {  // raw bytes
        std::string bytes = in.bytes(std::min<size_t>(1 + in.u8() % 64, kB - offset));
        memcpy(at + offset, bytes.data(), bytes.size());
        break;
      }
      case 1:
      case 2: {  // an aligned 64-bit word
        offset &= ~uint64_t{7};
        uint64_t old;
        memcpy(&old, at + offset, 8);
        uint64_t v = word_value(in, t, kind >> 3, old);
        memcpy(at + offset, &v, 8);
        break;
      }
      case 3: {  // an aligned 32-bit word
        offset &= ~uint64_t{3};
        uint32_t old;
        memcpy(&old, at + offset, 4);
        uint32_t v = static_cast<uint32_t>(word_value(in, t, kind >> 3, old));
        memcpy(at + offset, &v, 4);
        break;
      }
      case 4:  // a bit
        at[offset] ^= static_cast<uint8_t>(1u << (kind >> 5));
        break;
      default: {  // a run of zeros (a torn or lost write)
        size_t length = std::min<size_t>(8 * (1 + in.u8()), kB - offset);
        memset(at + offset, 0, length);
        break;
      }
    }
  }
  return n;
}

std::string describe(const fsck::Report& r) { return fsck::format_text(r) + r.error; }

// Mounts read-only: whether the mount accepts the device, and its reason when not.
bool mounts_read_only(Template& t, std::string& why) {
  fs::MountOptions ro;
  ro.read_only = fs::ReadOnly::kYes;
  auto f = t.image->mount(ro, why);
  return static_cast<bool>(f);
}

// Visits the whole tree of a repaired filesystem; every step must succeed. Then new work.
void walk_and_use(fs::Filesystem& f, bool reflink) {
  std::vector<uint64_t> dirs{f.root_ino()};
  size_t visited = 0;
  while (!dirs.empty() && visited < 5000) {
    const uint64_t dir = dirs.back();
    dirs.pop_back();
    std::vector<std::string> names;
    Status listed = f.readdir(dir, 0, [&](const fs::DirEntry& e) {
      if (e.name != "." && e.name != "..") names.emplace_back(e.name);
      return names.size() < 5000;
    });
    FUZZ_CHECK(listed, "readdir of a repaired directory " + std::to_string(dir) + ": " + strerror(listed.error()));
    for (const std::string& name : names) {
      visited++;
      auto st = f.lookup(dir, name);
      FUZZ_CHECK(st, "lookup of '" + name + "' listed in " + std::to_string(dir) + ": " + strerror(st.error()));
      const uint64_t ino = st->st_ino;
      auto xattrs = f.listxattr(ino);
      FUZZ_CHECK(xattrs, "listxattr of " + std::to_string(ino));
      for (size_t p = 0; p < xattrs->size();) {
        std::string xname(xattrs->c_str() + p);
        p += xname.size() + 1;
        if (xname.empty()) continue;
        auto value = f.getxattr(ino, xname);
        FUZZ_CHECK(value, "getxattr " + xname + " of " + std::to_string(ino) + ": " + strerror(value.error()));
      }
      if (S_ISDIR(st->st_mode)) {
        dirs.push_back(ino);
        auto dotdot = f.lookup(ino, "..");
        FUZZ_CHECK(dotdot && dotdot->st_ino == dir, "'..' of " + std::to_string(ino) + " is not its parent");
        f.forget(dir, 1);
      } else if (S_ISREG(st->st_mode)) {
        // The first 128 KiB and the last block (the template's files: a few extents each, the
        // fragmented one 200; reading all of it would double the cost of an input).
        static std::vector<char> buf(128 << 10);
        auto n = f.read(ino, 0, buf.size(), buf.data());
        FUZZ_CHECK(n, "read of " + std::to_string(ino) + ": " + strerror(n.error()));
        auto tail = f.read(ino, static_cast<uint64_t>(std::max<off_t>(st->st_size, 4096) - 4096), 4096, buf.data());
        FUZZ_CHECK(tail, "read of the end of " + std::to_string(ino) + ": " + strerror(tail.error()));
      } else if (S_ISLNK(st->st_mode)) {
        auto target = f.readlink(ino);
        FUZZ_CHECK(target, "readlink of " + std::to_string(ino) + ": " + strerror(target.error()));
      }
      f.forget(ino, 1);
    }
  }
  // New work: a file, data, a clone of it, an xattr, an unlink.
  const uint64_t root = f.root_ino();
  auto a = f.mknod(root, "fuzz-new", S_IFREG | 0644, 0, fuzz::root_cred());
  FUZZ_CHECK(a, std::string("create after repair: ") + strerror(a.error()));
  std::string data(3 * kB, 'N');
  auto w = f.write(a->st_ino, 0, data.data(), data.size());
  FUZZ_CHECK(w, std::string("write after repair: ") + strerror(w.error()));
  auto b = f.mknod(root, "fuzz-clone", S_IFREG | 0644, 0, fuzz::root_cred());
  FUZZ_CHECK(b, std::string("create after repair: ") + strerror(b.error()));
  // A filesystem without the reflink feature refuses to clone. fsck sets a lost bit again when the
  // superblock still names a valid refcount chain; with the chain's head damaged too, nothing
  // says the filesystem was reflink, and fsck drops the sharing.
  auto c = f.clone_range(a->st_ino, 0, b->st_ino, 0, 0);
  FUZZ_CHECK(c || (c.error() == EOPNOTSUPP && !reflink), std::string("clone after repair: ") + strerror(c.error()));
  Status x = f.setxattr(b->st_ino, "user.fuzz", "1", 0);
  FUZZ_CHECK(x, std::string("setxattr after repair: ") + strerror(x.error()));
  Status u = f.unlink(root, "fuzz-new");
  FUZZ_CHECK(u, std::string("unlink after repair: ") + strerror(u.error()));
  f.forget(a->st_ino, 1);
  f.forget(b->st_ino, 1);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in(data, size);
  Template& t = get_template(in.u8() & 1);
  t.image->restore();
  apply_patches(in, t);
  const std::string& path = t.image->path();

  fsck::Report n = fsck::run_fsck({path, fsck::Mode::kCheck});
  FUZZ_CHECK(n.exit_code == fsck::kExitClean || n.exit_code == fsck::kExitUncorrected ||
                 n.exit_code == fsck::kExitOperational,
             "fsck -n exit " + std::to_string(n.exit_code) + "\n" + describe(n));
  {
    std::string why;
    bool mounted = mounts_read_only(t, why);
    FUZZ_CHECK(mounted || n.exit_code != fsck::kExitClean, "fsck -n calls clean a device the mount refuses: " + why);
    FUZZ_CHECK(!mounted || n.exit_code != fsck::kExitOperational,
               "the mount accepts a device fsck -n cannot check: " + n.error);
  }

  fsck::Report y = fsck::run_fsck({path, fsck::Mode::kRepair});
  if (verbose()) fprintf(stderr, "fsck -n: exit %d\n%s\nfsck -y: exit %d\n%s\n", n.exit_code, describe(n).c_str(),
                         y.exit_code, describe(y).c_str());
  switch (y.exit_code) {
    case fsck::kExitClean:
    case fsck::kExitCorrected: {
      fsck::Report again = fsck::run_fsck({path, fsck::Mode::kCheck});
      FUZZ_CHECK(again.exit_code == fsck::kExitClean && again.problems.empty(),
                 "fsck -n after a successful fsck -y is not clean:\nfirst -y:\n" + describe(y) + "\nthen -n:\n" +
                     describe(again));
      {
        std::string why;
        auto f = t.image->mount({}, why);
        FUZZ_CHECK(f, "the mount refuses a device fsck -y repaired: " + why + "\n" + describe(y));
        const auto* sb = reinterpret_cast<const fs::SuperBlock*>(t.image->media());
        walk_and_use(**f, sb->features & fs::kFeatureReflink);
      }
      fsck::Report after = fsck::run_fsck({path, fsck::Mode::kCheck});
      FUZZ_CHECK(after.exit_code == fsck::kExitClean && after.problems.empty(),
                 "fsck -n after using a repaired filesystem is not clean:\n" + describe(after));
      break;
    }
    case fsck::kExitUncorrected: {
      fsck::Report again = fsck::run_fsck({path, fsck::Mode::kRepair});
      FUZZ_CHECK(again.exit_code != fsck::kExitOperational, "a second fsck -y fails: " + again.error);
      break;
    }
    case fsck::kExitOperational: {
      std::string why;
      FUZZ_CHECK(!mounts_read_only(t, why), "the mount accepts a device fsck -y cannot open: " + y.error);
      break;
    }
    default:
      FUZZ_CHECK(false, "fsck -y exit " + std::to_string(y.exit_code));
  }
  return 0;
}

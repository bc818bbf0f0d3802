// The daxfs filesystem: mount/unmount of a formatted pmem device and every POSIX operation the
// daemon needs, on in-memory indexes of the on-media metadata with every change committed
// through the redo journal before it returns.
//
// Thread-safety, as XFS's IOLOCK / MMAPLOCK / ILOCK model. Lock order, outermost first:
//   1. the inode's iolock (Inode::iolock): shared by read, exclusive by write, truncate,
//      fallocate, clone/dedupe/unshare; two inodes in inode-number order;
//   2. the inode's mmaplock (Inode::mmaplock): shared by DAX faults (iomap_begin with
//      kIomapFault), exclusive by layout changes, after both iolocks;
//   3. `mu_`, the global metadata/journal lock: shared by lookups, getattr, readdir and the
//      mapping lookups, exclusive by everything that changes metadata (one journal, one
//      transaction at a time); held only for in-memory index work and commits, never while
//      waiting: the layout sink is called with 1 and 2 held and mu_ not held, and a write copies
//      its data with only 1 and 2 held (writes and reads of different files run in parallel);
//   4. the device's internal locks.
// Nothing here calls back into FUSE with a lock held except the layout sink under 1 and 2.
#pragma once

#include <sys/stat.h>
#include <sys/statvfs.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "daxcore/files.h"
#include "daxcore/iomap.h"
#include "daxcore/layout.h"
#include "fs/alloc.h"
#include "fs/block_owners.h"
#include "fs/extent_map.h"
#include "fs/counters.h"
#include "fs/cow.h"
#include "fs/directory.h"
#include "fs/inode.h"
#include "fs/inode_table.h"
#include "fs/journal.h"
#include "fs/refcount.h"
#include "fs/rmap.h"
#include "fs/space.h"
#include "fs/xattr_store.h"
#include "pmemdev/device.h"
#include "pmemdev/holder.h"
#include "common/result.h"

namespace daxfs::fs {

enum class DaxMode { kAlways, kInode, kNever };
enum class ReadOnly { kNo, kYes };

struct MountOptions {
  DaxMode dax = DaxMode::kAlways;
  ReadOnly read_only = ReadOnly::kNo;
};

// Who asks: owner of new inodes, and the umask to apply when the parent has no default ACL.
struct Cred {
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint32_t umask = 0;
};

// setattr's selection, as FUSE_SET_ATTR_* (the daemon translates).
struct SetAttr {
  enum : uint32_t {
    kMode = 1, kUid = 2, kGid = 4, kSize = 8, kAtime = 16, kMtime = 32,
    kAtimeNow = 64, kMtimeNow = 128, kCtime = 256,
  };
  uint32_t valid = 0;
  uint32_t mode = 0, uid = 0, gid = 0;
  uint64_t size = 0;
  timespec atime{}, mtime{}, ctime{};
};

// What readdir hands to its sink; return false from the sink to stop (buffer full).
struct DirEntry {
  std::string_view name;
  uint64_t ino;
  uint32_t type;  // S_IF* >> 12, i.e. DT_*
  uint64_t next_offset;
};

class Filesystem : public pmemdev::Holder, public dax::DaxFiles {
 public:
  // Recovers the journal, loads the metadata, frees orphans and claims the device (EBUSY when
  // another process holds it). On failure `why` says what is wrong in one line.
  static Result<std::unique_ptr<Filesystem>> mount(std::unique_ptr<pmemdev::Device> device,
                                                   const MountOptions& opts, std::string& why);
  ~Filesystem() override;
  Filesystem(const Filesystem&) = delete;
  Filesystem& operator=(const Filesystem&) = delete;
  // Starts failure notifications (after the daemon has forked into the background).
  void start() { dev_->start_notifier(); }
  // Marks the filesystem clean and releases the device. Idempotent.
  void unmount();

  uint64_t root_ino() const { return inodes_.root(); }
  const MountOptions& options() const { return opts_; }
  const std::string& device_path() const { return dev_->path(); }

  // Names and attributes. lookup() and the creators count one lookup reference (FUSE nlookup);
  // forget() drops them; an unlinked inode is freed when its last reference goes.
  Result<struct stat> lookup(uint64_t parent, std::string_view name);
  void forget(uint64_t ino, uint64_t count);
  Result<struct stat> getattr(uint64_t ino);
  // The inode's generation (for NFS file handles: inode numbers are reused); 0 when free.
  uint64_t generation(uint64_t ino);
  Result<struct stat> setattr(uint64_t ino, const SetAttr& attr);
  Result<struct stat> mknod(uint64_t parent, std::string_view name, uint32_t mode, uint64_t rdev,
                            const Cred& cred);
  Result<struct stat> mkdir(uint64_t parent, std::string_view name, uint32_t mode, const Cred& cred);
  Result<struct stat> symlink(uint64_t parent, std::string_view name, std::string_view target,
                              const Cred& cred);
  Result<struct stat> link(uint64_t ino, uint64_t new_parent, std::string_view new_name);
  Status unlink(uint64_t parent, std::string_view name);
  Status rmdir(uint64_t parent, std::string_view name);
  Status rename(uint64_t parent, std::string_view name, uint64_t new_parent,
                std::string_view new_name, uint32_t flags);
  Result<std::string> readlink(uint64_t ino);
  Status readdir(uint64_t ino, uint64_t offset, const std::function<bool(const DirEntry&)>& sink);

  // The iomap seam (daxcore/iomap.h; fs/iomap.cc): what backs a file range, made storable on
  // request. The DAX layer's only way into the extent map.
  Result<dax::IomapPair> iomap_begin(uint64_t ino, uint64_t offset, uint64_t length, uint32_t ops) override;
  Status iomap_end(uint64_t ino, const dax::Iomap& map, uint64_t done, uint32_t ops) override;
  // The rest of the DAX layer's questions (daxcore/files.h; fs/iomap.cc). hold_inode pins the
  // inode as an operation does: an unlinked, forgotten file is released at the last release.
  bool dax_file(uint64_t ino) override { return is_dax(ino); }
  Status hold_inode(uint64_t ino) override;
  void release_inode(uint64_t ino) override;

  // Data.
  // Reads up to `size` bytes. A poisoned block fails the read with EIO, or with `short_at_poison`
  // (a read the kernel passes through whole, as direct I/O) ends it there, as dax_iomap_rw does:
  // the bytes before the first poisoned block, EIO when there are none.
  Result<size_t> read(uint64_t ino, uint64_t offset, size_t size, char* out, bool short_at_poison = false);
  // kill_priv: the writer lacks CAP_FSETID, so a write clears setuid (and setgid with group
  // execute), as Linux's file_remove_privs(); the FUSE kernel leaves that to us for direct I/O.
  enum class KillPriv { kNo, kYes };
  Result<size_t> write(uint64_t ino, uint64_t offset, const char* data, size_t size,
                       KillPriv kill_priv = KillPriv::kNo);
  // fallocate(2): allocate (0), FALLOC_FL_KEEP_SIZE, PUNCH_HOLE, ZERO_RANGE, COLLAPSE_RANGE and
  // INSERT_RANGE with vfs_fallocate()'s and XFS's checks (UNSHARE_RANGE: unshare_range()).
  // kill_priv: the caller lacks CAP_FSETID, so setuid/setgid go as file_modified() drops them.
  Status fallocate(uint64_t ino, int mode, uint64_t offset, uint64_t length, KillPriv kill_priv = KillPriv::kNo);
  Result<uint64_t> lseek(uint64_t ino, uint64_t offset, int whence);
  // Whether opens of `ino` bypass the page cache (the file is DAX under the mount's dax= mode).
  bool is_dax(uint64_t ino);

  // Reflink (reflink.cc). clone_range: FICLONERANGE semantics (length 0: to the source's EOF);
  // returns the bytes remapped. dedupe_range: FIDEDUPERANGE; shares only identical ranges.
  // unshare_range: FALLOC_FL_UNSHARE_RANGE. copy_range: copy_file_range(2), sharing what it can.
  Result<uint64_t> clone_range(uint64_t src, uint64_t src_off, uint64_t dst, uint64_t dst_off, uint64_t length,
                               KillPriv kill_priv = KillPriv::kNo);
  struct DedupeResult {
    uint64_t bytes;
    bool differs;
  };
  Result<DedupeResult> dedupe_range(uint64_t src, uint64_t src_off, uint64_t dst, uint64_t dst_off,
                                    uint64_t length);
  Status unshare_range(uint64_t ino, uint64_t offset, uint64_t length);
  Result<uint64_t> copy_range(uint64_t src, uint64_t src_off, uint64_t dst, uint64_t dst_off, uint64_t length);

  // Test seam: the commit `skip` commits from now stops at `point` as if the daemon died there;
  // every later commit then fails with EIO and writes nothing (Journal::crash_next_commit_at).
  void crash_commit_for_testing(Journal::CrashPoint point, uint64_t skip = 0) {
    std::unique_lock lock(mu_);
    space_.journal().crash_next_commit_at(point, skip);
  }

  // Layout (fsmap.cc), in bytes. A row: a physical range and one owner (kind: daxfs_owner_kind
  // of fs/daxfs_ioctl.h; ino and logical for file data; flags DAXFS_EXTENT_*).
  struct MapRow {
    uint64_t physical, length, kind, ino, logical, flags;
  };
  // The file's extents from byte `start` (holes absent), split where sharing changes.
  Result<std::vector<MapRow>> fiemap(uint64_t ino, uint64_t start, size_t max);
  // The device's rows in [start, end), data rows once per owner, after skipping `skip` rows
  // that start exactly at `start`.
  std::vector<MapRow> fsmap(uint64_t start, uint64_t end, uint64_t skip, size_t max);
  // What opening `ino` by a path checks: the inode, then each directory up to the root (by the
  // first name found). Empty when no name reaches it.
  struct AccessStep {
    uint32_t mode, uid, gid;
    bool acl;  // has an access ACL (which the caller's check does not evaluate)
  };
  std::vector<AccessStep> access_path(uint64_t ino);
  // Every live inode's path (the first name found for hard links).
  std::unordered_map<uint64_t, std::string> paths();

  // Extended attributes (flags: XATTR_CREATE / XATTR_REPLACE).
  Status setxattr(uint64_t ino, std::string_view name, std::string_view value, int flags);
  // size 0: returns the value's size; a non-zero size smaller than the value: ERANGE.
  Result<std::string> getxattr(uint64_t ino, std::string_view name);
  Result<std::string> listxattr(uint64_t ino);  // NUL-separated names
  Status removexattr(uint64_t ino, std::string_view name);
  // FS_IOC_FSGETXATTR / FSSETXATTR (xflags, extsize, projid).
  struct XAttrFlags {
    uint32_t xflags = 0, extsize = 0, projid = 0;
  };
  Result<XAttrFlags> get_xflags(uint64_t ino);
  Status set_xflags(uint64_t ino, const XAttrFlags& flags);

  struct FileInfo {
    uint64_t size = 0, extents = 0, data_blocks = 0, unwritten_blocks = 0;
    bool dax_flag = false;
  };
  Result<FileInfo> file_info(uint64_t ino);

  struct statvfs statfs();
  // Forced shutdown (XFS_IOC_GOINGDOWN): every later operation fails with EIO.
  void shutdown(const std::string& reason);
  // Called once, from whatever thread shuts the filesystem down (possibly with mu_ held): it must
  // not call back into the filesystem synchronously.
  // The layout sink (daxcore/layout.h): told before a file's blocks change under processes
  // that may map them. Set once after mount, before requests are served; null: nobody maps.
  void set_layout_sink(dax::LayoutSink* sink) { layout_ = sink; }
  // Inodes the kernel holds references to (for cache invalidation).
  std::vector<uint64_t> referenced_inodes();
  bool is_shut_down() const { return shutdown_.load(); }
  const Counters& counters() const { return counters_; }
  uint64_t inode_count();

  // How an operation holds a file's per-inode locks (the lock order above; fs/inode_lock.cc):
  //   kRead:     iolock and mmaplock shared (read: sees a write whole or not at all, and no
  //              copy-on-write fault frees the blocks it copies from);
  //   kLayout:   iolock and mmaplock exclusive (write, truncate, fallocate, remaps);
  //   kFault:    mmaplock shared (a DAX fault into written, private blocks or a hole);
  //   kFaultCow: mmaplock exclusive (a store fault that copies shared blocks: no other fault may
  //              map the old blocks between the layout break and the remap).
  enum class LockMode { kRead, kLayout, kFault, kFaultCow };

  // pmemdev::Holder (fs/notify_failure.cc).
  void notify_failure(uint64_t offset, uint64_t length, pmemdev::FailureKind kind) override;
  // What a metadata block holds (for the failure notice's log and its rebuild).
  enum class MetaKind { kNone, kSuper, kJournal, kInodes, kExtentMap, kDirectory, kSymlink, kXattr, kRefcount };
  struct MetaOwner {
    MetaKind kind;
    uint64_t ino;  // the owning inode, 0 for filesystem-wide kinds
  };

 private:
  Filesystem(std::unique_ptr<pmemdev::Device> device, const MountOptions& opts);
  static Status check_superblock(const pmemdev::Device& device, std::string& why);
  // Memory failure in metadata (fs/notify_failure.cc); mu_ held exclusively. The rebuild of a
  // poisoned block from memory in one transaction: what was done, or the error.
  MetaOwner metadata_owner_locked(uint64_t block) const;
  Result<std::string> rebuild_metadata_locked(uint64_t block, const MetaOwner& owner);
  // Orphans, post-EOF blocks, the superblock's mount state: the writes a mount makes.
  static Result<std::unique_ptr<Filesystem>> finish_mount(std::unique_ptr<Filesystem> fs,
                                                          const MountOptions& opts);

  // The per-inode locks of one or two inodes (fs/inode_lock.cc), taken before mu_ in the order
  // above. The inodes are pinned meanwhile: an unlinked one is not released under the holder.
  // Modes: see LockMode (public, above).
  class InodeLock {
   public:
    InodeLock(InodeLock&& other) noexcept;
    InodeLock& operator=(InodeLock&&) = delete;
    ~InodeLock();

   private:
    friend class Filesystem;
    InodeLock(Filesystem& fs, LockMode mode) : fs_(&fs), mode_(mode) {}
    Filesystem* fs_;
    LockMode mode_;
    Inode* in_[2] = {nullptr, nullptr};  // in lock order; [1] null for one inode
  };
  // EIO after a shutdown, ENOENT for a free inode. `b` 0 or equal to `a`: one inode.
  Result<InodeLock> lock_inodes(uint64_t a, uint64_t b, LockMode mode);
  // The fast path, with mu_ already held (shared or exclusive): pins `in` and takes its locks
  // if that needs no wait (a try-lock cannot deadlock against the order), so the caller keeps
  // mu_; empty when some lock is taken: drop mu_ and call lock_inodes().
  std::optional<InodeLock> try_lock_inode_locked(Inode& in, LockMode mode);
  // The two together for one inode: on return `lock` holds mu_ again (or the error says why not).
  // Declare the InodeLock before `lock`: its unpin must run after mu_ is released.
  template <typename MuLock>
  Result<InodeLock> lock_inode_with(MuLock& lock, uint64_t ino, LockMode mode);
  void unpin(Inode& in);

  // Helpers that expect mu_ held exclusively end in _locked.
  Status check_alive() const;
  Status check_writable() const;
  // Commits `txn` (with `in` stored) once it holds a quarter of the journal: for loops over
  // unbounded numbers of extents, whose every iteration leaves a consistent state.
  Status commit_if_large_locked(Txn& txn, Inode& in);
  using DirtyGuard = Space::DirtyGuard;

  // Inodes (inode.cc).
  Status release_inode_locked(Inode& in);  // frees everything; commits in bounded steps
  void maybe_release_locked(Inode& in);
  Result<struct stat> create_locked(uint64_t parent, std::string_view name, uint32_t mode,
                                    uint64_t rdev, const Cred& cred, std::string_view target);

  // Directories (dir.cc).
  Status remove_locked(uint64_t parent, std::string_view name, bool dir);

  // Copies the part of [data_offset, data_offset + size) that falls in file blocks
  // [first, end) to the device blocks from `physical`; with zero_rest, zeroes the rest of those blocks.
  void copy_in(uint64_t physical, uint64_t first, uint64_t end, uint64_t data_offset, const char* data,
               size_t size, bool zero_rest);

  // Files (file.cc).
  // The mapping of blocks [first, end) from `first` (fs/iomap.cc): one kind of backing, split at
  // sharing changes when `ops` writes, unshares, faults or reports, and at poison boundaries
  // when it reports. Lengths and offsets in bytes.
  // Tells the layout sink that blocks [first, end) of `ino` are about to change as `why` says;
  // returns when no mapping can touch them. Called with the inode's layout locks (kLayout) held
  // and mu_ NOT held: the sink may wait for mappers.
  void break_layout(uint64_t ino, uint64_t first, uint64_t end, dax::LayoutChange why) const;
  // The same from an operation that holds mu_ (exclusive, in `lock`) and the inode's kLayout
  // locks: drops mu_ for the break and takes it back; EIO when the filesystem shut down meanwhile.
  // The file's layout cannot change in between (its locks are held).
  Status break_layout(std::unique_lock<std::shared_mutex>& lock, uint64_t ino, uint64_t first, uint64_t end,
                      dax::LayoutChange why);
  dax::Iomap mapping_at_locked(const Inode& in, uint64_t first, uint64_t end, uint32_t ops) const;
  // Holes get zeroed written blocks, unwritten blocks are zeroed and converted, shared blocks are
  // copied: afterwards every block of [first, end) is written and private. Poisoned blocks it
  // zeroed whole are added to `recovered`: the caller clears them once the transaction commits.
  Status make_storable_locked(Txn& txn, Inode& in, uint64_t first, uint64_t end,
                              std::vector<BlockRange>& recovered);
  // iomap_begin's allocating step (the layout broken already): `out` with its map filled in.
  Result<dax::IomapPair> storable_iomap_locked(Inode& in, uint64_t first, uint64_t end, uint32_t ops,
                                               const dax::Iomap& before, dax::IomapPair out);
  // Copies file bytes [offset, offset + n) (within EOF) to `out`; EIO on poison.
  Status read_range_locked(const Inode& in, uint64_t offset, size_t n, char* out) const;
  // The same in two steps: the mappings under mu_, the copy with the file's kRead locks only.
  std::vector<dax::Iomap> read_plan_locked(const Inode& in, uint64_t offset, size_t n) const;
  // Copies what `plan` maps: the bytes before the first poisoned block (EIO if none); all `n`
  // when nothing is poisoned.
  Result<size_t> copy_out(const std::vector<dax::Iomap>& plan, uint64_t offset, size_t n, char* out) const;
  // Zeroes the written bytes of [from, to) in place, persisted (shared blocks copied first).
  Status zero_in_place_locked(Txn& txn, Inode& in, uint64_t from, uint64_t to);
  Status truncate_locked(Inode& in, uint64_t size, Txn& txn);
  Status zero_tail_locked(Txn& txn, Inode& in, uint64_t from);
  // The write path (fs/write.cc). A run of file blocks [first, end) and the device blocks from
  // `physical` that its data goes to: written in place, unwritten (converted after the store)
  // or newly allocated (mapped after it).
  struct WriteRun {
    uint64_t first, end, physical;
    enum Kind { kWritten, kUnwritten, kNew } kind;
  };
  Status plan_write_locked(Inode& in, uint64_t first, uint64_t end, std::vector<WriteRun>& runs);
  Result<size_t> finish_write_locked(Inode& in, uint64_t offset, size_t size, const std::vector<WriteRun>& runs,
                                     const std::vector<BlockRange>& recovered, KillPriv kill_priv);
  // Appends to `recovered` the poisoned blocks of physical run [physical, +end - first), mapped at
  // file blocks [first, end), that a write of [offset, offset + size) stores whole (all of them
  // when it zero-fills the run): the write clears them once durable. Called before it stores.
  void note_recovery(uint64_t physical, uint64_t first, uint64_t end, uint64_t offset, size_t size, bool zero_filled,
                     std::vector<BlockRange>& recovered) const;
  Result<size_t> write_locked(Inode& in, uint64_t offset, const char* data, size_t size, KillPriv kill_priv);
  // EIO when [offset, offset + size) covers part of a poisoned written block.
  Status check_recovery_write_locked(const Inode& in, uint64_t offset, size_t size) const;
  Status allocate_range_locked(Txn& txn, Inode& in, uint64_t first, uint64_t end, uint32_t flags,
                               uint64_t* new_blocks);
  // Collapse and insert range (fs/shift.cc), from fallocate() with the inode's kLayout locks and
  // mu_ (in `lock`) held: the checks that need the file, the layout break, the shift. One
  // transaction when it fits the journal, else consistent steps (make_room_locked).
  Status collapse_range_locked(std::unique_lock<std::shared_mutex>& lock, Inode& in, uint64_t offset,
                               uint64_t length, KillPriv kill_priv);
  Status insert_range_locked(std::unique_lock<std::shared_mutex>& lock, Inode& in, uint64_t offset,
                             uint64_t length, KillPriv kill_priv);
  // Commits `txn` (with `in` stored) unless `more` bytes and the inode still fit beside it.
  Status make_room_locked(Txn& txn, Inode& in, uint64_t more);

  std::unique_ptr<pmemdev::Device> dev_;
  MountOptions opts_;
  const SuperBlock* sb_ = nullptr;  // the on-media superblock (read-only except through txns)
  mutable std::shared_mutex mu_;
  Counters counters_;
  Allocator alloc_;
  // reserve/alloc/commit and the journal; mu_ held as its calls say.
  Space space_{alloc_, counters_, [this](const std::string& why) { shutdown(why); }};
  BlockOwners owners_{*dev_, space_};  // rmap, refcount records; mu_ held as its calls say
  ExtentMap emap_{*dev_, space_, owners_, alloc_};  // extent-map operations; the same
  InodeTable inodes_{*dev_, space_};  // inodes, free slots, root; the same
  Directory dirs_{emap_};  // directory entries; the same
  Cow cow_{*dev_, space_, owners_, emap_, counters_};  // clone, CoW, unshare; the same
  XattrStore xattrs_{*dev_, space_, alloc_};  // xattr blobs; the same
  std::atomic<bool> shutdown_{false};
  dax::LayoutSink* layout_ = nullptr;
  bool mounted_ = false;
};

// Formats `device`: superblock, journal, the first inode chunk and the root directory.
struct FormatOptions {
  bool reflink = true;
  std::string label;
};
Status format(pmemdev::Device& device, const FormatOptions& opts);

}  // namespace daxfs::fs

// The namespace phases of the checker: the root, what each directory entry names, one name per
// directory, reachability from the root (loops are broken, unreachable inodes reconnected into
// /lost+found as e2fsck does, orphans freed), then link counts and parent pointers, which are
// derived from the entries that survive all of that.
#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <unordered_map>

#include "fs/fsck/checker_impl.h"

namespace daxfs::fsck {

namespace {
std::string num(uint64_t v) { return std::to_string(v); }
const char* type_name(uint32_t mode) {
  switch (mode & S_IFMT) {
    case S_IFREG: return "file";
    case S_IFDIR: return "directory";
    case S_IFLNK: return "symlink";
    case S_IFIFO: return "fifo";
    case S_IFSOCK: return "socket";
    case S_IFCHR: return "character device";
    case S_IFBLK: return "block device";
  }
  return "inode";
}
}  // namespace

void Checker::resolve_root() {
  root_ = sb_.root_ino;
  Node* r = live(root_);
  // The root is the one directory that is its own parent (and that no entry names): a surviving
  // one can take its place.
  std::vector<uint64_t> own_parent;
  for (auto& [ino, n] : nodes_)
    if (!n.dropped && n.is_dir() && n.d.parent == ino) own_parent.push_back(ino);
  if (r && r->is_dir()) {
    // A superblock naming another directory (one field gone wrong) would otherwise hang the real
    // root and everything in it under the wrong one's /lost+found.
    if (r->d.parent == root_ || own_parent.size() != 1) return;
    uint64_t real = own_parent[0];
    for (auto& [ino, n] : nodes_) {
      if (n.dropped || !n.is_dir()) continue;
      for (const Entry& e : n.entries)
        if (e.ino == real) return;  // named: not a root after all
    }
    size_t p = report("root", root_,
                      "the superblock's root (inode " + num(root_) + ") is a directory whose parent is " +
                          num(r->d.parent) + "; directory " + num(real) + ", its own parent, becomes the root");
    root_ = sb_.root_ino = real;
    plan_write(p, offsetof(fs::SuperBlock, root_ino), root_);
    return;
  }
  std::string why = r ? "is not a directory" : "is not an inode in use";
  uint64_t candidate = own_parent.empty() ? 0 : own_parent[0];
  std::string detail = "the root directory (inode " + num(root_) + ") " + why + "; ";
  if (candidate != 0) {
    size_t p = report("root", root_, detail + "directory " + num(candidate) + ", its own parent, becomes the root");
    root_ = sb_.root_ino = candidate;
    plan_write(p, offsetof(fs::SuperBlock, root_ino), root_);
    return;
  }
  fs::Txn txn;
  auto ino = create_dir(txn, 0);
  if (!ino) {
    report("root", root_, detail + "no space is left to create a new one");
    root_ = 0;
    return;
  }
  size_t p = report("root", root_, detail + "a new, empty root directory (inode " + num(*ino) + ") is created");
  root_ = sb_.root_ino = *ino;
  txn.write_obj(offsetof(fs::SuperBlock, root_ino), root_);
  plan(p, std::move(txn));
}

void Checker::check_entries() {
  for (auto& [ino, n] : nodes_) {
    if (n.dropped || !n.is_dir()) continue;
    for (Entry& e : n.entries) {
      std::string shown = "the entry '" + printable(e.name) + "'";
      Node* t = live(e.ino);
      if (t == nullptr) {
        note_unchained(e.ino);
        remove_entry(e, "dirent_dangling", ino,
                     shown + " names inode " + num(e.ino) + ", which is not in use; it is removed");
        continue;
      }
      uint8_t want = dtype(t->d.mode);
      if (e.type != want) {
        size_t p = report("dirent_type", ino,
                          shown + " has type " + num(e.type) + " but inode " + num(e.ino) + " is a " +
                              type_name(t->d.mode) + " (type " + num(want) + ")");
        e.type = want;
        plan_write(p, e.offset + offsetof(fs::DiskDirent, type), want);
      }
    }
  }
}

void Checker::check_dir_links() {
  // Every entry naming a directory, per directory named.
  std::map<uint64_t, std::vector<Entry*>> naming;
  std::map<const Entry*, uint64_t> in_dir;
  for (auto& [ino, n] : nodes_) {
    if (n.dropped || !n.is_dir()) continue;
    for (Entry& e : n.entries) {
      Node* t = e.removed ? nullptr : live(e.ino);
      if (t == nullptr || !t->is_dir()) continue;
      naming[e.ino].push_back(&e);
      in_dir[&e] = ino;
    }
  }
  for (auto& [target, entries] : naming) {
    size_t keep = entries.size();  // none
    if (target != root_) {
      // Keep the name in the directory the parent pointer agrees with, else the first one.
      const Node& t = nodes_.at(target);
      for (size_t i = 0; i < entries.size() && keep == entries.size(); i++)
        if (in_dir[entries[i]] == t.d.parent && in_dir[entries[i]] != target) keep = i;
      for (size_t i = 0; i < entries.size() && keep == entries.size(); i++)
        if (in_dir[entries[i]] != target) keep = i;
      if (keep == entries.size()) keep = 0;
    }
    for (size_t i = 0; i < entries.size(); i++) {
      if (i == keep) continue;
      Entry& e = *entries[i];
      std::string what = target == root_ ? "names the root directory"
                                         : "is a second name of directory " + num(target) + " (hard link)";
      remove_entry(e, "dir_hardlink", in_dir[&e], "the entry '" + printable(e.name) + "' " + what + "; it is removed");
    }
  }
}

void Checker::check_connectivity() {
  if (root_ == 0) return;
  std::unordered_set<uint64_t> reached{root_};
  std::vector<uint64_t> queue{root_};
  while (!queue.empty()) {
    uint64_t d = queue.back();
    queue.pop_back();
    for (Entry& e : nodes_.at(d).entries) {
      Node* t = e.removed ? nullptr : live(e.ino);
      if (t && reached.insert(e.ino).second && t->is_dir()) queue.push_back(e.ino);
    }
  }
  out_.evidence.reached = reached.size();
  std::map<uint64_t, uint64_t> container;        // directory -> the directory holding its entry
  std::unordered_map<uint64_t, uint64_t> names;  // inode -> entries naming it
  for (auto& [ino, n] : nodes_) {
    if (n.dropped || !n.is_dir()) continue;
    for (Entry& e : n.entries) {
      Node* t = e.removed ? nullptr : live(e.ino);
      if (!t) continue;
      names[e.ino]++;
      if (t->is_dir()) container[e.ino] = ino;
    }
  }
  std::vector<uint64_t> unreached_dirs, reconnect_list;
  for (auto& [ino, n] : nodes_) {
    if (n.dropped || reached.count(ino)) continue;
    bool has_entries = false;
    for (const Entry& e : n.entries) has_entries |= !e.removed;
    if (names[ino] == 0 && n.d.nlink == 0 && !has_entries) {
      // Unlinked while open when the filesystem went down: the mount would free it too.
      drop_inode(ino, n, "orphan",
                 std::string("an unlinked ") + type_name(n.d.mode) +
                     " still allocated (open when the filesystem went down); it is freed",
                 Severity::kInfo);
      continue;
    }
    if (n.is_dir())
      unreached_dirs.push_back(ino);
    else if (names[ino] == 0)
      reconnect_list.push_back(ino);
    // Other unreachable inodes are named in an unreachable directory: they come back with it.
  }
  break_loops(unreached_dirs, container, reconnect_list);
  std::sort(reconnect_list.begin(), reconnect_list.end());
  if (!reconnect_list.empty()) reconnect(reconnect_list);
}

// Unreachable directories form trees hanging off no entry, or loops (A holds B holds A). Each
// tree's top is reconnected; each loop is cut at its lowest inode, which then becomes a top.
void Checker::break_loops(const std::vector<uint64_t>& unreached_dirs, std::map<uint64_t, uint64_t>& container,
                          std::vector<uint64_t>& reconnect_list) {
  std::unordered_map<uint64_t, int> state;  // 1: on the current path, 2: done
  for (uint64_t start : unreached_dirs) {
    if (state[start]) continue;
    std::vector<uint64_t> path;
    for (uint64_t cur = start;;) {
      state[cur] = 1;
      path.push_back(cur);
      auto c = container.find(cur);
      if (c == container.end()) {
        reconnect_list.push_back(cur);
        break;
      }
      uint64_t up = c->second;
      if (state[up] == 2) break;
      if (state[up] == 1) {
        auto at = std::find(path.begin(), path.end(), up);
        uint64_t cut = *std::min_element(at, path.end());
        uint64_t holder = container[cut];
        for (Entry& e : nodes_.at(holder).entries) {
          if (e.removed || e.ino != cut) continue;
          remove_entry(e, "dir_loop", holder,
                       "the entry '" + printable(e.name) +
                           "' closes a loop of directories unreachable from the root; "
                           "it is removed and directory " +
                           num(cut) + " is reconnected");
        }
        container.erase(cut);
        reconnect_list.push_back(cut);
        break;
      }
      cur = up;
    }
    for (uint64_t p : path) state[p] = 2;
  }
}

void Checker::reconnect(const std::vector<uint64_t>& inos) {
  Node* root = live(root_);
  uint64_t lf_ino = 0;
  for (Entry& e : root->entries)
    if (!e.removed && e.name == "lost+found") lf_ino = e.ino;
  std::string why_not;
  if (lf_ino != 0 && !(live(lf_ino) && live(lf_ino)->is_dir())) {
    why_not = "/lost+found is not a directory";
    lf_ino = 0;
  } else if (lf_ino == 0) {
    fs::Txn txn;
    auto ino = create_dir(txn, root_);
    if (ino && add_entry(txn, root_, *root, "lost+found", *ino)) {
      root->d.nlink++;
      txn.write_obj(inode_offset(root_) + offsetof(fs::DiskInode, nlink), root->d.nlink);
      plan(report("lost_found", *ino, "/lost+found is created to reconnect unreachable inodes", Severity::kInfo),
           std::move(txn));
      lf_ino = *ino;
    } else {
      why_not = "no space is left to create /lost+found";
    }
  }
  for (uint64_t ino : inos) {
    Node& n = nodes_.at(ino);
    std::string what = std::string(type_name(n.d.mode)) + " " + num(ino) + " is not reachable from the root";
    if (lf_ino == 0) {
      report("disconnected", ino, what + "; it cannot be reconnected: " + why_not);
      continue;
    }
    Node& lf = nodes_.at(lf_ino);
    std::string name = "#" + num(ino);
    for (int i = 1;; i++) {
      bool taken = false;
      for (const Entry& e : lf.entries) taken |= !e.removed && e.name == name;
      if (!taken) break;
      name = "#" + num(ino) + "." + num(i);
    }
    fs::Txn txn;
    if (!add_entry(txn, lf_ino, lf, name, ino)) {
      report("disconnected", ino, what + "; no space is left in /lost+found to reconnect it");
      continue;
    }
    if (n.is_dir()) {
      n.d.parent = lf_ino;
      lf.d.nlink++;
      txn.write_obj(inode_offset(ino) + offsetof(fs::DiskInode, parent), n.d.parent);
      txn.write_obj(inode_offset(lf_ino) + offsetof(fs::DiskInode, nlink), lf.d.nlink);
    }
    plan(report("disconnected", ino, what + "; it is reconnected as /lost+found/" + name), std::move(txn));
  }
}

void Checker::check_counts() {
  std::unordered_map<uint64_t, uint64_t> links;      // files: entries; directories: subdirectories
  std::unordered_map<uint64_t, uint64_t> container;  // directory -> the directory holding it
  for (auto& [ino, n] : nodes_) {
    if (n.dropped || !n.is_dir()) continue;
    for (Entry& e : n.entries) {
      Node* t = e.removed ? nullptr : live(e.ino);
      if (!t) continue;
      if (t->is_dir()) {
        links[ino]++;
        container[e.ino] = ino;
      } else {
        links[e.ino]++;
      }
    }
  }
  for (auto& [ino, n] : nodes_) {
    if (n.dropped) continue;
    uint64_t want = n.is_dir() ? 2 + links[ino] : links[ino];
    // A file with no entry left could not be reconnected: a zero count would have the mount
    // free it, so it keeps its count (and its "disconnected" problem stays unrepaired).
    if (want != n.d.nlink && want != 0 && want <= UINT32_MAX) {
      size_t p = report("link_count", ino, "the link count is " + num(n.d.nlink) + ", it should be " + num(want));
      n.d.nlink = static_cast<uint32_t>(want);
      plan_write(p, inode_offset(ino) + offsetof(fs::DiskInode, nlink), n.d.nlink);
    }
    if (!n.is_dir() || root_ == 0) continue;
    uint64_t parent = ino == root_ ? root_ : (container.count(ino) ? container[ino] : 0);
    if (parent != 0 && parent != n.d.parent) {
      size_t p = report("dir_parent", ino,
                        "the parent pointer is " + num(n.d.parent) + ", the directory is in " + num(parent));
      n.d.parent = parent;
      plan_write(p, inode_offset(ino) + offsetof(fs::DiskInode, parent), n.d.parent);
    }
  }
}

// An entry naming an inode that is not in use, in a block that holds an inode chunk the chain
// does not reach: evidence that the chain's head is wrong (check_filesystem() looks for the real one).
void Checker::note_unchained(uint64_t ino) {
  uint64_t b = fs::ino_block(ino);
  if (fs::ino_slot(ino) == 0 || !block_ok(b)) return;
  auto o = map_.find(b, 1);
  if (o && o->kind == OwnerKind::kChunk) return;
  uint64_t magic;
  memcpy(&magic, img_.block(b), sizeof magic);
  if (magic == fs::kChunkMagic) out_.evidence.unchained_chunks++;
}

// The superblock's next generation is written only at a clean unmount and the mount takes the
// highest in use + 1 anyway, so a stale one is no problem; inodes fsck creates get a fresh one.
void Checker::note_generations() {
  for (auto& [ino, n] : nodes_)
    if (!n.dropped && n.d.generation < UINT64_MAX)
      sb_.next_generation = std::max(sb_.next_generation, n.d.generation + 1);
}

void Checker::collect_stats() {
  Stats& s = out_.stats;
  for (auto& [ino, n] : nodes_) {
    if (n.dropped) continue;
    s.inodes++;
    if (n.is_reg()) out_.evidence.data_blocks += n.data_blocks;
    if (n.is_dir())
      s.directories++;
    else if (n.is_reg())
      s.files++;
    else if (n.is_symlink())
      s.symlinks++;
    else
      s.special++;
  }
  s.block_count = sb_.block_count;
  s.used_blocks = std::min(sb_.block_count, data_start_ + map_.used());
  s.free_blocks = sb_.block_count - s.used_blocks;
}

}  // namespace daxfs::fsck

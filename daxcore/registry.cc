// The DAX registry segment (registry.h) on Boost.Interprocess: a managed_shared_memory with three
// named objects (the header, the session table, the mapping table), created by the daemon with
// mode 0600 and removed when it exits. Boost.Interprocess exceptions end here, as errnos.
#include "daxcore/registry.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <poll.h>
#include <unistd.h>

#include <boost/interprocess/managed_shared_memory.hpp>
#include <boost/interprocess/permissions.hpp>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

namespace daxfs::dax {

namespace bip = boost::interprocess;

namespace {
constexpr uint64_t kRegistryMagic = 0x6461787265673031ull;  // "daxreg01"
constexpr uint32_t kRegistryAbi = 1;
constexpr size_t kSegmentBytes = sizeof(RegistryHeader) + kMaxSessions * sizeof(SessionEntry) +
                                 kMaxMappings * sizeof(MappingEntry) + (256 << 10);

void seq_store(uint64_t* word, uint64_t v) { __atomic_store_n(word, v, __ATOMIC_RELEASE); }
uint64_t seq_load(const uint64_t* word) { return __atomic_load_n(word, __ATOMIC_ACQUIRE); }

// SIGKILLs `pid` if it is still the process that started at `start`, and waits until it is gone.
bool kill_stale(pid_t pid, uint64_t start) {
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) return false;
  bool killed = false;
  if (process_start_time(pid) == start && start != 0 &&
      syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0) == 0) {
    pollfd p{pidfd, POLLIN, 0};
    poll(&p, 1, 10000);  // readable once it has exited (its mappings are gone)
    killed = true;
  }
  close(pidfd);
  return killed;
}
}  // namespace

struct Registry::Segment {
  bip::managed_shared_memory shm;
};

uint64_t process_start_time(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), {});
  size_t close = text.rfind(')');  // the command name may hold spaces and parentheses
  if (close == std::string::npos) return 0;
  std::istringstream rest(text.substr(close + 2));
  std::string field;
  for (int i = 3; i <= 22 && rest >> field; i++) {
    if (i == 22) return std::strtoull(field.c_str(), nullptr, 10);
  }
  return 0;
}

std::string Registry::name_for(dev_t dev, ino_t ino) {
  return "daxfs." + std::to_string(dev) + "." + std::to_string(ino);
}

Result<RegistrySnapshot> Registry::read(const std::string& name) {
  try {
    bip::managed_shared_memory shm(bip::open_read_only, name.c_str());
    auto* header = shm.find<RegistryHeader>("header").first;
    auto sessions = shm.find<SessionEntry>("sessions");
    auto mappings = shm.find<MappingEntry>("mappings");
    if (!header || !sessions.first || !mappings.first || header->magic != kRegistryMagic ||
        header->abi != kRegistryAbi || sessions.second != kMaxSessions || mappings.second != kMaxMappings)
      return error(EPROTO);
    for (int attempt = 0; attempt < 1000; attempt++) {
      uint64_t seq = seq_load(&header->seq);
      if (seq & 1) {
        usleep(100);
        continue;
      }
      RegistrySnapshot snap;
      memcpy(&snap.header, header, sizeof snap.header);
      uint64_t s_used = std::min<uint64_t>(snap.header.sessions_used, kMaxSessions);
      uint64_t m_used = std::min<uint64_t>(snap.header.mappings_used, kMaxMappings);
      for (uint64_t i = 0; i < s_used; i++)
        if (sessions.first[i].used) snap.sessions.push_back(sessions.first[i]);
      for (uint64_t i = 0; i < m_used; i++)
        if (mappings.first[i].used) snap.mappings.push_back(mappings.first[i]);
      std::atomic_thread_fence(std::memory_order_acquire);
      if (seq_load(&header->seq) == seq) return snap;
    }
    return error(EAGAIN);
  } catch (const bip::interprocess_exception& e) {
    // EACCES stays itself: the registry is 0600, and "daxfsctl mappers" by another user should
    // say "Permission denied", not "Input/output error".
    if (e.get_native_error() == EACCES || e.get_error_code() == bip::security_error) return error(EACCES);
    return error(e.get_native_error() == ENOENT || e.get_error_code() == bip::not_found_error ? ENOENT : EIO);
  } catch (const std::bad_alloc&) {
    return error(ENOMEM);
  }
}

Result<std::vector<pid_t>> Registry::reap(const std::string& name) {
  std::vector<pid_t> killed;
  int fd = open(("/dev/shm/" + name).c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return killed;  // none: a clean unmount, or the first mount
  struct stat st;
  bool ours = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid() && !(st.st_mode & 022);
  close(fd);
  if (!ours) return killed;  // planted by someone else: its list of pids means nothing
  try {
    // Without the seqlock: a daemon that died inside an update left it odd. Killing a superset
    // (an entry being added or removed) is fine; missing one is not.
    bip::managed_shared_memory shm(bip::open_read_only, name.c_str());
    auto* header = shm.find<RegistryHeader>("header").first;
    auto sessions = shm.find<SessionEntry>("sessions");
    if (!header || !sessions.first || header->magic != kRegistryMagic || sessions.second != kMaxSessions)
      return error(EUCLEAN);
    for (uint32_t i = 0; i < kMaxSessions; i++) {
      SessionEntry s = sessions.first[i];
      if (s.used && s.pid > 0 && kill_stale(s.pid, s.start_time)) killed.push_back(s.pid);
    }
  } catch (const bip::interprocess_exception&) {
    return error(EUCLEAN);
  } catch (const std::bad_alloc&) {
    return error(ENOMEM);
  }
  return killed;
}

Result<std::unique_ptr<Registry>> Registry::create(const std::string& name, const std::string& device,
                                                   const std::string& mountpoint, uint32_t lease_ms,
                                                   std::vector<pid_t>* killed) {
  // A crashed daemon's registry: its mappers may still touch blocks this mount will hand out.
  auto reaped = TRY(reap(name));
  if (killed) killed->insert(killed->end(), reaped.begin(), reaped.end());
  bip::shared_memory_object::remove(name.c_str());
  std::unique_ptr<Registry> r(new Registry);
  r->name_ = name;
  try {
    bip::permissions perm(0600);
    r->segment_ = std::make_unique<Segment>(
        Segment{bip::managed_shared_memory(bip::create_only, name.c_str(), kSegmentBytes, nullptr, perm)});
    bip::managed_shared_memory& shm = r->segment_->shm;
    r->header_ = shm.construct<RegistryHeader>("header")();
    r->sessions_ = shm.construct<SessionEntry>("sessions")[kMaxSessions]();
    r->mappings_ = shm.construct<MappingEntry>("mappings")[kMaxMappings]();
  } catch (const bip::interprocess_exception& e) {
    bip::shared_memory_object::remove(name.c_str());
    return error(e.get_native_error() ? e.get_native_error() : EIO);
  } catch (const std::bad_alloc&) {
    bip::shared_memory_object::remove(name.c_str());
    return error(ENOMEM);
  }
  RegistryHeader& h = *r->header_;
  h.magic = kRegistryMagic;
  h.abi = kRegistryAbi;
  h.daemon_pid = getpid();
  h.lease_ms = lease_ms;
  snprintf(h.device, sizeof h.device, "%s", device.c_str());
  snprintf(h.mountpoint, sizeof h.mountpoint, "%s", mountpoint.c_str());
  r->free_mappings_.reserve(kMaxMappings);
  for (uint32_t i = kMaxMappings; i > 0; i--) r->free_mappings_.push_back(i - 1);
  return r;
}

Registry::~Registry() {
  segment_.reset();
  bip::shared_memory_object::remove(name_.c_str());
}

void Registry::begin_update() {
  seq_store(&header_->seq, header_->seq + 1);
  std::atomic_thread_fence(std::memory_order_release);
}

void Registry::end_update() { seq_store(&header_->seq, header_->seq + 1); }

std::optional<uint32_t> Registry::add_mapping(const MappingEntry& m) {
  if (free_mappings_.empty()) return std::nullopt;
  uint32_t i = free_mappings_.back();
  free_mappings_.pop_back();
  mappings_[i] = m;
  mappings_[i].used = 1;
  header_->mappings_used = std::max<uint64_t>(header_->mappings_used, i + 1);
  return i;
}

void Registry::remove_mapping(uint32_t index) {
  mappings_[index].used = 0;
  free_mappings_.push_back(index);
}

void Registry::set_session(uint32_t slot, const SessionEntry& s) {
  sessions_[slot] = s;
  sessions_[slot].used = 1;
  header_->sessions_used = std::max<uint64_t>(header_->sessions_used, slot + 1);
}

void Registry::clear_session(uint32_t slot) { sessions_[slot] = SessionEntry{}; }

}  // namespace daxfs::dax

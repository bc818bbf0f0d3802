// daxfs DEVICE MOUNTPOINT [-f] [-d] [-s|-m] [-o OPTIONS]: the FUSE daemon. Also started by
// `mount -t fuse.daxfs DEVICE MOUNTPOINT -o OPTIONS` through mount.fuse3.
// Order: open and mount the filesystem (errors reach the terminal), mount FUSE, fork into the
// background, then start the failure notifier and serve requests until unmounted.
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "fs/fuse/init_flags.h"
#include "fs/fuse/kernel_caches.h"
#include "fs/fuse/ops.h"

namespace {

const char* kUsage =
    "usage: daxfs DEVICE MOUNTPOINT [-f] [-d] [-s|-m] [-o OPTIONS]\n"
    "\n"
    "Mounts the daxfs on the emulated pmem DEVICE (a file formatted by mkfs.daxfs).\n"
    "  -f            stay in the foreground\n"
    "  -d            debug: foreground, print every FUSE request\n"
    "  -s            serve requests from one thread (default: libfuse's thread pool; which is\n"
    "                faster depends on the machine, see docs/benchmarks.md)\n"
    "  -m            libfuse's thread pool (the default)\n"
    "  -o OPTIONS    comma-separated mount options:\n"
    "     dax=always|inode|never   DAX files bypass the page cache (default always)\n"
    "     mce_kill=early|late      memory-failure kill policy (default late)\n"
    "     lease=SECONDS            how long a DAX mapper has to let go of pages before it is\n"
    "                              killed (default 5; fractions allowed, 0.01 to 3600)\n"
    "     ro, allow_other, and the usual FUSE and mount options\n"
    "  -h, --help    this text\n";

struct Args {
  std::string device, mountpoint;
  bool foreground = false, debug = false, multi = true, remount = false;
  daxfs::fs::MountOptions mount;
  std::vector<std::string> fuse_opts;  // passed through to libfuse
  // The per-mount flags the options set and clear: a remount starts from the mount's own flags
  // (mount(2) with MS_REMOUNT replaces them all) and changes only what the options name.
  unsigned long flags_set = 0, flags_cleared = 0;
  uint32_t lease_ms = 5000;
  bool mce_early = false;
};

[[noreturn]] void die(const std::string& msg) {
  fprintf(stderr, "daxfs: %s\n", msg.c_str());
  exit(1);
}

void parse_options(const std::string& list, Args& a) {
  size_t pos = 0;
  while (pos <= list.size()) {
    size_t comma = list.find(',', pos);
    std::string opt = list.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    pos = comma == std::string::npos ? list.size() + 1 : comma + 1;
    if (opt.empty()) continue;
    if (opt.rfind("dax=", 0) == 0) {
      std::string v = opt.substr(4);
      if (v == "always") a.mount.dax = daxfs::fs::DaxMode::kAlways;
      else if (v == "inode") a.mount.dax = daxfs::fs::DaxMode::kInode;
      else if (v == "never") a.mount.dax = daxfs::fs::DaxMode::kNever;
      else die("invalid option dax=" + v + " (always, inode or never)");
    } else if (opt == "dax") {
      a.mount.dax = daxfs::fs::DaxMode::kAlways;  // the old ext4/XFS spelling
    } else if (opt.rfind("mce_kill=", 0) == 0) {
      std::string v = opt.substr(9);
      if (v != "early" && v != "late") die("invalid option mce_kill=" + v + " (early or late)");
      a.mce_early = v == "early";
    } else if (opt.rfind("lease=", 0) == 0) {
      std::string v = opt.substr(6);
      char* end = nullptr;
      double seconds = strtod(v.c_str(), &end);
      if (v.empty() || *end != '\0' || !(seconds >= 0.01 && seconds <= 3600))
        die("invalid option lease=" + v + " (seconds, 0.01 to 3600)");
      a.lease_ms = static_cast<uint32_t>(seconds * 1000 + 0.5);
    } else if (opt == "remount") {
      a.remount = true;
    } else if (opt == "ro") {
      a.mount.read_only = daxfs::fs::ReadOnly::kYes;
      a.flags_set |= MS_RDONLY;
      a.fuse_opts.push_back(opt);
    } else if (opt == "rw") {
      a.mount.read_only = daxfs::fs::ReadOnly::kNo;
      a.flags_cleared |= MS_RDONLY;
    } else if (opt == "defaults" || opt == "auto" || opt == "noauto" || opt == "user" || opt == "nouser" ||
               opt == "_netdev" || opt.rfind("x-", 0) == 0 || opt == "loop" || opt.rfind("fsname=", 0) == 0 ||
               opt.rfind("subtype=", 0) == 0) {
      // mount(8) and fstab words that mean nothing to a FUSE daemon; fsname is always the device.
    } else {
      static const struct {
        const char* on;
        const char* off;
        unsigned long flag;
      } kFlags[] = {{"nosuid", "suid", MS_NOSUID}, {"nodev", "dev", MS_NODEV}, {"noexec", "exec", MS_NOEXEC},
                    {"noatime", "atime", MS_NOATIME}, {"nodiratime", "diratime", MS_NODIRATIME}};
      for (const auto& f : kFlags) {
        if (opt == f.on) a.flags_set |= f.flag, a.flags_cleared &= ~f.flag;
        if (opt == f.off) a.flags_cleared |= f.flag, a.flags_set &= ~f.flag;
      }
      a.fuse_opts.push_back(opt);
    }
  }
}

Args parse_args(int argc, char** argv) {
  Args a;
  std::vector<std::string> positional;
  for (int i = 1; i < argc; i++) {
    std::string s = argv[i];
    if (s == "-h" || s == "--help") {
      fputs(kUsage, stdout);
      exit(0);
    } else if (s == "-f") {
      a.foreground = true;
    } else if (s == "-d" || s == "--debug") {
      a.debug = a.foreground = true;
    } else if (s == "-s") {
      a.multi = false;
    } else if (s == "-m") {
      a.multi = true;
    } else if (s == "-o") {
      if (i + 1 >= argc) die("-o needs an argument");
      parse_options(argv[++i], a);
    } else if (s.rfind("-o", 0) == 0) {
      parse_options(s.substr(2), a);
    } else if (!s.empty() && s[0] == '-') {
      die("unknown option " + s + " (see daxfs --help)");
    } else {
      positional.push_back(s);
    }
  }
  if (positional.size() != 2) {
    fputs(kUsage, stderr);
    exit(1);
  }
  a.device = positional[0];
  a.mountpoint = positional[1];
  return a;
}

// Why another user could write the device (its owner is not us, or its group or other write
// bits), or "" when nobody else can. Whoever writes the media writes every inode, setuid-root
// executables and device nodes included, so such a device is served nosuid,nodev: what the kernel
// imposes on an unprivileged user's FUSE mount, for the same reason (docs/device.md).
std::string others_can_write(const struct stat& st) {
  if (st.st_uid != geteuid()) return "owned by uid " + std::to_string(st.st_uid);
  if (st.st_mode & (S_IWGRP | S_IWOTH)) {
    char octal[8];
    snprintf(octal, sizeof octal, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return std::string("mode ") + octal;
  }
  return "";
}

std::string absolute(const std::string& path) {
  char buf[PATH_MAX];
  if (realpath(path.c_str(), buf) == nullptr) die(path + ": " + strerror(errno));
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  Args a = parse_args(argc, argv);
  std::string device = absolute(a.device);
  std::string mountpoint = absolute(a.mountpoint);

  if (a.remount) {
    // mount -o remount reaches us through mount.fuse3: change the existing mount in place
    // (as `mount -i -o remount` would) rather than start a second daemon. MS_REMOUNT sets every
    // per-mount flag anew: the mount's own (libfuse's default nosuid,nodev among them) are kept
    // but for those the options change, and a device others can write stays nosuid,nodev.
    struct statvfs sv;
    if (statvfs(mountpoint.c_str(), &sv) != 0) die("remount " + mountpoint + ": " + strerror(errno));
    static const struct {
      unsigned long st, ms;
    } kKept[] = {{ST_RDONLY, MS_RDONLY},   {ST_NOSUID, MS_NOSUID},         {ST_NODEV, MS_NODEV},
                 {ST_NOEXEC, MS_NOEXEC},   {ST_NOATIME, MS_NOATIME},       {ST_NODIRATIME, MS_NODIRATIME},
                 {ST_RELATIME, MS_RELATIME}};
    unsigned long flags = 0;
    for (const auto& k : kKept)
      if (sv.f_flag & k.st) flags |= k.ms;
    flags = (flags & ~a.flags_cleared) | a.flags_set;
    struct stat st;
    if (stat(device.c_str(), &st) == 0) {
      if (std::string who = others_can_write(st); !who.empty()) {
        if (a.flags_cleared & (MS_NOSUID | MS_NODEV))
          fprintf(stderr, "daxfs: %s can be written by another user (%s): kept nosuid,nodev\n", device.c_str(), who.c_str());
        flags |= MS_NOSUID | MS_NODEV;
      }
    }
    if (mount(device.c_str(), mountpoint.c_str(), "fuse", MS_REMOUNT | flags, nullptr) != 0)
      die("remount " + mountpoint + ": " + strerror(errno));
    return 0;
  }

  // A crashed daemon's DAX mappers may still touch the device's blocks: they go before this mount
  // reads or frees anything (the registry names them; docs/dax-design.md, "Crashes").
  struct stat dev_st;
  if (stat(device.c_str(), &dev_st) != 0) die(device + ": " + strerror(errno));
  const std::string registry = daxfs::dax::Registry::name_for(dev_st.st_dev, dev_st.st_ino);
  auto reaped = daxfs::dax::Registry::reap(registry);
  if (!reaped)
    die("the DAX registry /dev/shm/" + registry + " of a previous mount cannot be read, so the processes "
        "that may still map the device cannot be found: make sure none runs, remove it, mount again");
  for (pid_t pid : *reaped)
    fprintf(stderr, "daxfs: %s: killed pid %d, a DAX mapper of the previous mount\n", device.c_str(), pid);

  auto dev = daxfs::pmemdev::Device::open(device, {});
  if (!dev) die(device + ": " + strerror(dev.error()));
  std::string why;
  auto fs = daxfs::fs::Filesystem::mount(std::move(dev).value(), a.mount, why);
  if (!fs) die(device + ": " + (why.empty() ? strerror(fs.error()) : why));
  // Whoever can read the device reads every file's data, whatever the files' modes: say so once
  // mounted (a refused mount stays one line), before the fork takes the terminal away.
  for (const std::string& warning : daxfs::pmemdev::Device::exposure_warnings(device))
    fprintf(stderr, "daxfs: warning: %s\n", warning.c_str());

  std::string opts = "fsname=" + device + ",default_permissions";
  for (const std::string& o : a.fuse_opts) opts += "," + o;
  // libfuse mounts nosuid,nodev unless told suid or dev; a device others can write never is.
  if (std::string who = others_can_write(dev_st); !who.empty()) {
    if (a.flags_cleared & (MS_NOSUID | MS_NODEV))
      fprintf(stderr, "daxfs: %s can be written by another user (%s): mounted nosuid,nodev\n", device.c_str(), who.c_str());
    opts += ",nosuid,nodev";
  }
  std::vector<std::string> words = {"daxfs", "-o", opts};
  if (a.debug) words.push_back("-d");
  std::vector<char*> cargv;
  for (auto& w : words) cargv.push_back(w.data());
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(cargv.size()), cargv.data());

  // The DAX layer: its registry, sessions and fault service.
  daxfs::dax::DaxOptions dax_opts;
  dax_opts.device = device;
  dax_opts.mountpoint = mountpoint;
  dax_opts.registry = registry;
  dax_opts.device_size = static_cast<uint64_t>(dev_st.st_size);
  dax_opts.lease_ms = a.lease_ms;
  dax_opts.mce_early = a.mce_early;
  auto dax = daxfs::dax::DaxService::create(**fs, dax_opts, nullptr);
  if (!dax) die("cannot create the DAX registry /dev/shm/" + dax_opts.registry + ": " + strerror(dax.error()));

  daxfs::fuse::Daemon daemon;
  daemon.fs = fs->get();
  daemon.dax = dax->get();
  fuse_lowlevel_ops ops{};
  daxfs::fuse::assign_operations(ops);
  fuse_session* se = fuse_session_new(&args, &ops, sizeof ops, &daemon);
  if (se == nullptr) die("cannot start the FUSE session (bad mount options?)");
  if (fuse_set_signal_handlers(se) != 0) die("cannot install signal handlers");
  if (fuse_session_mount(se, mountpoint.c_str()) != 0) die("cannot mount on " + mountpoint);
  // Shared mmap of direct-I/O (DAX) files through the kernel's page cache (fs/fuse/init_flags.h).
  if (!daxfs::fuse::allow_direct_io_mmap(se))
    fprintf(stderr, "daxfs: warning: libfuse refused custom I/O: shared mmap of DAX files fails with ENODEV\n");
  daemon.se = se;
  daxfs::fuse::KernelCaches caches(**fs);
  caches.attach(se);
  daxfs::dax::LayoutTee sinks(caches, **dax);
  (*fs)->set_layout_sink(&sinks);
  if (fuse_daemonize(a.foreground ? 1 : 0) != 0) die("cannot go into the background");
  (*fs)->start();
  caches.start();  // after the fork: threads do not survive it
  (*dax)->start();

  // libfuse's thread pool by default; -s serves requests from one thread. Every handler is a
  // short memory operation, so either is correct; which is faster depends on how the machine
  // schedules the wake-ups (measured both ways on the same 2-CPU machine, docs/benchmarks.md).
  int rc;
  if (a.multi) {
    fuse_loop_config config{};
    config.clone_fd = 0;
    config.max_idle_threads = 16;
    rc = fuse_session_loop_mt(se, &config);
  } else {
    rc = fuse_session_loop(se);
  }
  // Every DAX mapping is revoked (or its process killed) before the filesystem goes.
  (*dax)->stop();
  // Unmount first: it releases the device, so no failure notice can shut the filesystem down
  // (and start an invalidator) once the session is going away.
  (*fs)->unmount();
  (*fs)->set_layout_sink(nullptr);
  caches.stop();
  fuse_session_unmount(se);
  fuse_remove_signal_handlers(se);
  fuse_session_destroy(se);
  fuse_opt_free_args(&args);
  return rc == 0 ? 0 : 1;
}

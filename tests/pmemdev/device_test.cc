// The emulated device: libpmem2 mapping, persistence across reopen, the driver's read/write
// paths under poison, and refusal of bad input.
#include "pmemdev/device.h"

#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <string>

#include "tests/support/temp_dir.h"

using namespace daxfs::pmemdev;
using daxfs::test::TempDir;

namespace {
std::unique_ptr<Device> make(const std::string& path, uint64_t size = 1 << 20) {
  OpenOptions o;
  o.create = Create::kYes;
  o.size = size;
  auto d = Device::open(path, o);
  REQUIRE(d);
  return std::move(d).value();
}
std::unique_ptr<Device> reopen(const std::string& path) {
  auto d = Device::open(path, {});
  REQUIRE(d);
  return std::move(d).value();
}
}  // namespace

TEST_CASE("a device maps its file and persisted stores survive a reopen", "[pmemdev][device]") {
  TempDir dir;
  std::string path = dir.file("pmem0");
  {
    auto d = make(path);
    CHECK(d->size() == 1 << 20);
    CHECK(d->cache_line_granularity());
    const char msg[] = "persistent hello";
    d->memcpy_persist(4096, msg, sizeof msg);
    d->memcpy_nodrain(8192, msg, sizeof msg);
    d->drain();
    d->memset_persist(12288, 0x5a, 100);
  }
  auto d = reopen(path);
  CHECK(std::string(d->base() + 4096) == "persistent hello");
  CHECK(std::string(d->base() + 8192) == "persistent hello");
  CHECK(static_cast<unsigned char>(d->base()[12288 + 99]) == 0x5a);
  // The media file holds the bytes at their offsets: the device is a plain range of memory.
  FILE* f = fopen(path.c_str(), "rb");
  REQUIRE(f);
  char buf[32] = {};
  REQUIRE(fseek(f, 4096, SEEK_SET) == 0);
  REQUIRE(fread(buf, 1, 16, f) == 16);
  fclose(f);
  CHECK(std::string(buf) == "persistent hello");
}

TEST_CASE("creating extends an existing device and never shrinks it", "[pmemdev][device]") {
  TempDir dir;
  std::string path = dir.file("pmem0");
  make(path, 1 << 20);
  CHECK(make(path, 2 << 20)->size() == 2 << 20);
  CHECK(make(path, 1 << 20)->size() == 2 << 20);
}

TEST_CASE("bad device opens are refused with an errno", "[pmemdev][device]") {
  TempDir dir;
  OpenOptions create;
  create.create = Create::kYes;
  create.size = 0;
  CHECK(Device::open(dir.file("a"), create).error() == EINVAL);
  create.size = 4097;
  CHECK(Device::open(dir.file("b"), create).error() == EINVAL);
  CHECK(Device::open(dir.file("missing"), {}).error() == ENOENT);
  CHECK(Device::open(dir.path(), {}).error() == EISDIR);
  FILE* f = fopen(dir.file("tiny").c_str(), "w");
  fputs("x", f);
  fclose(f);
  CHECK(Device::open(dir.file("tiny"), {}).error() == EINVAL);
}

TEST_CASE("reads of poison fail with EIO and aligned recovery writes clear it",
          "[pmemdev][device][poison]") {
  TempDir dir;
  auto d = make(dir.file("pmem0"));
  char buf[4096];
  memset(buf, 0xab, sizeof buf);
  REQUIRE(d->write(8192, buf, 4096));
  REQUIRE(d->inject_error(8192 + 1000, 10));  // rounds out to sector 17 (8704..9216)
  CHECK(d->list_errors() == std::vector<ByteRange>{{8704, 512}});
  CHECK(d->read(8192, buf, 4096).error() == EIO);
  CHECK(d->read(8192, buf, 512));              // sector 16 is fine
  CHECK(d->read(9216, buf, 512));              // so is 18
  CHECK(d->write(8704 + 1, buf, 100).error() == EIO);  // partial: refused, nothing written
  CHECK(d->poisoned(8704, 1));
  CHECK(d->write(8192, buf, 4096));            // whole sectors: the recovery write clears
  CHECK(d->list_errors().empty());
  CHECK(d->read(8192, buf, 4096));
}

TEST_CASE("poison outside the device or of zero length is refused", "[pmemdev][device][poison]") {
  TempDir dir;
  auto d = make(dir.file("pmem0"));
  CHECK(d->inject_error(1 << 20, 512).error() == ERANGE);
  CHECK(d->inject_error((1 << 20) - 512, 1024).error() == ERANGE);
  CHECK(d->inject_error(0, 0).error() == EINVAL);
  CHECK(d->inject_error(UINT64_MAX - 10, 100).error() == ERANGE);
  CHECK(d->clear_error(1 << 20, 1).error() == ERANGE);
  char b[16];
  CHECK(d->read((1 << 20) - 8, b, 16).error() == ERANGE);
  CHECK(d->list_errors().empty());
}

TEST_CASE("the badblock list lives beside the media and survives a reopen",
          "[pmemdev][device][poison]") {
  TempDir dir;
  std::string path = dir.file("pmem0");
  {
    auto d = make(path);
    REQUIRE(d->inject_error(8192, 4096));
    REQUIRE(d->inject_error(65536, 1));
    REQUIRE(d->clear_error(9216, 512));
  }
  struct stat st;
  REQUIRE(stat(ControlFile::path_for(path).c_str(), &st) == 0);
  auto d = reopen(path);
  CHECK(d->list_errors() == std::vector<ByteRange>{{8192, 1024}, {9728, 2560}, {65536, 512}});
  // The media bytes were never touched by the poison bookkeeping.
  std::vector<char> zeros(1 << 20, 0);
  CHECK(memcmp(d->base(), zeros.data(), zeros.size()) == 0);
}

namespace {
unsigned file_mode(const std::string& path) {
  struct stat st;
  REQUIRE(stat(path.c_str(), &st) == 0);
  return st.st_mode & 07777;
}
uint64_t file_size(const std::string& path) {
  struct stat st;
  REQUIRE(stat(path.c_str(), &st) == 0);
  return static_cast<uint64_t>(st.st_size);
}
bool exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}
void make_file(const std::string& path, uint64_t size, mode_t mode) {
  FILE* f = fopen(path.c_str(), "w");
  REQUIRE(f);
  fclose(f);
  REQUIRE(truncate(path.c_str(), static_cast<off_t>(size)) == 0);
  REQUIRE(chmod(path.c_str(), mode) == 0);
}
// Sets the umask for one scope.
class Umask {
 public:
  explicit Umask(mode_t mask) : old_(umask(mask)) {}
  ~Umask() { umask(old_); }

 private:
  mode_t old_;
};
}  // namespace

TEST_CASE("new device and control files are private to their owner whatever the umask",
          "[pmemdev][device]") {
  TempDir dir;
  std::string path = dir.file("pmem0");
  {
    Umask open_umask(0);
    make(path);
  }
  CHECK(file_mode(path) == 0600);
  CHECK(file_mode(ControlFile::path_for(path)) == 0600);
  CHECK(Device::exposure_warnings(path).empty());
}

TEST_CASE("an existing device keeps its mode and the exposure is reported", "[pmemdev][device]") {
  TempDir dir;
  std::string path = dir.file("pmem0");
  make_file(path, 1 << 20, 0644);
  make(path, 2 << 20);  // extends it
  CHECK(file_mode(path) == 0644);
  auto warnings = Device::exposure_warnings(path);
  REQUIRE(warnings.size() == 1);
  CHECK(warnings[0] == path + " is readable by other users (mode 0644): they can read every file's data; chmod 600 " + path);
  std::string ctl = ControlFile::path_for(path);
  REQUIRE(chmod(ctl.c_str(), 0662) == 0);
  REQUIRE(chmod(path.c_str(), 0660) == 0);
  warnings = Device::exposure_warnings(path);
  REQUIRE(warnings.size() == 2);
  CHECK(warnings[0].find(" is writable by other users (mode 0660): they can read and overwrite") != std::string::npos);
  CHECK(warnings[1].rfind(ctl + " is writable by other users (mode 0662)", 0) == 0);
  REQUIRE(chmod(path.c_str(), 0700) == 0);  // execute bits expose nothing
  REQUIRE(chmod(ctl.c_str(), 0600) == 0);
  CHECK(Device::exposure_warnings(path).empty());
}

TEST_CASE("exclusive creation refuses an existing file and changes nothing", "[pmemdev][device]") {
  TempDir dir;
  std::string path = dir.file("pmem0");
  make_file(path, 1 << 20, 0644);
  OpenOptions o;
  o.create = Create::kExclusive;
  o.size = 2 << 20;
  CHECK(Device::open(path, o).error() == EEXIST);
  CHECK(file_size(path) == 1 << 20);
  CHECK_FALSE(exists(ControlFile::path_for(path)));
}

TEST_CASE("a device above the mappable maximum is refused before the file is touched",
          "[pmemdev][device]") {
  TempDir dir;
  OpenOptions o;
  o.create = Create::kYes;
  o.size = kMaxDeviceSize + kPageSize;
  CHECK(Device::open(dir.file("new"), o).error() == EFBIG);
  CHECK_FALSE(exists(dir.file("new")));
  CHECK_FALSE(exists(ControlFile::path_for(dir.file("new"))));

  std::string path = dir.file("existing");
  make_file(path, 1 << 20, 0600);
  CHECK(Device::open(path, o).error() == EFBIG);
  CHECK(file_size(path) == 1 << 20);
  CHECK_FALSE(exists(ControlFile::path_for(path)));

  // An existing sparse file above the maximum: refused for mapping, usable for its control file.
  std::string huge = dir.file("huge");
  make_file(huge, kMaxDeviceSize * 2, 0600);
  CHECK(Device::open(huge, {}).error() == EFBIG);
  CHECK_FALSE(exists(ControlFile::path_for(huge)));
  OpenOptions control_only;
  control_only.map = Map::kNo;
  CHECK(Device::open(huge, control_only));
}

TEST_CASE("a failed open removes the files it created and truncates what it extended",
          "[pmemdev][device]") {
  TempDir dir;
  // A control file of another format makes the open fail after the media file was handled.
  auto bad_control = [&](const std::string& path) {
    FILE* f = fopen(ControlFile::path_for(path).c_str(), "w");
    REQUIRE(f);
    fputs("not a control file", f);
    fclose(f);
  };
  std::string fresh = dir.file("fresh");
  bad_control(fresh);
  OpenOptions o;
  o.create = Create::kYes;
  o.size = 2 << 20;
  CHECK(Device::open(fresh, o).error() == EPROTO);
  CHECK_FALSE(exists(fresh));
  CHECK(file_size(ControlFile::path_for(fresh)) == 18);  // not ours: left alone

  std::string old = dir.file("old");
  make_file(old, 1 << 20, 0600);
  bad_control(old);
  CHECK(Device::open(old, o).error() == EPROTO);
  CHECK(file_size(old) == 1 << 20);
}

TEST_CASE("revert undoes what a successful open changed", "[pmemdev][device]") {
  TempDir dir;
  std::string path = dir.file("pmem0");
  OpenOptions o;
  o.create = Create::kExclusive;
  o.size = 1 << 20;
  OpenChanges changes;
  {
    auto d = Device::open(path, o);
    REQUIRE(d);
    changes = (*d)->changes();
  }
  CHECK(changes.created_media);
  CHECK(changes.created_control);
  REQUIRE(Device::revert(path, changes));
  CHECK_FALSE(exists(path));
  CHECK_FALSE(exists(ControlFile::path_for(path)));

  make(path, 1 << 20);
  o.create = Create::kYes;
  o.size = 4 << 20;
  {
    auto d = Device::open(path, o);
    REQUIRE(d);
    changes = (*d)->changes();
    CHECK((*d)->size() == 4 << 20);
  }
  CHECK_FALSE(changes.created_media);
  CHECK_FALSE(changes.created_control);
  CHECK(changes.extended);
  CHECK(changes.old_size == 1 << 20);
  REQUIRE(Device::revert(path, changes));
  CHECK(file_size(path) == 1 << 20);
  CHECK(exists(ControlFile::path_for(path)));
}

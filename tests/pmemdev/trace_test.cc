// Power-fail emulation (pmemdev/trace.h): what a Device records, and which images PowerFail
// materialises from a trace.
#include "pmemdev/trace.h"

#include <catch2/catch.hpp>
#include <cstring>
#include <set>
#include <string>

#include "pmemdev/device.h"
#include "tests/support/temp_dir.h"

using namespace daxfs::pmemdev;
using daxfs::test::TempDir;

namespace {
constexpr size_t kImage = 4096;
std::string at(const std::vector<char>& image, size_t off, size_t n) { return std::string(image.data() + off, n); }
std::vector<char> crash(const PowerFail& pf, PowerFail::Choice c, uint64_t seed = 0) {
  std::vector<char> out(kImage);
  pf.materialise(out.data(), c, seed);
  return out;
}
}  // namespace

TEST_CASE("power fail: a store is durable once flushed and then fenced", "[pmemdev][trace]") {
  PersistTrace t;
  t.store(0, "AAAAAAAA", 8);
  t.flush(0, 8);
  t.store(64, "BBBBBBBB", 8);
  t.flush(64, 8);
  t.store(128, "CCCCCCCC", 8);  // never flushed
  t.fence();
  t.store(0, "aaaaaaaa", 8);    // after the fence's flush: not captured by it
  t.store(192, "DDDDDDDD", 8);
  t.flush(192, 8);              // flushed, no fence yet
  PowerFail pf(std::vector<char>(kImage, '.'), t);
  pf.advance_to(pf.events());
  auto none = crash(pf, PowerFail::Choice::kNone);
  CHECK(at(none, 0, 8) == "AAAAAAAA");
  CHECK(at(none, 64, 8) == "BBBBBBBB");
  CHECK(at(none, 128, 8) == "........");
  CHECK(at(none, 192, 8) == "........");
  auto all = crash(pf, PowerFail::Choice::kAll);
  CHECK(at(all, 0, 8) == "aaaaaaaa");
  CHECK(at(all, 128, 8) == "CCCCCCCC");
  CHECK(at(all, 192, 8) == "DDDDDDDD");
  CHECK(pf.pending_lines() == 3);  // lines 0, 2 and 3
}

TEST_CASE("power fail: before a fence nothing it orders is durable; positions replay forward",
          "[pmemdev][trace]") {
  PersistTrace t;
  t.store(0, "AAAAAAAA", 8);
  t.flush(0, 8);
  t.fence();
  PowerFail pf(std::vector<char>(kImage, '.'), t);
  pf.advance_to(2);  // store and flush done, the fence not yet
  CHECK(at(crash(pf, PowerFail::Choice::kNone), 0, 8) == "........");
  CHECK(at(crash(pf, PowerFail::Choice::kAll), 0, 8) == "AAAAAAAA");
  pf.advance_to(3);
  CHECK(at(crash(pf, PowerFail::Choice::kNone), 0, 8) == "AAAAAAAA");
  CHECK(pf.pending_lines() == 0);
}

TEST_CASE("power fail: each line keeps a prefix of its stores, independently of other lines", "[pmemdev][trace]") {
  PersistTrace t;
  t.store(0, "11111111", 8);
  t.store(0, "22222222", 8);
  t.store(8, "33333333", 8);  // same line, later
  t.store(64, "xxxxxxxx", 8);
  PowerFail pf(std::vector<char>(kImage, '.'), t);
  pf.advance_to(pf.events());
  std::set<std::string> line0, line1;
  for (uint64_t seed = 0; seed < 400; seed++) {
    auto img = crash(pf, PowerFail::Choice::kRandom, seed);
    line0.insert(at(img, 0, 16));
    line1.insert(at(img, 64, 8));
  }
  // Prefixes of (1, 2, 3) and the words a torn next store may add; never "3 without 2".
  for (const std::string& s : line0) {
    INFO(s);
    bool prefix = s == "................" || s == "11111111........" || s == "22222222........" ||
                  s == "2222222233333333";
    CHECK(prefix);  // 8-byte aligned stores of 8 bytes never tear
  }
  CHECK(line0.size() == 4);
  CHECK(line1 == std::set<std::string>{"........", "xxxxxxxx"});
}

TEST_CASE("power fail: a store longer than 8 bytes may tear at 8-byte words", "[pmemdev][trace]") {
  PersistTrace t;
  t.store(0, "ABCDEFGHIJKLMNOPQRSTUVWX", 24);  // three words of one line
  PowerFail pf(std::vector<char>(kImage, '.'), t);
  pf.advance_to(pf.events());
  std::set<std::string> seen;
  for (uint64_t seed = 0; seed < 400; seed++) {
    std::vector<char> img(kImage);
    if (pf.materialise(img.data(), PowerFail::Choice::kRandom, seed)) seen.insert(at(img, 0, 24));
  }
  for (const std::string& s : seen)
    for (size_t w = 0; w < 24; w += 8) {
      INFO(s);
      CHECK((s.substr(w, 8) == std::string(8, '.') || s.substr(w, 8) == std::string("ABCDEFGHIJKLMNOPQRSTUVWX").substr(w, 8)));
    }
  CHECK(seen.count("........IJKLMNOP........") == 1);  // a torn middle word alone
  CHECK(seen.count("........................") == 0);  // kNone's state: materialise said false
}

TEST_CASE("a traced device records every store with its flush and fence", "[pmemdev][trace]") {
  TempDir dir;
  OpenOptions o;
  o.create = Create::kYes;
  o.size = 1 << 20;
  auto d = Device::open(dir.file("pmem0"), o);
  REQUIRE(d);
  PersistTrace t;
  std::vector<char> before((*d)->base(), (*d)->base() + (*d)->size());
  (*d)->set_trace(&t);
  (*d)->memcpy_persist(4096, "durable!", 8);
  (*d)->memcpy_nodrain(8192, "inflight", 8);
  (*d)->memset_nodrain(12288, 'z', 100);
  (*d)->drain();
  (*d)->memcpy_nodrain(16384, "lost....", 8);
  (*d)->set_trace(nullptr);
  (*d)->memcpy_persist(20480, "untraced", 8);
  auto events = t.events();
  REQUIRE(events.size() == 10);  // store flush fence, store flush, store flush, fence, store flush
  CHECK(t.fences() == 2);
  PowerFail pf(before, t);
  pf.advance_to(pf.events());
  std::vector<char> img(before.size());
  pf.materialise(img.data(), PowerFail::Choice::kNone, 0);
  CHECK(std::string(img.data() + 4096, 8) == "durable!");
  CHECK(std::string(img.data() + 8192, 8) == "inflight");  // drained
  CHECK(img[12288 + 99] == 'z');
  CHECK(std::string(img.data() + 16384, 8) == std::string(8, '\0'));  // no fence after it
  CHECK(std::string(img.data() + 20480, 8) == std::string(8, '\0'));  // not traced
  CHECK(std::string((*d)->base() + 16384, 8) == "lost....");  // the live device has it all
}

// crashtest: the crash-state explorer (docs/reliability.md). For each workload it formats a
// small device, mounts it with a power-fail trace on the device (pmemdev/trace.h), runs the
// workload's operations through the Filesystem API and takes the filesystem's logical state after
// each one. Then it materialises crash states from the trace: after every fence with every
// in-flight line lost, just before every fence with every store kept, and a random sample of
// (point, subset of in-flight lines, torn words). Each state is recovered (a mount: journal
// replay, orphans freed), compared with the states the operations allow, unmounted and checked
// with fsck.daxfs's library. Ends with the line "crash-states: N checked, N failed".
#include <fcntl.h>
#include <getopt.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "fs/filesystem.h"
#include "fs/fsck/fsck.h"
#include "pmemdev/trace.h"
#include "tests/crash/workload.h"

namespace daxfs::crash {
namespace {

using pmemdev::PowerFail;

struct Options {
  uint64_t samples = 200;   // random states per workload
  uint64_t seed = 1;
  uint64_t size = 16 << 20;  // the device (the smallest daxfs)
  std::string dir;
  std::string bug;           // Journal::Bug to inject (the explorer's own test)
  uint64_t max_failures = 3;  // reported per workload; the rest are counted
  bool one_state = false;     // --state: check only this one
  uint64_t state_point = 0;
  PowerFail::Choice state_choice = PowerFail::Choice::kNone;
  uint64_t state_seed = 0;
  std::string save_image;     // with --state: write the crash image here
  bool verbose = false;
};

const char* choice_name(PowerFail::Choice c) {
  return c == PowerFail::Choice::kNone ? "none" : c == PowerFail::Choice::kAll ? "all" : "random";
}

struct OpRecord {
  std::string text;  // "line N: ..."
  size_t begin = 0, end = 0;  // its events
  Atomicity atomicity = Atomicity::kAll;
  std::string path;
};

struct State {
  size_t point;
  PowerFail::Choice choice;
  uint64_t seed;
};

std::string describe(const Node& n) {
  std::ostringstream o;
  o << "mode " << std::oct << n.mode << std::dec << " size " << n.size << " nlink " << n.nlink << " blocks "
    << n.blocks << " uid " << n.uid << " gid " << n.gid << " xattrs " << n.xattrs.size();
  return o.str();
}

// Where `r` first differs from `want` (empty when equal), ignoring the data of `skip_data`.
std::string difference(const Snapshot& r, const Snapshot& want, const std::string* skip_data) {
  for (const auto& [path, n] : want) {
    auto it = r.find(path);
    if (it == r.end()) return path + " is missing";
    Node a = it->second, b = n;
    if (skip_data && path == *skip_data) a.data.clear(), b.data.clear();
    if (a == b) continue;
    if (a.data != b.data) {
      size_t i = 0;
      while (i < a.data.size() && i < b.data.size() && a.data[i] == b.data[i]) i++;
      return path + ": its bytes differ from offset " + std::to_string(i) + " (size " + std::to_string(a.size) +
             ", expected " + std::to_string(b.size) + ")";
    }
    if (a.xattrs != b.xattrs) return path + ": its xattrs differ";
    return path + ": " + describe(a) + ", expected " + describe(b);
  }
  for (const auto& [path, n] : r)
    if (!want.count(path)) return path + " should not exist";
  return "";
}

// Whether the bytes `got` are, 8-byte word by word, either `a`'s or `b`'s (zero past their ends).
bool word_mix(const std::string& got, const std::string& a, const std::string& b) {
  auto at = [](const std::string& s, size_t i) { return i < s.size() ? s[i] : '\0'; };
  for (size_t w = 0; w < got.size(); w += 8) {
    bool is_a = true, is_b = true;
    for (size_t i = w; i < std::min(w + 8, got.size()); i++) {
      is_a &= got[i] == at(a, i);
      is_b &= got[i] == at(b, i);
    }
    if (!is_a && !is_b) return false;
  }
  return true;
}

// Empty when `r` is a state the operations allow; else what is wrong, against `before`.
std::string judge(const Snapshot& r, const Snapshot& before, const Snapshot* after, const OpRecord* inflight) {
  std::string d = difference(r, before, nullptr);
  if (d.empty()) return "";
  if (after && difference(r, *after, nullptr).empty()) return "";
  if (after && inflight && inflight->atomicity == Atomicity::kDataMix) {
    const std::string& p = inflight->path;
    for (const Snapshot* meta : {&before, after}) {
      if (!difference(r, *meta, &p).empty()) continue;
      auto got = r.find(p);
      if (got == r.end()) return "";  // no such file in either: metadata said all
      auto a = before.find(p), b = after->find(p);
      std::string da = a == before.end() ? "" : a->second.data, db = b == after->end() ? "" : b->second.data;
      if (word_mix(got->second.data, da, db)) return "";
      return p + ": bytes that are neither the old nor the new data (in-place write)";
    }
  }
  if (after) {
    std::string d2 = difference(r, *after, nullptr);
    return "neither the state before the operation (" + d + ") nor after it (" + d2 + ")";
  }
  return d;
}

class Explorer {
 public:
  explicit Explorer(const Options& o) : o_(o) {}

  // Returns false on a setup error (already reported).
  bool explore(const std::string& file, uint64_t& checked, uint64_t& failed) {
    name_ = file.substr(file.rfind('/') + 1);
    std::ifstream in(file);
    if (!in) return setup_error("cannot read " + file);
    std::string text((std::istreambuf_iterator<char>(in)), {});
    std::string why;
    auto ops = parse_workload(text, why);
    if (!ops) return setup_error(why);
    if (!record(*ops)) return false;
    check_states(checked, failed);
    return true;
  }

 private:
  bool setup_error(const std::string& why) {
    fprintf(stderr, "crashtest: %s: %s\n", name_.c_str(), why.c_str());
    return false;
  }

  // Formats, mounts traced, runs the workload, records every operation and state.
  bool record(const std::vector<Op>& ops) {
    device_ = o_.dir + "/pmem0";
    state_device_ = o_.dir + "/crash0";
    unlink(device_.c_str());
    unlink((device_ + ".ctl").c_str());
    pmemdev::OpenOptions create;
    create.create = pmemdev::Create::kExclusive;
    create.size = o_.size;
    {
      auto d = pmemdev::Device::open(device_, create);
      if (!d) return setup_error("cannot create " + device_ + ": " + strerror(d.error()));
      if (!fs::format(**d, {})) return setup_error("mkfs failed");
      base_.assign((*d)->base(), (*d)->base() + (*d)->size());
    }
    trace_ = std::make_unique<pmemdev::PersistTrace>();
    auto d = pmemdev::Device::open(device_, {});
    if (!d) return setup_error("cannot open " + device_);
    const pmemdev::Device* dev = d->get();
    (*d)->set_trace(trace_.get());
    std::string why;
    ops_.clear();
    snaps_.clear();
    ops_.push_back({"mount", 0, 0, Atomicity::kAll, ""});
    auto mounted = fs::Filesystem::mount(std::move(d).value(), {}, why);
    if (!mounted) return setup_error("mount: " + why);
    std::unique_ptr<fs::Filesystem> fsp = std::move(mounted).value();
    ops_.back().end = trace_->size();
    auto first = snapshot(*fsp, why);
    if (!first) return setup_error("snapshot: " + why);
    snaps_.push_back(*first);
    {
      Runner runner(*fsp, *dev);
      for (const Op& op : ops) {
        OpRecord rec;
        rec.text = "line " + std::to_string(op.line) + ": " + op.text;
        rec.begin = trace_->size();
        std::string run_why;
        Status st = runner.run(op, rec.atomicity, rec.path, run_why);
        rec.end = trace_->size();
        bool expect_fail = op.args[0][0] == '!';
        if (!st && run_why.empty()) run_why = strerror(st.error());
        if (!st && !expect_fail) return setup_error(rec.text + ": " + run_why);
        if (st && expect_fail) return setup_error(rec.text + ": succeeded, but the workload expects it to fail");
        auto snap = snapshot(*fsp, why);
        if (!snap) return setup_error(rec.text + ": snapshot: " + why);
        ops_.push_back(rec);
        snaps_.push_back(*snap);
      }
      OpRecord close{"(end) the workload's open files closed", trace_->size(), 0, Atomicity::kAll, ""};
      runner.close_all();
      close.end = trace_->size();
      ops_.push_back(close);
      snaps_.push_back(snaps_.back());
    }
    OpRecord umount{"(end) unmount", trace_->size(), 0, Atomicity::kAll, ""};
    fsp.reset();
    umount.end = trace_->size();
    ops_.push_back(umount);
    snaps_.push_back(snaps_.back());
    return true;
  }

  // The states a crash after `point` events may recover to: snaps_[done], or snaps_[inflight].
  void expected(size_t point, size_t& done, const OpRecord*& inflight, size_t& inflight_index) const {
    done = 0;
    inflight = nullptr;
    for (size_t k = 0; k < ops_.size(); k++) {
      if (point >= ops_[k].end) done = k;
      if (ops_[k].begin < point && point < ops_[k].end) inflight = &ops_[k], inflight_index = k;
    }
  }

  std::vector<State> plan(PowerFail& pf) {
    std::vector<State> states;
    if (o_.one_state) return {{o_.state_point, o_.state_choice, o_.state_seed}};
    std::vector<size_t> fences;
    for (size_t i = 0; i < pf.events(); i++)
      if (pf.event(i).kind == pmemdev::TraceEvent::Kind::kFence) fences.push_back(i);
    for (size_t f : fences) {
      states.push_back({f + 1, PowerFail::Choice::kNone, 0});  // after the fence, nothing more
      states.push_back({f, PowerFail::Choice::kAll, 0});       // just before it, everything
    }
    // The sample: as many subsets just before each fence (where lines are in flight), and a
    // quarter as many again at points anywhere (inside a copy, between a store and its flush).
    std::mt19937_64 rng(o_.seed);
    if (!fences.empty()) {
      uint64_t per_fence = std::max<uint64_t>(1, o_.samples / fences.size());
      for (size_t f : fences)
        for (uint64_t i = 0; i < per_fence; i++) states.push_back({f, PowerFail::Choice::kRandom, rng()});
      for (uint64_t i = 0; i < o_.samples / 4; i++)
        states.push_back({rng() % (pf.events() + 1), PowerFail::Choice::kRandom, rng()});
    }
    std::stable_sort(states.begin(), states.end(), [](const State& a, const State& b) { return a.point < b.point; });
    return states;
  }

  void check_states(uint64_t& checked, uint64_t& failed) {
    auto t0 = std::chrono::steady_clock::now();
    PowerFail pf(base_, *trace_);
    std::vector<State> states = plan(pf);
    std::vector<char> image(base_.size());
    uint64_t n_checked = 0, n_failed = 0, n_same = 0;
    std::vector<char> last_none;
    for (const State& s : states) {
      pf.advance_to(s.point);
      if (!o_.one_state) {
        if (s.choice == PowerFail::Choice::kAll && pf.pending_lines() == 0) continue;  // = none
        if (s.choice == PowerFail::Choice::kNone) {
          // Consecutive fences that made nothing new durable give the same state.
          if (pf.durable() == last_none) {
            n_same++;
            continue;
          }
          last_none = pf.durable();
        }
      }
      if (!pf.materialise(image.data(), s.choice, s.seed) && !o_.one_state) {
        n_same++;
        continue;  // the draw equals the none or all state of this point
      }
      n_checked++;
      std::string why = check(image, s.point);
      if (!why.empty()) {
        n_failed++;
        if (n_failed <= o_.max_failures) report(s, why);
      }
      if (o_.one_state && !o_.save_image.empty()) save(image);
    }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    size_t fences = trace_->fences();
    printf("%s: %zu operations, %zu events, %zu fences: %llu states checked, %llu failed (%llu duplicates skipped, %.1f s)\n",
           name_.c_str(), ops_.size() - 3, trace_->size(), fences, static_cast<unsigned long long>(n_checked),
           static_cast<unsigned long long>(n_failed), static_cast<unsigned long long>(n_same), secs);
    if (n_failed > o_.max_failures)
      printf("%s: %llu more failures not shown\n", name_.c_str(), static_cast<unsigned long long>(n_failed - o_.max_failures));
    fflush(stdout);
    checked += n_checked;
    failed += n_failed;
  }

  void report(const State& s, const std::string& why) {
    size_t done, index = 0;
    const OpRecord* inflight;
    expected(s.point, done, inflight, index);
    printf("FAIL %s: power failure after event %zu (%s), lines: %s, seed %llu\n  %s\n", name_.c_str(), s.point,
           inflight ? ("inside " + inflight->text).c_str() : ("after " + ops_[done].text).c_str(),
           choice_name(s.choice), static_cast<unsigned long long>(s.seed), why.c_str());
    printf("  reproduce: crashtest%s --state %zu:%s:%llu [--save-image FILE] WORKLOAD\n",
           o_.bug.empty() ? "" : (" --inject-bug " + o_.bug).c_str(), s.point, choice_name(s.choice),
           static_cast<unsigned long long>(s.seed));
  }

  void save(const std::vector<char>& image) {
    std::ofstream out(o_.save_image, std::ios::binary | std::ios::trunc);
    out.write(image.data(), static_cast<std::streamsize>(image.size()));
    printf("crash image written to %s\n", o_.save_image.c_str());
  }

  // Recovers the image, compares, checks with fsck. Empty when all is well.
  std::string check(const std::vector<char>& image, size_t point) {
    {
      int fd = open(state_device_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
      if (fd < 0) return std::string("cannot write the state device: ") + strerror(errno);
      ssize_t n = pwrite(fd, image.data(), image.size(), 0);
      close(fd);
      if (n != static_cast<ssize_t>(image.size())) return "short write of the state device";
    }
    size_t done, index = 0;
    const OpRecord* inflight;
    expected(point, done, inflight, index);
    {
      auto d = pmemdev::Device::open(state_device_, {});
      if (!d) return std::string("open: ") + strerror(d.error());
      std::string why;
      auto mounted = fs::Filesystem::mount(std::move(d).value(), {}, why);
      if (!mounted) return "the recovery mount failed: " + why;
      auto snap = snapshot(**mounted, why);
      if (!snap) return "the recovered filesystem cannot be read: " + why;
      std::string verdict = judge(*snap, snaps_[done], inflight ? &snaps_[index] : nullptr, inflight);
      if (!verdict.empty()) return verdict;
    }
    fsck::Report r = fsck::run_fsck({state_device_, fsck::Mode::kCheck});
    if (r.exit_code != fsck::kExitClean) {
      std::string what = "fsck.daxfs -n exits " + std::to_string(r.exit_code);
      if (!r.error.empty()) what += ": " + r.error;
      for (const auto& p : r.problems)
        if (p.severity == fsck::Severity::kError) {
          what += ": " + p.kind + ": " + p.detail;
          break;
        }
      return what;
    }
    return "";
  }

  const Options& o_;
  std::string name_, device_, state_device_;
  std::vector<char> base_;
  std::unique_ptr<pmemdev::PersistTrace> trace_;
  std::vector<OpRecord> ops_;
  std::vector<Snapshot> snaps_;  // snaps_[k]: after ops_[k]
};

void usage(FILE* to) {
  fprintf(to,
          "usage: crashtest [--samples N] [--seed N] [--size BYTES] [--dir DIR] [--inject-bug BUG]\n"
          "                 [--max-failures N] [--state POINT:none|all|random:SEED [--save-image FILE]] WORKLOAD...\n"
          "Explores the crash states of each workload file (tests/crash/workloads/*.wl) and ends with\n"
          "\"crash-states: N checked, N failed\". BUG: no-fence-before-commit, no-fence-after-apply,\n"
          "no-flush-apply (the journal commit with one ordering step removed: the explorer must fail).\n");
}

}  // namespace
}  // namespace daxfs::crash

int main(int argc, char** argv) {
  using namespace daxfs::crash;
  Options o;
  static const option longs[] = {
      {"samples", required_argument, nullptr, 's'}, {"seed", required_argument, nullptr, 'S'},
      {"size", required_argument, nullptr, 'z'},    {"dir", required_argument, nullptr, 'd'},
      {"inject-bug", required_argument, nullptr, 'b'}, {"max-failures", required_argument, nullptr, 'm'},
      {"state", required_argument, nullptr, 't'},   {"save-image", required_argument, nullptr, 'i'},
      {"help", no_argument, nullptr, 'h'},          {nullptr, 0, nullptr, 0}};
  try {
    for (int c; (c = getopt_long(argc, argv, "h", longs, nullptr)) != -1;) {
      switch (c) {
        case 's': o.samples = std::stoull(optarg); break;
        case 'S': o.seed = std::stoull(optarg); break;
        case 'z': o.size = std::stoull(optarg); break;
        case 'd': o.dir = optarg; break;
        case 'b': o.bug = optarg; break;
        case 'm': o.max_failures = std::stoull(optarg); break;
        case 'i': o.save_image = optarg; break;
        case 't': {
          std::string v = optarg;
          size_t a = v.find(':'), b = v.rfind(':');
          if (a == std::string::npos || a == b) throw std::invalid_argument("--state");
          o.one_state = true;
          o.state_point = std::stoull(v.substr(0, a));
          std::string c = v.substr(a + 1, b - a - 1);
          o.state_choice = c == "none"  ? daxfs::pmemdev::PowerFail::Choice::kNone
                           : c == "all" ? daxfs::pmemdev::PowerFail::Choice::kAll
                           : c == "random" ? daxfs::pmemdev::PowerFail::Choice::kRandom
                                           : throw std::invalid_argument("--state choice");
          o.state_seed = std::stoull(v.substr(b + 1));
          break;
        }
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
      }
    }
  } catch (const std::exception&) {
    fprintf(stderr, "crashtest: bad option value\n");
    usage(stderr);
    return 2;
  }
  if (optind >= argc) {
    usage(stderr);
    return 2;
  }
  using Bug = daxfs::fs::Journal::Bug;
  if (o.bug == "no-fence-before-commit") daxfs::fs::Journal::inject_bug_for_testing(Bug::kNoFenceBeforeCommit);
  else if (o.bug == "no-fence-after-apply") daxfs::fs::Journal::inject_bug_for_testing(Bug::kNoFenceAfterApply);
  else if (o.bug == "no-flush-apply") daxfs::fs::Journal::inject_bug_for_testing(Bug::kNoFlushApply);
  else if (!o.bug.empty()) {
    fprintf(stderr, "crashtest: unknown bug '%s'\n", o.bug.c_str());
    return 2;
  }
  std::string made;
  if (o.dir.empty()) {
    char tmpl[] = "/dev/shm/daxfs-crash-XXXXXX";
    if (!mkdtemp(tmpl)) {
      perror("crashtest: mkdtemp");
      return 1;
    }
    o.dir = made = tmpl;
  }
  uint64_t checked = 0, failed = 0;
  bool setup_ok = true;
  for (int i = optind; i < argc; i++) {
    Explorer e(o);
    setup_ok &= e.explore(argv[i], checked, failed);
  }
  if (!made.empty()) {
    for (const char* f : {"/pmem0", "/pmem0.ctl", "/crash0", "/crash0.ctl"}) unlink((made + f).c_str());
    rmdir(made.c_str());
  }
  printf("crash-states: %llu checked, %llu failed\n", static_cast<unsigned long long>(checked),
         static_cast<unsigned long long>(failed));
  return !setup_ok ? 2 : failed ? 1 : 0;
}

// Power-fail emulation (trace.h): the recorder and the replayer.
#include "pmemdev/trace.h"

#include <cstring>
#include <random>

namespace daxfs::pmemdev {

void PersistTrace::store(uint64_t offset, const void* src, size_t length) {
  if (length == 0) return;
  std::lock_guard lock(mu_);
  events_.push_back({TraceEvent::Kind::kStore, offset, length, bytes_.size()});
  const char* p = static_cast<const char*>(src);
  bytes_.insert(bytes_.end(), p, p + length);
}

void PersistTrace::fill(uint64_t offset, int c, size_t length) {
  if (length == 0) return;
  std::lock_guard lock(mu_);
  events_.push_back({TraceEvent::Kind::kStore, offset, length, bytes_.size()});
  bytes_.insert(bytes_.end(), length, static_cast<char>(c));
}

void PersistTrace::flush(uint64_t offset, size_t length) {
  if (length == 0) return;
  std::lock_guard lock(mu_);
  events_.push_back({TraceEvent::Kind::kFlush, offset, length, 0});
}

void PersistTrace::fence() {
  std::lock_guard lock(mu_);
  events_.push_back({TraceEvent::Kind::kFence, 0, 0, 0});
  fences_++;
}

size_t PersistTrace::size() const {
  std::lock_guard lock(mu_);
  return events_.size();
}

uint64_t PersistTrace::fences() const {
  std::lock_guard lock(mu_);
  return fences_;
}

std::vector<TraceEvent> PersistTrace::events(size_t from) const {
  std::lock_guard lock(mu_);
  if (from >= events_.size()) return {};
  return {events_.begin() + static_cast<ptrdiff_t>(from), events_.end()};
}

PowerFail::PowerFail(std::vector<char> image, const PersistTrace& trace)
    : trace_(trace), events_(trace.events()), durable_(std::move(image)) {}

void PowerFail::apply(char* out, const TraceEvent& e, uint64_t line, const std::set<uint64_t>* words) const {
  uint64_t lo = std::max(e.offset, line * kCacheLine);
  uint64_t hi = std::min(e.offset + e.length, (line + 1) * kCacheLine);
  const char* src = trace_.bytes(e) + (lo - e.offset);
  if (!words) {
    memcpy(out + lo, src, hi - lo);
    return;
  }
  // Torn: only the chosen 8-byte words of the store (aligned on the device) reached the media.
  for (uint64_t w = lo & ~uint64_t{7}; w < hi; w += 8) {
    if (!words->count(w)) continue;
    uint64_t a = std::max(w, lo), b = std::min(w + 8, hi);
    memcpy(out + a, src + (a - lo), b - a);
  }
}

void PowerFail::advance_to(size_t index) {
  for (; pos_ < index && pos_ < events_.size(); pos_++) {
    const TraceEvent& e = events_[pos_];
    switch (e.kind) {
      case TraceEvent::Kind::kStore:
        for (uint64_t l = e.offset / kCacheLine; l * kCacheLine < e.offset + e.length; l++)
          pending_[l].stores.push_back(static_cast<uint32_t>(pos_));
        break;
      case TraceEvent::Kind::kFlush:
        for (uint64_t l = e.offset / kCacheLine; l * kCacheLine < e.offset + e.length; l++) {
          auto it = pending_.find(l);
          if (it == pending_.end()) continue;
          it->second.flushed = it->second.stores.size();  // what the line holds now is on its way
          flushed_lines_.insert(l);
        }
        break;
      case TraceEvent::Kind::kFence:
        for (uint64_t l : flushed_lines_) {
          auto it = pending_.find(l);
          Line& line = it->second;
          for (size_t i = 0; i < line.flushed; i++) apply(durable_.data(), events_[line.stores[i]], l);
          line.stores.erase(line.stores.begin(), line.stores.begin() + static_cast<ptrdiff_t>(line.flushed));
          line.flushed = 0;
          if (line.stores.empty()) pending_.erase(it);
        }
        flushed_lines_.clear();
        break;
    }
  }
}

bool PowerFail::materialise(char* out, Choice choice, uint64_t seed) const {
  memcpy(out, durable_.data(), durable_.size());
  std::mt19937_64 rng(seed);
  // How much of the cache reached the media varies from one failure to the next: each state draws
  // the chance that a line was written back whole, so that states where nearly every line made it
  // (the commit record and its entries, but not one data block) are as common as the opposite.
  // Drawn near 0 or near 1 more often than not: "everything but a line or two" is where ordering
  // bugs show (a commit record kept, one data line lost).
  const double u = std::uniform_real_distribution<double>(0, 1)(rng);
  const double whole = rng() % 2 ? u * u * u * u : 1 - u * u * u * u;
  bool all_none = true, all_all = true;
  for (const auto& [l, line] : pending_) {
    size_t n = line.stores.size();
    size_t keep = choice == Choice::kNone  ? 0
                  : choice == Choice::kAll ? n
                  : std::uniform_real_distribution<double>(0, 1)(rng) < whole ? n
                                                                              : rng() % n;
    for (size_t i = 0; i < keep; i++) apply(out, events_[line.stores[i]], l);
    bool torn = false;
    if (choice == Choice::kRandom && keep < n && rng() % 2) {
      const TraceEvent& e = events_[line.stores[keep]];
      uint64_t lo = std::max(e.offset, l * kCacheLine), hi = std::min(e.offset + e.length, (l + 1) * kCacheLine);
      bool atomic = lo % 8 == 0 && hi - lo <= 8;  // an aligned 8-byte store never tears
      if (!atomic) {
        std::set<uint64_t> words;
        for (uint64_t w = lo & ~uint64_t{7}; w < hi; w += 8)
          if (rng() % 2) words.insert(w);
        apply(out, e, l, &words);
        torn = !words.empty();
      }
    }
    all_none &= keep == 0 && !torn;
    all_all &= keep == n;
  }
  return choice != Choice::kRandom || (!all_none && !all_all);
}

}  // namespace daxfs::pmemdev

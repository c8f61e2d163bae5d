// First-fit placement of staged buffers over the best of several orders (see workspace.hpp).
#include "harness/core/workspace.hpp"

#include <algorithm>

namespace cpb {
namespace {
int64_t round_up(int64_t x, int64_t a) {
  return (x + a - 1) / a * a;
}
bool share_a_stage(const Lifetime& a, const Lifetime& b) {
  return a.first <= b.last && b.first <= a.last;
}

// Places the buffers in `order`, each at the lowest aligned offset that overlaps nothing already
// placed and alive in a common stage; returns the end of the highest.
int64_t first_fit(std::span<const Lifetime> buffers, const std::vector<int64_t>& size,
                  const std::vector<size_t>& order, std::vector<int64_t>& offsets) {
  int64_t end = 0;
  std::vector<std::pair<int64_t, int64_t>> taken;
  for (size_t k = 0; k < order.size(); ++k) {
    const size_t i = order[k];
    // The memory taken, during i's stages, by what is already placed, lowest offset first.
    taken.clear();
    for (size_t m = 0; m < k; ++m) {
      const size_t j = order[m];
      if (share_a_stage(buffers[i], buffers[j]))
        taken.emplace_back(offsets[j], offsets[j] + size[j]);
    }
    std::sort(taken.begin(), taken.end());
    int64_t at = 0;
    for (const auto& [begin, stop] : taken) {
      if (begin >= at + size[i]) break;  // i fits in the gap below this one
      at = std::max(at, stop);
    }
    offsets[i] = at;
    end = std::max(end, at + size[i]);
  }
  return end;
}
}  // namespace

WorkspacePlan plan_workspace(std::span<const Lifetime> buffers, int64_t align) {
  const size_t n = buffers.size();
  WorkspacePlan plan;
  plan.offsets.assign(n, 0);
  std::vector<int64_t> size(n);
  for (size_t i = 0; i < n; ++i) size[i] = round_up(std::max<int64_t>(buffers[i].bytes, 0), align);

  if (n > 0) {
    int lo = buffers[0].first, hi = buffers[0].last;
    for (const auto& b : buffers) {
      lo = std::min(lo, b.first);
      hi = std::max(hi, b.last);
    }
    for (int s = lo; s <= hi; ++s) {
      int64_t live = 0;
      for (size_t i = 0; i < n; ++i)
        if (buffers[i].first <= s && s <= buffers[i].last) live += size[i];
      plan.busiest_stage_bytes = std::max(plan.busiest_stage_bytes, live);
    }
  }

  // Empty buffers sit at 0 and take no part. First fit by decreasing size; with few buffers (a
  // strategy has up to eight) every order is tried, smallest workspace first found kept, until
  // one reaches the lower bound.
  std::vector<size_t> order;
  for (size_t i = 0; i < n; ++i)
    if (size[i] > 0) order.push_back(i);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return size[a] > size[b]; });
  std::vector<int64_t> offsets(n, 0);
  plan.bytes = first_fit(buffers, size, order, plan.offsets);
  constexpr size_t kExhaustive = 8;
  if (order.size() <= kExhaustive && plan.bytes > plan.busiest_stage_bytes) {
    std::sort(order.begin(), order.end());
    do {
      const int64_t end = first_fit(buffers, size, order, offsets);
      if (end < plan.bytes) {
        plan.bytes = end;
        plan.offsets = offsets;
      }
    } while (plan.bytes > plan.busiest_stage_bytes &&
             std::next_permutation(order.begin(), order.end()));
  }
  return plan;
}

}  // namespace cpb

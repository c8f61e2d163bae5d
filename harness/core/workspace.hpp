// Where a strategy's staged buffers sit inside one workspace. A strategy runs in stages (e.g.
// Ulysses: scatter heads, attend, gather heads) and many of its buffers live in only some of
// them: the all-to-all send buffers of the first stage are dead once the attention starts, the
// received outputs of the last one are born after it. Buffers whose stage ranges do not overlap
// may share memory, so the workspace needs far less than the sum of the buffers.
//
// The plan places buffers one by one, each at the lowest aligned offset where it overlaps no
// placed buffer alive in a common stage (first fit). The order matters: first fit by decreasing
// size, the usual heuristic for this interval-packing problem, and with at most eight non-empty
// buffers (what a strategy has) every order, keeping the smallest workspace. It also gives the
// busiest stage's total, the lower bound that no placement of the same buffers can beat: the
// workspace is never smaller, and the gap between the two is what the shape of the lifetimes
// costs (no first-fit order may reach the bound).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace cpb {

// A buffer of `bytes` alive from stage `first` to stage `last` (inclusive, first <= last).
struct Lifetime {
  int64_t bytes = 0;
  int first = 0, last = 0;
};

struct WorkspacePlan {
  std::vector<int64_t> offsets;     // per buffer, in bytes, multiples of the alignment
  int64_t bytes = 0;                // the workspace: end of the highest placed buffer
  int64_t busiest_stage_bytes = 0;  // max over stages of the (aligned) bytes alive in it
};

// `align` > 0: every offset is a multiple of it and every size is rounded up to it.
WorkspacePlan plan_workspace(std::span<const Lifetime> buffers, int64_t align);

}  // namespace cpb

// coalesce_blocks, the launch list of attend_segments, against brute force on small segments:
// the visible (query, key) pairs of its blocks, in local coordinates, are exactly those the
// positions allow, each once; every block spans back-to-back query segments that share one
// `started` flag, which its accumulate mode follows. Placements of every layout in full and
// partial prefill and in decode, rings of pass-KV carrying the flags from step to step, the
// merge rules one by one, and the launch counts the rules promise.
#include <gtest/gtest.h>

#include <map>
#include <utility>

#include "strategies/common.hpp"

namespace cpb {
namespace {

using Kind = BlockMask::Kind;
// (local query index, local key index) -> how many launches attend the pair.
using Pairs = std::map<std::pair<int64_t, int64_t>, int>;

// What must be attended, from positions alone (block_mask is not consulted): every key under a
// full mask, the keys at or before the query's position under a causal one.
Pairs visible_pairs(MaskKind mask, const std::vector<Segment>& q_segs,
                    const std::vector<Segment>& kv_segs) {
  Pairs p;
  for (const Segment& qs : q_segs)
    for (int64_t i = 0; i < qs.count; ++i)
      for (const Segment& ks : kv_segs)
        for (int64_t j = 0; j < ks.count; ++j)
          if (mask == MaskKind::full ||
              ks.global_begin + j * ks.stride <= qs.global_begin + i * qs.stride)
            ++p[{qs.local_begin + i, ks.local_begin + j}];
  return p;
}

bool shows(const BlockMask& m, int64_t i, int64_t j) {
  return m.kind == Kind::full || (m.kind == Kind::causal && j <= i + m.diag);
}

// Checks the launches of one attend_segments call and marks their segments started, as it does.
std::vector<AttnBlock> check_blocks(MaskKind mask, const std::vector<Segment>& q_segs,
                                    const std::vector<Segment>& kv_segs,
                                    std::vector<bool>& started) {
  auto blocks = coalesce_blocks(mask, q_segs, kv_segs, started);
  EXPECT_TRUE(blocks.ok()) << blocks.error().str();
  if (!blocks.ok()) return {};
  Pairs got;
  for (const AttnBlock& b : *blocks) {
    EXPECT_NE(b.mask.kind, Kind::none);
    EXPECT_LE(b.q_seg_first, b.q_seg_last);
    EXPECT_LT(b.q_seg_last, q_segs.size());
    if (b.q_seg_first > b.q_seg_last || b.q_seg_last >= q_segs.size()) continue;
    int64_t end = b.q_begin;
    for (size_t s = b.q_seg_first; s <= b.q_seg_last; ++s) {
      EXPECT_EQ(q_segs[s].local_begin, end) << "segment " << s;
      end += q_segs[s].count;
      EXPECT_EQ(started[s], b.accumulate) << "segment " << s;
    }
    EXPECT_EQ(b.q_begin + b.q_count, end);
    for (int64_t i = 0; i < b.q_count; ++i)
      for (int64_t j = 0; j < b.k_count; ++j)
        if (shows(b.mask, i, j)) ++got[{b.q_begin + i, b.k_begin + j}];
    for (size_t s = b.q_seg_first; s <= b.q_seg_last; ++s) started[s] = true;
  }
  // The expected pairs each count once, so equality also rules out double counting.
  EXPECT_EQ(got, visible_pairs(mask, q_segs, kv_segs));
  return std::move(blocks).value();
}

// Rank r of pass-KV meets the keys of ranks r, r-1, ... with its flags carried from step to
// step; the launches per rank and step.
std::vector<std::vector<size_t>> ring_launches(const Placement& pl, MaskKind mask) {
  const int n = pl.world();
  std::vector<std::vector<size_t>> launches(n);
  for (int r = 0; r < n; ++r) {
    std::vector<bool> started(pl.q_segments(r).size(), false);
    for (int step = 0; step < n; ++step) {
      const int src = (r - step + n) % n;
      SCOPED_TRACE(testing::Message() << "rank " << r << " step " << step);
      launches[r].push_back(
          check_blocks(mask, pl.q_segments(r), pl.kv_segments(src), started).size());
    }
  }
  return launches;
}

Placement placement(LayoutKind kind, int n, int64_t T, int64_t P, int64_t batch = 1) {
  Workload w{.batch = batch,
             .heads = 1,
             .kv_heads = 1,
             .head_dim = 1,
             .new_tokens = T,
             .cached_tokens = P};
  auto pl = Placement::make(w, kind, n);
  EXPECT_TRUE(pl.ok()) << pl.error().str();
  return std::move(pl).value();
}

// Causal zigzag, full prefill: step 0 is the rank's two chunks against themselves, causal(0) in
// local coordinates (one block); from a source j < r both query chunks see kv chunk j fully (one
// block), from j > r only q chunk 2N-1-r sees, both kv chunks fully (one block). N launches
// where one per visible segment pair made 2N + 1. Under a full mask every step is one block.
TEST(Coalesce, ZigzagRingIsExactInNLaunches) {
  for (int n : {2, 3, 4})
    for (int64_t chunk = 3; chunk <= 8; ++chunk) {
      SCOPED_TRACE(testing::Message() << "n=" << n << " chunk=" << chunk);
      const Placement pl = placement(LayoutKind::zigzag, n, 2 * n * chunk, 0);
      const auto causal = ring_launches(pl, MaskKind::causal);
      const auto full = ring_launches(pl, MaskKind::full);
      for (int r = 0; r < n; ++r)
        for (int step = 0; step < n; ++step) {
          EXPECT_EQ(causal[r][step], 1u) << "rank " << r << " step " << step;
          EXPECT_EQ(full[r][step], 1u) << "rank " << r << " step " << step;
        }
    }
}

// Partial prefill: every rank's KV buffer holds cached tokens (seen by every query) before its
// chunks. Step 0: the cache and the rank's chunks against its chunks are causal(P_r) in local
// coordinates: 1 launch. j < r: both query chunks see cache + kv chunk
// j fully: 1. j > r: q chunk r sees the cache, q chunk 2N-1-r everything: 2 (different keys).
TEST(Coalesce, ZigzagPartialPrefillRing) {
  for (int n : {2, 3, 4})
    for (int64_t chunk : {3, 5, 8})
      for (int64_t P : {1, 4, 13, 40}) {
        SCOPED_TRACE(testing::Message() << "n=" << n << " chunk=" << chunk << " P=" << P);
        const Placement pl = placement(LayoutKind::zigzag, n, 2 * n * chunk, P);
        const auto causal = ring_launches(pl, MaskKind::causal);
        ring_launches(pl, MaskKind::full);
        if (P < n) continue;  // some ranks hold no cached token: the counts below assume one
        for (int r = 0; r < n; ++r)
          for (int step = 0; step < n; ++step) {
            const int src = (r - step + n) % n;
            const size_t want = step == 0 ? 1 : src < r ? 1 : 2;
            EXPECT_EQ(causal[r][step], want) << "rank " << r << " step " << step;
          }
      }
}

// One query segment per rank: each step is at most one launch, the cache merging with the new
// keys; without cache a causal contiguous rank sees nothing of later ranks.
TEST(Coalesce, ContiguousAndStripedRings) {
  for (LayoutKind kind : {LayoutKind::contiguous, LayoutKind::striped})
    for (MaskKind mask : {MaskKind::causal, MaskKind::full})
      for (int n : {1, 2, 3, 4})
        for (int64_t per = 3; per <= 8; ++per)
          for (int64_t P : {0, 9}) {
            SCOPED_TRACE(testing::Message() << to_string(kind) << " " << to_string(mask)
                                            << " n=" << n << " per=" << per << " P=" << P);
            const auto launches = ring_launches(placement(kind, n, n * per, P), mask);
            for (int r = 0; r < n; ++r)
              for (int step = 0; step < n; ++step) {
                const int src = (r - step + n) % n;
                const bool blind =
                    kind == LayoutKind::contiguous && mask == MaskKind::causal && P == 0 && src > r;
                EXPECT_EQ(launches[r][step], blind ? 0u : 1u) << "rank " << r << " step " << step;
              }
          }
}

// Decode: one query per sequence, on the rank of its sequence; keys round-robin.
TEST(Coalesce, DecodeQueriesAgainstEveryRank) {
  for (int n : {1, 2, 3, 4})
    for (int64_t P : {5, 12}) {
      const Placement pl = placement(LayoutKind::zigzag, n, 1, P, 3);
      for (MaskKind mask : {MaskKind::causal, MaskKind::full})
        for (int r = 0; r < n; ++r)
          for (int src = 0; src < n; ++src) {
            SCOPED_TRACE(testing::Message()
                         << "n=" << n << " P=" << P << " q rank " << r << " kv rank " << src);
            std::vector<bool> started(pl.q_segments(r).size(), false);
            EXPECT_LE(check_blocks(mask, pl.q_segments(r), pl.kv_segments(src), started).size(),
                      1u);
          }
    }
}

// Two query segments back to back that both see all four keys: one launch only when their
// flags agree, in the mode they share; otherwise one launch each, in its own mode.
TEST(Coalesce, QuerySegmentsMergeOnlyWithTheSameStartedFlag) {
  const std::vector<Segment> q = {{0, 10, 2, 1}, {2, 12, 2, 1}};
  const std::vector<Segment> kv = {{0, 0, 4, 1}};
  for (bool a : {false, true})
    for (bool b : {false, true}) {
      SCOPED_TRACE(testing::Message() << "started " << a << b);
      std::vector<bool> started = {a, b};
      const auto blocks = check_blocks(MaskKind::causal, q, kv, started);
      if (a == b) {
        ASSERT_EQ(blocks.size(), 1u);
        EXPECT_EQ(blocks[0].q_count, 4);
        EXPECT_EQ(blocks[0].accumulate, a);
      } else {
        ASSERT_EQ(blocks.size(), 2u);
        EXPECT_EQ(blocks[0].accumulate, a);
        EXPECT_EQ(blocks[1].accumulate, b);
      }
    }
}

// Keys 0..3 (all visible to queries at 10..12) followed in memory by 4 keys starting at
// position 9 + k: the causal part has diagonal 1 - k. One causal block while that diagonal is at
// least -1; below, row 0 would lose a key of the full part, so two blocks.
TEST(Coalesce, FullThenCausalMergesWhileTheFullPartStaysVisible) {
  const std::vector<Segment> q = {{0, 10, 3, 1}};
  for (int64_t k = 0; k <= 3; ++k) {
    SCOPED_TRACE(testing::Message() << "k=" << k);
    const std::vector<Segment> kv = {{0, 0, 4, 1}, {4, 9 + k, 4, 1}};
    std::vector<bool> started = {false};
    const auto blocks = check_blocks(MaskKind::causal, q, kv, started);
    if (k <= 2) {
      ASSERT_EQ(blocks.size(), 1u);
      EXPECT_EQ(blocks[0].mask.kind, Kind::causal);
      EXPECT_EQ(blocks[0].mask.diag, 1 - k + 4);
      EXPECT_EQ(blocks[0].k_count, 8);
    } else {
      ASSERT_EQ(blocks.size(), 2u);
      EXPECT_FALSE(blocks[0].accumulate);
      EXPECT_TRUE(blocks[1].accumulate);
    }
  }
}

// Segments with nothing visible drop out at the ends but are never merged over; a causal part
// ends a run (rows see different prefixes of it), and a segment not next in memory starts one.
TEST(Coalesce, RunsStopAtHiddenCausalAndNonAdjacentSegments) {
  const std::vector<Segment> q = {{0, 10, 2, 1}};
  auto launches = [&](const std::vector<Segment>& kv) {
    std::vector<bool> started = {false};
    return check_blocks(MaskKind::causal, q, kv, started);
  };
  // none, full, full, none: one full block over the two visible segments.
  const auto ends = launches({{0, 20, 2, 1}, {2, 0, 2, 1}, {4, 2, 2, 1}, {6, 30, 2, 1}});
  ASSERT_EQ(ends.size(), 1u);
  EXPECT_EQ(ends[0].mask.kind, Kind::full);
  EXPECT_EQ(ends[0].k_begin, 2);
  EXPECT_EQ(ends[0].k_count, 4);
  // full, none, full.
  EXPECT_EQ(launches({{0, 0, 2, 1}, {2, 20, 2, 1}, {4, 2, 2, 1}}).size(), 2u);
  // causal then full; causal then causal.
  EXPECT_EQ(launches({{0, 10, 2, 1}, {2, 0, 2, 1}}).size(), 2u);
  EXPECT_EQ(launches({{0, 10, 2, 1}, {2, 11, 2, 1}}).size(), 2u);
  // full + full, but with a gap in memory.
  EXPECT_EQ(launches({{0, 0, 2, 1}, {3, 2, 2, 1}}).size(), 2u);
}

TEST(Coalesce, BlockMaskErrorsPropagate) {
  // Causal, overlapping, strides 2 and 3: no diagonal offset expresses it.
  auto blocks = coalesce_blocks(MaskKind::causal, {{0, 0, 4, 2}}, {{0, 1, 4, 3}}, {false});
  ASSERT_FALSE(blocks.ok());
  EXPECT_NE(blocks.error().message.find("strides"), std::string::npos) << blocks.error().str();
}

}  // namespace
}  // namespace cpb

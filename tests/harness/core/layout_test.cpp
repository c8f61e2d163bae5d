// Index maps of the layouts for N = 1..8, and the Placement of prefill, partial prefill and
// decode: every token has exactly one owner, segments and owner maps agree, loads balance.
#include <gtest/gtest.h>

#include <set>

#include "harness/core/layout.hpp"

namespace cpb {
namespace {

class LayoutMaps : public ::testing::TestWithParam<int> {};

// For each layout: owner(p) and the segments describe the same bijection between positions and
// (rank, local index), and local indices of a rank are 0..count-1.
TEST_P(LayoutMaps, SegmentsAndOwnersAreOneBijection) {
  const int n = GetParam();
  for (LayoutKind kind : {LayoutKind::contiguous, LayoutKind::zigzag, LayoutKind::striped}) {
    for (int64_t tokens : {int64_t{0}, 2 * int64_t{n}, 6 * int64_t{n}, 2 * 7 * int64_t{n}}) {
      ASSERT_TRUE(check_layout(kind, tokens, n).ok());
      std::set<std::pair<int, int64_t>> seen;
      int64_t total = 0;
      for (int r = 0; r < n; ++r) {
        int64_t local = 0;
        for (const auto& s : layout_segments(kind, tokens, n, r)) {
          EXPECT_EQ(s.local_begin, local);
          for (int64_t i = 0; i < s.count; ++i) {
            int64_t p = s.global_begin + i * s.stride;
            ASSERT_GE(p, 0);
            ASSERT_LT(p, tokens);
            TokenOwner o = layout_owner(kind, tokens, n, p);
            EXPECT_EQ(o.rank, r) << to_string(kind) << " p=" << p;
            EXPECT_EQ(o.local, s.local_begin + i) << to_string(kind) << " p=" << p;
            EXPECT_TRUE(seen.insert({r, o.local}).second);
          }
          local += s.count;
        }
        EXPECT_EQ(local, layout_count(kind, tokens, n, r));
        total += local;
      }
      EXPECT_EQ(total, tokens);
    }
  }
}

TEST_P(LayoutMaps, ZigzagRankOwnsChunksIAnd2NMinus1MinusI) {
  const int n = GetParam();
  const int64_t chunk = 3, tokens = 2 * n * chunk;
  for (int r = 0; r < n; ++r) {
    auto segs = layout_segments(LayoutKind::zigzag, tokens, n, r);
    ASSERT_EQ(segs.size(), 2u);
    EXPECT_EQ(segs[0].global_begin, r * chunk);
    EXPECT_EQ(segs[1].global_begin, (2 * n - 1 - r) * chunk);
    EXPECT_EQ(segs[0].count + segs[1].count, 2 * chunk);
  }
}

TEST_P(LayoutMaps, StripedSendsTokenJToRankJModN) {
  const int n = GetParam();
  const int64_t tokens = 5 * n + (n > 1 ? 1 : 0);
  for (int64_t p = 0; p < tokens; ++p) {
    TokenOwner o = layout_owner(LayoutKind::striped, tokens, n, p);
    EXPECT_EQ(o.rank, p % n);
    EXPECT_EQ(o.local, p / n);
  }
}

TEST_P(LayoutMaps, ContiguousIsConsecutiveAndNearEqual) {
  const int n = GetParam();
  const int64_t tokens = 7 * n + n / 2;
  int64_t next = 0;
  for (int r = 0; r < n; ++r) {
    auto segs = layout_segments(LayoutKind::contiguous, tokens, n, r);
    int64_t c = layout_count(LayoutKind::contiguous, tokens, n, r);
    EXPECT_TRUE(c == tokens / n || c == tokens / n + 1);
    if (c == 0) continue;
    EXPECT_EQ(segs[0].global_begin, next);
    next += c;
  }
  EXPECT_EQ(next, tokens);
}

// Placement of a workload: every query and every key has exactly one owner whose segments agree
// with q_owner/kv_owner; the new tokens are balanced; keys on a rank are cached first.
TEST_P(LayoutMaps, PlacementCoversPrefillPartialPrefillAndDecode) {
  const int n = GetParam();
  for (LayoutKind kind : {LayoutKind::contiguous, LayoutKind::zigzag, LayoutKind::striped}) {
    for (auto [T, P] : {std::pair<int64_t, int64_t>{4 * n, 0}, {2 * n, 13 * n + 3}, {1, 11}}) {
      Workload w{.batch = 2, .heads = 4, .kv_heads = 2, .head_dim = 8, .new_tokens = T,
                 .cached_tokens = P};
      auto pl = Placement::make(w, kind, n);
      ASSERT_TRUE(pl.ok()) << pl.error().str();
      std::set<std::pair<int64_t, int64_t>> qs;  // (sequence, position)
      std::set<int64_t> ks;
      for (int r = 0; r < n; ++r) {
        for (const auto& s : pl->q_segments(r))
          for (int64_t i = 0; i < s.count; ++i) {
            int64_t p = s.global_begin + i * s.stride;
            for (int64_t b : pl->q_batches(r)) {
              EXPECT_TRUE(qs.insert({b, p}).second);
              TokenOwner o = pl->q_owner(p - P, b);
              EXPECT_EQ(o.rank, r);
              EXPECT_EQ(o.local, s.local_begin + i);
            }
          }
        bool seen_new = false;
        for (const auto& s : pl->kv_segments(r))
          for (int64_t i = 0; i < s.count; ++i) {
            int64_t p = s.global_begin + i * s.stride;
            EXPECT_TRUE(ks.insert(p).second);
            TokenOwner o = pl->kv_owner(p);
            EXPECT_EQ(o.rank, r) << "p=" << p;
            EXPECT_EQ(o.local, s.local_begin + i) << "p=" << p;
            if (p >= P) seen_new = true;
            else EXPECT_FALSE(seen_new) << "cached tokens come before new ones";
          }
        if (T > 1) EXPECT_EQ(pl->q_count(r), T / n) << "new tokens balance";
      }
      EXPECT_EQ(static_cast<int64_t>(qs.size()), T * w.batch) << "every query of every sequence";
      EXPECT_EQ(static_cast<int64_t>(ks.size()), T + P);
      if (T == 1) {
        EXPECT_TRUE(pl->decode());
        for (int64_t p = 0; p <= P; ++p) EXPECT_EQ(pl->kv_owner(p).rank, p % n) << "round-robin";
        // Queries are sharded by sequence: sequence b on rank b mod N.
        for (int64_t b = 0; b < w.batch; ++b) EXPECT_EQ(pl->q_owner(0, b).rank, b % n);
        for (int r = 0; r < n; ++r) {
          EXPECT_EQ(pl->q_segments(r).empty(), pl->q_batches(r).empty());
          for (int64_t b : pl->q_batches(r)) EXPECT_EQ(b % n, r);
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(N, LayoutMaps, ::testing::Range(1, 9));

TEST(Layout, ZigzagNeedsTokensDivisibleBy2N) {
  Workload w{.heads = 4, .kv_heads = 4, .head_dim = 8, .new_tokens = 20};
  auto pl = Placement::make(w, LayoutKind::zigzag, 3);
  ASSERT_FALSE(pl.ok());
  EXPECT_NE(pl.error().message.find("multiple of 6"), std::string::npos) << pl.error().message;
  EXPECT_TRUE(Placement::make(w, LayoutKind::zigzag, 5).ok());
  w.new_tokens = 7;
  auto c = Placement::make(w, LayoutKind::contiguous, 2);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().message.find("multiple of 2"), std::string::npos);
  EXPECT_FALSE(Placement::make(w, LayoutKind::striped, 0).ok());
}

TEST(Layout, ParseNames) {
  EXPECT_EQ(*parse_layout("zigzag"), LayoutKind::zigzag);
  auto bad = parse_layout("zig");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("contiguous, zigzag or striped"), std::string::npos);
}

// The block mask of a (query segment, key segment) pair agrees with the causal rule applied to
// positions, for every pair of segments of every layout.
TEST(Layout, BlockMaskMatchesCausalRuleOnPositions) {
  for (int n : {1, 2, 3, 4, 5, 8}) {
    for (LayoutKind kind : {LayoutKind::contiguous, LayoutKind::zigzag, LayoutKind::striped}) {
      Workload w{.heads = 1, .kv_heads = 1, .head_dim = 1, .new_tokens = 4 * n, .cached_tokens = 3};
      auto pl = Placement::make(w, kind, n);
      ASSERT_TRUE(pl.ok());
      for (int r = 0; r < n; ++r)
        for (int s = 0; s < n; ++s)
          for (const auto& qs : pl->q_segments(r))
            for (const auto& ks : pl->kv_segments(s)) {
              auto m = block_mask(MaskKind::causal, qs, ks);
              ASSERT_TRUE(m.ok()) << m.error().str();
              int64_t pairs = 0;
              for (int64_t i = 0; i < qs.count; ++i)
                for (int64_t j = 0; j < ks.count; ++j) {
                  bool visible = ks.global_begin + j * ks.stride <= qs.global_begin + i * qs.stride;
                  pairs += visible;
                  bool by_mask = m->kind == BlockMask::Kind::full ||
                                 (m->kind == BlockMask::Kind::causal && j <= i + m->diag);
                  EXPECT_EQ(visible, by_mask);
                }
              EXPECT_EQ(pairs, block_pairs(*m, qs.count, ks.count));
            }
    }
  }
}

TEST(Layout, CausalPairsClosedFormMatchesCount) {
  for (int64_t sq : {0, 1, 5, 9})
    for (int64_t sk : {0, 1, 4, 9})
      for (int64_t diag = -12; diag <= 12; ++diag) {
        int64_t count = 0;
        for (int64_t i = 0; i < sq; ++i)
          for (int64_t j = 0; j < sk; ++j) count += j <= i + diag;
        EXPECT_EQ(causal_pairs(sq, sk, diag), count) << sq << " " << sk << " " << diag;
      }
}

}  // namespace
}  // namespace cpb

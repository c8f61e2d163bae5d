// The host attention block and merge against the fp64 reference: masks with offsets, GQA, rows
// whose keys are all masked (O = 0, LSE = -inf, never NaN), and merging with -inf.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "kernels/cpu/attention.hpp"

namespace cpb::cpu {
namespace {

std::vector<float> randn(size_t n, unsigned seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d;
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

template <class T>
HostView<T> view(T* p, int64_t tokens, int64_t heads, int64_t dim) {
  return {p, 1, tokens * heads * dim, tokens, heads, dim};
}

// One block with diag = P equals the reference with P cached tokens (the block is the whole
// problem), for GQA ratios 1, 2, 4.
TEST(CpuAttention, BlockMatchesReferenceWithOffsets) {
  for (int64_t g : {1, 2, 4})
    for (int64_t P : {0, 3, 17}) {
      Workload w{.heads = 4, .kv_heads = 4 / g, .head_dim = 16, .new_tokens = 9, .cached_tokens = P};
      const int64_t S = w.context();
      auto q = randn(9 * 4 * 16, 1), k = randn(S * w.kv_heads * 16, 2), v = randn(S * w.kv_heads * 16, 3);
      std::vector<float> o(q.size()), l(9 * 4);
      attention_block(view<const float>(q.data(), 9, 4, 16), view<const float>(k.data(), S, w.kv_heads, 16),
                      view<const float>(v.data(), S, w.kv_heads, 16), {BlockMask::Kind::causal, P},
                      w.scale(), view<float>(o.data(), 9, 4, 16), view<float>(l.data(), 9, 4, 1));
      std::vector<double> ro(o.size()), rl(l.size());
      reference_attention(w, q.data(), k.data(), v.data(), ro.data(), rl.data());
      for (size_t i = 0; i < o.size(); ++i) EXPECT_NEAR(o[i], ro[i], 1e-5);
      for (size_t i = 0; i < l.size(); ++i) EXPECT_NEAR(l[i], rl[i], 1e-5);
    }
}

TEST(CpuAttention, FullyMaskedRowsGiveZeroAndMinusInf) {
  auto q = randn(6 * 2 * 8, 4), k = randn(5 * 1 * 8, 5), v = randn(5 * 1 * 8, 6);
  std::vector<float> o(q.size(), 7.0f), l(6 * 2, 7.0f);
  // diag = -3: rows 0..2 see no key, row 3 sees key 0, ...
  attention_block(view<const float>(q.data(), 6, 2, 8), view<const float>(k.data(), 5, 1, 8),
                  view<const float>(v.data(), 5, 1, 8), {BlockMask::Kind::causal, -3}, 0.35,
                  view<float>(o.data(), 6, 2, 8), view<float>(l.data(), 6, 2, 1));
  for (int t = 0; t < 6; ++t)
    for (int h = 0; h < 2; ++h) {
      float lse = l[t * 2 + h];
      if (t < 3) {
        EXPECT_TRUE(std::isinf(lse) && lse < 0);
        for (int x = 0; x < 8; ++x) EXPECT_EQ(o[(t * 2 + h) * 8 + x], 0.0f);
      } else {
        EXPECT_TRUE(std::isfinite(lse));
      }
      for (int x = 0; x < 8; ++x) EXPECT_FALSE(std::isnan(o[(t * 2 + h) * 8 + x]));
    }
}

TEST(CpuAttention, MergeOfTwoHalvesEqualsWhole) {
  const int64_t S = 12;
  auto q = randn(3 * 2 * 8, 7), k = randn(S * 2 * 8, 8), v = randn(S * 2 * 8, 9);
  auto run = [&](int64_t k0, int64_t n, std::vector<float>& o, std::vector<float>& l) {
    o.assign(q.size(), 0);
    l.assign(6, 0);
    attention_block(view<const float>(q.data(), 3, 2, 8), view<const float>(k.data() + k0 * 16, n, 2, 8),
                    view<const float>(v.data() + k0 * 16, n, 2, 8), {BlockMask::Kind::full, 0}, 0.3,
                    view<float>(o.data(), 3, 2, 8), view<float>(l.data(), 3, 2, 1));
  };
  std::vector<float> ow, lw, oa, la, ob, lb;
  run(0, S, ow, lw);
  run(0, 5, oa, la);
  run(5, S - 5, ob, lb);
  merge_partial(view<float>(oa.data(), 3, 2, 8), view<float>(la.data(), 3, 2, 1),
                view<const float>(ob.data(), 3, 2, 8), view<const float>(lb.data(), 3, 2, 1));
  for (size_t i = 0; i < ow.size(); ++i) EXPECT_NEAR(oa[i], ow[i], 1e-6);
  for (size_t i = 0; i < lw.size(); ++i) EXPECT_NEAR(la[i], lw[i], 1e-6);
}

TEST(CpuAttention, MergeWithMinusInfIsSafe) {
  const float ninf = -std::numeric_limits<float>::infinity();
  std::vector<float> o = {1, 2}, l = {ninf}, po = {3, 4}, pl = {0.5f};
  merge_partial(view<float>(o.data(), 1, 1, 2), view<float>(l.data(), 1, 1, 1),
                view<const float>(po.data(), 1, 1, 2), view<const float>(pl.data(), 1, 1, 1));
  EXPECT_FLOAT_EQ(o[0], 3);
  EXPECT_FLOAT_EQ(o[1], 4);
  EXPECT_FLOAT_EQ(l[0], 0.5f);
  std::vector<float> o2 = {1, 2}, l2 = {ninf}, po2 = {5, 6}, pl2 = {ninf};
  merge_partial(view<float>(o2.data(), 1, 1, 2), view<float>(l2.data(), 1, 1, 1),
                view<const float>(po2.data(), 1, 1, 2), view<const float>(pl2.data(), 1, 1, 1));
  EXPECT_EQ(o2[0], 0.0f);
  EXPECT_EQ(o2[1], 0.0f);
  EXPECT_TRUE(std::isinf(l2[0]) && l2[0] < 0);
}

}  // namespace
}  // namespace cpb::cpu

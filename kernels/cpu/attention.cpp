// fp32 block attention, LSE merge and the fp64 reference on the host.
#include "kernels/cpu/attention.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace cpb::cpu {

void attention_block(HostView<const float> q, HostView<const float> k, HostView<const float> v,
                     const BlockMask& mask, double scale, HostView<float> o, HostView<float> lse) {
  const int64_t d = q.dim;
  const int64_t group = q.heads / k.heads;
  const float fscale = static_cast<float>(scale);
  const float ninf = -std::numeric_limits<float>::infinity();
  std::vector<float> p(static_cast<size_t>(std::max<int64_t>(k.tokens, 1)));
  std::vector<float> acc(static_cast<size_t>(d));
  for (int64_t b = 0; b < q.batch; ++b) {
    for (int64_t i = 0; i < q.tokens; ++i) {
      // Keys [0, visible) are seen by row i.
      int64_t visible = k.tokens;
      if (mask.kind == BlockMask::Kind::none) visible = 0;
      if (mask.kind == BlockMask::Kind::causal)
        visible = std::clamp<int64_t>(i + mask.diag + 1, 0, k.tokens);
      for (int64_t h = 0; h < q.heads; ++h) {
        float* orow = o.at(b, i, h);
        float* lrow = lse.at(b, i, h);
        if (visible == 0) {
          std::fill(orow, orow + d, 0.0f);
          *lrow = ninf;
          continue;
        }
        const float* qrow = q.at(b, i, h);
        const int64_t hk = h / group;
        float m = ninf;
        for (int64_t j = 0; j < visible; ++j) {
          const float* krow = k.at(b, j, hk);
          float s = 0.0f;
          for (int64_t x = 0; x < d; ++x) s += qrow[x] * krow[x];
          s *= fscale;
          p[j] = s;
          m = std::max(m, s);
        }
        float sum = 0.0f;
        std::fill(acc.begin(), acc.end(), 0.0f);
        for (int64_t j = 0; j < visible; ++j) {
          float e = std::exp(p[j] - m);
          sum += e;
          const float* vrow = v.at(b, j, hk);
          for (int64_t x = 0; x < d; ++x) acc[x] += e * vrow[x];
        }
        for (int64_t x = 0; x < d; ++x) orow[x] = acc[x] / sum;
        *lrow = m + std::log(sum);
      }
    }
  }
}

void merge_partial(HostView<float> o, HostView<float> lse, HostView<const float> part_o,
                   HostView<const float> part_lse) {
  const int64_t d = o.dim;
  const float ninf = -std::numeric_limits<float>::infinity();
  for (int64_t b = 0; b < o.batch; ++b) {
    for (int64_t t = 0; t < o.tokens; ++t) {
      for (int64_t h = 0; h < o.heads; ++h) {
        float* l = lse.at(b, t, h);
        const float li = *part_lse.at(b, t, h);
        const float m = std::max(*l, li);
        float* orow = o.at(b, t, h);
        if (m == ninf) {  // neither side has seen a key
          std::fill(orow, orow + d, 0.0f);
          *l = ninf;
          continue;
        }
        const float w0 = std::exp(*l - m);  // exp(-inf) = 0 handles an empty side
        const float w1 = std::exp(li - m);
        const float inv = 1.0f / (w0 + w1);
        const float* prow = part_o.at(b, t, h);
        for (int64_t x = 0; x < d; ++x) orow[x] = (w0 * orow[x] + w1 * prow[x]) * inv;
        *l = m + std::log(w0 + w1);
      }
    }
  }
}

void reference_attention(const Workload& w, const float* q, const float* k, const float* v,
                         double* o, double* lse) {
  const int64_t T = w.new_tokens, S = w.context(), P = w.cached_tokens;
  const int64_t H = w.heads, Hkv = w.kv_heads, d = w.head_dim, g = w.gqa_ratio();
  const double scale = w.scale();
  std::vector<double> s(static_cast<size_t>(S));
  for (int64_t b = 0; b < w.batch; ++b) {
    for (int64_t t = 0; t < T; ++t) {
      const int64_t pos = P + t;
      for (int64_t h = 0; h < H; ++h) {
        const float* qrow = q + ((b * T + t) * H + h) * d;
        double* orow = o + ((b * T + t) * H + h) * d;
        double m = -std::numeric_limits<double>::infinity();
        int64_t n = 0;
        for (int64_t p = 0; p < S; ++p) {
          if (w.mask == MaskKind::causal && p > pos) break;
          const float* krow = k + ((b * S + p) * Hkv + h / g) * d;
          double dot = 0;
          for (int64_t x = 0; x < d; ++x) dot += static_cast<double>(qrow[x]) * krow[x];
          s[p] = dot * scale;
          m = std::max(m, s[p]);
          n = p + 1;
        }
        double sum = 0;
        for (int64_t x = 0; x < d; ++x) orow[x] = 0;
        for (int64_t p = 0; p < n; ++p) {
          const double e = std::exp(s[p] - m);
          sum += e;
          const float* vrow = v + ((b * S + p) * Hkv + h / g) * d;
          for (int64_t x = 0; x < d; ++x) orow[x] += e * vrow[x];
        }
        for (int64_t x = 0; x < d; ++x) orow[x] /= sum;
        lse[(b * T + t) * H + h] = m + std::log(sum);
      }
    }
  }
}

}  // namespace cpb::cpu

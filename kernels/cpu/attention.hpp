// Host attention kernels of the cpu backend and the fp64 reference.
//  - attention_block: one block of queries against one block of keys in fp32 (the accumulation
//    precision of the GPU kernels), mask = full or causal with a diagonal offset, output O and
//    LSE (natural log); a row with no visible key gets O = 0 and LSE = -inf.
//  - merge_partial: (O, LSE) <- (O, LSE) (+) (O_i, LSE_i), max-subtracted and -inf safe.
//  - reference_attention: the unsharded problem in fp64, written independently of the above
//    (direct positions, no blocks) so that it can catch their bugs.
#pragma once

#include <cstdint>

#include "harness/core/layout.hpp"
#include "harness/core/workload.hpp"

namespace cpb::cpu {

// A token-major [batch][tokens][heads][dim] host array.
template <class T>
struct HostView {
  T* data = nullptr;
  int64_t batch = 1;
  int64_t batch_stride = 0;
  int64_t tokens = 0;
  int64_t heads = 0;
  int64_t dim = 0;
  int64_t token_stride = 0;  // 0: heads * dim
  T* at(int64_t b, int64_t t, int64_t h) const {
    return data + b * batch_stride + t * (token_stride ? token_stride : heads * dim) + h * dim;
  }
};

void attention_block(HostView<const float> q, HostView<const float> k, HostView<const float> v,
                     const BlockMask& mask, double scale, HostView<float> o, HostView<float> lse);

void merge_partial(HostView<float> o, HostView<float> lse, HostView<const float> part_o,
                   HostView<const float> part_lse);

// q: [B, T, H, d]; k, v: [B, P+T, Hkv, d] (all tokens in position order); o: [B, T, H, d];
// lse: [B, T, H]. New token t sits at position P + t.
void reference_attention(const Workload& w, const float* q, const float* k, const float* v,
                         double* o, double* lse);

}  // namespace cpb::cpu

// The Hopper flash-attention forward (flash_sm90.cu), private to the kernels library:
// attention.cu's attention_forward dispatches to it. Built only for sm_90a (wgmma, TMA,
// setmaxnreg); CPBENCH_HAVE_SM90A says whether this build has it.
#pragma once

#include "kernels/cuda/kernels.hpp"

namespace cpb::cuda::sm90 {

// Shape and layout limits of the kernel (the device check is the caller's): head_dim 64 or 128,
// equal q/k/v head dims, heads a multiple of kv heads, 16-byte aligned bases and strides.
bool supports(const DevView& q, const DevView& k, const DevView& v, const char** why);

// Same contract as attention_forward (kernels.hpp). Returns a cudaError_t as int.
int attention_forward(ActType t, const DevView& q, const DevView& k, const DevView& v,
                      const DevView& o, const DevView& lse, int mask_kind, int64_t diag,
                      float scale, bool accumulate, void* stream, bool share_sms);

}  // namespace cpb::cuda::sm90

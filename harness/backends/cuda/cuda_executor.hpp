// The cuda backend on one node: one process, one thread per GPU (rank r on device r), NCCL
// communicators made by ncclCommInitAll. Each rank has a compute stream and a comm stream;
// events order them exactly as the strategy asked. A failing rank aborts every communicator so
// the others return instead of hanging in a collective.
#pragma once

#include <memory>

#include "harness/core/backend.hpp"

namespace cpb {

Expected<std::unique_ptr<Backend>> make_cuda_backend(int world, DType dtype, double timeout_s);
Status cuda_reference_attention(const Workload& w, const std::vector<float>& q,
                                const std::vector<float>& k, const std::vector<float>& v,
                                std::vector<float>& o, std::vector<float>& lse);
// NCCL's version as "2.28.9".
std::string nccl_version();

}  // namespace cpb

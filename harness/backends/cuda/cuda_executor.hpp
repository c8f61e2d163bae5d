// The cuda backend on one node: one process, one thread per GPU (rank r on device r), NCCL
// communicators made by ncclCommInitAll. Each rank has a compute stream and a comm stream;
// events order them exactly as the strategy asked. A failing rank aborts every communicator so
// the others return instead of hanging in a collective.
#pragma once

#include <memory>

#include "harness/core/backend.hpp"

namespace cpb {

Expected<std::unique_ptr<Backend>> make_cuda_backend(int world, DType dtype, double timeout_s);
// NCCL's version as "2.28.9".
std::string nccl_version();

}  // namespace cpb

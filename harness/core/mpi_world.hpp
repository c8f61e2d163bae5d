// The MPI side of the cuda backend across nodes: when cpbench is started by mpirun (or srun)
// and built with MPI, every process is one rank with one GPU; rank 0 makes the ncclUniqueId and
// broadcasts it, runs the same sweep in lock-step with the others, gathers their reports and
// alone writes results. Without MPI (or not under mpirun) every function here says "one
// process" and the single-process backends are used.
#pragma once

#include <string>
#include <vector>

#include "harness/core/status.hpp"

namespace cpb::mpi {

// Initialises MPI when this process was launched by an MPI launcher. Safe to call once.
Status init(int* argc, char*** argv);
void finalize();
bool active();  // running as one of several MPI processes
int rank();
int size();
int local_rank();  // rank among the processes of this node (picks the GPU)
inline bool is_root() { return !active() || rank() == 0; }

Status barrier();
// Root's bytes replace everyone else's.
Status broadcast(std::string& bytes);
// Root receives every process's bytes in rank order; the others get an empty vector.
Expected<std::vector<std::string>> gather(const std::string& mine);
// Element-wise sum into root's vector (each rank contributes the rows it owns, zeros elsewhere).
Status sum_to_root(std::vector<float>& data);
// True on every process iff `mine` is true on every process.
bool all(bool mine);

}  // namespace cpb::mpi

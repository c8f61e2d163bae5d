// MPI helpers behind harness/core/mpi_world.hpp; stubs when the build has no MPI.
#include "harness/core/mpi_world.hpp"

#include <cstdlib>

#ifdef CPBENCH_HAVE_MPI
#include <mpi.h>
#endif

namespace cpb::mpi {
namespace {
bool g_active = false;
int g_rank = 0, g_size = 1, g_local = 0;

bool launched_by_mpi() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"})
    if (std::getenv(v) != nullptr) return true;
  return false;
}
}  // namespace

#ifdef CPBENCH_HAVE_MPI
#define CPB_MPI(call)                                                           \
  do {                                                                          \
    int cpb_mpi_rc_ = (call);                                                   \
    if (cpb_mpi_rc_ != MPI_SUCCESS) return CPB_ERROR("MPI error {} in {}", cpb_mpi_rc_, #call); \
  } while (0)

Status init(int* argc, char*** argv) {
  if (g_active || !launched_by_mpi()) return {};
  CPB_MPI(MPI_Init(argc, argv));
  CPB_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &g_rank));
  CPB_MPI(MPI_Comm_size(MPI_COMM_WORLD, &g_size));
  MPI_Comm node;
  CPB_MPI(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, g_rank, MPI_INFO_NULL, &node));
  CPB_MPI(MPI_Comm_rank(node, &g_local));
  MPI_Comm_free(&node);
  g_active = true;
  return {};
}

void finalize() {
  if (g_active) MPI_Finalize();
  g_active = false;
}

Status barrier() {
  if (!g_active) return {};
  CPB_MPI(MPI_Barrier(MPI_COMM_WORLD));
  return {};
}

Status broadcast(std::string& bytes) {
  if (!g_active) return {};
  long long n = static_cast<long long>(bytes.size());
  CPB_MPI(MPI_Bcast(&n, 1, MPI_LONG_LONG, 0, MPI_COMM_WORLD));
  bytes.resize(static_cast<size_t>(n));
  if (n > 0) CPB_MPI(MPI_Bcast(bytes.data(), static_cast<int>(n), MPI_CHAR, 0, MPI_COMM_WORLD));
  return {};
}

Expected<std::vector<std::string>> gather(const std::string& mine) {
  if (!g_active) return std::vector<std::string>{mine};
  int n = static_cast<int>(mine.size());
  std::vector<int> sizes(static_cast<size_t>(g_size)), offsets(static_cast<size_t>(g_size));
  CPB_MPI(MPI_Gather(&n, 1, MPI_INT, sizes.data(), 1, MPI_INT, 0, MPI_COMM_WORLD));
  int total = 0;
  for (int i = 0; i < g_size; ++i) {
    offsets[i] = total;
    total += sizes[i];
  }
  std::string all(g_rank == 0 ? static_cast<size_t>(total) : 0, '\0');
  CPB_MPI(MPI_Gatherv(mine.data(), n, MPI_CHAR, all.data(), sizes.data(), offsets.data(), MPI_CHAR,
                      0, MPI_COMM_WORLD));
  std::vector<std::string> out;
  if (g_rank == 0)
    for (int i = 0; i < g_size; ++i) out.push_back(all.substr(offsets[i], sizes[i]));
  return out;
}

Status sum_to_root(std::vector<float>& data) {
  if (!g_active) return {};
  std::vector<float> out(g_rank == 0 ? data.size() : 0);
  CPB_MPI(MPI_Reduce(data.data(), g_rank == 0 ? out.data() : nullptr,
                     static_cast<int>(data.size()), MPI_FLOAT, MPI_SUM, 0, MPI_COMM_WORLD));
  if (g_rank == 0) data.swap(out);
  return {};
}

bool all(bool mine) {
  if (!g_active) return mine;
  int v = mine ? 1 : 0, r = 0;
  MPI_Allreduce(&v, &r, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  return r == 1;
}
#else
Status init(int*, char***) {
  if (launched_by_mpi())
    return CPB_ERROR("started by an MPI launcher, but this build has no MPI: rebuild with MPI "
                     "found (e.g. libopenmpi-dev) or run one process");
  return {};
}
void finalize() {}
Status barrier() { return {}; }
Status broadcast(std::string&) { return {}; }
Expected<std::vector<std::string>> gather(const std::string& mine) {
  return std::vector<std::string>{mine};
}
Status sum_to_root(std::vector<float>&) { return {}; }
bool all(bool mine) { return mine; }
#endif

bool active() { return g_active; }
int rank() { return g_rank; }
int size() { return g_size; }
int local_rank() { return g_local; }

}  // namespace cpb::mpi

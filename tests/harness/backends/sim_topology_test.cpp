// The sim beyond one box: a profile's topology (gpus_per_node, tensor_parallel, intra/inter-node
// link classes) places the CP ranks on nodes, the cost model gives each op the link class of its
// peers, and a ring whose hops cross nodes runs at the inter-node link's pace. Timelines are
// checked against hand-computed closed forms on round numbers (nvlink 1 ns per byte, rdma 4 ns
// per byte, tcp 40 ns per byte, attention 100 TF/s, no launch, merge or copy cost), and the
// committed cluster profiles (results/profiles/yang2024-*.yaml) load with the paper's placement.
#include <gtest/gtest.h>

#include <fstream>

#include "harness/backends/sim/cost_model.hpp"
#include "harness/runner/runner.hpp"
#include "tests/support/temp_dir.hpp"

namespace cpb {
namespace {

// Curves through the origin: y = k * bytes, with k ns per byte.
const char* kLinks =
    "links:\n"
    "  nvlink:\n    ranks: 8\n"
    "    sendrecv: {bytes: [1000, 2000], us: [1, 2]}\n"
    "    all_to_all: {bytes: [1000, 2000], us: [1, 2]}\n"
    "    all_gather: {bytes: [1000, 2000], us: [1, 2]}\n"
    "  rdma:\n    ranks: 16\n"
    "    sendrecv: {bytes: [1000, 2000], us: [4, 8]}\n"
    "    all_to_all: {bytes: [1000, 2000], us: [4, 8]}\n"
    "    all_gather: {bytes: [1000, 2000], us: [4, 8]}\n"
    "  tcp:\n    ranks: 16\n"
    "    sendrecv: {bytes: [1000, 2000], us: [40, 80]}\n";

std::string profile_text(const std::string& topology) {
  return std::string(
             "name: cluster\npeak_tflops: 100\nbandwidth_gbps: 1\nattention:\n"
             "  - {mask: full, head_dim: 16, sq: 64, sk: 64, tflops: 100}\n") +
         kLinks + topology;
}

HardwareProfile parsed(const std::string& topology) {
  auto p = parse_hardware_profile(profile_text(topology), "cluster.yaml");
  EXPECT_TRUE(p.ok()) << p.error().message;
  return p.ok() ? *p : HardwareProfile{};
}

TEST(SimTopology, TensorParallelPlacesOneCpRankPerNodeShare) {
  // No topology: one node.
  EXPECT_EQ(parsed("").node_of(7), 0);
  // 8 GPUs per node, TP8 (Yang et al.): each CP rank on its own node.
  HardwareProfile p = parsed("topology: {gpus_per_node: 8, tensor_parallel: 8}\n");
  EXPECT_EQ(p.tensor_parallel, 8);
  for (int r = 0; r < 16; ++r) EXPECT_EQ(p.node_of(r), r);
  sim::CostModel m(p);
  EXPECT_EQ(m.link_class(0, {1}), "rdma");
  EXPECT_EQ(m.link_class(5, {4, 6}), "rdma");
  // TP4: two ranks of the group per node; TP1: all eight.
  p = parsed("topology: {gpus_per_node: 8, tensor_parallel: 4}\n");
  EXPECT_EQ(p.node_of(0), 0);
  EXPECT_EQ(p.node_of(1), 0);
  EXPECT_EQ(p.node_of(2), 1);
  EXPECT_EQ(sim::CostModel(p).link_class(0, {1}), "nvlink");
  EXPECT_EQ(sim::CostModel(p).link_class(1, {0, 2}), "rdma");  // one peer off the node is enough
  p = parsed("topology: {gpus_per_node: 8, inter_node: tcp}\n");
  EXPECT_EQ(p.node_of(7), 0);
  EXPECT_EQ(p.node_of(8), 1);
  EXPECT_EQ(sim::CostModel(p).link_class(7, {8}), "tcp");
}

TEST(SimTopology, BadTopologiesSayWhatToChange) {
  auto e = parse_hardware_profile(
      profile_text("topology: {gpus_per_node: 8, tensor_parallel: 3}\n"), "cluster.yaml");
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.error().message.find("topology.tensor_parallel: 3 does not divide gpus_per_node 8"),
            std::string::npos)
      << e.error().message;
  e = parse_hardware_profile(profile_text("topology: {tensor_parallel: 8}\n"), "cluster.yaml");
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.error().message.find("needs gpus_per_node"), std::string::npos) << e.error().message;
  e = parse_hardware_profile(profile_text("topology: {gpus_per_node: 8, tensor_parallel: 0}\n"),
                             "cluster.yaml");
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.error().message.find("topology.tensor_parallel"), std::string::npos)
      << e.error().message;
}

TEST(SimTopology, EachOpPaysItsPeersLink) {
  // 2 CP ranks per node (8 GPUs, TP4): ranks {0,1} {2,3} ...
  sim::CostModel m(parsed("topology: {gpus_per_node: 8, tensor_parallel: 4}\n"));
  OpRecord t;
  t.kind = OpKind::p2p;
  t.bytes_sent = 1'000'000;
  t.transfers = {{1, true, 1'000'000}};
  EXPECT_NEAR(*m.seconds(t, 0, 4), 1e-3, 1e-15);  // nvlink: 1 ns per byte
  t.transfers = {{2, true, 1'000'000}};
  EXPECT_NEAR(*m.seconds(t, 1, 4), 4e-3, 1e-15);  // rdma: 4 ns per byte
  // A ring step sends to the next rank and receives from the previous: rank 0 of a 2-per-node
  // ring receives from rank 3 on the other node, so its whole op is inter-node.
  t.transfers = {{1, true, 1'000'000}, {3, false, 1'000'000}};
  t.bytes_recv = 1'000'000;
  EXPECT_NEAR(*m.seconds(t, 0, 4), 4e-3, 1e-15);
  // All-to-all inside a node, then across; all-gather over 2 ranks (one node) and 4 (two).
  OpRecord a;
  a.kind = OpKind::all_to_all;
  a.bytes_sent = 2000;
  a.transfers = {{1, true, 2000}, {1, false, 2000}};
  EXPECT_NEAR(*m.seconds(a, 0, 2), 2e-6, 1e-15);
  a.transfers = {{1, true, 1000}, {2, true, 1000}};
  EXPECT_NEAR(*m.seconds(a, 0, 4), 8e-6, 1e-15);
  OpRecord g;
  g.kind = OpKind::all_gather;
  g.bytes_sent = 2000;
  EXPECT_NEAR(*m.seconds(g, 0, 2), 2e-6, 1e-15);
  EXPECT_NEAR(*m.seconds(g, 0, 4), 8e-6, 1e-15);
}

ExecSpec ring_spec(int cp, int64_t heads, const std::string& profile) {
  Workload w{.batch = 1, .heads = heads, .kv_heads = 4, .head_dim = 16, .dtype = DType::bf16};
  w.mask = MaskKind::full;
  w.new_tokens = 240;
  ExecSpec spec;
  spec.backend = "sim";
  spec.strategy = "ring_pass_kv";
  spec.layout = LayoutKind::zigzag;
  spec.cp = cp;
  spec.workload = w;
  spec.iterations = 1;
  spec.warmup = 0;
  spec.options.hardware_profile = profile;
  return spec;
}

TEST(SimTopology, RingAcrossNodesRunsAtTheInterNodePace) {
  // Full mask: every rank does the same attention each step, c = FLOPs per step / 100 TF/s; a
  // ring step moves the packed K,V block, t = bytes * k with k the link's ns per byte. The
  // double-buffered ring takes N c when t <= c, else (N - 1) t + c. With 8 query heads t > c on
  // every link below; with 16384 (nothing is allocated) t < c and the link does not matter.
  testing_support::TempDir dir;
  struct Case {
    const char* topology;
    double ns_per_byte;
    std::vector<int> cps;
  };
  const std::vector<Case> cases = {
      {"", 1, {2, 4, 8}},                                                       // one node: nvlink
      {"topology: {gpus_per_node: 8, tensor_parallel: 8}\n", 4, {2, 3, 4, 8}},  // a node per rank
      // Two ranks per node: each rank has one neighbour on another node, so every op is rdma.
      {"topology: {gpus_per_node: 8, tensor_parallel: 4}\n", 4, {4, 6}},
      {"topology: {gpus_per_node: 8, tensor_parallel: 8, inter_node: tcp}\n", 40, {2, 4}},
  };
  int i = 0;
  for (const Case& c : cases) {
    const std::string path = dir.file("p" + std::to_string(i++) + ".yaml");
    std::ofstream(path) << profile_text(c.topology);
    for (int n : c.cps)
      for (int64_t heads : {8, 16384}) {
        auto res = execute_point(ring_spec(n, heads, path));
        ASSERT_TRUE(res.ok()) << res.error().str();
        const double step = res->ranks[0].accounting.step_flops(0) / 100e12;
        const double t =
            static_cast<double>(res->ranks[0].accounting.phases.at("ring_kv").bytes_sent) /
            (n - 1) * c.ns_per_byte * 1e-9;
        const double want = t <= step ? n * step : (n - 1) * t + step;
        EXPECT_NEAR(res->iteration_times_s[0], want, want * 1e-12)
            << c.topology << " n=" << n << " heads=" << heads << " c=" << step << " t=" << t;
        if (heads == 8) EXPECT_GT(t, step);
      }
  }
}

TEST(SimTopology, CommittedClusterProfilesPlaceTheRingOnePerNode) {
  const std::string dir = std::string(CPBENCH_SOURCE_DIR) + "/results/profiles/";
  for (const char* name :
       {"yang2024-h200-rdma.yaml", "yang2024-h200-tcp.yaml", "yang2024-h100-rdma.yaml",
        "yang2024-h200-rdma-achieved.yaml", "yang2024-h100-rdma-achieved.yaml"}) {
    auto p = load_hardware_profile(dir + name);
    ASSERT_TRUE(p.ok()) << p.error().message;
    EXPECT_EQ(p->gpus_per_node, 8) << name;
    EXPECT_EQ(p->tensor_parallel, 8) << name;
    EXPECT_EQ(p->intra_node_link, "nvlink") << name;
    const std::string inter = p->inter_node_link;
    EXPECT_TRUE(inter == "rdma" || inter == "tcp") << name;
    ASSERT_TRUE(p->links.count(inter)) << name;
    EXPECT_FALSE(p->links.at(inter).sendrecv.empty()) << name;
    EXPECT_FALSE(p->links.at(inter).all_to_all.empty()) << name;
    EXPECT_FALSE(p->links.at(inter).all_gather.empty()) << name;
    EXPECT_EQ(sim::CostModel(*p).link_class(0, {1}), inter) << name;
    EXPECT_FALSE(p->attention.empty()) << name;
  }
}

}  // namespace
}  // namespace cpb

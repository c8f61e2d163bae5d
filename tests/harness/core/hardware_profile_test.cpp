// The hardware profile's cost-model tables (harness/core/hardware_profile.hpp): a full profile
// parses into the right fields, old profiles (C and BW only) still load, and every kind of bad
// table is an error naming file, line and the inner key. (The top-level keys and auto's fields
// are tested in tests/strategies/auto_test.cpp.)
#include "harness/core/hardware_profile.hpp"

#include <gtest/gtest.h>

namespace cpb {
namespace {

const std::string kData = CPBENCH_TEST_DATA;

const char* kHead = "name: t\npeak_tflops: 500\nbandwidth_gbps: 100\n";

std::string err(const std::string& body) {
  auto p = parse_hardware_profile(std::string(kHead) + body, "hw.yaml");
  return p.ok() ? "<parsed without error>" : p.error().message;
}

bool has(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

TEST(HardwareProfileTables, FullProfileParses) {
  auto p = parse_hardware_profile(
      std::string(kHead) +
          "launch_us: 3.5\nshare_factor: 1.25\ncomm_share_factor: 1.4\n"
          "issue_us: {attention: 4.5, p2p: 9, event: 0.25}\nissue_lead_us: 38.5\nwait_us: 2.75\n"
          "issue_us_ranks: {1: {attention: 3.5}, 3: {all_to_all: 11, event: 0.5}}\n"
          "sustained:\n"
          "  - {duty: 1, tokens: 4096, seconds: [0.1], slowdown: [1.3]}\n"
          "  - {duty: 1, tokens: 1024, seconds: [0, 0.5], slowdown: [1, 1.2]}\n"
          "  - {duty: 0.5, tokens: 1024, seconds: [0.1], slowdown: [1.05]}\n"
          "attention:\n"
          "  - {mask: causal, head_dim: 128, gqa: 4, heads: 32, sq: 8192, sk: 16384, tflops: 610}\n"
          "  - {mask: full, head_dim: 64, sq: 1024, sk: 1024, tflops: 300.5, shared: true}\n"
          "  - {mask: full, head_dim: 16, sq: 16, sk: 64, tflops: 0.5, warm: true}\n"
          "links:\n  nvlink:\n    ranks: 4\n"
          "    sendrecv: {bytes: [1048576, 4194304], us: [26, 43]}\n"
          "  rdma:\n    ranks: 16\n    all_gather: {bytes: [1000], us: [40]}\n"
          "topology: {gpus_per_node: 8, intra_node: nvlink, inter_node: tcp}\n"
          "copy: {bytes: [100, 200], gbps: [400, 500]}\nmerge: {bytes: [100], gbps: [3000]}\n",
      "hw.yaml");
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_DOUBLE_EQ(p->launch_us, 3.5);
  EXPECT_DOUBLE_EQ(p->share_factor, 1.25);
  EXPECT_DOUBLE_EQ(p->comm_share_factor, 1.4);
  EXPECT_DOUBLE_EQ(p->issue_lead_us, 38.5);
  EXPECT_DOUBLE_EQ(p->wait_us, 2.75);
  EXPECT_EQ(p->issue_us, (std::map<std::string, double, std::less<>>{
                             {"attention", 4.5}, {"p2p", 9}, {"event", 0.25}}));
  ASSERT_EQ(p->issue_us_ranks.size(), 2u);
  EXPECT_EQ(p->issue_us_ranks.at(1),
            (std::map<std::string, double, std::less<>>{{"attention", 3.5}}));
  EXPECT_EQ(p->issue_us_ranks.at(3),
            (std::map<std::string, double, std::less<>>{{"all_to_all", 11}, {"event", 0.5}}));
  ASSERT_EQ(p->sustained.size(), 3u);  // sorted by tokens, then duty
  EXPECT_EQ(p->sustained[0].tokens, 1024);
  EXPECT_EQ(p->sustained[2].tokens, 4096);
  EXPECT_DOUBLE_EQ(p->sustained[0].duty, 0.5);
  EXPECT_EQ(p->sustained[0].slowdown.y, std::vector<double>{1.05});
  EXPECT_DOUBLE_EQ(p->sustained[1].duty, 1);
  EXPECT_EQ(p->sustained[1].slowdown.x, (std::vector<double>{0, 0.5}));
  EXPECT_EQ(p->sustained[1].slowdown.y, (std::vector<double>{1, 1.2}));
  ASSERT_EQ(p->attention.size(), 3u);
  EXPECT_TRUE(p->attention[0].causal);
  EXPECT_EQ(p->attention[0].head_dim, 128);
  EXPECT_DOUBLE_EQ(p->attention[0].gqa, 4);
  EXPECT_EQ(p->attention[0].heads, 32);
  EXPECT_EQ(p->attention[0].sq, 8192);
  EXPECT_EQ(p->attention[0].sk, 16384);
  EXPECT_DOUBLE_EQ(p->attention[0].tflops, 610);
  EXPECT_FALSE(p->attention[1].causal);
  EXPECT_FALSE(p->attention[0].shared);
  EXPECT_TRUE(p->attention[1].shared);
  EXPECT_FALSE(p->attention[1].warm);
  EXPECT_TRUE(p->attention[2].warm);
  EXPECT_FALSE(p->attention[2].shared);
  EXPECT_DOUBLE_EQ(p->attention[1].gqa, 1);  // default
  EXPECT_EQ(p->attention[1].heads, 0);       // not given
  ASSERT_EQ(p->links.size(), 2u);
  const LinkProfile& nv = p->links.at("nvlink");
  EXPECT_EQ(nv.ranks, 4);
  ASSERT_EQ(nv.sendrecv.x.size(), 2u);
  EXPECT_DOUBLE_EQ(nv.sendrecv.x[1], 4194304);
  EXPECT_DOUBLE_EQ(nv.sendrecv.y[0], 26e-6);  // stored in seconds
  EXPECT_TRUE(nv.all_to_all.empty());
  EXPECT_EQ(p->links.at("rdma").ranks, 16);
  EXPECT_EQ(p->gpus_per_node, 8);
  EXPECT_EQ(p->intra_node_link, "nvlink");
  EXPECT_EQ(p->inter_node_link, "tcp");
  EXPECT_DOUBLE_EQ(p->copy_gbps.y[1], 500);
  EXPECT_DOUBLE_EQ(p->merge_gbps.x[0], 100);
}

TEST(HardwareProfileTables, OldProfilesLoadWithDefaults) {
  auto p = load_hardware_profile(kData + "/profiles/yang2024_h100_rdma.yaml");
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_EQ(p->launch_us, 0);
  EXPECT_EQ(p->share_factor, 1);
  EXPECT_TRUE(p->attention.empty());
  EXPECT_TRUE(p->links.empty());
  EXPECT_EQ(p->gpus_per_node, 0);
  EXPECT_TRUE(p->copy_gbps.empty());
}

TEST(HardwareProfileTables, CommittedProfilesLoad) {
  for (const std::string path :
       {kData + "/profiles/sim_round_numbers.yaml",
        std::string(CPBENCH_SOURCE_DIR) + "/results/profiles/h200x4.yaml"}) {
    auto p = load_hardware_profile(path);
    ASSERT_TRUE(p.ok()) << p.error().message;
    EXPECT_FALSE(p->attention.empty()) << path;
    EXPECT_TRUE(p->links.count("nvlink")) << path;
  }
}

TEST(HardwareProfileTables, BadTablesNameFileLineAndInnerKey) {
  std::string e = err("launch_us: -1\n");
  EXPECT_TRUE(has(e, "hw.yaml:4: launch_us:")) << e;
  e = err("share_factor: 0.5\n");
  EXPECT_TRUE(has(e, "hw.yaml:4: share_factor:") && has(e, "1..")) << e;
  e = err("attention:\n  - {mask: causal, head_dim: 128, sq: 8, sk: 8}\n");
  EXPECT_TRUE(has(e, "hw.yaml:5: attention[0]:") && has(e, "missing tflops")) << e;
  e =
      err("attention:\n  - {mask: full, head_dim: 128, sq: 8, sk: 8, tflops: 1}\n"
          "  - {mask: diagonal, head_dim: 128, sq: 8, sk: 8, tflops: 1}\n");
  EXPECT_TRUE(has(e, "hw.yaml:6: attention[1].mask:") && has(e, "full or causal")) << e;
  e = err("attention:\n  - {mask: full, head_dim: 128, sq: 8.5, sk: 8, tflops: 1}\n");
  EXPECT_TRUE(has(e, "attention[0].sq:") && has(e, "whole number")) << e;
  e = err("attention:\n  - {mask: full, head_dim: 128, sq: 8, sk: 8, tflops: 1, sk_: 2}\n");
  EXPECT_TRUE(has(e, "attention[0].sk_:") && has(e, "unknown key")) << e;
  e = err("attention:\n  - {mask: full, head_dim: 128, gqa: 0.5, sq: 8, sk: 8, tflops: 1}\n");
  EXPECT_TRUE(has(e, "attention[0].gqa:") && has(e, "below 1")) << e;
  e = err("attention: {mask: full}\n");
  EXPECT_TRUE(has(e, "hw.yaml:4: attention:") && has(e, "list")) << e;
  e = err("links:\n  nvlnk:\n    ranks: 4\n");
  EXPECT_TRUE(has(e, "hw.yaml:5: links.nvlnk:") && has(e, "nvlink")) << e;
  e = err("links:\n  nvlink:\n    sendrecv: {bytes: [1], us: [1]}\n");
  EXPECT_TRUE(has(e, "links.nvlink:") && has(e, "missing ranks")) << e;
  e = err("links:\n  nvlink:\n    ranks: 4\n    sendrecv: {bytes: [2, 2], us: [1, 2]}\n");
  EXPECT_TRUE(has(e, "hw.yaml:7: links.nvlink.sendrecv.bytes:") && has(e, "increase")) << e;
  e = err("links:\n  nvlink:\n    ranks: 4\n    sendrecv: {bytes: [1, 2], us: [1]}\n");
  EXPECT_TRUE(has(e, "links.nvlink.sendrecv:") && has(e, "one value per size")) << e;
  e = err("links:\n  nvlink:\n    ranks: 4\n    sendrecv: {bytes: [1, 2]}\n");
  EXPECT_TRUE(has(e, "links.nvlink.sendrecv:") && has(e, "needs both")) << e;
  e = err("links:\n  nvlink:\n    ranks: 4\n    sendrecv: {bytes: [1, 2], us: [1, \"2\"]}\n");
  EXPECT_TRUE(has(e, "links.nvlink.sendrecv.us:") && has(e, "remove the quotes")) << e;
  e = err("links:\n  nvlink:\n    ranks: 4\n    broadcast: {bytes: [1], us: [1]}\n");
  EXPECT_TRUE(has(e, "links.nvlink.broadcast:") && has(e, "all_gather")) << e;
  e = err("topology: {gpus_per_node: 8, inter_node: infiniband}\n");
  EXPECT_TRUE(has(e, "topology.inter_node:") && has(e, "rdma")) << e;
  e = err("copy: {bytes: [100], gbps: [0]}\n");
  EXPECT_TRUE(has(e, "copy.gbps:") && has(e, "positive")) << e;
  e = err("attention:\n  - {mask: full, head_dim: 8, sq: 8, sk: 8, tflops: 1, shared: yes}\n");
  EXPECT_TRUE(has(e, "attention[0].shared:") && has(e, "true or false")) << e;
  e = err("attention:\n  - {mask: full, head_dim: 8, sq: 8, sk: 8, tflops: 1, warm: yes}\n");
  EXPECT_TRUE(has(e, "attention[0].warm:") && has(e, "true or false")) << e;
  e =
      err("sustained:\n  - {duty: 1, seconds: [0], slowdown: [1]}\n"
          "  - {duty: 1, tokens: 64, seconds: [0], slowdown: [1]}\n");
  EXPECT_TRUE(has(e, "sustained:") && has(e, "some curves give tokens")) << e;
  e = err("comm_share_factor: 0.9\n");
  EXPECT_TRUE(has(e, "hw.yaml:4: comm_share_factor:") && has(e, "1..")) << e;
  e = err("issue_lead_us: -2\n");
  EXPECT_TRUE(has(e, "issue_lead_us:") && has(e, "outside 0..")) << e;
  e = err("wait_us: -1\n");
  EXPECT_TRUE(has(e, "wait_us:") && has(e, "outside 0..")) << e;
  e = err("issue_us: {attention: -1}\n");
  EXPECT_TRUE(has(e, "issue_us.attention:") && has(e, "outside 0..")) << e;
  e = err("issue_us: {sendrecv: 3}\n");
  EXPECT_TRUE(has(e, "issue_us.sendrecv:") && has(e, "unknown key") && has(e, "all_to_all")) << e;
  e = err("issue_us: 5\n");
  EXPECT_TRUE(has(e, "issue_us:") && has(e, "expected a map")) << e;
  e = err("issue_us_ranks: {0: {p2p: 3}}\n");
  EXPECT_TRUE(has(e, "issue_us_ranks.0:") && has(e, "ranks")) << e;
  e = err("issue_us_ranks: {2: {p2p: -3}}\n");
  EXPECT_TRUE(has(e, "issue_us_ranks.2.p2p:") && has(e, "outside 0..")) << e;
  e = err("issue_us_ranks: {2: {send: 3}}\n");
  EXPECT_TRUE(has(e, "issue_us_ranks.2.send:") && has(e, "unknown key")) << e;
  e = err("issue_us_ranks: {2: {p2p: 3}, 2.0: {p2p: 4}}\n");
  EXPECT_TRUE(has(e, "issue_us_ranks.2.0:") && has(e, "given twice")) << e;
  e = err("issue_us_ranks: [2]\n");
  EXPECT_TRUE(has(e, "issue_us_ranks:") && has(e, "rank counts")) << e;
  e = err("sustained:\n  - {duty: 1.5, seconds: [0], slowdown: [1]}\n");
  EXPECT_TRUE(has(e, "hw.yaml:5: sustained[0].duty:") && has(e, "more than 1")) << e;
  e = err("sustained:\n  - {duty: 1, seconds: [0.5, 0.2], slowdown: [1, 1]}\n");
  EXPECT_TRUE(has(e, "sustained[0].seconds:") && has(e, "increase")) << e;
  e = err("sustained:\n  - {duty: 1, seconds: [0, 1], slowdown: [1]}\n");
  EXPECT_TRUE(has(e, "sustained[0]:") && has(e, "one value per time")) << e;
  e = err("sustained:\n  - {duty: 1, seconds: [0]}\n");
  EXPECT_TRUE(has(e, "sustained[0]:") && has(e, "missing slowdown")) << e;
  e =
      err("sustained:\n  - {duty: 1, seconds: [0], slowdown: [1]}\n"
          "  - {duty: 1, seconds: [0], slowdown: [2]}\n");
  EXPECT_TRUE(has(e, "sustained[1]:") && has(e, "given twice")) << e;
  e = err("sustained:\n  - {duty: 1, seconds: [0], slowdown: [0]}\n");
  EXPECT_TRUE(has(e, "sustained[0].slowdown:") && has(e, "positive")) << e;
  e = err("merge: [1, 2]\n");
  EXPECT_TRUE(has(e, "hw.yaml:4: merge:") && has(e, "map")) << e;
}

}  // namespace
}  // namespace cpb

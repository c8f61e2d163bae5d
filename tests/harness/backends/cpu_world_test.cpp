// The cpu backend's mailboxes: NCCL-like matching, and failures that abort instead of hanging.
#include <gtest/gtest.h>

#include <chrono>

#include "harness/backends/cpu/cpu_executor.hpp"

namespace cpb {
namespace {

TEST(CpuWorld, RingSendRecvDeliversInOrder) {
  CpuWorld world(4, 10);
  std::vector<float> got(4, -1);
  auto st = world.run([&](int r) -> Status {
    std::vector<float> mine = {static_cast<float>(r)}, in(1);
    CPB_TRY(world.send(r, (r + 1) % 4, "send/recv", mine));
    CPB_TRY(world.recv((r + 3) % 4, r, "send/recv", in));
    got[r] = in[0];
    return {};
  });
  ASSERT_TRUE(st.ok()) << st.error().str();
  for (int r = 0; r < 4; ++r) EXPECT_EQ(got[r], static_cast<float>((r + 3) % 4));
}

TEST(CpuWorld, SizeMismatchIsAnErrorNotAHang) {
  CpuWorld world(2, 10);
  auto st = world.run([&](int r) -> Status {
    std::vector<float> buf(r == 0 ? 3 : 4);
    if (r == 0) return world.send(0, 1, "send/recv", buf);
    return world.recv(0, 1, "send/recv", buf);
  });
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("mismatched"), std::string::npos) << st.error().str();
  EXPECT_EQ(st.error().rank, 1);
}

TEST(CpuWorld, AFailingRankAbortsTheOthers) {
  CpuWorld world(3, 30);
  auto t0 = std::chrono::steady_clock::now();
  auto st = world.run([&](int r) -> Status {
    if (r == 2) return CPB_ERROR("injected failure");
    std::vector<float> in(1);
    return world.recv(2, r, "send/recv", in);  // never sent
  });
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().message, "injected failure");
  EXPECT_EQ(st.error().rank, 2);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
}

TEST(CpuWorld, AHungPeerTimesOut) {
  CpuWorld world(2, 0.2);
  auto st = world.run([&](int r) -> Status {
    if (r == 1) return {};  // never sends
    std::vector<float> in(1);
    return world.recv(1, 0, "send/recv", in);
  });
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("waited"), std::string::npos);
}

TEST(CpuWorld, ExceptionsBecomeErrors) {
  CpuWorld world(2, 5);
  auto st = world.run([&](int r) -> Status {
    if (r == 0) throw std::runtime_error("boom");
    return world.barrier(r);
  });
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("boom"), std::string::npos);
}

}  // namespace
}  // namespace cpb

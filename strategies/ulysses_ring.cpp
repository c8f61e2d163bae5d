// The Ulysses x ring algorithm shared by `ulysses` and `usp` (see ulysses_ring.hpp for what
// moves and the bytes per rank). It runs in three stages: (a) scatter heads, (b) attend over
// the ring, (c) gather heads. Buffers of a rank x in group G with u > 1, with their stages:
//   q_send    (a)    (u-1) slots [B][q_count(x)][H/u][d]: x's Q head slices for the others;
//   kv_send   (a)    K then V, (u-1) slots each [B][kv_count(x)][h][d];
//   q         (a-b)  u blocks [B][q_count(m)][H/u][d]: head slice i of every member m's queries;
//   kv        (a-b)  the group K/V block: K of every member ([B][kv_count(m)][h][d] each, in
//                    member order), then V the same way; this is the message the ring moves,
//                    so its size is a function of the group alone and both ends of a ring hop
//                    compute it alike;
//   ring0/1   (b)    r > 1: one or two blocks of the largest group K/V block;
//   acc       (b-c)  per member m, [O: B*q_count(m)*(H/u)*d | LSE: B*q_count(m)*(H/u)] fp32, so
//                    each member's partial leaves in one contiguous range without packing;
//   o_recv    (c)    (u-1) slots of the same [O | LSE] shape for x's own queries.
// They share one workspace (Executor::alloc_staged): the send buffers' memory is reused by the
// ring buffers and the accumulators, the received outputs reuse what (a) and (b) read, so a
// rank holds its busiest stage, not the sum. With u = 1 there is no all-to-all: queries, K/V and
// outputs are the rank's own tensors and the ring moves the packed [2][B][capacity][Hkv][d]
// block exactly like ring_pass_kv.
#include "strategies/ulysses_ring.hpp"

#include <algorithm>
#include <vector>

#include "strategies/common.hpp"

namespace cpb {

bool ulysses_heads_allow(const Workload& w, int64_t u) {
  return u >= 1 && w.heads % u == 0 && (w.kv_heads % u == 0 || u % w.kv_heads == 0);
}

int auto_ulysses_degree(const Workload& w, int cp) {
  for (int u = cp; u > 1; --u)
    if (cp % u == 0 && ulysses_heads_allow(w, u)) return u;
  return 1;
}

int64_t UlyssesRingPlan::kv_head_begin(const Workload& w, int i) const {
  // Replicated: slice i's query heads [i*H/u, (i+1)*H/u) all read the KV head of its first one
  // (u % Hkv == 0 makes H/u divide the GQA ratio H/Hkv, so they share one).
  return kv_sharded ? i * kv_heads : (i * q_heads) / w.gqa_ratio();
}

nlohmann::json UlyssesRingPlan::describe() const {
  return {
      {"ulysses", ulysses}, {"ring", ring}, {"kv_heads", kv_sharded ? "sharded" : "replicated"}};
}

Expected<UlyssesRingPlan> plan_ulysses_ring(const StrategyContext& ctx, int u,
                                            std::string_view strategy, std::string_view degree,
                                            std::string_view fix) {
  const Workload& w = ctx.workload;
  const int n = ctx.placement.world();
  // Decode holds one query per sequence on one rank: there is no sequence to re-shard by heads.
  CPB_REQUIRE(!ctx.placement.decode(),
              "{} does not run decode (one token per sequence): use ring_pass_q, allgather or "
              "ring_pass_kv",
              strategy);
  CPB_REQUIRE(u >= 1 && n % u == 0,
              "{} needs {} ({}) to divide cp ({}): the ranks form cp / {} groups of {} "
              "consecutive ranks joined by a ring; {}",
              strategy, degree, u, n, degree, degree, fix);
  CPB_REQUIRE(w.heads % u == 0, "{} needs heads ({}) divisible by {} ({}); {}", strategy, w.heads,
              degree, u, fix);
  CPB_REQUIRE(w.kv_heads % u == 0 || u % w.kv_heads == 0,
              "{} needs kv_heads ({}) and {} ({}) to divide one another: kv heads are sharded "
              "when kv_heads % {} == 0 and replicated when {} % kv_heads == 0; {}",
              strategy, w.kv_heads, degree, u, degree, degree, fix);
  UlyssesRingPlan p;
  p.ulysses = u;
  p.ring = n / u;
  p.kv_sharded = w.kv_heads % u == 0;
  p.q_heads = w.heads / u;
  p.kv_heads = p.kv_sharded ? w.kv_heads / u : 1;
  return p;
}

namespace {

enum Stage { kScatter = 0, kAttend = 1, kGather = 2 };

class UlyssesRing final : public RankStrategy {
 public:
  UlyssesRing(const StrategyContext& ctx, const UlyssesRingPlan& plan, int rank, int64_t capacity)
      : w_(ctx.workload),
        pl_(ctx.placement),
        plan_(plan),
        rank_(rank),
        cap_(capacity),
        u_(plan.ulysses),
        r_(plan.ring),
        group_(rank / plan.ulysses),
        index_(rank % plan.ulysses),
        b_(ctx.workload.batch),
        hq_(plan.q_heads),
        hkv_(plan.kv_heads),
        d_(ctx.workload.head_dim) {
    int64_t q = 0, a = 0;
    for (int m = 0; m < u_; ++m) {
      q_off_.push_back(q);
      acc_off_.push_back(a);
      q += q_elems(member(group_, m));
      a += o_elems(member(group_, m));
      acc_.push_back({{}, {}, std::vector<bool>(pl_.q_segments(member(group_, m)).size(), false)});
    }
    q_total_ = q;
    acc_total_ = a;
  }

  Status allocate(Executor& ex) {
    int64_t largest = 0;
    for (int g = 0; g < r_; ++g) largest = std::max(largest, group_kv_elems(g));
    const int64_t ring0 = r_ > 1 ? largest : 0, ring1 = r_ > 2 ? largest : 0;
    if (u_ == 1 && r_ == 1) return {};
    const bool a2a = u_ > 1;
    const Executor::Staged staged[] = {
        {"usp.q_send", ElemKind::act, a2a ? others() * q_elems(rank_) : 0, kScatter, kScatter},
        {"usp.kv_send", ElemKind::act, a2a ? 2 * others() * kv_elems(rank_) : 0, kScatter,
         kScatter},
        {"usp.q", ElemKind::act, a2a ? q_total_ : 0, kScatter, kAttend},
        {"usp.kv", ElemKind::act, a2a ? group_kv_elems(group_) : 0, kScatter, kAttend},
        {"usp.ring0", ElemKind::act, ring0, kAttend, kAttend},
        {"usp.ring1", ElemKind::act, ring1, kAttend, kAttend},
        {"usp.acc", ElemKind::f32, a2a ? acc_total_ : 0, kAttend, kGather},
        {"usp.o_recv", ElemKind::f32, a2a ? others() * o_elems(rank_) : 0, kGather, kGather},
    };
    CPB_ASSIGN_OR_RETURN(auto b, ex.alloc_staged("usp.workspace", staged));
    q_send_ = b[0];
    kv_send_ = b[1];
    q_recv_ = b[2];
    group_kv_ = b[3];
    ring_[0] = b[4];
    ring_[1] = b[5];
    acc_buf_ = b[6];
    o_recv_ = b[7];
    for (int m = 0; u_ > 1 && m < u_; ++m) {
      const int64_t qc = pl_.q_count(member(group_, m));
      acc_[m].o = dense_view(acc_buf_, acc_off_[m], b_, qc, hq_, d_);
      acc_[m].lse = dense_view(acc_buf_, acc_off_[m] + b_ * qc * hq_ * d_, b_, qc, hq_, 1);
    }
    return {};
  }

  Status run(Executor& ex, const RankTensors& io) override {
    ex.set_step(0);
    ex.set_stage(kScatter);
    for (auto& a : acc_) std::fill(a.started.begin(), a.started.end(), false);
    if (u_ > 1) {
      CPB_TRY(scatter_heads(ex, io));
    } else {
      // Pure ring: the rank's own tensors are the group's, nothing to re-shard.
      acc_[0].o = io.o;
      acc_[0].lse = io.lse;
    }
    ex.set_stage(kAttend);
    CPB_TRY(ring(ex, io));
    for (int m = 0; m < u_; ++m)
      CPB_TRY(finish_accumulator(ex, Stream::compute, pl_.q_segments(member(group_, m)), acc_[m]));
    ex.set_stage(kGather);
    if (u_ > 1) CPB_TRY(gather_heads(ex, io));
    return {};
  }

 private:
  int member(int g, int j) const { return g * u_ + j; }
  // Other members of the group: the slots of the send and receive buffers.
  int64_t others() const { return u_ - 1; }
  // Send/receive slot of member j in the buffers that hold one entry per other member.
  int64_t slot(int j) const { return j < index_ ? j : j - 1; }

  int64_t q_elems(int x) const { return b_ * pl_.q_count(x) * hq_ * d_; }
  int64_t o_elems(int x) const { return b_ * pl_.q_count(x) * hq_ * (d_ + 1); }
  // K (or V) of rank x, one head slice.
  int64_t kv_elems(int x) const { return b_ * pl_.kv_count(x) * hkv_ * d_; }

  // Elements of group g's K/V block: what one ring hop carries.
  int64_t group_kv_elems(int g) const {
    if (u_ == 1) return packed_kv_elems(w_, cap_);
    int64_t e = 0;
    for (int j = 0; j < u_; ++j) e += 2 * kv_elems(member(g, j));
    return e;
  }

  // Offset of member j's K within group g's block (V: add half the block).
  int64_t member_kv_offset(int g, int j) const {
    int64_t e = 0;
    for (int m = 0; m < j; ++m) e += kv_elems(member(g, m));
    return e;
  }

  // K (which = 0) or V (which = 1) of member j of group g in a group block held in buf.
  View member_kv(Buf buf, int g, int j, int which) const {
    const int x = member(g, j);
    if (u_ == 1) return packed_kv_view(w_, buf, 0, cap_, pl_.kv_count(x), which);
    const int64_t off = which * group_kv_elems(g) / 2 + member_kv_offset(g, j);
    return dense_view(buf, off, b_, pl_.kv_count(x), hkv_, d_);
  }

  View member_q(const RankTensors& io, int m) const {
    if (u_ == 1) return io.q;
    return dense_view(q_recv_, q_off_[m], b_, pl_.q_count(member(group_, m)), hq_, d_);
  }

  // (a): Q, K and V from sequence-sharded to head-sharded inside the group.
  Status scatter_heads(Executor& ex, const RankTensors& io) {
    const int64_t qc = pl_.q_count(rank_), kc = pl_.kv_count(rank_);
    const int64_t qe = q_elems(rank_), ke = kv_elems(rank_);
    // Pack every slice; our own goes straight to where the others' land (no self-message).
    for (int j = 0; j < u_; ++j) {
      View q_dst =
          j == index_ ? member_q(io, index_) : dense_view(q_send_, slot(j) * qe, b_, qc, hq_, d_);
      CPB_TRY(ex.copy_view(Stream::compute, q_dst, io.q.head_slice(j * hq_, hq_), "pack"));
      for (int which = 0; which < 2; ++which) {
        View src = packed_kv_view(w_, io.kv, 0, cap_, kc, which)
                       .head_slice(plan_.kv_head_begin(w_, j), hkv_);
        View dst = j == index_
                       ? member_kv(group_kv_, group_, index_, which)
                       : dense_view(kv_send_, (which * others() + slot(j)) * ke, b_, kc, hkv_, d_);
        CPB_TRY(ex.copy_view(Stream::compute, dst, src, "pack"));
      }
    }
    ex.wait(Stream::comm, ex.record(Stream::compute));

    // World-wide all-to-alls with empty entries outside the group: every rank issues the same
    // collectives at the same time, and empty entries carry and count nothing.
    const int n = ex.world();
    std::vector<Range> send(n, Range{q_send_, 0, 0}), recv(n, Range{q_recv_, 0, 0});
    for (int j = 0; j < u_; ++j) {
      if (j == index_) continue;
      const int x = member(group_, j);
      send[x] = {q_send_, slot(j) * qe, qe};
      recv[x] = {q_recv_, q_off_[j], q_elems(x)};
    }
    CPB_TRY(ex.all_to_all(Stream::comm, send, recv, "a2a_q"));
    for (int which = 0; which < 2; ++which) {
      for (int j = 0; j < u_; ++j) {
        if (j == index_) continue;
        const int x = member(group_, j);
        send[x] = {kv_send_, (which * others() + slot(j)) * ke, ke};
        recv[x] = {group_kv_, member_kv(group_kv_, group_, j, which).offset, kv_elems(x)};
      }
      CPB_TRY(ex.all_to_all(Stream::comm, send, recv, which == 0 ? "a2a_k" : "a2a_v"));
    }
    ex.wait(Stream::compute, ex.record(Stream::comm));
    return {};
  }

  // (b): the group K/V block rotates over the r groups; every member's queries attend each.
  Status ring(Executor& ex, const RankTensors& io) {
    const int n = ex.world();
    const int next = (rank_ + u_) % n, prev = (rank_ - u_ + n) % n;
    Buf cur = u_ > 1 ? group_kv_ : io.kv;
    Event computed{};
    for (int step = 0; step < r_; ++step) {
      ex.set_step(step);
      const int src = (group_ - step + r_) % r_;  // the group whose block `cur` holds
      Event arrived{};
      if (step + 1 < r_) {
        Buf dst = ring_[step % 2];
        // Into ring_[step % 2], last read by step - 1's attention (at step 1 it is fresh).
        if (step > 1) ex.wait(Stream::comm, computed);
        const int incoming = (src - 1 + r_) % r_;
        const P2POp ops[] = {{P2POp::Kind::send, next, {cur, 0, group_kv_elems(src)}},
                             {P2POp::Kind::recv, prev, {dst, 0, group_kv_elems(incoming)}}};
        CPB_TRY(ex.p2p(Stream::comm, ops, "ring_kv"));
        arrived = ex.record(Stream::comm);
      }
      for (int j = 0; j < u_; ++j) {
        const int kx = member(src, j);
        View k = member_kv(cur, src, j, 0), v = member_kv(cur, src, j, 1);
        for (int m = 0; m < u_; ++m) {
          const int qx = member(group_, m);
          CPB_TRY(attend_segments(ex, Stream::compute, w_, pl_.q_segments(qx), pl_.q_batches(qx),
                                  member_q(io, m), pl_.kv_segments(kx), k, v, acc_[m]));
        }
      }
      computed = ex.record(Stream::compute);
      if (step + 1 < r_) {
        ex.wait(Stream::compute, arrived);
        cur = ring_[step % 2];
      }
    }
    return {};
  }

  // (c): each member's (O, LSE) of head slice i back to its owner, then unpack into io.
  Status gather_heads(Executor& ex, const RankTensors& io) {
    ex.wait(Stream::comm, ex.record(Stream::compute));
    const int n = ex.world();
    const int64_t qc = pl_.q_count(rank_), oe = o_elems(rank_);
    std::vector<Range> send(n, Range{acc_buf_, 0, 0}), recv(n, Range{o_recv_, 0, 0});
    for (int j = 0; j < u_; ++j) {
      if (j == index_) continue;
      const int x = member(group_, j);
      send[x] = {acc_buf_, acc_off_[j], o_elems(x)};
      recv[x] = {o_recv_, slot(j) * oe, oe};
    }
    CPB_TRY(ex.all_to_all(Stream::comm, send, recv, "a2a_o"));
    ex.wait(Stream::compute, ex.record(Stream::comm));
    for (int j = 0; j < u_; ++j) {
      const Buf src = j == index_ ? acc_buf_ : o_recv_;
      const int64_t off = j == index_ ? acc_off_[index_] : slot(j) * oe;
      View o = dense_view(src, off, b_, qc, hq_, d_);
      View lse = dense_view(src, off + b_ * qc * hq_ * d_, b_, qc, hq_, 1);
      CPB_TRY(ex.copy_view(Stream::compute, io.o.head_slice(j * hq_, hq_), o, "unpack"));
      CPB_TRY(ex.copy_view(Stream::compute, io.lse.head_slice(j * hq_, hq_), lse, "unpack"));
    }
    return {};
  }

  Workload w_;
  const Placement& pl_;
  UlyssesRingPlan plan_;
  int rank_;
  int64_t cap_;
  int u_, r_, group_, index_;
  int64_t b_, hq_, hkv_, d_;
  std::vector<int64_t> q_off_, acc_off_;  // per member: its block in q_recv_ and acc_buf_
  int64_t q_total_ = 0, acc_total_ = 0;
  std::vector<Accumulator> acc_;  // per member
  Buf q_send_, q_recv_, kv_send_, group_kv_, acc_buf_, o_recv_, ring_[2];
};

}  // namespace

Expected<std::unique_ptr<RankStrategy>> prepare_ulysses_ring(Executor& ex,
                                                             const StrategyContext& ctx,
                                                             const RankTensors& io,
                                                             const UlyssesRingPlan& plan) {
  CPB_REQUIRE(plan.ulysses * plan.ring == ex.world(),
              "internal: ulysses x ring = {} x {} on {} ranks", plan.ulysses, plan.ring,
              ex.world());
  auto s = std::make_unique<UlyssesRing>(ctx, plan, ex.rank(), io.kv_capacity);
  CPB_TRY(s->allocate(ex));
  return std::unique_ptr<RankStrategy>(std::move(s));
}

}  // namespace cpb

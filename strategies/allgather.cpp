// allgather (Llama 3 context parallelism): every rank all-gathers the packed K/V blocks of all
// ranks, then attends its own queries to each gathered block and merges the partials by LSE.
// Bytes per rank: (N-1) x the packed K+V block received (and its own block sent to N-1 peers,
// counted once as nccl-tests does). Memory: N K/V blocks.
// In decode the cache stays put and the partials move instead: the (small) query blocks are
// all-gathered, every rank attends every sequence's query to its own K/V, the partial (O, LSE)
// are all-gathered and each rank merges those of its own queries. Bytes per rank:
// (N-1)·Bq·H·d·e for the queries + (N-1)·N·Bq·H·(d+1)·4 for the partials, Bq = ceil(B/N)
// (blocks are padded to the largest rank's share).
#include <tuple>

#include "strategies/common.hpp"

namespace cpb {
namespace {

class AllGather final : public RankStrategy {
 public:
  AllGather(const StrategyContext& ctx, Buf gathered, int64_t block)
      : w_(ctx.workload), pl_(ctx.placement), gathered_(gathered), block_(block) {}

  Status run(Executor& ex, const RankTensors& io) override {
    const int n = ex.world();
    const auto& q_segs = pl_.q_segments(ex.rank());
    Accumulator acc = make_accumulator(io, q_segs.size());
    ex.set_step(0);
    Buf src = io.kv;
    if (n > 1) {
      CPB_TRY(ex.all_gather(Stream::comm, {io.kv, 0, block_}, {gathered_, 0, n * block_},
                            "kv_all_gather"));
      ex.wait(Stream::compute, ex.record(Stream::comm));
      src = gathered_;
    }
    for (int s = 0; s < n; ++s) {
      const int64_t off = n > 1 ? s * block_ : 0;
      View k = packed_kv_view(w_, src, off, io.kv_capacity, pl_.kv_count(s), 0);
      View v = packed_kv_view(w_, src, off, io.kv_capacity, pl_.kv_count(s), 1);
      CPB_TRY(attend_segments(ex, Stream::compute, w_, q_segs, pl_.q_batches(ex.rank()), io.q, pl_.kv_segments(s), k, v, acc));
    }
    return finish_accumulator(ex, Stream::compute, q_segs, acc);
  }

 private:
  Workload w_;
  const Placement& pl_;
  Buf gathered_;
  int64_t block_;
};

class AllGatherDecode final : public RankStrategy {
 public:
  AllGatherDecode(const StrategyContext& ctx, int64_t bq, Buf queries, Buf mine, Buf all)
      : w_(ctx.workload), pl_(ctx.placement), bq_(bq), queries_(queries), mine_(mine), all_(all) {}

  int64_t q_block() const { return bq_ * w_.heads * w_.head_dim; }
  int64_t part_block() const { return bq_ * w_.heads * (w_.head_dim + 1); }
  // Partial (O, LSE) of source s's queries in a partial buffer whose slot s starts at `base`.
  std::pair<View, View> part_views(Buf buf, int64_t base, int s) const {
    const auto nb = static_cast<int64_t>(pl_.q_batches(s).size());
    View o = dense_view(buf, base, nb, 1, w_.heads, w_.head_dim);
    View l = dense_view(buf, base + bq_ * w_.heads * w_.head_dim, nb, 1, w_.heads, 1);
    return {o, l};
  }

  Status run(Executor& ex, const RankTensors& io) override {
    const int n = ex.world(), r = ex.rank();
    ex.set_step(0);
    // Every rank's query block, padded to bq_ sequences.
    const auto mine_q = static_cast<int64_t>(pl_.q_batches(r).size()) * w_.heads * w_.head_dim;
    CPB_TRY(ex.copy(Stream::comm, {queries_, r * q_block(), mine_q}, {io.q.buf, 0, mine_q}));
    CPB_TRY(ex.all_gather(Stream::comm, {queries_, r * q_block(), q_block()},
                          {queries_, 0, n * q_block()}, "q_all_gather"));
    ex.wait(Stream::compute, ex.record(Stream::comm));
    const View k = packed_kv_view(w_, io.kv, 0, io.kv_capacity, pl_.kv_count(r), 0);
    const View v = packed_kv_view(w_, io.kv, 0, io.kv_capacity, pl_.kv_count(r), 1);
    for (int s = 0; s < n; ++s) {
      const auto& q_segs = pl_.q_segments(s);
      const auto nb = static_cast<int64_t>(pl_.q_batches(s).size());
      View q = dense_view(queries_, s * q_block(), nb, 1, w_.heads, w_.head_dim);
      Accumulator acc{View{}, View{}, std::vector<bool>(q_segs.size(), false)};
      std::tie(acc.o, acc.lse) = part_views(mine_, s * part_block(), s);
      CPB_TRY(attend_segments(ex, Stream::compute, w_, q_segs, pl_.q_batches(s), q,
                              pl_.kv_segments(r), k, v, acc));
      CPB_TRY(finish_accumulator(ex, Stream::compute, q_segs, acc));
    }
    ex.set_step(1);
    ex.wait(Stream::comm, ex.record(Stream::compute));
    const int64_t per_rank = n * part_block();
    CPB_TRY(ex.all_gather(Stream::comm, {mine_, 0, per_rank}, {all_, 0, n * per_rank},
                          "partials_all_gather"));
    ex.wait(Stream::compute, ex.record(Stream::comm));
    if (pl_.q_batches(r).empty()) return {};
    // Rank j's partial of my queries sits in its slot r.
    for (int j = 0; j < n; ++j) {
      auto [po, pl] = part_views(all_, j * per_rank + r * part_block(), r);
      if (j == 0) {
        CPB_TRY(ex.copy_view(Stream::compute, io.o, po, "merge"));
        CPB_TRY(ex.copy_view(Stream::compute, io.lse, pl, "merge"));
      } else {
        CPB_TRY(ex.merge(Stream::compute, {io.o, io.lse, po, pl}));
      }
    }
    return {};
  }

 private:
  Workload w_;
  const Placement& pl_;
  int64_t bq_;
  Buf queries_, mine_, all_;
};

CPB_REGISTER_STRATEGY((StrategyInfo{
    .name = "allgather",
    .summary = "all-gather K,V of every rank, then attend locally (Llama 3 CP)",
    .check = [](const StrategyContext&) -> Status { return {}; },
    .prepare = [](Executor& ex, const StrategyContext& ctx,
                  const RankTensors& io) -> Expected<std::unique_ptr<RankStrategy>> {
      const Workload& w = ctx.workload;
      if (ctx.placement.decode()) {
        const int n = ex.world();
        const int64_t bq = (w.batch + n - 1) / n;
        const int64_t part = bq * w.heads * (w.head_dim + 1);
        // The query gather is in place: this rank's block sits in its slot and is sent from there.
        CPB_ASSIGN_OR_RETURN(Buf q, ex.alloc("allgather.queries", ElemKind::act,
                                             n * bq * w.heads * w.head_dim));
        CPB_ASSIGN_OR_RETURN(Buf mine, ex.alloc("allgather.partials_mine", ElemKind::f32,
                                                n * part));
        CPB_ASSIGN_OR_RETURN(Buf all, ex.alloc("allgather.partials_all", ElemKind::f32,
                                               int64_t{n} * n * part));
        return std::unique_ptr<RankStrategy>(new AllGatherDecode(ctx, bq, q, mine, all));
      }
      const int64_t block = packed_kv_elems(ctx.workload, io.kv_capacity);
      Buf gathered;
      if (ex.world() > 1) {
        CPB_ASSIGN_OR_RETURN(gathered, ex.alloc("allgather.kv", ElemKind::act, ex.world() * block));
      }
      return std::unique_ptr<RankStrategy>(new AllGather(ctx, gathered, block));
    },
}));

}  // namespace
}  // namespace cpb

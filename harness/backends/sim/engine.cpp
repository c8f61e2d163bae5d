// The sim backend's timing engine (engine.hpp): a worklist over the head op of every stream of
// every rank, resolving start times as their predecessors, events and peers become known.
#include "harness/backends/sim/engine.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <tuple>

namespace cpb::sim {
namespace {

struct OpRef {
  int rank = 0, op = 0;
};

struct State {
  std::vector<std::vector<int>> stream_ops[2];            // [stream][rank] -> global op indices
  std::vector<std::vector<std::vector<OpRef>>> partners;  // [rank][op] -> peer ops it waits for
  std::vector<std::vector<char>> ready_known, done;
  std::vector<std::vector<double>> ready;
  Timeline tl;
};

std::string describe(const RankProgram& p, int rank, int op) {
  const SimOp& o = p.ops[static_cast<size_t>(op)];
  return fmt::format("rank {} op {} ({} on the {} stream, phase '{}', step {})", rank, op,
                     to_string(o.kind), to_string(o.stream), o.phase, o.step);
}

// Pairs every transfer with its peer's op (k-th send r -> p with the k-th receive at p from r)
// and every collective with the same-numbered collective of each participant.
Status pair_ops(const std::vector<RankProgram>& ranks, State& st) {
  const int n = static_cast<int>(ranks.size());
  // (rank, peer, send) -> ops of `rank` holding such a transfer, in issue order.
  std::map<std::tuple<int, int, bool>, std::vector<int>> lanes;
  std::vector<std::vector<int>> collectives(static_cast<size_t>(n));
  for (int r = 0; r < n; ++r) {
    const auto& ops = ranks[static_cast<size_t>(r)].ops;
    for (int i = 0; i < static_cast<int>(ops.size()); ++i) {
      const SimOp& o = ops[static_cast<size_t>(i)];
      for (const Transfer& t : o.transfers) {
        CPB_REQUIRE(t.peer >= 0 && t.peer < n && t.peer != r, "sim: {} names peer {} of {} ranks",
                    describe(ranks[static_cast<size_t>(r)], r, i), t.peer, n);
        lanes[{r, t.peer, t.send}].push_back(i);
      }
      if (o.collective) collectives[static_cast<size_t>(r)].push_back(i);
    }
  }
  for (const auto& [key, ops] : lanes) {
    const auto [r, p, send] = key;
    const auto it = lanes.find({p, r, !send});
    const size_t theirs = it == lanes.end() ? 0 : it->second.size();
    // The side with more transfers reports (the other side's lane is checked on its own turn).
    CPB_REQUIRE(ops.size() <= theirs,
                "sim: rank {} {} {} transfer(s) {} rank {}, which {} {}: {} has no partner", r,
                send ? "sends" : "receives", ops.size(), send ? "to" : "from", p,
                send ? "receives" : "sends", theirs,
                describe(ranks[static_cast<size_t>(r)], r, ops[theirs]));
    for (size_t k = 0; k < ops.size(); ++k)
      st.partners[static_cast<size_t>(r)][static_cast<size_t>(ops[k])].push_back(
          {p, it->second[k]});
  }
  for (int r = 0; r < n; ++r) {
    const auto& mine = collectives[static_cast<size_t>(r)];
    for (size_t k = 0; k < mine.size(); ++k) {
      const SimOp& o = ranks[static_cast<size_t>(r)].ops[static_cast<size_t>(mine[k])];
      std::vector<int> group = o.participants;
      if (group.empty())
        for (int p = 0; p < n; ++p) group.push_back(p);
      for (int p : group) {
        CPB_REQUIRE(p >= 0 && p < n, "sim: {} has participant {} of {} ranks",
                    describe(ranks[static_cast<size_t>(r)], r, mine[k]), p, n);
        if (p == r) continue;
        const auto& theirs = collectives[static_cast<size_t>(p)];
        CPB_REQUIRE(k < theirs.size(), "sim: {} is collective number {}, rank {} has only {}",
                    describe(ranks[static_cast<size_t>(r)], r, mine[k]), k + 1, p, theirs.size());
        st.partners[static_cast<size_t>(r)][static_cast<size_t>(mine[k])].push_back({p, theirs[k]});
      }
    }
  }
  return {};
}

}  // namespace

Expected<Timeline> simulate(const std::vector<RankProgram>& ranks) {
  const int n = static_cast<int>(ranks.size());
  State st;
  st.partners.resize(static_cast<size_t>(n));
  st.ready_known.resize(static_cast<size_t>(n));
  st.done.resize(static_cast<size_t>(n));
  st.ready.resize(static_cast<size_t>(n));
  st.tl.ops.resize(static_cast<size_t>(n));
  st.tl.rank_end_s.assign(static_cast<size_t>(n), 0.0);
  for (auto& s : st.stream_ops) s.resize(static_cast<size_t>(n));
  size_t remaining = 0;
  // When each op's issue ends on its rank's host clock.
  std::vector<std::vector<double>> issued(static_cast<size_t>(n));
  for (int r = 0; r < n; ++r) {
    const RankProgram& p = ranks[static_cast<size_t>(r)];
    const size_t m = p.ops.size();
    double host = -p.host_lead_s;
    for (const SimOp& o : p.ops) issued[static_cast<size_t>(r)].push_back(host += o.issue_s);
    st.partners[static_cast<size_t>(r)].resize(m);
    st.ready_known[static_cast<size_t>(r)].assign(m, 0);
    st.done[static_cast<size_t>(r)].assign(m, 0);
    st.ready[static_cast<size_t>(r)].assign(m, 0.0);
    st.tl.ops[static_cast<size_t>(r)].resize(m);
    for (int i = 0; i < static_cast<int>(m); ++i) {
      const SimOp& o = p.ops[static_cast<size_t>(i)];
      CPB_REQUIRE(o.duration_s >= 0, "sim: {} has a negative duration", describe(p, r, i));
      CPB_REQUIRE(o.issue_s >= 0, "sim: {} has a negative issue time", describe(p, r, i));
      for (int e : o.waits) {
        CPB_REQUIRE(e >= 0 && e < static_cast<int>(p.events.size()),
                    "sim: {} waits on event {}, which was never recorded", describe(p, r, i), e);
        const EventMark& mark = p.events[static_cast<size_t>(e)];
        CPB_REQUIRE(
            mark.op_index < i && (mark.op_index < 0 ||
                                  p.ops[static_cast<size_t>(mark.op_index)].stream == mark.stream),
            "sim: event {} of rank {} does not stand after an earlier op of its stream", e, r);
      }
      st.stream_ops[static_cast<int>(o.stream)][static_cast<size_t>(r)].push_back(i);
    }
    remaining += m;
  }
  CPB_TRY(pair_ops(ranks, st));

  std::vector<size_t> pos[2] = {std::vector<size_t>(static_cast<size_t>(n), 0),
                                std::vector<size_t>(static_cast<size_t>(n), 0)};
  bool progress = true;
  while (remaining > 0 && progress) {
    progress = false;
    for (int r = 0; r < n; ++r)
      for (int s = 0; s < 2; ++s) {
        const auto& list = st.stream_ops[s][static_cast<size_t>(r)];
        auto& at = pos[s][static_cast<size_t>(r)];
        while (at < list.size()) {
          const int i = list[at];
          const auto ri = static_cast<size_t>(r), ii = static_cast<size_t>(i);
          const SimOp& o = ranks[ri].ops[ii];
          if (!st.ready_known[ri][ii]) {
            double t = at > 0 ? st.tl.ops[ri][static_cast<size_t>(list[at - 1])].end_s : 0.0;
            t = std::max(t, issued[ri][ii]);
            bool known = true;
            for (int e : o.waits) {
              const EventMark& ev = ranks[ri].events[static_cast<size_t>(e)];
              const int j = ev.op_index;
              if (j < 0) continue;
              if (!st.done[ri][static_cast<size_t>(j)]) {
                known = false;
                break;
              }
              t = std::max(t, st.tl.ops[ri][static_cast<size_t>(j)].end_s +
                                  (ev.stream != o.stream ? ranks[ri].wait_s : 0.0));
            }
            if (!known) break;
            st.ready_known[ri][ii] = 1;
            st.ready[ri][ii] = t;
            progress = true;
          }
          double begin = st.ready[ri][ii];
          bool peers_ready = true;
          for (const OpRef& q : st.partners[ri][ii]) {
            const auto qr = static_cast<size_t>(q.rank), qo = static_cast<size_t>(q.op);
            if (!st.ready_known[qr][qo]) {
              peers_ready = false;
              break;
            }
            begin = std::max(begin, st.ready[qr][qo]);
          }
          if (!peers_ready) break;
          st.tl.ops[ri][ii] = {begin, begin + o.duration_s};
          st.done[ri][ii] = 1;
          st.tl.rank_end_s[ri] = std::max(st.tl.rank_end_s[ri], begin + o.duration_s);
          ++at;
          --remaining;
          progress = true;
        }
      }
  }
  if (remaining > 0) {
    for (int r = 0; r < n; ++r)
      for (int s = 0; s < 2; ++s) {
        const auto& list = st.stream_ops[s][static_cast<size_t>(r)];
        const size_t at = pos[s][static_cast<size_t>(r)];
        if (at < list.size())
          return CPB_ERROR(
              "sim: the ops can never all run: {} cannot start (its events or its "
              "peers' matching ops never become ready)",
              describe(ranks[static_cast<size_t>(r)], r, list[at]));
      }
  }
  for (double e : st.tl.rank_end_s) st.tl.end_s = std::max(st.tl.end_s, e);
  return st.tl;
}

RankProgram program_from_log(const Accounting& acct,
                             const std::function<double(const OpRecord&)>& cost,
                             const std::function<double(const OpRecord&)>& issue) {
  RankProgram p;
  for (const OpRecord& rec : acct.log) {
    SimOp o;
    o.stream = rec.stream;
    o.kind = rec.kind;
    o.duration_s = cost(rec);
    if (issue) o.issue_s = issue(rec);
    for (const PeerTransfer& t : rec.transfers) o.transfers.push_back({t.peer, t.send, t.bytes});
    o.collective = rec.kind == OpKind::all_gather;
    o.waits = rec.waits;
    o.phase = rec.phase;
    o.step = rec.step;
    if (rec.kind == OpKind::attention)
      o.block_tokens = std::sqrt(static_cast<double>(rec.sq) * static_cast<double>(rec.sk));
    p.ops.push_back(std::move(o));
  }
  for (const EventRecord& e : acct.events) p.events.push_back({e.stream, e.after_op});
  return p;
}

}  // namespace cpb::sim

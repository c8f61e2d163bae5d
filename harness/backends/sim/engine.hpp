// The sim backend's timing engine: plays the ops that each rank issued (in issue order, on its
// compute and comm streams, ordered by events) against durations a cost model gave them, with
// the semantics of CUDA streams and NCCL:
//   - ops of one stream run one after the other;
//   - an op starts no earlier than every event its stream waited on before it (an event stands
//     at the end of the op recorded before it on its stream; one recorded on an idle stream is
//     complete at once), and wait_s after an event of the other stream (the GPU's latency in
//     passing a cross-stream event on);
//   - a communication op also waits for its peers: the k-th transfer from rank r to rank p (a
//     send of r's op) pairs with the k-th transfer into p from r (a receive of p's op), as NCCL
//     pairs point-to-point calls per peer; a collective (all-gather) waits for the same-numbered
//     collective of every participant. It starts when the last of them is ready and lasts its own
//     duration;
//   - an op starts no earlier than its rank's host has issued it: the host issues the ops in
//     order, one after the other, each taking its issue_s from the iteration's start (all 0: a
//     host that is never the bottleneck), which is host_lead_s before the GPU's time 0 (the GPU
//     busy with the timer's own work ahead of its start mark).
// Pure: the same programs give the same timeline. A program that can never finish (a send with
// no matching receive, a wait on an event that is never recorded, a cycle) is an error that
// names the first op that could not start.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "harness/core/executor.hpp"
#include "harness/core/status.hpp"

namespace cpb::sim {

struct Transfer {
  int peer = 0;
  bool send = true;   // false: a receive from `peer`
  int64_t bytes = 0;  // informative; the op's duration already accounts for it
};

struct SimOp {
  Stream stream = Stream::compute;
  OpKind kind = OpKind::attention;
  double duration_s = 0;            // on its own, once it has started
  std::vector<Transfer> transfers;  // p2p and all-to-all: one entry per peer and direction
  bool collective = false;          // all-gather: pairs with every participant's same-numbered one
  std::vector<int> participants;    // ranks of a collective (all ranks when empty)
  std::vector<int> waits;           // events the op's stream waited on since its previous op
  std::string phase;
  int step = -1;
  double block_tokens = 0;  // attention: sqrt(Sq x Sk), the block size of its power draw
  double issue_s = 0;       // the host's time to issue it (after the ops before it)
};

// Where an event stands: after op `op_index` (an index into ops) of `stream`'s ops, -1 when it
// was recorded before any op of that stream.
struct EventMark {
  Stream stream = Stream::compute;
  int op_index = -1;
};

struct RankProgram {
  std::vector<SimOp> ops;         // in issue order (both streams interleaved)
  double host_lead_s = 0;         // the host begins issuing this long before the GPU's time 0
  double wait_s = 0;              // an op waiting on the other stream's event starts this late
  std::vector<EventMark> events;  // by event id
};

struct OpTime {
  double begin_s = 0, end_s = 0;
};

struct Timeline {
  std::vector<std::vector<OpTime>> ops;  // [rank][op]
  std::vector<double> rank_end_s;        // when both streams of the rank are idle
  double end_s = 0;                      // max over ranks
};

Expected<Timeline> simulate(const std::vector<RankProgram>& ranks);

// One rank's program from the iteration its executor logged (Accounting::log and ::events: the
// ops in issue order with their streams, waits and per-peer transfers), each op lasting what
// `cost` says and taking the host what `issue` says (none when empty). All-gathers are collectives
// over every rank.
RankProgram program_from_log(const Accounting& acct,
                             const std::function<double(const OpRecord&)>& cost,
                             const std::function<double(const OpRecord&)>& issue = {});

}  // namespace cpb::sim

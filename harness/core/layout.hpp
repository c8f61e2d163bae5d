// Token -> rank placement. A layout maps each of S tokens of a sequence to (rank, local index):
//   contiguous  rank i owns the i-th of N near-equal consecutive ranges;
//   zigzag      2N equal chunks, rank i owns chunks i and 2N-1-i (causal load balance);
//   striped     token j goes to rank j mod N, local index j / N.
// A Placement applies a layout to one workload: the new tokens (queries) follow the layout; the
// cached tokens of partial prefill (which precede every new token, so every query sees all of
// them and their placement does not change anybody's work) are split into N near-equal
// consecutive ranges; in decode every token, cached or new, is placed round-robin, and the B
// queries (one new token per sequence) are sharded over the ranks by sequence: sequence b's
// query lives on rank b mod N (so a query block carries the ids of its sequences, as in Yang et
// al.'s batched pass-Q decode). In prefill every rank holds its tokens of every sequence. Each
// rank's KV buffer holds its cached tokens first, then its new ones. Strategies never assume a
// layout: they read positions and sequence ids from the Placement.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "harness/core/status.hpp"
#include "harness/core/workload.hpp"

namespace cpb {

enum class LayoutKind { contiguous, zigzag, striped };
std::string_view to_string(LayoutKind k);
Expected<LayoutKind> parse_layout(std::string_view s);

// A run of tokens stored consecutively on one rank whose global positions form an arithmetic
// sequence: token i of the segment sits at local index local_begin + i and global position
// global_begin + i * stride.
struct Segment {
  int64_t local_begin = 0;
  int64_t global_begin = 0;
  int64_t count = 0;
  int64_t stride = 1;
  int64_t global_last() const { return global_begin + (count - 1) * stride; }
};

struct TokenOwner {
  int rank = 0;
  int64_t local = 0;
};

// The layout of a sequence of `tokens` tokens over `world` ranks (positions 0..tokens-1).
// contiguous and striped accept any length; zigzag needs tokens % (2 * world) == 0.
Status check_layout(LayoutKind kind, int64_t tokens, int world);
TokenOwner layout_owner(LayoutKind kind, int64_t tokens, int world, int64_t position);
std::vector<Segment> layout_segments(LayoutKind kind, int64_t tokens, int world, int rank);
int64_t layout_count(LayoutKind kind, int64_t tokens, int world, int rank);

// A layout applied to a workload over `world` ranks.
class Placement {
 public:
  // Checks divisibility: in prefill the new tokens must divide by N (contiguous, striped) or
  // 2N (zigzag); decode and cached tokens accept any count.
  static Expected<Placement> make(const Workload& w, LayoutKind kind, int world);

  LayoutKind kind() const { return kind_; }
  int world() const { return world_; }
  bool decode() const { return decode_; }

  // Queries (new tokens) of `rank`: segments with global positions (P + t for new token t).
  const std::vector<Segment>& q_segments(int rank) const { return q_[rank]; }
  // Sequences whose queries `rank` holds, in local batch order: all B in prefill, b = rank mod N
  // in decode. K/V buffers always hold all B sequences.
  const std::vector<int64_t>& q_batches(int rank) const { return q_batch_[rank]; }
  // True when every rank holds the queries of all sequences (local batch i is sequence i).
  bool q_batches_complete() const { return !decode_; }
  // Keys/values held by `rank`: cached tokens first, then its new tokens.
  const std::vector<Segment>& kv_segments(int rank) const { return kv_[rank]; }
  int64_t q_count(int rank) const;
  int64_t kv_count(int rank) const;
  int64_t max_q_count() const;
  int64_t max_kv_count() const;

  // Where global query t (0..T-1) and global key position p (0..P+T-1) live. In decode the
  // query's owner depends on its sequence: q_owner(0, b).
  TokenOwner q_owner(int64_t t, int64_t batch = 0) const;
  TokenOwner kv_owner(int64_t p) const;

 private:
  LayoutKind kind_ = LayoutKind::contiguous;
  int world_ = 1;
  bool decode_ = false;
  int64_t new_tokens_ = 0;
  int64_t cached_tokens_ = 0;
  std::vector<std::vector<Segment>> q_;
  std::vector<std::vector<int64_t>> q_batch_;
  std::vector<std::vector<Segment>> kv_;
};

// How a block of queries (segment q) may see a block of keys (segment k) under a mask.
struct BlockMask {
  enum class Kind { none, full, causal } kind = Kind::full;  // none: nothing visible, skip
  // For causal: key j is visible to query i iff j <= i + diag.
  int64_t diag = 0;
};
// Errors if the pair is causal, overlapping and has different strides (never produced by the
// layouts above).
Expected<BlockMask> block_mask(MaskKind mask, const Segment& q, const Segment& k);
// Visible (query, key) pairs of a block under a BlockMask.
int64_t block_pairs(const BlockMask& m, int64_t sq, int64_t sk);

}  // namespace cpb

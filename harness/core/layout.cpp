// Layout index maps and the Placement of a workload's queries and keys over ranks.
#include "harness/core/layout.hpp"

#include <algorithm>

namespace cpb {
namespace {

int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

// First position of rank r's range when S tokens are split into N near-equal consecutive ranges.
int64_t even_begin(int64_t tokens, int world, int r) { return tokens * r / world; }

int even_owner(int64_t tokens, int world, int64_t p) {
  int r = static_cast<int>(std::min<int64_t>(world - 1, p * world / std::max<int64_t>(tokens, 1)));
  while (r + 1 < world && even_begin(tokens, world, r + 1) <= p) ++r;
  while (r > 0 && even_begin(tokens, world, r) > p) --r;
  return r;
}

int64_t striped_count(int64_t tokens, int world, int rank) {
  return rank < tokens ? (tokens - rank + world - 1) / world : 0;
}

int64_t total_count(const std::vector<Segment>& segs) {
  int64_t n = 0;
  for (const auto& s : segs) n += s.count;
  return n;
}

}  // namespace

std::string_view to_string(LayoutKind k) {
  switch (k) {
    case LayoutKind::contiguous: return "contiguous";
    case LayoutKind::zigzag: return "zigzag";
    case LayoutKind::striped: return "striped";
  }
  return "?";
}

Expected<LayoutKind> parse_layout(std::string_view s) {
  if (s == "contiguous") return LayoutKind::contiguous;
  if (s == "zigzag") return LayoutKind::zigzag;
  if (s == "striped") return LayoutKind::striped;
  return CPB_ERROR("unknown layout '{}': use contiguous, zigzag or striped", s);
}

Status check_layout(LayoutKind kind, int64_t tokens, int world) {
  CPB_REQUIRE(world >= 1, "cp must be >= 1 (got {})", world);
  CPB_REQUIRE(tokens >= 0, "token count must be >= 0 (got {})", tokens);
  if (kind == LayoutKind::zigzag) {
    CPB_REQUIRE(tokens % (2 * world) == 0,
                "zigzag splits the {} tokens into 2*cp = {} equal chunks: use a token count that "
                "is a multiple of {}",
                tokens, 2 * world, 2 * world);
  }
  return {};
}

TokenOwner layout_owner(LayoutKind kind, int64_t tokens, int world, int64_t p) {
  switch (kind) {
    case LayoutKind::contiguous: {
      int r = even_owner(tokens, world, p);
      return {r, p - even_begin(tokens, world, r)};
    }
    case LayoutKind::zigzag: {
      int64_t chunk = tokens / (2 * world);
      int64_t c = p / chunk;
      if (c < world) return {static_cast<int>(c), p - c * chunk};
      return {static_cast<int>(2 * world - 1 - c), chunk + (p - c * chunk)};
    }
    case LayoutKind::striped:
      return {static_cast<int>(p % world), p / world};
  }
  return {};
}

std::vector<Segment> layout_segments(LayoutKind kind, int64_t tokens, int world, int rank) {
  std::vector<Segment> segs;
  switch (kind) {
    case LayoutKind::contiguous: {
      int64_t b = even_begin(tokens, world, rank);
      int64_t n = even_begin(tokens, world, rank + 1) - b;
      if (n > 0) segs.push_back({0, b, n, 1});
      break;
    }
    case LayoutKind::zigzag: {
      int64_t chunk = tokens / (2 * world);
      if (chunk > 0) {
        segs.push_back({0, rank * chunk, chunk, 1});
        segs.push_back({chunk, (2 * world - 1 - rank) * chunk, chunk, 1});
      }
      break;
    }
    case LayoutKind::striped: {
      int64_t n = striped_count(tokens, world, rank);
      if (n > 0) segs.push_back({0, rank, n, world});
      break;
    }
  }
  return segs;
}

int64_t layout_count(LayoutKind kind, int64_t tokens, int world, int rank) {
  return total_count(layout_segments(kind, tokens, world, rank));
}

Expected<Placement> Placement::make(const Workload& w, LayoutKind kind, int world) {
  CPB_TRY(w.validate());
  CPB_REQUIRE(world >= 1, "cp must be >= 1 (got {})", world);
  Placement pl;
  pl.kind_ = kind;
  pl.world_ = world;
  pl.new_tokens_ = w.new_tokens;
  pl.cached_tokens_ = w.cached_tokens;
  pl.decode_ = w.phase() == Phase::decode;
  pl.q_.resize(world);
  pl.kv_.resize(world);
  pl.q_batch_.resize(world);
  const int64_t T = w.new_tokens, P = w.cached_tokens;

  if (pl.decode_) {
    // Decode: every token of the sequence, the new one included, is placed round-robin.
    for (int r = 0; r < world; ++r) {
      auto segs = layout_segments(LayoutKind::striped, P + 1, world, r);
      pl.kv_[r] = segs;
    }
    for (int64_t b = 0; b < w.batch; ++b) pl.q_batch_[b % world].push_back(b);
    for (int r = 0; r < world; ++r)
      if (!pl.q_batch_[r].empty()) pl.q_[r].push_back({0, P, 1, 1});
    return pl;
  }

  if (kind == LayoutKind::zigzag) {
    CPB_TRY(check_layout(kind, T, world));
  } else {
    CPB_REQUIRE(T % world == 0,
                "{} layout gives each of cp = {} ranks an equal share of the {} new tokens: use a "
                "new_tokens count that is a multiple of {}",
                to_string(kind), world, T, world);
  }
  for (int r = 0; r < world; ++r) {
    for (int64_t b = 0; b < w.batch; ++b) pl.q_batch_[r].push_back(b);
    auto segs = layout_segments(kind, T, world, r);
    int64_t cached_begin = even_begin(P, world, r);
    int64_t cached = even_begin(P, world, r + 1) - cached_begin;
    if (cached > 0) pl.kv_[r].push_back({0, cached_begin, cached, 1});
    for (auto s : segs) {
      Segment q = s;
      q.global_begin += P;
      pl.q_[r].push_back(q);
      Segment k = q;
      k.local_begin += cached;
      pl.kv_[r].push_back(k);
    }
  }
  return pl;
}

int64_t Placement::q_count(int rank) const { return total_count(q_[rank]); }
int64_t Placement::kv_count(int rank) const { return total_count(kv_[rank]); }

int64_t Placement::max_q_count() const {
  int64_t m = 0;
  for (int r = 0; r < world_; ++r) m = std::max(m, q_count(r));
  return m;
}

int64_t Placement::max_kv_count() const {
  int64_t m = 0;
  for (int r = 0; r < world_; ++r) m = std::max(m, kv_count(r));
  return m;
}

TokenOwner Placement::q_owner(int64_t t, int64_t batch) const {
  if (decode_) return {static_cast<int>(batch % world_), 0};
  return layout_owner(kind_, new_tokens_, world_, t);
}

TokenOwner Placement::kv_owner(int64_t p) const {
  if (decode_) return layout_owner(LayoutKind::striped, cached_tokens_ + 1, world_, p);
  if (p < cached_tokens_) {
    int r = even_owner(cached_tokens_, world_, p);
    return {r, p - even_begin(cached_tokens_, world_, r)};
  }
  TokenOwner o = layout_owner(kind_, new_tokens_, world_, p - cached_tokens_);
  o.local += even_begin(cached_tokens_, world_, o.rank + 1) - even_begin(cached_tokens_, world_, o.rank);
  return o;
}

Expected<BlockMask> block_mask(MaskKind mask, const Segment& q, const Segment& k) {
  if (q.count <= 0 || k.count <= 0) return BlockMask{BlockMask::Kind::none, 0};
  if (mask == MaskKind::full) return BlockMask{BlockMask::Kind::full, 0};
  if (k.global_last() <= q.global_begin) return BlockMask{BlockMask::Kind::full, 0};
  if (k.global_begin > q.global_last()) return BlockMask{BlockMask::Kind::none, 0};
  // key j visible to query i iff kb + ks*j <= qb + qs*i. With equal strides s this is
  // j <= i + floor((qb - kb) / s); a single query needs only the key stride.
  if (q.stride == k.stride || q.count == 1) {
    return BlockMask{BlockMask::Kind::causal, floor_div(q.global_begin - k.global_begin, k.stride)};
  }
  return CPB_ERROR(
      "internal: causal block between segments of strides {} and {} is not expressible as a "
      "diagonal offset",
      q.stride, k.stride);
}

int64_t block_pairs(const BlockMask& m, int64_t sq, int64_t sk) {
  switch (m.kind) {
    case BlockMask::Kind::none: return 0;
    case BlockMask::Kind::full: return sq * sk;
    case BlockMask::Kind::causal: return causal_pairs(sq, sk, m.diag);
  }
  return 0;
}

}  // namespace cpb

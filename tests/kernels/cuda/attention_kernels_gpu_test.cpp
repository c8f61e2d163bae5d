// Each attention kernel of kernels/cuda (the fp32 portable one and the Hopper one) called
// directly on cudaMalloc'd buffers, no executor, against an fp64 host reference computed from the
// same bf16/fp16-rounded inputs: head_dim 64 and 128, lengths that are not multiples of a tile,
// full and causal masks with offsets that hide every key of some rows (O = 0 and LSE = -inf,
// never NaN), GQA and MQA, batches, the strided views the strategies make (K and V in one packed
// buffer with spare capacity, Q and O as head slices of wider tensors, nothing outside a view
// read into the result or written), accumulation onto partials (empty ones included), a large
// causal point against the naive GPU reference, and repeated launches that must agree bit for
// bit. The Hopper cases run where hopper_attention_supported says they can; on a compute
// capability 9.0 device of an sm_90a build it must say so for the shapes that matter, so that
// the fast path cannot vanish unnoticed. Label gpu: every test skips without a GPU.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <iostream>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "kernels/cuda/kernels.hpp"
#include "tests/support/scoped_env.hpp"

namespace cpb::cuda {
namespace {

#define ASSERT_CUDA(expr)                                                                \
  do {                                                                                   \
    const cudaError_t cuda_err_ = (expr);                                                \
    ASSERT_EQ(cuda_err_, cudaSuccess) << #expr << ": " << cudaGetErrorString(cuda_err_); \
  } while (0)

constexpr const char* kOverrideVar = "CPBENCH_ATTENTION_KERNEL";
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();
// Fills output memory outside the views: a launch must leave it as it was.
constexpr float kOutside = -777.25f;
constexpr int kNone = 0, kFull = 1, kCausal = 2;  // attention_forward's mask_kind

bool have_gpu() {
  static const bool yes = [] {
    int n = 0;
    const bool ok = cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
    (void)cudaGetLastError();  // a failed query must not reach the first launch's error check
    return ok;
  }();
  return yes;
}

const char* kernel_str(AttentionKernel k) {
  return k == AttentionKernel::portable ? "portable"
         : k == AttentionKernel::hopper ? "hopper"
                                        : "auto";
}
const char* act_str(ActType t) {
  return t == ActType::bf16 ? "bf16" : "fp16";
}

// One cudaMalloc'd allocation, freed on scope exit.
class DevBuf {
 public:
  explicit DevBuf(size_t bytes) {
    err_ = cudaMalloc(&p_, std::max<size_t>(bytes, 1));
    if (err_ != cudaSuccess) p_ = nullptr;
  }
  template <class E>
  explicit DevBuf(const std::vector<E>& host) : DevBuf(host.size() * sizeof(E)) {
    if (err_ == cudaSuccess) err_ = upload(host);
  }
  ~DevBuf() {
    if (p_ != nullptr) cudaFree(p_);
  }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;

  void* get() const { return p_; }
  cudaError_t status() const { return err_; }  // of the allocation and the first upload
  template <class E>
  cudaError_t upload(const std::vector<E>& host) {
    return cudaMemcpy(p_, host.data(), host.size() * sizeof(E), cudaMemcpyHostToDevice);
  }
  template <class E>
  cudaError_t download(std::vector<E>& host) const {
    return cudaMemcpy(host.data(), p_, host.size() * sizeof(E), cudaMemcpyDeviceToHost);
  }

 private:
  void* p_ = nullptr;
  cudaError_t err_ = cudaSuccess;
};

class StreamGuard {
 public:
  StreamGuard() = default;
  ~StreamGuard() {
    if (s_ != nullptr) cudaStreamDestroy(s_);
  }
  StreamGuard(const StreamGuard&) = delete;
  StreamGuard& operator=(const StreamGuard&) = delete;
  cudaError_t create() { return cudaStreamCreate(&s_); }
  cudaStream_t get() const { return s_; }

 private:
  cudaStream_t s_ = nullptr;
};

// Activations as the GPU sees them (bits) and as the reference reads them (the same values).
struct ActTensor {
  std::vector<uint16_t> bits;
  std::vector<float> vals;
};

ActTensor random_act(ActType t, int64_t n, std::mt19937_64& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> raw(static_cast<size_t>(n));
  for (auto& x : raw) x = normal(rng);
  ActTensor out{std::vector<uint16_t>(raw.size()), std::vector<float>(raw.size())};
  floats_to_act(t, raw.data(), out.bits.data(), n);
  act_to_floats(t, out.bits.data(), out.vals.data(), n);
  return out;
}

uint16_t act_nan(ActType t) {
  uint16_t bits = 0;
  floats_to_act(t, &kNaN, &bits, 1);
  return bits;
}

// Where a logical [batch][tokens][heads][dim] tensor sits in its buffer, in elements (the same
// numbers for the bf16/fp16 inputs and the fp32 outputs; LSE has dim 1).
struct Placement {
  int64_t batch = 1, tokens = 0, heads = 0, dim = 0;
  int64_t offset = 0, batch_stride = 0, token_stride = 0;

  int64_t at(int64_t b, int64_t t, int64_t h) const {
    return offset + b * batch_stride + t * token_stride + h * dim;
  }
  DevView view(void* base, int64_t elem_bytes) const {
    return DevView{.data = static_cast<char*>(base) + offset * elem_bytes,
                   .batch = batch,
                   .batch_stride = batch_stride,
                   .tokens = tokens,
                   .heads = heads,
                   .dim = dim,
                   .token_stride = token_stride};
  }
  // The same keys from token `first` on, `n` of them.
  Placement tokens_from(int64_t first, int64_t n) const {
    Placement p = *this;
    p.offset += first * token_stride;
    p.tokens = n;
    return p;
  }
};

// Heads [h0, h0 + heads) of a [batch][tokens][total_heads][dim] tensor.
Placement head_slice(int64_t batch, int64_t tokens, int64_t heads, int64_t dim, int64_t total_heads,
                     int64_t h0) {
  return {batch, tokens, heads, dim, h0 * dim, tokens * total_heads * dim, total_heads * dim};
}

template <class F>
void for_each_row(const Placement& p, F&& f) {
  for (int64_t b = 0; b < p.batch; ++b)
    for (int64_t t = 0; t < p.tokens; ++t)
      for (int64_t h = 0; h < p.heads; ++h) f((b * p.tokens + t) * p.heads + h, p.at(b, t, h));
}

// Logical dense [batch][tokens][heads][dim] -> the placement's elements of `buf`.
template <class E>
void scatter(const Placement& p, const std::vector<E>& logical, std::vector<E>& buf) {
  for_each_row(p, [&](int64_t row, int64_t at) {
    std::copy_n(logical.begin() + row * p.dim, p.dim, buf.begin() + at);
  });
}
template <class E>
std::vector<E> gather(const Placement& p, const std::vector<E>& buf) {
  std::vector<E> logical(static_cast<size_t>(p.batch * p.tokens * p.heads * p.dim));
  for_each_row(p, [&](int64_t row, int64_t at) {
    std::copy_n(buf.begin() + at, p.dim, logical.begin() + row * p.dim);
  });
  return logical;
}
template <class E>
void fill(const Placement& p, std::vector<E>& buf, E value) {
  for_each_row(p, [&](int64_t, int64_t at) { std::fill_n(buf.begin() + at, p.dim, value); });
}
// Elements of `buf` outside the placement whose bits differ from `marker`.
int64_t changed_outside(const Placement& p, const std::vector<float>& buf, float marker) {
  std::vector<char> inside(buf.size(), 0);
  for_each_row(p, [&](int64_t, int64_t at) { std::fill_n(inside.begin() + at, p.dim, 1); });
  int64_t n = 0;
  for (size_t i = 0; i < buf.size(); ++i)
    if (inside[i] == 0 && std::memcmp(&buf[i], &marker, sizeof(float)) != 0) ++n;
  return n;
}

// One attention problem and the way its views sit in memory.
struct Problem {
  AttentionKernel kernel = AttentionKernel::portable;
  ActType act = ActType::bf16;
  int64_t batch = 1, sq = 1, sk = 1, heads = 2, kv_heads = 1, dim = 64;
  int mask = kFull;
  int64_t diag = 0;         // causal: key j visible to query i iff j <= i + diag
  int64_t kv_cap = 0;       // > sk: K and V in one packed [2][batch][kv_cap][kv_heads][dim] buffer
  int64_t heads_total = 0;  // > heads: Q, O, LSE are heads [head0, head0 + heads) of wider ones
  int64_t head0 = 0;
  int64_t split = 0;        // > 0: keys [0, split), then keys [split, sk) accumulated onto them
  bool onto_empty = false;  // one accumulating launch onto a partial with O = 0, LSE = -inf

  float scale() const { return 1.0f / std::sqrt(static_cast<float>(dim)); }
  // Everything but the kernel, so that both kernels see the same inputs for the same case.
  std::string inputs_str() const {
    std::ostringstream s;
    s << act_str(act) << " B=" << batch << " Sq=" << sq << " Sk=" << sk << " H=" << heads
      << " Hkv=" << kv_heads << " d=" << dim;
    if (mask == kNone)
      s << " no key visible";
    else if (mask == kFull)
      s << " full";
    else
      s << " causal diag=" << diag;
    if (kv_cap > 0) s << " kv_cap=" << kv_cap;
    if (heads_total > 0) s << " heads " << head0 << ".." << head0 + heads << " of " << heads_total;
    if (split > 0) s << " split=" << split;
    if (onto_empty) s << " onto_empty";
    return s.str();
  }
  uint64_t seed() const {  // FNV-1a of the case
    uint64_t h = 1469598103934665603ull;
    for (char c : inputs_str()) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
    return h;
  }
  std::string str() const {
    return std::string(kernel_str(kernel)) + " " + inputs_str() + " seed=" + std::to_string(seed());
  }
};

int64_t visible_keys(int mask, int64_t diag, int64_t i, int64_t sk) {
  if (mask == kNone) return 0;
  if (mask == kFull) return sk;
  return std::clamp<int64_t>(i + diag + 1, 0, sk);
}

// fp64 attention of logical dense tensors q [B][Sq][H][d], k, v [B][Sk][Hkv][d]: O [B][Sq][H][d]
// (0 for rows without a visible key) and LSE [B][Sq][H] (-inf for those rows), natural log.
struct Reference {
  std::vector<double> o, lse;
};

Reference host_reference(int64_t B, int64_t Sq, int64_t Sk, int64_t H, int64_t Hkv, int64_t d,
                         int mask, int64_t diag, float scale, const std::vector<float>& q,
                         const std::vector<float>& k, const std::vector<float>& v) {
  const int64_t rows = B * Sq * H, group = H / Hkv;
  Reference r{
      std::vector<double>(static_cast<size_t>(rows * d), 0.0),
      std::vector<double>(static_cast<size_t>(rows), -std::numeric_limits<double>::infinity())};
  const double sc = scale;
  auto work = [&](int64_t first, int64_t step) {
    std::vector<double> s(static_cast<size_t>(Sk)), acc(static_cast<size_t>(d));
    for (int64_t row = first; row < rows; row += step) {
      const int64_t h = row % H, i = (row / H) % Sq, b = row / (H * Sq), hk = h / group;
      const int64_t n = visible_keys(mask, diag, i, Sk);
      if (n == 0) continue;
      const float* qr = q.data() + row * d;
      double m = -std::numeric_limits<double>::infinity();
      for (int64_t j = 0; j < n; ++j) {
        const float* kr = k.data() + ((b * Sk + j) * Hkv + hk) * d;
        double dot = 0;
        for (int64_t x = 0; x < d; ++x) dot += static_cast<double>(qr[x]) * kr[x];
        s[j] = dot * sc;
        m = std::max(m, s[j]);
      }
      std::fill(acc.begin(), acc.end(), 0.0);
      double l = 0;
      for (int64_t j = 0; j < n; ++j) {
        const double e = std::exp(s[j] - m);
        l += e;
        const float* vr = v.data() + ((b * Sk + j) * Hkv + hk) * d;
        for (int64_t x = 0; x < d; ++x) acc[x] += e * vr[x];
      }
      for (int64_t x = 0; x < d; ++x) r.o[row * d + x] = acc[x] / l;
      r.lse[row] = m + std::log(l);
    }
  };
  // Rows dealt round-robin, so that causal rows of every length spread evenly.
  const int64_t threads =
      std::clamp<int64_t>(static_cast<int64_t>(std::thread::hardware_concurrency()), 1, 32);
  const int64_t n = std::min(threads, rows);
  std::vector<std::thread> pool;
  for (int64_t t = 1; t < n; ++t) pool.emplace_back(work, t, n);
  work(0, std::max<int64_t>(n, 1));
  for (auto& th : pool) th.join();
  return r;
}

struct Tolerance {
  double o_rel, lse_abs;
};
// The portable kernel is fp32 throughout. The Hopper kernel rounds P to the input type before
// P·V (bf16 keeps 8 bits of mantissa, fp16 11); its LSE comes from fp32 scores of the same
// inputs, so it stays tight.
Tolerance tolerance(AttentionKernel k, ActType t) {
  if (k == AttentionKernel::portable) return {1e-5, 1e-4};
  return {t == ActType::bf16 ? 1e-2 : 5e-3, 2e-3};
}

struct Errors {
  double o_rel = 0;          // ||O - O_ref|| / ||O_ref|| (||O - O_ref|| where O_ref = 0)
  double lse_abs = 0;        // max |LSE - LSE_ref| over rows with a visible key
  int64_t nonfinite = 0;     // O or LSE values not finite where the reference is
  int64_t masked_wrong = 0;  // rows without a visible key whose O is not 0 or LSE not -inf

  bool within(const Tolerance& t) const {
    return nonfinite == 0 && masked_wrong == 0 && o_rel <= t.o_rel && lse_abs <= t.lse_abs;
  }
  std::string str(const Tolerance& t) const {
    std::ostringstream s;
    s << "o_rel=" << o_rel << " (<= " << t.o_rel << ") lse_abs=" << lse_abs << " (<= " << t.lse_abs
      << ") nonfinite=" << nonfinite << " masked_rows_wrong=" << masked_wrong;
    return s.str();
  }
};

// o and lse in the reference's logical order; ref_o/ref_lse of any floating type.
template <class R>
Errors compare(const std::vector<float>& o, const std::vector<float>& lse,
               const std::vector<R>& ref_o, const std::vector<R>& ref_lse, int64_t d) {
  Errors e;
  double diff2 = 0, ref2 = 0;
  for (size_t row = 0; row < ref_lse.size(); ++row) {
    const double rl = static_cast<double>(ref_lse[row]);
    const float l = lse[row];
    const bool masked = std::isinf(rl) && rl < 0;
    bool row_ok = true;
    if (masked)
      row_ok = std::isinf(l) && l < 0;
    else if (!std::isfinite(l))
      ++e.nonfinite;
    else
      e.lse_abs = std::max(e.lse_abs, std::abs(static_cast<double>(l) - rl));
    for (int64_t x = 0; x < d; ++x) {
      const float y = o[row * d + x];
      const double ry = static_cast<double>(ref_o[row * d + x]);
      if (masked && y != 0.0f) row_ok = false;  // NaN too
      if (!std::isfinite(y)) {
        ++e.nonfinite;
        continue;
      }
      diff2 += (y - ry) * (y - ry);
      ref2 += ry * ry;
    }
    if (!row_ok) ++e.masked_wrong;
  }
  e.o_rel = ref2 > 0 ? std::sqrt(diff2 / ref2) : std::sqrt(diff2);
  return e;
}

// Runs one problem on the GPU and checks it against the fp64 reference. Sets *ran = false and
// says why in *skipped when the Hopper kernel does not support its views here.
void run_problem(const Problem& p, cudaStream_t stream, bool* ran, std::string* skipped) {
  *ran = false;
  const int64_t B = p.batch, Sq = p.sq, Sk = p.sk, H = p.heads, Hkv = p.kv_heads, d = p.dim;
  const int64_t Ht = p.heads_total > 0 ? p.heads_total : H;
  const int64_t cap = p.kv_cap > 0 ? p.kv_cap : Sk;
  ASSERT_TRUE(p.split >= 0 && p.split < Sk) << p.str();
  std::mt19937_64 rng(p.seed());
  const ActTensor q = random_act(p.act, B * Sq * H * d, rng);
  const ActTensor k = random_act(p.act, B * Sk * Hkv * d, rng);
  const ActTensor v = random_act(p.act, B * Sk * Hkv * d, rng);

  const Placement qp = head_slice(B, Sq, H, d, Ht, p.head0), op = qp;
  const Placement lp = head_slice(B, Sq, H, 1, Ht, p.head0);
  const Placement kp{B, Sk, Hkv, d, 0, cap * Hkv * d, Hkv * d};
  Placement vp = kp;
  vp.offset = B * cap * Hkv * d;

  // Inputs outside the views are NaN: nothing outside a view may reach the result (a kernel that
  // loads whole tiles past a view's end must drop those keys, or have TMA fill them with 0).
  const uint16_t nan_bits = act_nan(p.act);
  std::vector<uint16_t> qh(static_cast<size_t>(B * Sq * Ht * d), nan_bits);
  std::vector<uint16_t> kvh(static_cast<size_t>(2 * B * cap * Hkv * d), nan_bits);
  scatter(qp, q.bits, qh);
  scatter(kp, k.bits, kvh);
  scatter(vp, v.bits, kvh);
  // Outputs outside the views hold a marker that must survive; inside, NaN before a
  // non-accumulating launch (every element must be written) or the empty partial.
  std::vector<float> oh(static_cast<size_t>(B * Sq * Ht * d), kOutside);
  std::vector<float> lh(static_cast<size_t>(B * Sq * Ht), kOutside);
  fill(op, oh, p.onto_empty ? 0.0f : kNaN);
  fill(lp, lh, p.onto_empty ? -kInf : kNaN);

  DevBuf qd(qh), kvd(kvh), od(oh), ld(lh);
  ASSERT_CUDA(qd.status());
  ASSERT_CUDA(kvd.status());
  ASSERT_CUDA(od.status());
  ASSERT_CUDA(ld.status());

  struct Launch {
    Placement k, v;
    int64_t diag;
    bool accumulate;
  };
  std::vector<Launch> launches;
  if (p.split > 0) {
    launches.push_back({kp.tokens_from(0, p.split), vp.tokens_from(0, p.split), p.diag, false});
    launches.push_back({kp.tokens_from(p.split, Sk - p.split),
                        vp.tokens_from(p.split, Sk - p.split), p.diag - p.split, true});
  } else {
    launches.push_back({kp, vp, p.diag, p.onto_empty});
  }
  const DevView qv = qp.view(qd.get(), 2), ov = op.view(od.get(), 4), lv = lp.view(ld.get(), 4);
  if (p.kernel == AttentionKernel::hopper)
    for (const Launch& l : launches) {
      const char* why = nullptr;
      if (!hopper_attention_supported(qv, l.k.view(kvd.get(), 2), l.v.view(kvd.get(), 2), &why)) {
        *skipped = why != nullptr ? why : "(no reason given)";
        return;
      }
    }
  for (const Launch& l : launches) {
    const int rc = attention_forward(p.act, qv, l.k.view(kvd.get(), 2), l.v.view(kvd.get(), 2), ov,
                                     lv, p.mask, l.diag, p.scale(), l.accumulate, stream, p.kernel);
    ASSERT_EQ(rc, 0) << p.str() << ": " << cudaGetErrorString(static_cast<cudaError_t>(rc));
  }
  ASSERT_CUDA(cudaStreamSynchronize(stream));

  std::vector<uint16_t> qa(qh.size()), kva(kvh.size());
  std::vector<float> oa(oh.size()), la(lh.size());
  ASSERT_CUDA(qd.download(qa));
  ASSERT_CUDA(kvd.download(kva));
  ASSERT_CUDA(od.download(oa));
  ASSERT_CUDA(ld.download(la));
  EXPECT_TRUE(qa == qh && kva == kvh) << p.str() << ": the kernel wrote into its inputs";
  EXPECT_EQ(changed_outside(op, oa, kOutside), 0) << p.str() << ": O written outside its view";
  EXPECT_EQ(changed_outside(lp, la, kOutside), 0) << p.str() << ": LSE written outside its view";

  const Reference ref =
      host_reference(B, Sq, Sk, H, Hkv, d, p.mask, p.diag, p.scale(), q.vals, k.vals, v.vals);
  const Errors e = compare(gather(op, oa), gather(lp, la), ref.o, ref.lse, d);
  const Tolerance tol = tolerance(p.kernel, p.act);
  EXPECT_TRUE(e.within(tol)) << p.str() << ": " << e.str(tol);
  *ran = true;
}

DevView dense_view(void* data, int64_t batch, int64_t tokens, int64_t heads, int64_t dim) {
  return Placement{batch, tokens, heads, dim, 0, tokens * heads * dim, heads * dim}.view(data, 2);
}

// Whether the Hopper kernel takes dense views of this head_dim (H = 8, Hkv = 2, 128 tokens).
bool hopper_takes_dense(int64_t d, const char** why) {
  DevBuf q(size_t{128} * 8 * static_cast<size_t>(d) * 2), kv(size_t{2} * 128 * 2 * d * 2);
  if (q.status() != cudaSuccess || kv.status() != cudaSuccess) {
    *why = "cudaMalloc failed";
    return false;
  }
  const DevView qv = dense_view(q.get(), 1, 128, 8, d), kv_k = dense_view(kv.get(), 1, 128, 2, d);
  DevView kv_v = kv_k;
  kv_v.data = static_cast<char*>(kv.get()) + 128 * 2 * d * 2;
  return hopper_attention_supported(qv, kv_k, kv_v, why);
}

class AttentionKernels : public ::testing::TestWithParam<std::tuple<AttentionKernel, ActType>> {
 protected:
  void SetUp() override {
    if (!have_gpu()) GTEST_SKIP() << "no GPU";
    if (kernel() == AttentionKernel::hopper) {
      const char* why = nullptr;
      if (!hopper_takes_dense(128, &why))
        GTEST_SKIP() << "the Hopper kernel does not run here: " << (why != nullptr ? why : "?");
    }
    ASSERT_CUDA(stream_.create());
  }

  AttentionKernel kernel() const { return std::get<0>(GetParam()); }
  ActType act() const { return std::get<1>(GetParam()); }
  Problem problem() const {
    Problem p;
    p.kernel = kernel();
    p.act = act();
    return p;
  }

  // Problems the Hopper kernel does not support here are reported, not failed; the test skips
  // when none ran.
  void run_all(const std::vector<Problem>& problems) {
    int ran_count = 0, skipped_count = 0;
    std::string first_skip;
    for (const Problem& p : problems) {
      bool ran = false;
      std::string why;
      ASSERT_NO_FATAL_FAILURE(run_problem(p, stream_.get(), &ran, &why));
      if (ran) {
        ++ran_count;
      } else if (skipped_count++ == 0) {
        first_skip = p.str() + ": " + why;
      }
    }
    if (skipped_count > 0) {
      RecordProperty("unsupported_problems", skipped_count);
      std::cout << "[   NOTE   ] " << skipped_count << " of " << problems.size()
                << " problems not supported by the " << kernel_str(kernel())
                << " kernel, the first: " << first_skip << "\n";
    }
    if (ran_count == 0) GTEST_SKIP() << "no problem supported, the first: " << first_skip;
  }

  StreamGuard stream_;
};

// Masks: full, and causal with diagonals that hide every key of every row (-200), of the first
// rows (-1), the usual square one (0), the end-aligned one of a chunk after cached keys (Sk-Sq)
// and one past the last key (Sk+10).
std::vector<std::pair<int, int64_t>> masks_for(int64_t sq, int64_t sk) {
  std::vector<std::pair<int, int64_t>> m{{kNone, 0}, {kFull, 0}};
  for (int64_t diag : {int64_t{-200}, int64_t{-1}, int64_t{0}, sk - sq, sk + 10})
    if (std::find(m.begin(), m.end(), std::pair{kCausal, diag}) == m.end())
      m.emplace_back(kCausal, diag);
  return m;
}

TEST_P(AttentionKernels, ShapesAndMasksMatchFp64) {
  std::vector<Problem> ps;
  for (int64_t d : {64, 128})
    for (auto [sq, sk] : {std::pair<int64_t, int64_t>{1, 1},
                          {77, 300},
                          {128, 128},
                          {300, 77},
                          {129, 257},
                          {1000, 1500}})
      for (auto [mask, diag] : masks_for(sq, sk)) {
        Problem p = problem();
        p.dim = d;
        p.sq = sq;
        p.sk = sk;
        p.heads = 2;
        p.kv_heads = 1;
        p.mask = mask;
        p.diag = diag;
        ps.push_back(p);
      }
  run_all(ps);
}

TEST_P(AttentionKernels, GqaMqaAndBatchesMatchFp64) {
  std::vector<Problem> ps;
  for (int64_t d : {64, 128})
    for (auto [h, hkv] : {std::pair<int64_t, int64_t>{4, 4}, {8, 2}, {8, 1}})
      for (int64_t b : {1, 2})
        for (auto [mask, diag] :
             {std::pair<int, int64_t>{kFull, 0}, {kCausal, 257 - 130}, {kCausal, -1}}) {
          Problem p = problem();
          p.dim = d;
          p.batch = b;
          p.sq = 130;
          p.sk = 257;
          p.heads = h;
          p.kv_heads = hkv;
          p.mask = mask;
          p.diag = diag;
          ps.push_back(p);
        }
  run_all(ps);
}

// K and V in one packed [2][B][cap][Hkv][d] buffer with cap > Sk (batch_stride = cap*Hkv*d), as
// the ring strategies keep them; Q, O and LSE as a head slice of wider tensors, as Ulysses makes
// them (token_stride = H_total*d, base offset by h0*d).
TEST_P(AttentionKernels, StridedViewsAsTheStrategiesMakeThem) {
  std::vector<Problem> ps;
  for (int64_t d : {64, 128})
    for (auto [sq, sk, cap] :
         {std::tuple<int64_t, int64_t, int64_t>{97, 203, 256}, {1, 515, 600}, {130, 64, 200}})
      for (int64_t h0 : {0, 4, 8})
        for (auto [mask, diag] :
             {std::pair<int, int64_t>{kFull, 0}, {kCausal, sk - sq}, {kCausal, -30}}) {
          Problem p = problem();
          p.dim = d;
          p.batch = 2;
          p.sq = sq;
          p.sk = sk;
          p.kv_cap = cap;
          p.heads = 4;
          p.kv_heads = 2;
          p.heads_total = 12;
          p.head0 = h0;
          p.mask = mask;
          p.diag = diag;
          ps.push_back(p);
        }
  run_all(ps);
}

// Keys [0, a) without accumulate, then keys [a, Sk) (views offset by a tokens, diag reduced by
// a) accumulated onto them, equal the whole; causal diagonals make some rows' first or second
// partial empty. Accumulating onto an empty partial (O = 0, LSE = -inf) gives the new result,
// and rows empty in both stay O = 0, LSE = -inf.
TEST_P(AttentionKernels, AccumulationMatchesOneLaunch) {
  std::vector<Problem> ps;
  for (int64_t d : {64, 128}) {
    for (auto [sq, sk, a] : {std::tuple<int64_t, int64_t, int64_t>{128, 300, 77},
                             {300, 300, 129},
                             {77, 1000, 500},
                             {1, 515, 256}})
      for (auto [mask, diag] :
           {std::pair<int, int64_t>{kFull, 0}, {kCausal, sk - sq}, {kCausal, -40}}) {
        Problem p = problem();
        p.dim = d;
        p.sq = sq;
        p.sk = sk;
        p.split = a;
        p.heads = 4;
        p.kv_heads = 2;
        p.mask = mask;
        p.diag = diag;
        ps.push_back(p);
      }
    for (auto [sq, sk] : {std::pair<int64_t, int64_t>{128, 300}, {300, 77}})
      for (auto [mask, diag] : {std::pair<int, int64_t>{kFull, 0}, {kCausal, -1}}) {
        Problem p = problem();
        p.dim = d;
        p.sq = sq;
        p.sk = sk;
        p.onto_empty = true;
        p.heads = 4;
        p.kv_heads = 2;
        p.mask = mask;
        p.diag = diag;
        ps.push_back(p);
      }
    // Both at once, as a ring step sees them: a slice of Q and O, packed K/V with spare room.
    Problem p = problem();
    p.dim = d;
    p.batch = 2;
    p.sq = 77;
    p.sk = 1000;
    p.kv_cap = 1100;
    p.split = 500;
    p.heads = 4;
    p.kv_heads = 2;
    p.heads_total = 8;
    p.head0 = 4;
    p.mask = kCausal;
    p.diag = 1000 - 77;
    ps.push_back(p);
  }
  run_all(ps);
}

// A point too large for the fp64 host reference against the naive fp32 GPU reference.
TEST_P(AttentionKernels, LargeCausalMatchesTheNaiveGpuReference) {
  const int64_t H = 32, Hkv = 8, d = 128, S = 4096;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  std::mt19937_64 rng(4096);
  const ActTensor q = random_act(act(), S * H * d, rng);
  const ActTensor k = random_act(act(), S * Hkv * d, rng);
  const ActTensor v = random_act(act(), S * Hkv * d, rng);
  DevBuf qd(q.bits), kd(k.bits), vd(v.bits);
  DevBuf od(size_t(S * H * d) * 4), ld(size_t(S * H) * 4), rod(size_t(S * H * d) * 4),
      rld(size_t(S * H) * 4);
  for (const DevBuf* b : {&qd, &kd, &vd, &od, &ld, &rod, &rld}) ASSERT_CUDA(b->status());
  const DevView qv = dense_view(qd.get(), 1, S, H, d), kv = dense_view(kd.get(), 1, S, Hkv, d),
                vv = dense_view(vd.get(), 1, S, Hkv, d);
  DevView ov = qv, lv = qv;
  ov.data = od.get();
  lv.data = ld.get();
  lv.dim = 1;
  lv.batch_stride = S * H;
  lv.token_stride = H;
  if (kernel() == AttentionKernel::hopper) {
    const char* why = nullptr;
    if (!hopper_attention_supported(qv, kv, vv, &why))
      GTEST_SKIP() << "the Hopper kernel does not take this point: "
                   << (why != nullptr ? why : "?");
  }
  ASSERT_CUDA(cudaMemset(od.get(), 0xff, size_t(S * H * d) * 4));  // NaN
  ASSERT_CUDA(cudaMemset(ld.get(), 0xff, size_t(S * H) * 4));
  ASSERT_CUDA(cudaDeviceSynchronize());
  int rc = attention_forward(act(), qv, kv, vv, ov, lv, kCausal, 0, scale, false, stream_.get(),
                             kernel());
  ASSERT_EQ(rc, 0) << cudaGetErrorString(static_cast<cudaError_t>(rc));
  rc = reference_attention(act(), qd.get(), kd.get(), vd.get(), static_cast<float*>(rod.get()),
                           static_cast<float*>(rld.get()), 1, S, 0, H, Hkv, d, true, scale,
                           stream_.get());
  ASSERT_EQ(rc, 0) << cudaGetErrorString(static_cast<cudaError_t>(rc));
  ASSERT_CUDA(cudaStreamSynchronize(stream_.get()));
  std::vector<float> o(size_t(S * H * d)), l(size_t(S * H)), ro(o.size()), rl(l.size());
  ASSERT_CUDA(od.download(o));
  ASSERT_CUDA(ld.download(l));
  ASSERT_CUDA(rod.download(ro));
  ASSERT_CUDA(rld.download(rl));
  const Errors e = compare(o, l, ro, rl, d);
  const Tolerance tol = tolerance(kernel(), act());
  EXPECT_TRUE(e.within(tol)) << kernel_str(kernel()) << " " << act_str(act()) << " B=1 S=" << S
                             << " H=" << H << " Hkv=" << Hkv << " d=" << d
                             << " causal vs reference_attention: " << e.str(tol);
}

// Two launches on the same inputs give the same bits: a race (a missing barrier between the
// producer and the consumers, a shared-memory buffer reused too early) shows up as a difference.
TEST_P(AttentionKernels, RepeatedLaunchesAreBitwiseIdentical) {
  const int64_t H = 8, Hkv = 2, d = 128, S = 2048;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  std::mt19937_64 rng(2048);
  const ActTensor q = random_act(act(), S * H * d, rng);
  const ActTensor kv = random_act(act(), 2 * S * Hkv * d, rng);  // K then V
  DevBuf qd(q.bits), kvd(kv.bits), od(size_t(S * H * d) * 4), ld(size_t(S * H) * 4);
  for (const DevBuf* b : {&qd, &kvd, &od, &ld}) ASSERT_CUDA(b->status());
  const DevView qv = dense_view(qd.get(), 1, S, H, d), kv_k = dense_view(kvd.get(), 1, S, Hkv, d);
  DevView kv_v = kv_k, ov = qv, lv = qv;
  kv_v.data = static_cast<char*>(kvd.get()) + S * Hkv * d * 2;
  ov.data = od.get();
  lv.data = ld.get();
  lv.dim = 1;
  lv.batch_stride = S * H;
  lv.token_stride = H;
  if (kernel() == AttentionKernel::hopper) {
    const char* why = nullptr;
    if (!hopper_attention_supported(qv, kv_k, kv_v, &why))
      GTEST_SKIP() << "the Hopper kernel does not take this point: "
                   << (why != nullptr ? why : "?");
  }
  std::vector<float> o[2], l[2];
  for (int run = 0; run < 2; ++run) {
    // Different poison each time, so that an element left unwritten cannot match.
    ASSERT_CUDA(cudaMemset(od.get(), run == 0 ? 0xff : 0x7f, size_t(S * H * d) * 4));
    ASSERT_CUDA(cudaMemset(ld.get(), run == 0 ? 0xff : 0x7f, size_t(S * H) * 4));
    ASSERT_CUDA(cudaDeviceSynchronize());
    const int rc = attention_forward(act(), qv, kv_k, kv_v, ov, lv, kCausal, 0, scale, false,
                                     stream_.get(), kernel());
    ASSERT_EQ(rc, 0) << cudaGetErrorString(static_cast<cudaError_t>(rc));
    ASSERT_CUDA(cudaStreamSynchronize(stream_.get()));
    o[run].resize(size_t(S * H * d));
    l[run].resize(size_t(S * H));
    ASSERT_CUDA(od.download(o[run]));
    ASSERT_CUDA(ld.download(l[run]));
  }
  int64_t o_diff = 0, l_diff = 0;
  for (size_t i = 0; i < o[0].size(); ++i)
    o_diff += std::memcmp(&o[0][i], &o[1][i], sizeof(float)) != 0;
  for (size_t i = 0; i < l[0].size(); ++i)
    l_diff += std::memcmp(&l[0][i], &l[1][i], sizeof(float)) != 0;
  EXPECT_EQ(o_diff, 0) << kernel_str(kernel()) << " " << act_str(act())
                       << " S=2048 H=8 Hkv=2 d=128 causal: O elements differing between runs";
  EXPECT_EQ(l_diff, 0) << kernel_str(kernel()) << " " << act_str(act())
                       << " S=2048 H=8 Hkv=2 d=128 causal: LSE elements differing between runs";
}

// The Hopper kernel's consumer-loop variants, key tiles and grids, selectable for measurements
// through CPBENCH_SM90_VARIANT, CPBENCH_SM90_BLOCK_N, CPBENCH_SM90_STAGES and
// CPBENCH_SM90_PERSISTENT, each compute
// the same function: a few shapes across the masks, GQA, packed K/V, a head slice and an
// accumulating split, for every choice. A grid of 3 blocks makes each block take many work
// tiles of different lengths, so stage and phase carry over from tile to tile.
TEST_P(AttentionKernels, EveryHopperVariantMatchesFp64) {
  if (kernel() != AttentionKernel::hopper) GTEST_SKIP() << "variants are the Hopper kernel's";
  for (const char* variant : {"serial", "overlap", "pingpong"})
    for (auto [block_n, stages] :
         {std::pair<const char*, const char*>{"128", "2"}, {"176", "2"}, {"128", "3"}})
      for (const char* grid : {"0", "3"}) {
        testing_support::ScopedEnv v("CPBENCH_SM90_VARIANT", variant);
        testing_support::ScopedEnv n("CPBENCH_SM90_BLOCK_N", block_n);
        testing_support::ScopedEnv st("CPBENCH_SM90_STAGES", stages);
        testing_support::ScopedEnv pg("CPBENCH_SM90_PERSISTENT", grid);
        SCOPED_TRACE(std::string("variant ") + variant + " block_n " + block_n + " stages " +
                     stages + " grid " + grid);
        std::vector<Problem> ps;
        for (int64_t d : {64, 128})
          for (auto [mask, diag] :
               {std::pair<int, int64_t>{kFull, 0}, {kCausal, 0}, {kCausal, 150}, {kCausal, -3}}) {
            Problem p = problem();
            p.dim = d;
            p.sq = 300;
            p.sk = 450;
            p.heads = 4;
            p.kv_heads = 2;
            p.batch = 2;
            p.mask = mask;
            p.diag = diag;
            ps.push_back(p);
            p.kv_cap = 500;
            p.heads_total = 8;
            p.head0 = 4;
            p.split = 200;
            ps.push_back(p);
          }
        run_all(ps);
      }
}

INSTANTIATE_TEST_SUITE_P(Each, AttentionKernels,
                         ::testing::Combine(::testing::Values(AttentionKernel::portable,
                                                              AttentionKernel::hopper),
                                            ::testing::Values(ActType::bf16, ActType::fp16)),
                         [](const auto& info) {
                           return std::string(kernel_str(std::get<0>(info.param))) + "_" +
                                  act_str(std::get<1>(info.param));
                         });

// On a compute capability 9.0 device of a build with the sm_90a object, the Hopper kernel takes
// the views the strategies use at head_dim 128 (and 64), and `automatic` picks it: a build or
// dispatch change that loses the fast path fails here instead of only running slower.
TEST(AttentionKernels, HopperIsTakenOnSm90ForTheViewsThatMatter) {
  if (!have_gpu()) GTEST_SKIP() << "no GPU";
  int dev = 0;
  cudaDeviceProp prop{};
  ASSERT_CUDA(cudaGetDevice(&dev));
  ASSERT_CUDA(cudaGetDeviceProperties(&prop, dev));
  if (prop.major != 9 || prop.minor != 0)
    GTEST_SKIP() << prop.name << " is compute capability " << prop.major << "." << prop.minor
                 << "; the Hopper kernel needs 9.0";
#ifndef CPBENCH_HAVE_SM90A
  FAIL() << "a compute capability 9.0 GPU, but this build has no sm_90a object "
            "(CPBENCH_HAVE_SM90A undefined: nvcc older than 12.5, or CPBENCH_ENABLE_SM90A=OFF)";
#else
  testing_support::ScopedEnv no_override(kOverrideVar, nullptr);
  for (int64_t d : {128, 64}) {
    const int64_t B = 2, S = 1000, cap = 1024, H = 32, Hkv = 8, Ht = 64;
    DevBuf qd(size_t(B * S * Ht * d) * 2), kvd(size_t(2 * B * cap * Hkv * d) * 2);
    ASSERT_CUDA(qd.status());
    ASSERT_CUDA(kvd.status());
    // Dense.
    const DevView q = dense_view(qd.get(), B, S, H, d), k = dense_view(kvd.get(), B, S, Hkv, d);
    DevView v = k;
    v.data = static_cast<char*>(kvd.get()) + B * S * Hkv * d * 2;
    // Packed K/V with spare capacity, Q a head slice.
    const Placement kp{B, S, Hkv, d, 0, cap * Hkv * d, Hkv * d};
    Placement vp = kp;
    vp.offset = B * cap * Hkv * d;
    const DevView qs = head_slice(B, S, H, d, Ht, H).view(qd.get(), 2);
    const DevView ks = kp.view(kvd.get(), 2), vs = vp.view(kvd.get(), 2);
    const DevView ks_late = kp.tokens_from(333, S - 333).view(kvd.get(), 2),
                  vs_late = vp.tokens_from(333, S - 333).view(kvd.get(), 2);
    struct Named {
      const char* what;
      DevView q, k, v;
    } cases[] = {{"dense", q, k, v},
                 {"head-slice Q, packed K/V", qs, ks, vs},
                 {"head-slice Q, packed K/V from token 333", qs, ks_late, vs_late}};
    for (const Named& c : cases) {
      const char* why = nullptr;
      EXPECT_TRUE(hopper_attention_supported(c.q, c.k, c.v, &why))
          << prop.name << " d=" << d << " " << c.what << ": " << (why != nullptr ? why : "?");
      EXPECT_EQ(resolve_attention_kernel(c.q, c.k, c.v), AttentionKernel::hopper)
          << prop.name << " d=" << d << " " << c.what
          << ": automatic does not pick the Hopper kernel";
    }
  }
#endif
}

// CPBENCH_ATTENTION_KERNEL=portable makes `automatic` resolve to the portable kernel whatever the
// device (the executor tests that bound the fp32 kernel's error rely on it).
TEST(AttentionKernels, EnvironmentOverridesAutomatic) {
  if (!have_gpu()) GTEST_SKIP() << "no GPU";
  const int64_t d = 128;
  DevBuf qd(size_t(128 * 8 * d) * 2), kvd(size_t(2 * 128 * 2 * d) * 2);
  ASSERT_CUDA(qd.status());
  ASSERT_CUDA(kvd.status());
  const DevView q = dense_view(qd.get(), 1, 128, 8, d), k = dense_view(kvd.get(), 1, 128, 2, d);
  DevView v = k;
  v.data = static_cast<char*>(kvd.get()) + 128 * 2 * d * 2;
  {
    testing_support::ScopedEnv portable(kOverrideVar, "portable");
    EXPECT_EQ(resolve_attention_kernel(q, k, v), AttentionKernel::portable);
  }
  testing_support::ScopedEnv automatic(kOverrideVar, nullptr);
  const char* why = nullptr;
  const AttentionKernel expected = hopper_attention_supported(q, k, v, &why)
                                       ? AttentionKernel::hopper
                                       : AttentionKernel::portable;
  EXPECT_EQ(resolve_attention_kernel(q, k, v), expected);
}

}  // namespace
}  // namespace cpb::cuda

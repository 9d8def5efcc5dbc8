// One-pass optimizer steps for XLA:CPU, called through the XLA FFI (see optcompose/speed/kernels/_build.py).
//
// Each handler takes every leaf of the parameter pytree at once (RemainingArgs / RemainingRets), walks
// each element once, and writes the new parameters together with the new optimizer state. Both alias
// their inputs, so a step reads g, p, m, v and writes p, m, v: 28 bytes per fp32 parameter for AdamW.
// Work is split into chunks of at most kChunk elements, shared by XLA's intra-op thread pool.
//
// The arithmetic is float32 and follows the op order of the Python transforms
// (optcompose/transforms/_*.py) exactly; the scalars (bias corrections, -lr, ...) are computed by the
// caller in XLA, exactly as the transforms compute them, and arrive as one float32 vector laid out as
// the *Scalars structs below. Their Python twins are the NamedTuples of the same names in
// optcompose/speed/kernels/_calls.py (tests/speed/test_kernels.py checks that the two agree).

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

constexpr size_t kChunk = size_t{1} << 15;   // elements per work item
constexpr size_t kSerialBelow = size_t{1} << 14;  // smaller calls run on the calling thread

using bf16 = uint16_t;

inline float load(const float* x, size_t i) { return x[i]; }
inline float load(const bf16* x, size_t i) {
  uint32_t bits = static_cast<uint32_t>(x[i]) << 16;
  float out;
  std::memcpy(&out, &bits, sizeof(out));
  return out;
}
inline void store(float* x, size_t i, float value) { x[i] = value; }
// float32 -> bfloat16, round to nearest even; NaN stays a (quiet) NaN. Same as XLA's convert.
inline void store(bf16* x, size_t i, float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  const bool is_nan = (bits & 0x7fffffffu) > 0x7f800000u;
  const uint32_t rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
  x[i] = static_cast<bf16>(is_nan ? ((bits >> 16) | 0x40u) : rounded);
}

struct Chunk {
  size_t leaf, begin, end;
};

std::vector<Chunk> make_chunks(const std::vector<size_t>& sizes) {
  std::vector<Chunk> chunks;
  for (size_t leaf = 0; leaf < sizes.size(); ++leaf) {
    for (size_t begin = 0; begin < sizes[leaf]; begin += kChunk) {
      chunks.push_back({leaf, begin, std::min(sizes[leaf], begin + kChunk)});
    }
  }
  return chunks;
}

// Runs body(i) for i in [0, n) on the calling thread and XLA's intra-op pool. Work items are taken
// from an atomic counter, so the caller finishes everything itself if no pool thread turns up; late
// pool tasks find the counter exhausted and return without touching the caller's buffers.
struct Shared {
  std::atomic<size_t> next{0};
  std::atomic<size_t> done{0};
  size_t total = 0;
  std::function<void(size_t)> body;
  std::mutex mutex;
  std::condition_variable finished;
};

void drain(const std::shared_ptr<Shared>& shared) {
  for (;;) {
    const size_t i = shared->next.fetch_add(1);
    if (i >= shared->total) return;
    shared->body(i);
    if (shared->done.fetch_add(1) + 1 == shared->total) {
      std::lock_guard<std::mutex> lock(shared->mutex);
      shared->finished.notify_all();
    }
  }
}

void parallel_for(ffi::ThreadPool& pool, size_t n, size_t elements, std::function<void(size_t)> body) {
  if (n == 0) return;
  const int64_t threads = pool.num_threads();
  if (elements < kSerialBelow || threads <= 1 || n == 1) {
    for (size_t i = 0; i < n; ++i) body(i);
    return;
  }
  auto shared = std::make_shared<Shared>();
  shared->total = n;
  shared->body = std::move(body);
  const size_t helpers = std::min<size_t>(static_cast<size_t>(threads), n) - 1;
  for (size_t t = 0; t < helpers; ++t) {
    pool.Schedule([shared] { drain(shared); });
  }
  drain(shared);
  std::unique_lock<std::mutex> lock(shared->mutex);
  shared->finished.wait(lock, [&] { return shared->done.load() == shared->total; });
}

// ---------------------------------------------------------------------------------------------
// Adam / AdamW (scale_by_adam -> [add_decayed_weights] -> scale_by_learning_rate [-> apply]).

struct AdamScalars {
  float b1, one_minus_b1, b2, one_minus_b2, correction_1, correction_2, next_correction_1, eps_root, eps,
      weight_decay, neg_lr;
};

struct LambScalars : AdamScalars {
  float min_norm, trust_coefficient, trust_eps;
};

struct SgdScalars {
  float momentum, neg_lr;
};

static_assert(sizeof(AdamScalars) == 11 * sizeof(float), "AdamScalars must be 11 packed floats");
static_assert(sizeof(LambScalars) == 14 * sizeof(float), "LambScalars must be 14 packed floats");
static_assert(sizeof(SgdScalars) == 2 * sizeof(float), "SgdScalars must be 2 packed floats");

// Reads the scalar vector as `T`; fails unless it has exactly as many floats as `T`.
template <typename T>
ffi::Error read_scalars(const ffi::Buffer<ffi::F32>& buffer, T& out, const char* what) {
  if (buffer.element_count() * sizeof(float) != sizeof(T)) {
    return ffi::Error::InvalidArgument(std::string(what) + ": wrong number of scalars");
  }
  std::memcpy(&out, buffer.typed_data(), sizeof(T));
  return ffi::Error::Success();
}

// The direction of scale_by_adam for one element; updates mu and nu in place.
template <typename MT, typename VT, bool kNesterov>
inline float adam_direction(float g, MT* __restrict m, VT* __restrict v, size_t i, const AdamScalars& s) {
  const float new_mu = s.b1 * load(m, i) + s.one_minus_b1 * g;
  const float new_nu = s.b2 * load(v, i) + s.one_minus_b2 * (g * g);
  float mu_hat;
  if constexpr (kNesterov) {
    mu_hat = s.b1 * new_mu * s.next_correction_1 + s.one_minus_b1 * g * s.correction_1;
  } else {
    mu_hat = new_mu * s.correction_1;
  }
  const float nu_hat = new_nu * s.correction_2;
  store(m, i, new_mu);
  store(v, i, new_nu);
  const float denominator = std::sqrt(nu_hat + s.eps_root) + s.eps;
  // eps = 0, never-seen coordinate: 0, not NaN. Divide unconditionally and then select, so the loop
  // stays branch-free and vectorizes without masked division (AVX2, NEON), not only with AVX-512.
  const float quotient = mu_hat / denominator;
  return denominator == 0.0f ? 0.0f : quotient;
}

template <typename MT, typename VT, bool kNesterov, bool kDecay>
void adam_range(const float* __restrict g, const float* __restrict p, MT* __restrict m, VT* __restrict v,
                float* __restrict out, size_t begin, size_t end, const AdamScalars& s) {
  for (size_t i = begin; i < end; ++i) {  // element loop: adam
    float u = adam_direction<MT, VT, kNesterov>(g[i], m, v, i, s);
    if constexpr (kDecay) u = u + s.weight_decay * p[i];
    u = u * s.neg_lr;
    out[i] = p[i] + u;
  }
}

template <typename MT, typename VT, bool kNesterov>
void adam_dispatch_flags(bool decay, const float* g, const float* p, void* m, void* v, float* out, size_t begin,
                         size_t end, const AdamScalars& s) {
  auto* mt = static_cast<MT*>(m);
  auto* vt = static_cast<VT*>(v);
  if (decay) adam_range<MT, VT, kNesterov, true>(g, p, mt, vt, out, begin, end, s);
  else adam_range<MT, VT, kNesterov, false>(g, p, mt, vt, out, begin, end, s);
}

template <bool kNesterov>
void adam_dispatch(bool m_bf16, bool v_bf16, bool decay, const float* g, const float* p, void* m, void* v,
                   float* out, size_t begin, size_t end, const AdamScalars& s) {
  if (m_bf16 && v_bf16) adam_dispatch_flags<bf16, bf16, kNesterov>(decay, g, p, m, v, out, begin, end, s);
  else if (m_bf16) adam_dispatch_flags<bf16, float, kNesterov>(decay, g, p, m, v, out, begin, end, s);
  else if (v_bf16) adam_dispatch_flags<float, bf16, kNesterov>(decay, g, p, m, v, out, begin, end, s);
  else adam_dispatch_flags<float, float, kNesterov>(decay, g, p, m, v, out, begin, end, s);
}

// The operands of one call: per-leaf gradients and parameters, then the state. The state is either
// one buffer per leaf and state group (m, v or trace), or, with `flat`, one buffer per state group
// holding every leaf end to end, this call's leaves starting at element `offset`.
//   args: g[n], p[n], then state group j: s_j[n] (per leaf) or s_j (flat)
//   rets: out[n] (new params), then new s_j likewise, all aliased to the inputs.
struct Leaves {
  size_t n = 0;
  size_t total = 0;  // elements over all leaves
  std::vector<size_t> sizes;
  std::vector<const float*> g, p;
  std::vector<float*> out;
  std::vector<std::vector<void*>> state;            // [group][leaf], already offset into flat buffers
  std::vector<std::vector<ffi::DataType>> state_type;
};

ffi::Error collect(ffi::RemainingArgs& args, ffi::RemainingRets& rets, size_t state_groups, bool flat,
                   int64_t offset, bool state_f32_only, Leaves& leaves) {
  const size_t per_leaf = flat ? 2 : 2 + state_groups;
  const size_t fixed = flat ? state_groups : 0;
  if (args.size() < fixed || (args.size() - fixed) % per_leaf != 0) {
    return ffi::Error::InvalidArgument("unexpected number of operands");
  }
  const size_t n = (args.size() - fixed) / per_leaf;
  if (rets.size() != n + (flat ? state_groups : state_groups * n)) {
    return ffi::Error::InvalidArgument("unexpected number of results");
  }
  leaves.n = n;
  std::vector<ffi::AnyBuffer> in, out;
  for (size_t i = 0; i < args.size(); ++i) {
    auto buffer = args.get<ffi::AnyBuffer>(i);
    if (!buffer.has_value()) return buffer.error();
    in.push_back(*buffer);
  }
  for (size_t i = 0; i < rets.size(); ++i) {
    auto buffer = rets.get<ffi::AnyBuffer>(i);
    if (!buffer.has_value()) return buffer.error();
    out.push_back(**buffer);
  }
  for (size_t k = 0; k < n; ++k) {
    if (in[k].element_type() != ffi::DataType::F32 || in[n + k].element_type() != ffi::DataType::F32 ||
        out[k].element_type() != ffi::DataType::F32) {
      return ffi::Error::InvalidArgument("leaf " + std::to_string(k) + ": gradient and parameter must be float32");
    }
    if (in[n + k].element_count() != in[k].element_count()) {
      return ffi::Error::InvalidArgument("leaf " + std::to_string(k) + ": gradient and parameter sizes differ");
    }
    leaves.sizes.push_back(in[k].element_count());
    leaves.g.push_back(static_cast<const float*>(in[k].untyped_data()));
    leaves.p.push_back(static_cast<const float*>(in[n + k].untyped_data()));
    leaves.out.push_back(static_cast<float*>(out[k].untyped_data()));
  }
  for (size_t size : leaves.sizes) leaves.total += size;
  leaves.state.assign(state_groups, std::vector<void*>(n));
  leaves.state_type.assign(state_groups, std::vector<ffi::DataType>(n));
  for (size_t j = 0; j < state_groups; ++j) {
    for (size_t k = 0; k < (flat ? 1 : n); ++k) {
      const ffi::AnyBuffer& src = flat ? in[2 * n + j] : in[(2 + j) * n + k];
      const ffi::AnyBuffer& dst = flat ? out[n + j] : out[(1 + j) * n + k];
      const auto type = src.element_type();
      if (type != ffi::DataType::F32 && (state_f32_only || type != ffi::DataType::BF16)) {
        return ffi::Error::InvalidArgument(std::string("optimizer state must be float32") +
                                           (state_f32_only ? "" : " or bfloat16"));
      }
      const size_t needed = flat ? static_cast<size_t>(offset) + leaves.total : leaves.sizes[k];
      if (offset < 0 || src.element_count() < needed || dst.element_count() != src.element_count()) {
        return ffi::Error::InvalidArgument("optimizer state has the wrong size");
      }
      // XLA aliases each state result to its operand; copy first if it ever did not.
      if (dst.untyped_data() != src.untyped_data()) {
        std::memcpy(dst.untyped_data(), src.untyped_data(), src.size_bytes());
      }
    }
    size_t position = static_cast<size_t>(offset);
    for (size_t k = 0; k < n; ++k) {
      const ffi::AnyBuffer& dst = flat ? out[n + j] : out[(1 + j) * n + k];
      const size_t width = ffi::ByteWidth(dst.element_type());
      char* base = static_cast<char*>(dst.untyped_data());
      leaves.state[j][k] = flat ? base + position * width : base;
      leaves.state_type[j][k] = dst.element_type();
      position += leaves.sizes[k];
    }
  }
  return ffi::Error::Success();
}

// args: AdamScalars, g[n], p[n], m, v (see Leaves); rets: p'[n], m', v'.
ffi::Error AdamImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> scalars, ffi::RemainingArgs args,
                    ffi::RemainingRets rets, bool nesterov, bool flat, int64_t offset,
                    ffi::Span<const int32_t> decay_mask) {
  Leaves leaves;
  if (auto error = collect(args, rets, 2, flat, offset, false, leaves); error.failure()) return error;
  const size_t n = leaves.n;
  if (decay_mask.size() != n) return ffi::Error::InvalidArgument("decay_mask needs one entry per leaf");
  AdamScalars s;
  if (auto error = read_scalars(scalars, s, "adam"); error.failure()) return error;
  const auto chunks = make_chunks(leaves.sizes);
  parallel_for(pool, chunks.size(), leaves.total, [&](size_t c) {
    const Chunk& chunk = chunks[c];
    const size_t k = chunk.leaf;
    const bool m_bf16 = leaves.state_type[0][k] == ffi::DataType::BF16;
    const bool v_bf16 = leaves.state_type[1][k] == ffi::DataType::BF16;
    const bool decay = decay_mask[k] != 0;
    void* m = leaves.state[0][k];
    void* v = leaves.state[1][k];
    if (nesterov) {
      adam_dispatch<true>(m_bf16, v_bf16, decay, leaves.g[k], leaves.p[k], m, v, leaves.out[k], chunk.begin,
                          chunk.end, s);
    } else {
      adam_dispatch<false>(m_bf16, v_bf16, decay, leaves.g[k], leaves.p[k], m, v, leaves.out[k], chunk.begin,
                           chunk.end, s);
    }
  });
  return ffi::Error::Success();
}

// ---------------------------------------------------------------------------------------------
// LAMB (scale_by_adam -> [add_decayed_weights] -> [scale_by_trust_ratio] -> scale_by_learning_rate).
// Pass 1 updates m and v and sums ||p||^2 and ||r||^2 per chunk (in double: no overflow or
// underflow for any float32 input); pass 2 recomputes r from the new float32 moments and writes
// p + (ratio * r) * (-lr).

template <bool kDecay>
inline float lamb_direction(float new_mu, float new_nu, float p, const AdamScalars& s) {
  const float mu_hat = new_mu * s.correction_1;
  const float nu_hat = new_nu * s.correction_2;
  const float denominator = std::sqrt(nu_hat + s.eps_root) + s.eps;
  const float quotient = mu_hat / denominator;
  float r = denominator == 0.0f ? 0.0f : quotient;  // branch-free, as in adam_direction
  if constexpr (kDecay) r = r + s.weight_decay * p;
  return r;
}

template <bool kDecay>
void lamb_pass1(const float* __restrict g, const float* __restrict p, float* __restrict m, float* __restrict v,
                size_t begin, size_t end, const AdamScalars& s, double& sum_p, double& sum_r) {
  // Sixteen independent float64 partial sums: a fixed summation order (so a fixed result) that the
  // compiler can still vectorize, since no sum is reassociated.
  constexpr size_t kLanes = 16;
  double sp[kLanes] = {}, sr[kLanes] = {};
  size_t i = begin;
  for (; i + kLanes <= end; i += kLanes) {
    float pv[kLanes], rv[kLanes];
    for (size_t j = 0; j < kLanes; ++j) {  // element loop: lamb pass 1
      const float gi = g[i + j];
      const float new_mu = s.b1 * m[i + j] + s.one_minus_b1 * gi;
      const float new_nu = s.b2 * v[i + j] + s.one_minus_b2 * (gi * gi);
      m[i + j] = new_mu;
      v[i + j] = new_nu;
      pv[j] = p[i + j];
      rv[j] = lamb_direction<kDecay>(new_mu, new_nu, pv[j], s);
    }
    for (size_t j = 0; j < kLanes; ++j) {
      sp[j] += static_cast<double>(pv[j]) * static_cast<double>(pv[j]);
      sr[j] += static_cast<double>(rv[j]) * static_cast<double>(rv[j]);
    }
  }
  for (; i < end; ++i) {
    const float gi = g[i];
    const float new_mu = s.b1 * m[i] + s.one_minus_b1 * gi;
    const float new_nu = s.b2 * v[i] + s.one_minus_b2 * (gi * gi);
    m[i] = new_mu;
    v[i] = new_nu;
    const float r = lamb_direction<kDecay>(new_mu, new_nu, p[i], s);
    sp[0] += static_cast<double>(p[i]) * static_cast<double>(p[i]);
    sr[0] += static_cast<double>(r) * static_cast<double>(r);
  }
  double total_p = 0.0, total_r = 0.0;
  for (size_t j = 0; j < kLanes; ++j) {
    total_p += sp[j];
    total_r += sr[j];
  }
  sum_p = total_p;
  sum_r = total_r;
}

template <bool kDecay>
void lamb_pass2(const float* __restrict p, const float* __restrict m, const float* __restrict v,
                float* __restrict out, size_t begin, size_t end, const AdamScalars& s, float ratio) {
  for (size_t i = begin; i < end; ++i) {  // element loop: lamb pass 2
    const float r = lamb_direction<kDecay>(m[i], v[i], p[i], s);
    const float u = (r * ratio) * s.neg_lr;
    out[i] = p[i] + u;
  }
}

// args: LambScalars, g, p, m, v; rets: p', m', v'. trust_mask[k] == 0 keeps leaf k at ratio 1.
ffi::Error LambImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> scalars, ffi::RemainingArgs args,
                    ffi::RemainingRets rets, bool flat, int64_t offset,
                    ffi::Span<const int32_t> decay_mask, ffi::Span<const int32_t> trust_mask) {
  Leaves leaves;
  if (auto error = collect(args, rets, 2, flat, offset, true, leaves); error.failure()) return error;
  const size_t n = leaves.n;
  if (decay_mask.size() != n || trust_mask.size() != n) {
    return ffi::Error::InvalidArgument("decay_mask and trust_mask need one entry per leaf");
  }
  LambScalars s;
  if (auto error = read_scalars(scalars, s, "lamb"); error.failure()) return error;
  const float min_norm = s.min_norm, trust_coefficient = s.trust_coefficient, trust_eps = s.trust_eps;
  const auto chunks = make_chunks(leaves.sizes);
  std::vector<double> sum_p(chunks.size()), sum_r(chunks.size());

  parallel_for(pool, chunks.size(), leaves.total, [&](size_t c) {
    const Chunk& chunk = chunks[c];
    const size_t k = chunk.leaf;
    float* m = static_cast<float*>(leaves.state[0][k]);
    float* v = static_cast<float*>(leaves.state[1][k]);
    if (decay_mask[k]) lamb_pass1<true>(leaves.g[k], leaves.p[k], m, v, chunk.begin, chunk.end, s, sum_p[c], sum_r[c]);
    else lamb_pass1<false>(leaves.g[k], leaves.p[k], m, v, chunk.begin, chunk.end, s, sum_p[c], sum_r[c]);
  });

  // Per-leaf ratios, summed in chunk order (deterministic whatever the threads did).
  std::vector<double> leaf_p(n, 0.0), leaf_r(n, 0.0);
  for (size_t c = 0; c < chunks.size(); ++c) {
    leaf_p[chunks[c].leaf] += sum_p[c];
    leaf_r[chunks[c].leaf] += sum_r[c];
  }
  std::vector<float> ratio(n, 1.0f);
  for (size_t k = 0; k < n; ++k) {
    if (!trust_mask[k]) continue;
    const float param_norm = std::max(static_cast<float>(std::sqrt(leaf_p[k])), min_norm);
    const float update_norm = std::max(static_cast<float>(std::sqrt(leaf_r[k])), min_norm);
    const bool either_zero = param_norm == 0.0f || update_norm == 0.0f;
    ratio[k] = either_zero ? 1.0f : trust_coefficient * param_norm / (update_norm + trust_eps);
  }

  parallel_for(pool, chunks.size(), leaves.total, [&](size_t c) {
    const Chunk& chunk = chunks[c];
    const size_t k = chunk.leaf;
    const float* p = leaves.p[k];
    const float* m = static_cast<const float*>(leaves.state[0][k]);
    const float* v = static_cast<const float*>(leaves.state[1][k]);
    float* out = leaves.out[k];
    if (decay_mask[k] != 0) lamb_pass2<true>(p, m, v, out, chunk.begin, chunk.end, s, ratio[k]);
    else lamb_pass2<false>(p, m, v, out, chunk.begin, chunk.end, s, ratio[k]);
  });
  return ffi::Error::Success();
}

// ---------------------------------------------------------------------------------------------
// SGD with heavy-ball or Nesterov momentum (trace -> scale_by_learning_rate [-> apply]).

template <typename TT, bool kNesterov>
void sgd_range(const float* __restrict g, const float* __restrict p, TT* __restrict t, float* __restrict out,
               size_t begin, size_t end, float beta, float neg_lr) {
  for (size_t i = begin; i < end; ++i) {  // element loop: sgd
    const float gi = g[i];
    const float new_t = beta * load(t, i) + gi;
    store(t, i, new_t);
    float u = kNesterov ? gi + beta * new_t : new_t;
    u = u * neg_lr;
    out[i] = p[i] + u;
  }
}

template <typename TT>
void sgd_dispatch(bool nesterov, const float* g, const float* p, void* t, float* out, size_t begin, size_t end,
                  float beta, float neg_lr) {
  auto* tt = static_cast<TT*>(t);
  if (nesterov) sgd_range<TT, true>(g, p, tt, out, begin, end, beta, neg_lr);
  else sgd_range<TT, false>(g, p, tt, out, begin, end, beta, neg_lr);
}

// args: SgdScalars, g[n], p[n], trace; rets: p'[n], trace'.
ffi::Error SgdImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> scalars, ffi::RemainingArgs args,
                   ffi::RemainingRets rets, bool nesterov, bool flat, int64_t offset) {
  Leaves leaves;
  if (auto error = collect(args, rets, 1, flat, offset, false, leaves); error.failure()) return error;
  SgdScalars s;
  if (auto error = read_scalars(scalars, s, "sgd"); error.failure()) return error;
  const float beta = s.momentum, neg_lr = s.neg_lr;
  const auto chunks = make_chunks(leaves.sizes);
  parallel_for(pool, chunks.size(), leaves.total, [&](size_t c) {
    const Chunk& chunk = chunks[c];
    const size_t k = chunk.leaf;
    void* t = leaves.state[0][k];
    if (leaves.state_type[0][k] == ffi::DataType::BF16) {
      sgd_dispatch<bf16>(nesterov, leaves.g[k], leaves.p[k], t, leaves.out[k], chunk.begin, chunk.end, beta,
                         neg_lr);
    } else {
      sgd_dispatch<float>(nesterov, leaves.g[k], leaves.p[k], t, leaves.out[k], chunk.begin, chunk.end, beta,
                          neg_lr);
    }
  });
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(OptcomposeAdam, AdamImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .RemainingArgs()
                                  .RemainingRets()
                                  .Attr<bool>("nesterov")
                                  .Attr<bool>("flat")
                                  .Attr<int64_t>("offset")
                                  .Attr<ffi::Span<const int32_t>>("decay_mask"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(OptcomposeLamb, LambImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .RemainingArgs()
                                  .RemainingRets()
                                  .Attr<bool>("flat")
                                  .Attr<int64_t>("offset")
                                  .Attr<ffi::Span<const int32_t>>("decay_mask")
                                  .Attr<ffi::Span<const int32_t>>("trust_mask"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(OptcomposeSgd, SgdImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .RemainingArgs()
                                  .RemainingRets()
                                  .Attr<bool>("nesterov")
                                  .Attr<bool>("flat")
                                  .Attr<int64_t>("offset"));

// Fused causal attention for XLA CPU: forward and backward, each one pass that visits only the keys a
// query may see, with nothing but a row of scores in memory per query.
//
// Why: on XLA CPU, attention with the small heads our grids sweep (Dh 16-64) is most of a train step,
// because XLA writes every block of scores, weights and their gradients to memory between kernels and
// computes the scores the mask then throws away. Here a query t of a row attends to the keys of its own
// segment up to t; segments of packed rows are runs of positions, so those keys are one contiguous range
// from the segment's first position, and nothing outside it is touched.
//
// The mask is exactly `scaling.trainer.attention.attention_mask`: query t sees key j iff j <= t, segment[j] ==
// segment[t] and segment[j] != 0, and every position sees itself (so padding, segment 0, sees only itself).
// A segment id that reappears after a gap is still honoured: the range starts at its first occurrence and
// keys of other segments inside it are masked, so the result never depends on packing's layout.
//
// Layout (row-major, any leading dims flattened into N): q, o, dq NxTxHxDh; k, v, dk, dv NxTxKxDh with
// H = K*G (grouped-query: query head h reads key/value head h / G) and Dh a multiple of 8 (the caller pads);
// segments NxT int32; lse NxHxT, the log-sum-exp of each query's scaled scores, from which the backward
// pass rebuilds the weights. `scale` multiplies the scores (1/sqrt of the unpadded head width, or the
// model's own). `window` > 0 also bounds each query's range to its last `window` keys, itself included
// (sliding-window layers: key j is seen only if j > t - window); 0 leaves it unbounded. The range is still
// contiguous, so a window only moves where it starts.
// Work is split over (row, key/value head) pairs, each done start to end by one thread, so the numbers do
// not depend on how many threads run it.
//
// Arithmetic is in 8-lane vectors (GCC/Clang vector extensions, which compile to AVX2, AVX-512 halves or
// NEON pairs): keys in lanes for scores and their gradients, head dims in lanes for sums over keys.

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

constexpr int64_t W = 8;  // lanes per vector
typedef float vf __attribute__((vector_size(W * sizeof(float))));
typedef int32_t vi __attribute__((vector_size(W * sizeof(int32_t))));

inline vf load(const float* p) {
  vf x;
  std::memcpy(&x, p, sizeof x);
  return x;
}
inline vi load(const int32_t* p) {
  vi x;
  std::memcpy(&x, p, sizeof x);
  return x;
}
inline void store(float* p, vf x) { std::memcpy(p, &x, sizeof x); }
inline vf splat(float x) { return vf{} + x; }
inline float lane_sum(vf x) {
  float total = 0.0f;
  for (int i = 0; i < W; ++i) total += x[i];
  return total;
}
inline float lane_max(vf x) {
  float top = x[0];
  for (int i = 1; i < W; ++i) top = std::max(top, x[i]);
  return top;
}

// e^x to about 2 ulp (Cephes' single-precision polynomial), eight lanes at a time: libm's expf is scalar and
// would cost more than the rest of the kernel. Rounding by adding and subtracting 1.5 * 2^23 is exact here.
inline vf exp8(vf x) {
  const vf lowest = splat(-87.3f), highest = splat(88.3f), magic = splat(12582912.0f);
  x = x < lowest ? lowest : x;
  x = x > highest ? highest : x;
  vf n = (x * 1.44269504088896341f + magic) - magic;
  x = x - n * 0.693359375f;
  x = x - n * -2.12194440e-4f;
  vf y = splat(1.9875691500e-4f);
  y = y * x + 1.3981999507e-3f;
  y = y * x + 8.3334519073e-3f;
  y = y * x + 4.1665795894e-2f;
  y = y * x + 1.6666665459e-1f;
  y = y * x + 5.0000001201e-1f;
  y = y * x * x + x + 1.0f;
  vi exponent = (__builtin_convertvector(n, vi) + 127) << 23;
  return y * reinterpret_cast<vf&>(exponent);
}

struct Shape {
  int64_t N, T, H, K, Dh;
  int64_t G() const { return H / K; }
  int64_t padded() const { return (T + W - 1) / W * W + W; }  // key columns, with a spare vector past T
};

Shape shape_of(ffi::Buffer<ffi::F32>& q, ffi::Buffer<ffi::F32>& k) {
  auto qd = q.dimensions(), kd = k.dimensions();
  const int64_t rank = qd.size();
  Shape s{1, qd[rank - 3], qd[rank - 2], kd[rank - 2], qd[rank - 1]};
  for (int64_t i = 0; i < rank - 3; ++i) s.N *= qd[i];
  return s;
}

// Runs work(i) for i in [0, n) on the calling thread and on XLA's intra-op pool. Helpers take tasks from a
// shared counter; the caller takes them too, then waits only for helpers that started. A helper the pool
// runs late finds no task left and touches nothing but the shared counters, which it keeps alive, so a busy
// pool can delay a call but never deadlock it.
template <typename Work>
void parallel_for(ffi::ThreadPool& pool, int64_t n, const Work& work) {
  struct Shared {
    std::atomic<int64_t> next{0};
    std::atomic<int64_t> active{0};
    std::mutex mutex;
    std::condition_variable idle;
  };
  auto shared = std::make_shared<Shared>();
  const int64_t helpers = std::min<int64_t>(pool.num_threads(), n) - 1;
  for (int64_t h = 0; h < helpers; ++h) {
    pool.Schedule([shared, n, &work]() {
      shared->active.fetch_add(1);
      for (int64_t i = shared->next.fetch_add(1); i < n; i = shared->next.fetch_add(1)) work(i);
      std::lock_guard<std::mutex> lock(shared->mutex);
      shared->active.fetch_sub(1);
      shared->idle.notify_all();
    });
  }
  for (int64_t i = shared->next.fetch_add(1); i < n; i = shared->next.fetch_add(1)) work(i);
  std::unique_lock<std::mutex> lock(shared->mutex);
  shared->idle.wait(lock, [&] { return shared->active.load() == 0; });
}

// One (row, key/value head): its keys and values copied out of the interleaved layout both ways, its
// segments, and where each query's key range starts. Columns (Dh x padded) put keys in lanes; rows
// (padded x Dh) put head dims in lanes. Both are zero past T, so loops may run whole vectors past a range's
// end: those lanes carry weight zero.
struct Head {
  const Shape& s;
  std::vector<float> k_rows, k_cols, v_rows, v_cols;
  std::vector<int32_t> seg;
  std::vector<int64_t> first;

  Head(const Shape& shape, const float* k, const float* v, const int32_t* segments, int64_t n, int64_t kh)
      : s(shape), k_rows(s.padded() * s.Dh, 0.0f), k_cols(s.Dh * s.padded(), 0.0f), v_rows(s.padded() * s.Dh, 0.0f),
        v_cols(s.Dh * s.padded(), 0.0f), seg(s.padded(), 0), first(s.T) {
    for (int64_t j = 0; j < s.T; ++j) {
      const int64_t at = ((n * s.T + j) * s.K + kh) * s.Dh;
      std::memcpy(&k_rows[j * s.Dh], k + at, s.Dh * sizeof(float));
      std::memcpy(&v_rows[j * s.Dh], v + at, s.Dh * sizeof(float));
      for (int64_t d = 0; d < s.Dh; ++d) {
        k_cols[d * s.padded() + j] = k[at + d];
        v_cols[d * s.padded() + j] = v[at + d];
      }
    }
    std::memcpy(seg.data(), segments + n * s.T, s.T * sizeof(int32_t));
    // Padding starts and ends at itself; otherwise at the first occurrence of the segment id (runs of one
    // id share the answer, so this is linear for packed rows).
    for (int64_t t = 0; t < s.T; ++t) {
      if (seg[t] == 0) {
        first[t] = t;
      } else if (t > 0 && seg[t] == seg[t - 1]) {
        first[t] = first[t - 1];
      } else {
        int64_t j = 0;
        while (seg[j] != seg[t]) ++j;
        first[t] = j;
      }
    }
  }

  // Where query t's keys start: its segment's first position, or later under a sliding window.
  int64_t start(int64_t t, int64_t window) const {
    return window > 0 ? std::max(first[t], t - window + 1) : first[t];
  }

  // Which lanes of the key vector starting at `j0` query t may see (lanes before start() are never visited).
  vi visible(int64_t t, int64_t j0) const {
    const vi lanes = {0, 1, 2, 3, 4, 5, 6, 7};
    const vi position = lanes + static_cast<int32_t>(j0);
    return (position <= static_cast<int32_t>(t)) & (load(&seg[j0]) == seg[t]);
  }
};

// Dot products over the head dims of `x_Dh` with R consecutive key vectors from j0 of `columns` (keys in
// lanes): R independent accumulators, so the additions overlap instead of waiting on each other.
template <int DV, int R>
inline void dots(const Head& head, const std::vector<float>& columns, const float* x_Dh, int64_t j0, vf* out) {
  vf acc[R] = {};
  const int64_t stride = head.s.padded();
  for (int64_t d = 0; d < DV * W; ++d) {
    const float* column = &columns[d * stride + j0];
    for (int r = 0; r < R; ++r) acc[r] += x_Dh[d] * load(column + r * W);
  }
  for (int r = 0; r < R; ++r) out[r] = acc[r];
}

// Dots of x with every key vector [0, chunks) from lo, four at a time, then the rest one by one.
template <int DV>
inline void all_dots(const Head& head, const std::vector<float>& columns, const float* x_Dh, int64_t lo,
                     int64_t chunks, vf* out) {
  int64_t c = 0;
  for (; c + 4 <= chunks; c += 4) dots<DV, 4>(head, columns, x_Dh, lo + c * W, out + c);
  for (; c < chunks; ++c) dots<DV, 1>(head, columns, x_Dh, lo + c * W, out + c);
}

// sum_j w_j rows_j over j in [lo, lo + n) (n a multiple of 4, weights zero past the range), into out.
template <int DV>
inline void weighted_rows(const float* w, const std::vector<float>& rows, int64_t lo, int64_t n, vf* out) {
  vf acc[4][DV] = {};
  for (int64_t j = 0; j < n; j += 4)
    for (int u = 0; u < 4; ++u)
      for (int i = 0; i < DV; ++i) acc[u][i] += w[j + u] * load(&rows[(lo + j + u) * DV * W + i * W]);
  for (int i = 0; i < DV; ++i) out[i] = (acc[0][i] + acc[1][i]) + (acc[2][i] + acc[3][i]);
}

template <int DV>
void forward_task(const Shape& s, const float* Q, const float* Kx, const float* V, const int32_t* S, float scale,
                  int64_t window, float* O, float* LSE, int64_t task) {
  const int64_t n = task / s.K, kh = task % s.K;
  const Head head(s, Kx, V, S, n, kh);
  std::vector<vf> weights(s.padded() / W);
  float q_scaled[DV * W];
  vf o[DV];
  const vf hidden = splat(std::numeric_limits<float>::lowest());
  for (int64_t h = kh * s.G(); h < (kh + 1) * s.G(); ++h) {
    for (int64_t t = 0; t < s.T; ++t) {
      const int64_t lo = head.start(t, window), chunks = (t - lo) / W + 1;
      const int64_t at = ((n * s.T + t) * s.H + h) * s.Dh;
      for (int64_t d = 0; d < DV * W; ++d) q_scaled[d] = Q[at + d] * scale;
      all_dots<DV>(head, head.k_cols, q_scaled, lo, chunks, weights.data());
      vf top = hidden;
      for (int64_t c = 0; c < chunks; ++c) {
        weights[c] = head.visible(t, lo + c * W) ? weights[c] : hidden;
        top = top > weights[c] ? top : weights[c];
      }
      const float peak = lane_max(top);
      vf totals = {};
      for (int64_t c = 0; c < chunks; ++c) {
        weights[c] = head.visible(t, lo + c * W) ? exp8(weights[c] - peak) : vf{};
        totals += weights[c];
      }
      const float total = lane_sum(totals);
      const int64_t keys = (t - lo + 4) / 4 * 4;  // whole groups of four; the weights past t are zero
      weighted_rows<DV>(reinterpret_cast<const float*>(weights.data()), head.v_rows, lo, keys, o);
      for (int i = 0; i < DV; ++i) store(O + at + i * W, o[i] / total);
      LSE[(n * s.H + h) * s.T + t] = peak + std::log(total);
    }
  }
}

template <int DV>
void backward_task(const Shape& s, const float* Q, const float* Kx, const float* V, const int32_t* S,
                   const float* O, const float* LSE, const float* DO, float scale, int64_t window, float* DQ, float* DK,
                   float* DV_, int64_t task) {
  const int64_t n = task / s.K, kh = task % s.K;
  const Head head(s, Kx, V, S, n, kh);
  std::vector<float> dk_rows(s.padded() * s.Dh, 0.0f), dv_rows(s.padded() * s.Dh, 0.0f);
  std::vector<vf> weights(s.padded() / W), d_scores(s.padded() / W);
  float q_scaled[DV * W];
  vf q_v[DV], do_v[DV], dq_t[DV];
  for (int64_t h = kh * s.G(); h < (kh + 1) * s.G(); ++h) {
    for (int64_t t = 0; t < s.T; ++t) {
      const int64_t lo = head.start(t, window), chunks = (t - lo) / W + 1;
      const int64_t at = ((n * s.T + t) * s.H + h) * s.Dh;
      for (int64_t d = 0; d < DV * W; ++d) q_scaled[d] = Q[at + d] * scale;
      const float* do_t = DO + at;
      vf products = {};
      for (int i = 0; i < DV; ++i) {
        q_v[i] = load(&q_scaled[i * W]);
        do_v[i] = load(do_t + i * W);
        products += do_v[i] * load(O + at + i * W);
      }
      const float do_dot_o = lane_sum(products);
      const float log_total = LSE[(n * s.H + h) * s.T + t];
      // The forward weights, rebuilt from the log-sum-exp rather than stored (T x T per head); then
      // d_score_j = p_j (dO_t . v_j - dO_t . O_t), the softmax's Jacobian applied to dO_t's projection.
      all_dots<DV>(head, head.k_cols, q_scaled, lo, chunks, weights.data());
      all_dots<DV>(head, head.v_cols, do_t, lo, chunks, d_scores.data());
      for (int64_t c = 0; c < chunks; ++c) {
        const vf p = head.visible(t, lo + c * W) ? exp8(weights[c] - log_total) : vf{};
        weights[c] = p;
        d_scores[c] = p * (d_scores[c] - do_dot_o);
      }
      const int64_t keys = (t - lo + 4) / 4 * 4;  // whole groups of four; weights and d_scores past t are zero
      const float* w = reinterpret_cast<const float*>(weights.data());
      const float* ds = reinterpret_cast<const float*>(d_scores.data());
      weighted_rows<DV>(ds, head.k_rows, lo, keys, dq_t);
      for (int64_t j = 0; j < keys; ++j) {
        float* dk_j = &dk_rows[(lo + j) * s.Dh];
        float* dv_j = &dv_rows[(lo + j) * s.Dh];
        for (int i = 0; i < DV; ++i) {
          store(dk_j + i * W, load(dk_j + i * W) + ds[j] * q_v[i]);
          store(dv_j + i * W, load(dv_j + i * W) + w[j] * do_v[i]);
        }
      }
      for (int i = 0; i < DV; ++i) store(DQ + at + i * W, dq_t[i] * scale);
    }
  }
  for (int64_t j = 0; j < s.T; ++j) {
    const int64_t at = ((n * s.T + j) * s.K + kh) * s.Dh;
    std::memcpy(DK + at, &dk_rows[j * s.Dh], s.Dh * sizeof(float));
    std::memcpy(DV_ + at, &dv_rows[j * s.Dh], s.Dh * sizeof(float));
  }
}

// Calls body.template operator()<DV>() for the head width's vector count, compiled for each supported one.
template <typename Body>
ffi::Error with_head_vectors(int64_t Dh, const Body& body) {
  switch (Dh) {
    case 8: body.template operator()<1>(); break;
    case 16: body.template operator()<2>(); break;
    case 32: body.template operator()<4>(); break;
    case 64: body.template operator()<8>(); break;
    case 128: body.template operator()<16>(); break;
    case 256: body.template operator()<32>(); break;
    default: return ffi::Error::InvalidArgument("head width must be 8, 16, 32, 64, 128 or 256 (pad it)");
  }
  return ffi::Error::Success();
}

ffi::Error forward(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> q, ffi::Buffer<ffi::F32> k, ffi::Buffer<ffi::F32> v,
                   ffi::Buffer<ffi::S32> segments, float scale, int64_t window, ffi::ResultBuffer<ffi::F32> out,
                   ffi::ResultBuffer<ffi::F32> lse) {
  const Shape s = shape_of(q, k);
  return with_head_vectors(s.Dh, [&]<int DV>() {
    parallel_for(pool, s.N * s.K, [&](int64_t task) {
      forward_task<DV>(s, q.typed_data(), k.typed_data(), v.typed_data(), segments.typed_data(), scale,
                       window, out->typed_data(), lse->typed_data(), task);
    });
  });
}

ffi::Error backward(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> q, ffi::Buffer<ffi::F32> k, ffi::Buffer<ffi::F32> v,
                    ffi::Buffer<ffi::S32> segments, ffi::Buffer<ffi::F32> out, ffi::Buffer<ffi::F32> lse,
                    ffi::Buffer<ffi::F32> d_out, float scale, int64_t window, ffi::ResultBuffer<ffi::F32> dq,
                    ffi::ResultBuffer<ffi::F32> dk, ffi::ResultBuffer<ffi::F32> dv) {
  const Shape s = shape_of(q, k);
  return with_head_vectors(s.Dh, [&]<int DV>() {
    parallel_for(pool, s.N * s.K, [&](int64_t task) {
      backward_task<DV>(s, q.typed_data(), k.typed_data(), v.typed_data(), segments.typed_data(), out.typed_data(),
                        lse.typed_data(), d_out.typed_data(), scale, window, dq->typed_data(), dk->typed_data(),
                        dv->typed_data(), task);
    });
  });
}

}  // namespace

// Both passes take the thread pool, q, k, v and the segment ids first.
static auto BindAttentionInputs() {
  return ffi::Ffi::Bind()
      .Ctx<ffi::ThreadPool>()
      .Arg<ffi::Buffer<ffi::F32>>()   // q
      .Arg<ffi::Buffer<ffi::F32>>()   // k
      .Arg<ffi::Buffer<ffi::F32>>()   // v
      .Arg<ffi::Buffer<ffi::S32>>();  // segments
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(ScalingAttentionForward, forward,
                              BindAttentionInputs()
                                  .Attr<float>("scale")
                                  .Attr<int64_t>("window")
                                  .Ret<ffi::Buffer<ffi::F32>>()   // out
                                  .Ret<ffi::Buffer<ffi::F32>>());  // lse

XLA_FFI_DEFINE_HANDLER_SYMBOL(ScalingAttentionBackward, backward,
                              BindAttentionInputs()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // out
                                  .Arg<ffi::Buffer<ffi::F32>>()  // lse
                                  .Arg<ffi::Buffer<ffi::F32>>()  // d_out
                                  .Attr<float>("scale")
                                  .Attr<int64_t>("window")
                                  .Ret<ffi::Buffer<ffi::F32>>()   // dq
                                  .Ret<ffi::Buffer<ffi::F32>>()   // dk
                                  .Ret<ffi::Buffer<ffi::F32>>());  // dv

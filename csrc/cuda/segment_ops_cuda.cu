// CUDA implementations of the mingle segment ops (float32, float64, float16, bfloat16; the
// arithmetic runs in at::opmath_type, i.e. float32 for the 16-bit types).
//
// Layout: one warp per segment (forward) or per source row via the transposed CSR (backward);
// segments longer than kLongSegment are handled by a whole block in a second kernel. Lanes own
// columns of the [H, D] row (coalesced reads of value / gradient rows, each output element
// written once); reductions use warp shuffles and fixed-order shared-memory sums. There are no
// atomics, so outputs and gradients are bitwise reproducible. Every kernel is launched on the
// current stream. Arguments are checked by csrc/checks.h (metadata only: index data is not
// scanned on the host here, whatever data_checked says); index data is validated by the Python
// wrapper (mingle_bench/ops.py, mingle_bench/csr.py), and the kernels additionally clamp indptr
// to [0, nnz] and skip out-of-range indices, so a malformed input can give a wrong answer but
// never an out-of-bounds read.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <limits>
#include <string>
#include <tuple>

#include "checks.h"

namespace mingle {
namespace {

constexpr int kWarp = 32;
constexpr int kWarpsPerBlock = 8;
constexpr int kThreads = kWarp * kWarpsPerBlock;
constexpr int kSlots = 8;                  // columns per lane and pass: D is walked in blocks of 256
constexpr int kBlockCols = kWarp * kSlots;
constexpr int64_t kLongSegment = 4096;     // longer segments get a whole block (forward)
constexpr unsigned kFull = 0xffffffffu;

__device__ __forceinline__ float dexp(float x) { return expf(x); }
__device__ __forceinline__ double dexp(double x) { return exp(x); }
__device__ __forceinline__ float dlog(float x) { return logf(x); }
__device__ __forceinline__ double dlog(double x) { return log(x); }

template <typename A>
__device__ __forceinline__ A leaky(A x, A slope) {
  return x > A(0) ? x : x * slope;
}
template <typename A>
__device__ __forceinline__ A dleaky(A x, A slope) {
  return x > A(0) ? A(1) : slope;
}

template <typename A>
__device__ __forceinline__ A warp_sum(A v) {
#pragma unroll
  for (int o = kWarp / 2; o > 0; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
  return v;
}
template <typename A>
__device__ __forceinline__ A warp_max(A v) {
#pragma unroll
  for (int o = kWarp / 2; o > 0; o >>= 1) {
    const A w = __shfl_xor_sync(kFull, v, o);
    v = w > v ? w : v;
  }
  return v;
}

__device__ __forceinline__ void clamp_range(const int64_t* indptr, int64_t s, int64_t nnz, int64_t& lo, int64_t& hi) {
  lo = indptr[s];
  hi = indptr[s + 1];
  lo = lo < 0 ? 0 : (lo > nnz ? nnz : lo);
  hi = hi < lo ? lo : (hi > nnz ? nnz : hi);
}

__device__ __forceinline__ bool in_range(int64_t i, int64_t n) {
  return static_cast<uint64_t>(i) < static_cast<uint64_t>(n);
}

struct SsaArgs {
  const int64_t* indptr;
  const int64_t* indices;
  int64_t S, N, nnz;
  int H, D;
};

// Logit of entry e for head h in segment s (-inf for an out-of-range source).
template <typename scalar_t, typename acc_t>
__device__ __forceinline__ acc_t entry_logit(const scalar_t* src, const scalar_t* dst, const SsaArgs& a, int64_t s,
                                             int64_t e, int h, acc_t slope) {
  const int64_t n = a.indices[e];
  if (!in_range(n, a.N)) return -std::numeric_limits<acc_t>::infinity();
  acc_t z = static_cast<acc_t>(src[n * a.H + h]);
  if (dst) z += static_cast<acc_t>(dst[s * a.H + h]);
  return leaky(z, slope);
}

// Weighted sum over entries [lo, hi) of one segment for head h and columns [d0, d0+256):
// acc[k] (lane column d0 + k*32 + lane) += exp(logit - m) * inv * values[n, h, d].
template <typename scalar_t, typename acc_t>
__device__ __forceinline__ void warp_accumulate(const scalar_t* src, const scalar_t* val, const scalar_t* dst,
                                                const SsaArgs& a, int64_t s, int64_t lo, int64_t hi, int h, int d0,
                                                acc_t m, acc_t inv, acc_t slope, acc_t (&acc)[kSlots]) {
  const int lane = threadIdx.x % kWarp;
  for (int64_t c0 = lo; c0 < hi; c0 += kWarp) {
    const int64_t e = c0 + lane;
    acc_t p_l = 0;
    int64_t n_l = -1;
    if (e < hi) {
      n_l = a.indices[e];
      if (in_range(n_l, a.N)) {
        p_l = dexp(entry_logit<scalar_t, acc_t>(src, dst, a, s, e, h, slope) - m) * inv;
      } else {
        n_l = -1;
      }
    }
    const int cnt = static_cast<int>(hi - c0 < kWarp ? hi - c0 : kWarp);
    for (int j = 0; j < cnt; ++j) {
      const acc_t p = __shfl_sync(kFull, p_l, j);
      const int64_t n = __shfl_sync(kFull, n_l, j);
      if (n < 0) continue;  // uniform across the warp
      const scalar_t* row = val + (n * a.H + h) * a.D;
#pragma unroll
      for (int k = 0; k < kSlots; ++k) {
        const int d = d0 + k * kWarp + lane;
        if (d < a.D) acc[k] += p * static_cast<acc_t>(row[d]);
      }
    }
  }
}

// ------------------------------------------------------------------ softmax aggregate forward
template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads) ssa_forward_warp_kernel(const scalar_t* __restrict__ src,
                                                                    const scalar_t* __restrict__ val,
                                                                    const scalar_t* __restrict__ dst, SsaArgs a,
                                                                    acc_t slope, scalar_t* __restrict__ out,
                                                                    acc_t* __restrict__ lse) {
  const int lane = threadIdx.x % kWarp;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  for (int64_t s = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp; s < a.S; s += warps) {
    int64_t lo, hi;
    clamp_range(a.indptr, s, a.nnz, lo, hi);
    if (hi - lo > kLongSegment) continue;  // the block kernel takes it
    for (int h = 0; h < a.H; ++h) {
      acc_t m = -std::numeric_limits<acc_t>::infinity();
      for (int64_t e = lo + lane; e < hi; e += kWarp) {
        const acc_t z = entry_logit<scalar_t, acc_t>(src, dst, a, s, e, h, slope);
        m = z > m ? z : m;
      }
      m = warp_max(m);
      acc_t sum = 0;
      for (int64_t e = lo + lane; e < hi; e += kWarp) {
        if (in_range(a.indices[e], a.N)) sum += dexp(entry_logit<scalar_t, acc_t>(src, dst, a, s, e, h, slope) - m);
      }
      sum = warp_sum(sum);
      const acc_t inv = sum > acc_t(0) ? acc_t(1) / sum : acc_t(0);
      if (lane == 0) lse[s * a.H + h] = sum > acc_t(0) ? m + dlog(sum) : -std::numeric_limits<acc_t>::infinity();
      for (int d0 = 0; d0 < a.D; d0 += kBlockCols) {
        acc_t acc[kSlots];
#pragma unroll
        for (int k = 0; k < kSlots; ++k) acc[k] = 0;
        warp_accumulate<scalar_t, acc_t>(src, val, dst, a, s, lo, hi, h, d0, m, inv, slope, acc);
#pragma unroll
        for (int k = 0; k < kSlots; ++k) {
          const int d = d0 + k * kWarp + lane;
          if (d < a.D) out[(s * a.H + h) * a.D + d] = static_cast<scalar_t>(acc[k]);
        }
      }
    }
  }
}

// Fixed-order block reduction (every thread gets the result).
template <typename A, bool kMax>
__device__ __forceinline__ A block_reduce(A v, A* red) {
  const int lane = threadIdx.x % kWarp, w = threadIdx.x / kWarp;
  v = kMax ? warp_max(v) : warp_sum(v);
  if (lane == 0) red[w] = v;
  __syncthreads();
  A r = red[0];
  for (int i = 1; i < kWarpsPerBlock; ++i) r = kMax ? (red[i] > r ? red[i] : r) : r + red[i];
  __syncthreads();
  return r;
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads) ssa_forward_block_kernel(const scalar_t* __restrict__ src,
                                                                     const scalar_t* __restrict__ val,
                                                                     const scalar_t* __restrict__ dst, SsaArgs a,
                                                                     acc_t slope, scalar_t* __restrict__ out,
                                                                     acc_t* __restrict__ lse) {
  __shared__ acc_t red[kWarpsPerBlock];
  __shared__ acc_t part[kWarpsPerBlock][kBlockCols];
  const int lane = threadIdx.x % kWarp, w = threadIdx.x / kWarp;
  for (int64_t s = blockIdx.x; s < a.S; s += gridDim.x) {
    int64_t lo, hi;
    clamp_range(a.indptr, s, a.nnz, lo, hi);
    const int64_t len = hi - lo;
    if (len <= kLongSegment) continue;  // uniform across the block
    const int64_t chunk = (len + kWarpsPerBlock - 1) / kWarpsPerBlock;
    const int64_t wlo = lo + w * chunk < hi ? lo + w * chunk : hi;
    const int64_t whi = wlo + chunk < hi ? wlo + chunk : hi;
    for (int h = 0; h < a.H; ++h) {
      acc_t m = -std::numeric_limits<acc_t>::infinity();
      for (int64_t e = lo + threadIdx.x; e < hi; e += kThreads) {
        const acc_t z = entry_logit<scalar_t, acc_t>(src, dst, a, s, e, h, slope);
        m = z > m ? z : m;
      }
      m = block_reduce<acc_t, true>(m, red);
      acc_t sum = 0;
      for (int64_t e = lo + threadIdx.x; e < hi; e += kThreads) {
        if (in_range(a.indices[e], a.N)) sum += dexp(entry_logit<scalar_t, acc_t>(src, dst, a, s, e, h, slope) - m);
      }
      sum = block_reduce<acc_t, false>(sum, red);
      const acc_t inv = sum > acc_t(0) ? acc_t(1) / sum : acc_t(0);
      if (threadIdx.x == 0) lse[s * a.H + h] = sum > acc_t(0) ? m + dlog(sum) : -std::numeric_limits<acc_t>::infinity();
      for (int d0 = 0; d0 < a.D; d0 += kBlockCols) {
        acc_t acc[kSlots];
#pragma unroll
        for (int k = 0; k < kSlots; ++k) acc[k] = 0;
        warp_accumulate<scalar_t, acc_t>(src, val, dst, a, s, wlo, whi, h, d0, m, inv, slope, acc);
#pragma unroll
        for (int k = 0; k < kSlots; ++k) part[w][k * kWarp + lane] = acc[k];
        __syncthreads();
        for (int c = threadIdx.x; c < kBlockCols; c += kThreads) {
          const int d = d0 + c;
          if (d < a.D) {
            acc_t t = part[0][c];
            for (int i = 1; i < kWarpsPerBlock; ++i) t += part[i][c];
            out[(s * a.H + h) * a.D + d] = static_cast<scalar_t>(t);
          }
        }
        __syncthreads();
      }
    }
  }
}

// ------------------------------------------------------------------ softmax aggregate backward
// Per segment: delta[s,h] = <g[s,h], out[s,h]>; with dst logits,
// grad_dst[s,h] = sum_i p_i act'_i (<g[s,h], v_i,h> - delta[s,h]).
template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads) ssa_backward_segment_kernel(
    const scalar_t* __restrict__ g, const scalar_t* __restrict__ out, const acc_t* __restrict__ lse,
    const scalar_t* __restrict__ src, const scalar_t* __restrict__ val, const scalar_t* __restrict__ dst, SsaArgs a,
    acc_t slope, acc_t* __restrict__ delta, scalar_t* __restrict__ gdst) {
  const int lane = threadIdx.x % kWarp;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  for (int64_t s = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp; s < a.S; s += warps) {
    int64_t lo, hi;
    clamp_range(a.indptr, s, a.nnz, lo, hi);
    for (int h = 0; h < a.H; ++h) {
      const scalar_t* gs = g + (s * a.H + h) * a.D;
      const scalar_t* os = out + (s * a.H + h) * a.D;
      acc_t dp = 0;
      for (int d = lane; d < a.D; d += kWarp) dp += static_cast<acc_t>(gs[d]) * static_cast<acc_t>(os[d]);
      const acc_t del = warp_sum(dp);
      if (lane == 0) delta[s * a.H + h] = del;
      if (!dst) continue;
      const acc_t ls = lse[s * a.H + h];
      const acc_t dsh = static_cast<acc_t>(dst[s * a.H + h]);
      acc_t lane_acc = 0, common = 0;  // sum_i p act <g, v_i> (per lane part), sum_i p act delta
      for (int64_t e = lo; e < hi; ++e) {
        const int64_t n = a.indices[e];
        if (!in_range(n, a.N)) continue;
        const acc_t pre = static_cast<acc_t>(src[n * a.H + h]) + dsh;
        const acc_t pa = dexp(leaky(pre, slope) - ls) * dleaky(pre, slope);
        const scalar_t* vr = val + (n * a.H + h) * a.D;
        acc_t part = 0;
        for (int d = lane; d < a.D; d += kWarp) part += static_cast<acc_t>(gs[d]) * static_cast<acc_t>(vr[d]);
        lane_acc += pa * part;
        common += pa * del;
      }
      const acc_t tot = warp_sum(lane_acc);
      if (lane == 0) gdst[s * a.H + h] = static_cast<scalar_t>(tot - common);
    }
  }
}

// Per source row n over the transpose: grad_values[n,h,:] = sum_j p_j g[s_j,h,:];
// grad_src[n,h] = sum_j p_j act'_j (<g[s_j,h], v[n,h]> - delta[s_j,h]).
template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads) ssa_backward_source_kernel(
    const scalar_t* __restrict__ g, const acc_t* __restrict__ lse, const acc_t* __restrict__ delta,
    const scalar_t* __restrict__ src, const scalar_t* __restrict__ val, const scalar_t* __restrict__ dst,
    const int64_t* __restrict__ t_indptr, const int64_t* __restrict__ t_indices, SsaArgs a, acc_t slope,
    scalar_t* __restrict__ gsrc, scalar_t* __restrict__ gval) {
  const int lane = threadIdx.x % kWarp;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  for (int64_t n = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp; n < a.N; n += warps) {
    int64_t lo, hi;
    clamp_range(t_indptr, n, a.nnz, lo, hi);
    for (int h = 0; h < a.H; ++h) {
      const acc_t sn = static_cast<acc_t>(src[n * a.H + h]);
      const scalar_t* vn = val + (n * a.H + h) * a.D;
      acc_t lane_acc = 0, common = 0;
      for (int d0 = 0; d0 < a.D; d0 += kBlockCols) {
        acc_t acc[kSlots], vreg[kSlots];
#pragma unroll
        for (int k = 0; k < kSlots; ++k) {
          const int d = d0 + k * kWarp + lane;
          acc[k] = 0;
          vreg[k] = d < a.D ? static_cast<acc_t>(vn[d]) : acc_t(0);
        }
        for (int64_t e = lo; e < hi; ++e) {
          const int64_t s = t_indices[e];
          if (!in_range(s, a.S)) continue;
          const acc_t pre = sn + (dst ? static_cast<acc_t>(dst[s * a.H + h]) : acc_t(0));
          const acc_t p = dexp(leaky(pre, slope) - lse[s * a.H + h]);
          const acc_t pa = p * dleaky(pre, slope);
          const scalar_t* gs = g + (s * a.H + h) * a.D;
          acc_t part = 0;
#pragma unroll
          for (int k = 0; k < kSlots; ++k) {
            const int d = d0 + k * kWarp + lane;
            if (d < a.D) {
              const acc_t gv = static_cast<acc_t>(gs[d]);
              acc[k] += p * gv;
              part += gv * vreg[k];
            }
          }
          lane_acc += pa * part;
          if (d0 == 0) common += pa * delta[s * a.H + h];
        }
#pragma unroll
        for (int k = 0; k < kSlots; ++k) {
          const int d = d0 + k * kWarp + lane;
          if (d < a.D) gval[(n * a.H + h) * a.D + d] = static_cast<scalar_t>(acc[k]);
        }
      }
      const acc_t tot = warp_sum(lane_acc);
      if (lane == 0) gsrc[n * a.H + h] = static_cast<scalar_t>(tot - common);
    }
  }
}

// ------------------------------------------------------------------ segment aggregate
// reduce: 0 sum, 1 mean, 2 max (arg = entry of the first maximum, -1 for an empty segment).
template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads) sa_forward_kernel(const scalar_t* __restrict__ val,
                                                              const scalar_t* __restrict__ w, SsaArgs a, int reduce,
                                                              scalar_t* __restrict__ out, int64_t* __restrict__ arg) {
  const int lane = threadIdx.x % kWarp;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  for (int64_t s = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp; s < a.S; s += warps) {
    int64_t lo, hi;
    clamp_range(a.indptr, s, a.nnz, lo, hi);
    for (int d0 = 0; d0 < a.D; d0 += kBlockCols) {
      acc_t acc[kSlots];
      int64_t am[kSlots];
#pragma unroll
      for (int k = 0; k < kSlots; ++k) {
        acc[k] = 0;
        am[k] = -1;
      }
      for (int64_t e = lo; e < hi; ++e) {
        const int64_t n = a.indices[e];
        if (!in_range(n, a.N)) continue;
        const acc_t we = w ? static_cast<acc_t>(w[e]) : acc_t(1);
        const scalar_t* row = val + n * a.D;
#pragma unroll
        for (int k = 0; k < kSlots; ++k) {
          const int d = d0 + k * kWarp + lane;
          if (d < a.D) {
            const acc_t x = we * static_cast<acc_t>(row[d]);
            if (reduce == 2) {
              if (am[k] < 0 || x > acc[k]) {
                acc[k] = x;
                am[k] = e;
              }
            } else {
              acc[k] += x;
            }
          }
        }
      }
      const acc_t scale = (reduce == 1 && hi > lo) ? acc_t(1) / static_cast<acc_t>(hi - lo) : acc_t(1);
#pragma unroll
      for (int k = 0; k < kSlots; ++k) {
        const int d = d0 + k * kWarp + lane;
        if (d < a.D) {
          out[s * a.D + d] = static_cast<scalar_t>(acc[k] * scale);
          if (reduce == 2) arg[s * a.D + d] = am[k];
        }
      }
    }
  }
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads) sa_backward_values_kernel(
    const scalar_t* __restrict__ g, const int64_t* __restrict__ arg, const scalar_t* __restrict__ w,
    const int64_t* __restrict__ t_indptr, const int64_t* __restrict__ t_indices, const int64_t* __restrict__ t_perm,
    SsaArgs a, int reduce, scalar_t* __restrict__ gval) {
  const int lane = threadIdx.x % kWarp;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  for (int64_t n = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp; n < a.N; n += warps) {
    int64_t lo, hi;
    clamp_range(t_indptr, n, a.nnz, lo, hi);
    for (int d0 = 0; d0 < a.D; d0 += kBlockCols) {
      acc_t acc[kSlots];
#pragma unroll
      for (int k = 0; k < kSlots; ++k) acc[k] = 0;
      for (int64_t e = lo; e < hi; ++e) {
        const int64_t s = t_indices[e], pos = t_perm[e];
        if (!in_range(s, a.S) || !in_range(pos, a.nnz)) continue;
        acc_t scale = w ? static_cast<acc_t>(w[pos]) : acc_t(1);
        if (reduce == 1) scale /= static_cast<acc_t>(a.indptr[s + 1] - a.indptr[s]);
#pragma unroll
        for (int k = 0; k < kSlots; ++k) {
          const int d = d0 + k * kWarp + lane;
          if (d < a.D && (reduce != 2 || arg[s * a.D + d] == pos)) acc[k] += scale * static_cast<acc_t>(g[s * a.D + d]);
        }
      }
#pragma unroll
      for (int k = 0; k < kSlots; ++k) {
        const int d = d0 + k * kWarp + lane;
        if (d < a.D) gval[n * a.D + d] = static_cast<scalar_t>(acc[k]);
      }
    }
  }
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads) sa_backward_weights_kernel(const scalar_t* __restrict__ g,
                                                                       const scalar_t* __restrict__ val,
                                                                       const int64_t* __restrict__ arg, SsaArgs a,
                                                                       int reduce, scalar_t* __restrict__ gw) {
  const int lane = threadIdx.x % kWarp;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  for (int64_t s = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp; s < a.S; s += warps) {
    int64_t lo, hi;
    clamp_range(a.indptr, s, a.nnz, lo, hi);
    const acc_t scale = (reduce == 1 && hi > lo) ? acc_t(1) / static_cast<acc_t>(hi - lo) : acc_t(1);
    for (int64_t e = lo; e < hi; ++e) {
      const int64_t n = a.indices[e];
      acc_t part = 0;
      if (in_range(n, a.N)) {
        for (int d = lane; d < a.D; d += kWarp) {
          if (reduce != 2 || arg[s * a.D + d] == e)
            part += static_cast<acc_t>(g[s * a.D + d]) * static_cast<acc_t>(val[n * a.D + d]);
        }
      }
      part = warp_sum(part);
      if (lane == 0) gw[e] = static_cast<scalar_t>(part * scale);
    }
  }
}

int64_t warp_grid(int64_t items) {
  const int64_t blocks = (items + kWarpsPerBlock - 1) / kWarpsPerBlock;
  return blocks < (int64_t(1) << 20) ? blocks : (int64_t(1) << 20);
}

constexpr at::ScalarType kDtypes[] = {at::kFloat, at::kDouble, at::kHalf, at::kBFloat16};
// Index data is not scanned here (it would cost a device-to-host copy per call): the Python
// wrapper validates it, and the kernels clamp and skip out-of-range entries (see the top).
const Backend kCuda{c10::DeviceType::CUDA, kDtypes, "float32, float64, float16 or bfloat16", /*scan_data=*/false,
                    /*max_heads=*/0};

}  // namespace

// ------------------------------------------------------------------ host entry points
std::tuple<at::Tensor, at::Tensor> segment_softmax_aggregate_cuda(
    const at::Tensor& src_logits, const at::Tensor& values, const at::Tensor& indptr, const at::Tensor& indices,
    const at::Tensor& t_indptr, const at::Tensor& t_indices, const std::optional<at::Tensor>& dst_logits,
    double negative_slope, int64_t num_segments, bool data_checked) {
  const SsaShape sh =
      check_ssa_forward(kCuda, src_logits, values, indptr, indices, dst_logits, num_segments, data_checked);
  const int64_t N = sh.N, H = sh.H, D = sh.D;
  (void)t_indptr;
  (void)t_indices;  // used by the backward only
  const auto dev = src_logits.device();
  const auto dtype = src_logits.scalar_type();
  c10::cuda::CUDAGuard guard(dev);
  auto out = at::empty({num_segments, H, D}, values.options());
  auto lse = at::empty({num_segments, H}, src_logits.options().dtype(opmath_of(dtype)));
  if (num_segments == 0) return {out, lse};
  auto stream = c10::cuda::getCurrentCUDAStream();
  SsaArgs a{indptr.data_ptr<int64_t>(), indices.data_ptr<int64_t>(), num_segments, N, indices.numel(),
            static_cast<int>(H), static_cast<int>(D)};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "segment_softmax_aggregate_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* dst = dst_logits.has_value() ? dst_logits->data_ptr<scalar_t>() : nullptr;
    ssa_forward_warp_kernel<scalar_t, acc_t><<<warp_grid(num_segments), kThreads, 0, stream>>>(
        src_logits.data_ptr<scalar_t>(), values.data_ptr<scalar_t>(), dst, a, static_cast<acc_t>(negative_slope),
        out.data_ptr<scalar_t>(), lse.data_ptr<acc_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    const int64_t blocks = num_segments < 4096 ? num_segments : 4096;
    ssa_forward_block_kernel<scalar_t, acc_t><<<blocks, kThreads, 0, stream>>>(
        src_logits.data_ptr<scalar_t>(), values.data_ptr<scalar_t>(), dst, a, static_cast<acc_t>(negative_slope),
        out.data_ptr<scalar_t>(), lse.data_ptr<acc_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {out, lse};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> segment_softmax_aggregate_backward_cuda(
    const at::Tensor& grad_out, const at::Tensor& out, const at::Tensor& lse, const at::Tensor& src_logits,
    const at::Tensor& values, const at::Tensor& indptr, const at::Tensor& indices, const at::Tensor& t_indptr,
    const at::Tensor& t_indices, const std::optional<at::Tensor>& dst_logits, double negative_slope,
    bool data_checked) {
  const SsaShape sh = check_ssa_backward(kCuda, grad_out, out, lse, src_logits, values, indptr, indices, t_indptr,
                                         t_indices, dst_logits, data_checked);
  const int64_t N = sh.N, H = sh.H, D = sh.D, S = sh.S;
  const auto dev = src_logits.device();
  const auto dtype = src_logits.scalar_type();
  c10::cuda::CUDAGuard guard(dev);
  auto g_src = at::empty({N, H}, src_logits.options());
  auto g_val = at::empty({N, H, D}, values.options());
  auto g_dst = at::empty({dst_logits.has_value() ? S : 0, H}, src_logits.options());
  auto delta = at::empty({S, H}, lse.options());
  auto stream = c10::cuda::getCurrentCUDAStream();
  SsaArgs a{indptr.data_ptr<int64_t>(), indices.data_ptr<int64_t>(), S, N, indices.numel(), static_cast<int>(H),
            static_cast<int>(D)};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "segment_softmax_aggregate_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* dst = dst_logits.has_value() ? dst_logits->data_ptr<scalar_t>() : nullptr;
    const acc_t slope = static_cast<acc_t>(negative_slope);
    if (S > 0) {
      ssa_backward_segment_kernel<scalar_t, acc_t><<<warp_grid(S), kThreads, 0, stream>>>(
          grad_out.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), lse.data_ptr<acc_t>(),
          src_logits.data_ptr<scalar_t>(), values.data_ptr<scalar_t>(), dst, a, slope, delta.data_ptr<acc_t>(),
          dst ? g_dst.data_ptr<scalar_t>() : nullptr);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    if (N > 0) {
      ssa_backward_source_kernel<scalar_t, acc_t><<<warp_grid(N), kThreads, 0, stream>>>(
          grad_out.data_ptr<scalar_t>(), lse.data_ptr<acc_t>(), delta.data_ptr<acc_t>(),
          src_logits.data_ptr<scalar_t>(), values.data_ptr<scalar_t>(), dst, t_indptr.data_ptr<int64_t>(),
          t_indices.data_ptr<int64_t>(), a, slope, g_src.data_ptr<scalar_t>(), g_val.data_ptr<scalar_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  return {g_src, g_val, g_dst};
}

std::tuple<at::Tensor, at::Tensor> segment_aggregate_cuda(const at::Tensor& values, const at::Tensor& indptr,
                                                          const at::Tensor& indices, const at::Tensor& t_indptr,
                                                          const at::Tensor& t_indices, const at::Tensor& t_perm,
                                                          const std::optional<at::Tensor>& weights,
                                                          c10::string_view reduce, int64_t num_segments,
                                                          bool data_checked) {
  const SaShape sh = check_sa_forward(kCuda, values, indptr, indices, weights, reduce, num_segments, data_checked);
  const int64_t N = sh.N, D = sh.D;
  const int red = sh.reduce;
  (void)t_indptr;
  (void)t_indices;
  (void)t_perm;  // used by the backward only
  const auto dev = values.device();
  const auto dtype = values.scalar_type();
  c10::cuda::CUDAGuard guard(dev);
  auto out = at::empty({num_segments, D}, values.options());
  auto arg = red == 2 ? at::empty({num_segments, D}, indices.options()) : at::empty({0}, indices.options());
  if (num_segments == 0) return {out, arg};
  auto stream = c10::cuda::getCurrentCUDAStream();
  SsaArgs a{indptr.data_ptr<int64_t>(), indices.data_ptr<int64_t>(), num_segments, N, indices.numel(), 1,
            static_cast<int>(D)};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "segment_aggregate_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    sa_forward_kernel<scalar_t, acc_t><<<warp_grid(num_segments), kThreads, 0, stream>>>(
        values.data_ptr<scalar_t>(), weights.has_value() ? weights->data_ptr<scalar_t>() : nullptr, a, red,
        out.data_ptr<scalar_t>(), red == 2 ? arg.data_ptr<int64_t>() : nullptr);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {out, arg};
}

std::tuple<at::Tensor, at::Tensor> segment_aggregate_backward_cuda(
    const at::Tensor& grad_out, const at::Tensor& values, const at::Tensor& arg, const at::Tensor& indptr,
    const at::Tensor& indices, const at::Tensor& t_indptr, const at::Tensor& t_indices, const at::Tensor& t_perm,
    const std::optional<at::Tensor>& weights, c10::string_view reduce, bool data_checked) {
  const SaShape sh = check_sa_backward(kCuda, grad_out, values, arg, indptr, indices, t_indptr, t_indices, t_perm,
                                       weights, reduce, data_checked);
  const int64_t N = sh.N, D = sh.D, S = sh.S, nnz = sh.nnz;
  const int red = sh.reduce;
  const auto dev = values.device();
  const auto dtype = values.scalar_type();
  c10::cuda::CUDAGuard guard(dev);
  auto g_val = at::empty({N, D}, values.options());
  auto g_w = at::empty({weights.has_value() ? nnz : 0}, values.options());
  auto stream = c10::cuda::getCurrentCUDAStream();
  SsaArgs a{indptr.data_ptr<int64_t>(), indices.data_ptr<int64_t>(), S, N, nnz, 1, static_cast<int>(D)};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "segment_aggregate_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* w = weights.has_value() ? weights->data_ptr<scalar_t>() : nullptr;
    const int64_t* am = red == 2 ? arg.data_ptr<int64_t>() : nullptr;
    if (N > 0) {
      sa_backward_values_kernel<scalar_t, acc_t><<<warp_grid(N), kThreads, 0, stream>>>(
          grad_out.data_ptr<scalar_t>(), am, w, t_indptr.data_ptr<int64_t>(), t_indices.data_ptr<int64_t>(),
          t_perm.data_ptr<int64_t>(), a, red, g_val.data_ptr<scalar_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    if (w && S > 0) {
      sa_backward_weights_kernel<scalar_t, acc_t><<<warp_grid(S), kThreads, 0, stream>>>(
          grad_out.data_ptr<scalar_t>(), values.data_ptr<scalar_t>(), am, a, red, g_w.data_ptr<scalar_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  return {g_val, g_w};
}

TORCH_LIBRARY_IMPL(mingle, CUDA, m) {
  m.impl("segment_softmax_aggregate", &segment_softmax_aggregate_cuda);
  m.impl("segment_softmax_aggregate_backward", &segment_softmax_aggregate_backward_cuda);
  m.impl("segment_aggregate", &segment_aggregate_cuda);
  m.impl("segment_aggregate_backward", &segment_aggregate_backward_cuda);
}

}  // namespace mingle

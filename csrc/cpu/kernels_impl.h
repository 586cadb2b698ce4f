// Per-range CPU kernels of the mingle segment ops, written once and compiled once per
// instruction set: csrc/cpu/kernels_base.cpp (the build's baseline flags, namespace
// mingle::base) and csrc/cpu/kernels_simd_avx2.cpp (AVX2+FMA, namespace mingle::avx2; picked at
// run time by kernel_table() in csrc/cpu/segment_ops_cpu.cpp). The including file names the
// namespace with MINGLE_KERNEL_NS (default: base) and, for another ISA, sets the target and the
// CPU_CAPABILITY macros before including this header, so that the ATen vector headers included
// here are built for that ISA too. This header ends with that namespace's table() (the
// KernelTable of csrc/cpu/kernels.h) and its float/double instantiations; include it from
// exactly one translation unit per namespace.
//
// The kernels take raw pointers to contiguous tensors whose arguments were checked by
// csrc/checks.h, and one range [begin, end) of segments (or sources).
//
// Notation: segment s owns entries indptr[s]..indptr[s+1]-1, entry i reads source row
// indices[i]; the transpose lists, for source n, entries t_indptr[n]..t_indptr[n+1]-1 with
// segment t_indices[j] (and entry position t_perm[j]).
#pragma once
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "kernels.h"

#ifndef MINGLE_KERNEL_NS
#define MINGLE_KERNEL_NS base
#endif

namespace mingle {
namespace MINGLE_KERNEL_NS {

using at::vec::Vectorized;

// Prefetch every cache line of a row of `bytes` bytes (rows are gathered at random).
inline void prefetch_row(const void* p, int64_t bytes) {
  const char* c = static_cast<const char*>(p);
  for (int64_t off = 0; off < bytes; off += 64) __builtin_prefetch(c + off);
}

template <typename T>
inline void vec_zero(T* y, int64_t n) {
  std::memset(y, 0, sizeof(T) * n);
}

// y[0:n] += a * x[0:n]
template <typename T>
inline void vec_axpy(T* __restrict y, const T* __restrict x, T a, int64_t n) {
  using V = Vectorized<T>;
  const V va(a);
  int64_t d = 0;
  for (; d + V::size() <= n; d += V::size()) {
    V r = V::loadu(y + d);
    r = at::vec::fmadd(va, V::loadu(x + d), r);
    r.store(y + d);
  }
  for (; d < n; ++d) y[d] += a * x[d];
}

// sum_d x[d] * y[d]
template <typename T>
inline T vec_dot(const T* __restrict x, const T* __restrict y, int64_t n) {
  using V = Vectorized<T>;
  V acc(T(0));
  int64_t d = 0;
  for (; d + V::size() <= n; d += V::size()) acc = at::vec::fmadd(V::loadu(x + d), V::loadu(y + d), acc);
  T buf[V::size()];
  acc.store(buf);
  T s = 0;
  for (int64_t k = 0; k < V::size(); ++k) s += buf[k];
  for (; d < n; ++d) s += x[d] * y[d];
  return s;
}

// x[0:n] = exp(x[0:n]) in place, vectorised (ATen Vectorized; Sleef / polynomial under AVX2)
template <typename T>
inline void vec_exp_inplace(T* x, int64_t n) {
  using V = Vectorized<T>;
  int64_t d = 0;
  for (; d + V::size() <= n; d += V::size()) V::loadu(x + d).exp().store(x + d);
  if (d < n) V::loadu(x + d, n - d).exp().store(x + d, n - d);
}

// In place over n contiguous logits: da[k] = (z[k] > 0 ? 1 : slope) when da is given, then
// z[k] = leaky_relu(z[k]). Branch-free (vector blends): the sign of a logit is unpredictable.
template <typename T>
inline void vec_leaky(T* z, T* da, T slope, int64_t n) {
  using V = Vectorized<T>;
  const V zero(T(0)), one(T(1)), vs(slope);
  int64_t k = 0;
  for (; k + V::size() <= n; k += V::size()) {
    const V x = V::loadu(z + k);
    const V pos = x > zero;
    if (da) V::blendv(vs, one, pos).store(da + k);
    V::blendv(x * vs, x, pos).store(z + k);
  }
  for (; k < n; ++k) {
    const T f = z[k] > T(0) ? T(1) : slope;
    if (da) da[k] = f;
    z[k] *= f;
  }
}

// z[i*H + h] = src[indices[i]*H + h] (+ dst[h]) for i in [0, len): all heads of a row per read.
template <typename T>
inline void gather_logits(T* __restrict z, const T* __restrict src, const int64_t* __restrict idx,
                          const T* __restrict dst, int64_t len, int64_t H) {
  for (int64_t i = 0; i < len; ++i) {
    const T* sr = src + idx[i] * H;
    T* zi = z + i * H;
    if (dst)
      for (int64_t h = 0; h < H; ++h) zi[h] = sr[h] + dst[h];
    else
      for (int64_t h = 0; h < H; ++h) zi[h] = sr[h];
  }
}

// we[i*HD + h*D + d] = w[i*H + h] for i in [0, len): per-(entry, head) weights broadcast over
// the head's D elements, so that a whole row is weighted with full-width vector operations
// whatever D is. Writes up to Vectorized<T>::size() - 1 elements past len*HD (callers reserve them).
template <typename T>
inline void expand_heads(T* __restrict we, const T* __restrict w, int64_t len, int64_t H, int64_t D) {
  using V = Vectorized<T>;
  const int64_t HD = H * D;
  if (D < V::size()) {
    for (int64_t i = 0; i < len; ++i)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t d = 0; d < D; ++d) we[i * HD + h * D + d] = w[i * H + h];
    return;
  }
  // heads in order; a store that spills into the next head's (or row's) range is overwritten next
  for (int64_t i = 0; i < len; ++i) {
    T* r = we + i * HD;
    for (int64_t h = 0; h < H; ++h) {
      const V b(w[i * H + h]);
      for (int64_t d = 0; d < D; d += V::size()) b.store(r + h * D + d);
    }
  }
}

// NV vectors of the row sum below, starting at element k0: accumulators stay in registers over
// all entries; each output element is written once.
template <typename T, int NV>
inline void row_sum_block(T* __restrict o, const T* __restrict rows, const int64_t* __restrict idx,
                          const T* __restrict we, int64_t len, int64_t HD, int64_t k0,
                          const int64_t* pf_idx, int64_t pf_len) {
  using V = Vectorized<T>;
  constexpr int64_t L = V::size();
  V acc[NV];
  for (int u = 0; u < NV; ++u) acc[u] = V(T(0));
  for (int64_t i = 0; i < len; ++i) {
    if (k0 == 0 && i < pf_len) prefetch_row(rows + pf_idx[i] * HD, HD * sizeof(T));
    const T* r = rows + idx[i] * HD + k0;
    const T* wr = we + i * HD + k0;
    for (int u = 0; u < NV; ++u) acc[u] = at::vec::fmadd(V::loadu(wr + u * L), V::loadu(r + u * L), acc[u]);
  }
  for (int u = 0; u < NV; ++u) acc[u].store(o + k0 + u * L);
}

// o[k] = sum_i we[i*HD + k] * rows[idx[i]*HD + k] for k in [0, HD), we from expand_heads.
// Every element accumulates its entries in order, one multiply-add per entry starting from
// zero: the arithmetic of a per-head loop over D with the head's weight broadcast, only with
// the heads and D-blocks side by side (independent chains instead of one chain per pass).
// Rows pf_idx[0..pf_len) are prefetched during the first block.
template <typename T>
inline void expanded_row_sum(T* __restrict o, const T* __restrict rows, const int64_t* __restrict idx,
                             const T* __restrict we, int64_t len, int64_t HD, const int64_t* pf_idx,
                             int64_t pf_len) {
  using V = Vectorized<T>;
  constexpr int64_t L = V::size();
  int64_t k0 = 0;
  while (k0 + L <= HD) {
    const int64_t nv = std::min<int64_t>(8, (HD - k0) / L);
    switch (nv) {
      case 8: row_sum_block<T, 8>(o, rows, idx, we, len, HD, k0, pf_idx, pf_len); break;
      case 7: row_sum_block<T, 7>(o, rows, idx, we, len, HD, k0, pf_idx, pf_len); break;
      case 6: row_sum_block<T, 6>(o, rows, idx, we, len, HD, k0, pf_idx, pf_len); break;
      case 5: row_sum_block<T, 5>(o, rows, idx, we, len, HD, k0, pf_idx, pf_len); break;
      case 4: row_sum_block<T, 4>(o, rows, idx, we, len, HD, k0, pf_idx, pf_len); break;
      case 3: row_sum_block<T, 3>(o, rows, idx, we, len, HD, k0, pf_idx, pf_len); break;
      case 2: row_sum_block<T, 2>(o, rows, idx, we, len, HD, k0, pf_idx, pf_len); break;
      default: row_sum_block<T, 1>(o, rows, idx, we, len, HD, k0, pf_idx, pf_len); break;
    }
    k0 += nv * L;
  }
  for (; k0 < HD; ++k0) {
    T a = 0;
    for (int64_t i = 0; i < len; ++i) a += we[i * HD + k0] * rows[idx[i] * HD + k0];
    o[k0] = a;
  }
}

#if defined(CPU_CAPABILITY_AVX2)
// AVX2, float, H <= 8: row_sum_block with each weight vector built in registers from the
// entry's H weights (one permute per vector) instead of read from an expanded copy; the same
// fused multiply-add per element and entry. Reads 8 floats at w + i*H (callers leave slack).
template <int NV>
inline void row_sum_block_avx2(float* __restrict o, const float* __restrict rows, const int64_t* __restrict idx,
                               const float* __restrict w, int64_t len, int64_t H, int64_t D, int64_t k0,
                               const int64_t* pf_idx, int64_t pf_len) {
  const int64_t HD = H * D;
  __m256i map[NV];
  for (int u = 0; u < NV; ++u) {
    alignas(32) int32_t m[8];
    for (int l = 0; l < 8; ++l) m[l] = static_cast<int32_t>((k0 + u * 8 + l) / D);
    map[u] = _mm256_load_si256(reinterpret_cast<const __m256i*>(m));
  }
  __m256 acc[NV];
  for (int u = 0; u < NV; ++u) acc[u] = _mm256_setzero_ps();
  for (int64_t i = 0; i < len; ++i) {
    if (k0 == 0 && i < pf_len) prefetch_row(rows + pf_idx[i] * HD, HD * sizeof(float));
    const __m256 wr = _mm256_loadu_ps(w + i * H);
    const float* r = rows + idx[i] * HD + k0;
    for (int u = 0; u < NV; ++u)
      acc[u] = _mm256_fmadd_ps(_mm256_permutevar8x32_ps(wr, map[u]), _mm256_loadu_ps(r + u * 8), acc[u]);
  }
  for (int u = 0; u < NV; ++u) _mm256_storeu_ps(o + k0 + u * 8, acc[u]);
}
#endif

// o[h*D + d] = sum_i w[i*H + h] * rows[idx[i]*HD + h*D + d] (expanded_row_sum's arithmetic).
// scratch: len*H*D + Vectorized<T>::size() elements for the expanded weights; w must be
// readable up to 8 elements past len*H.
template <typename T>
inline void weighted_row_sum(T* __restrict o, const T* __restrict rows, const int64_t* __restrict idx,
                             const T* __restrict w, int64_t len, int64_t H, int64_t D, T* __restrict scratch,
                             const int64_t* pf_idx, int64_t pf_len) {
  const int64_t HD = H * D;
#if defined(CPU_CAPABILITY_AVX2)
  if constexpr (std::is_same<T, float>::value) {
    if (H <= 8) {
      int64_t k0 = 0;
      while (k0 + 8 <= HD) {
        const int64_t nv = std::min<int64_t>(6, (HD - k0) / 8);
        switch (nv) {
          case 6: row_sum_block_avx2<6>(o, rows, idx, w, len, H, D, k0, pf_idx, pf_len); break;
          case 5: row_sum_block_avx2<5>(o, rows, idx, w, len, H, D, k0, pf_idx, pf_len); break;
          case 4: row_sum_block_avx2<4>(o, rows, idx, w, len, H, D, k0, pf_idx, pf_len); break;
          case 3: row_sum_block_avx2<3>(o, rows, idx, w, len, H, D, k0, pf_idx, pf_len); break;
          case 2: row_sum_block_avx2<2>(o, rows, idx, w, len, H, D, k0, pf_idx, pf_len); break;
          default: row_sum_block_avx2<1>(o, rows, idx, w, len, H, D, k0, pf_idx, pf_len); break;
        }
        k0 += nv * 8;
      }
      for (; k0 < HD; ++k0) {
        const int64_t h = k0 / D;
        T a = 0;
        for (int64_t i = 0; i < len; ++i) a += w[i * H + h] * rows[idx[i] * HD + k0];
        o[k0] = a;
      }
      return;
    }
  }
#endif
  expand_heads(scratch, w, len, H, D);
  expanded_row_sum(o, rows, idx, scratch, len, HD, pf_idx, pf_len);
}

// Per-head reductions and updates over a [len, H] buffer. When H divides the vector width
// the buffer is processed as whole vectors with the per-head values tiled across lanes.
template <typename T>
inline bool heads_tile(int64_t H) {
  return Vectorized<T>::size() % H == 0;
}

template <typename T>
inline Vectorized<T> tile_heads(const T* per_head, int64_t H) {
  T buf[Vectorized<T>::size()];
  for (int64_t k = 0; k < Vectorized<T>::size(); ++k) buf[k] = per_head[k % H];
  return Vectorized<T>::loadu(buf);
}

// m[h] = max_i z[i*H+h]
template <typename T>
inline void head_max(const T* z, int64_t len, int64_t H, T* m) {
  using V = Vectorized<T>;
  for (int64_t h = 0; h < H; ++h) m[h] = -std::numeric_limits<T>::infinity();
  const int64_t n = len * H;
  int64_t k = 0;
  if (heads_tile<T>(H) && n >= V::size()) {
    V acc(-std::numeric_limits<T>::infinity());
    for (; k + V::size() <= n; k += V::size()) acc = at::vec::maximum(acc, V::loadu(z + k));
    T buf[V::size()];
    acc.store(buf);
    for (int64_t l = 0; l < V::size(); ++l) m[l % H] = std::max(m[l % H], buf[l]);
  }
  for (; k < n; ++k) m[k % H] = std::max(m[k % H], z[k]);
}

// z[i*H+h] += sign * c[h]
template <typename T>
inline void head_shift(T* z, int64_t len, int64_t H, const T* c, T sign) {
  using V = Vectorized<T>;
  const int64_t n = len * H;
  int64_t k = 0;
  if (heads_tile<T>(H)) {
    T sc[kMaxHeads];
    for (int64_t h = 0; h < H; ++h) sc[h] = sign * c[h];
    const V t = tile_heads(sc, H);
    for (; k + V::size() <= n; k += V::size()) (V::loadu(z + k) + t).store(z + k);
  }
  for (; k < n; ++k) z[k] += sign * c[k % H];
}

// sum[h] = sum_i z[i*H+h]
template <typename T>
inline void head_sum(const T* z, int64_t len, int64_t H, T* sum) {
  using V = Vectorized<T>;
  for (int64_t h = 0; h < H; ++h) sum[h] = 0;
  const int64_t n = len * H;
  int64_t k = 0;
  if (heads_tile<T>(H) && n >= V::size()) {
    V acc(T(0));
    for (; k + V::size() <= n; k += V::size()) acc = acc + V::loadu(z + k);
    T buf[V::size()];
    acc.store(buf);
    for (int64_t l = 0; l < V::size(); ++l) sum[l % H] += buf[l];
  }
  for (; k < n; ++k) sum[k % H] += z[k];
}

// z[i*H+h] *= c[h]
template <typename T>
inline void head_scale(T* z, int64_t len, int64_t H, const T* c) {
  using V = Vectorized<T>;
  const int64_t n = len * H;
  int64_t k = 0;
  if (heads_tile<T>(H)) {
    const V t = tile_heads(c, H);
    for (; k + V::size() <= n; k += V::size()) (V::loadu(z + k) * t).store(z + k);
  }
  for (; k < n; ++k) z[k] *= c[k % H];
}

// ---------------------------------------------------------------- softmax aggregate, forward
// out [S,H,D], lse [S,H]; buf: scratch of >= max segment length * H.
template <typename T>
void ssa_forward_range(const T* src, const T* val, const int64_t* indptr, const int64_t* indices,
                       const T* dst, T slope, int64_t H, int64_t D, int64_t begin, int64_t end,
                       T* out, T* lse, std::vector<T>& buf) {
  const int64_t HD = H * D;
  constexpr int64_t kMaxH = kMaxHeads;
  T m[kMaxH], sum[kMaxH], inv[kMaxH];
  for (int64_t s = begin; s < end; ++s) {
    const int64_t lo = indptr[s], len = indptr[s + 1] - lo;
    T* o = out + s * HD;
    if (len == 0) {
      vec_zero(o, HD);
      for (int64_t h = 0; h < H; ++h) lse[s * H + h] = -std::numeric_limits<T>::infinity();
      continue;
    }
    const int64_t need = len * H + len * HD + Vectorized<T>::size();
    if (static_cast<int64_t>(buf.size()) < need) buf.resize(need);
    T* z = buf.data();
    gather_logits(z, src, indices + lo, dst ? dst + s * H : nullptr, len, H);
    if (slope != T(1)) vec_leaky(z, static_cast<T*>(nullptr), slope, len * H);
    head_max(z, len, H, m);
    head_shift(z, len, H, m, T(-1));
    vec_exp_inplace(z, len * H);
    head_sum(z, len, H, sum);
    for (int64_t h = 0; h < H; ++h) {
      inv[h] = T(1) / sum[h];
      lse[s * H + h] = m[h] + std::log(sum[h]);
    }
    head_scale(z, len, H, inv);
    // the next segment's value rows are prefetched while this one is summed
    const int64_t next_len = s + 1 < end ? indptr[s + 2] - indptr[s + 1] : 0;
    weighted_row_sum(o, val, indices + lo, z, len, H, D, z + len * H, indices + lo + len, next_len);
  }
}

// ---------------------------------------------------------------- softmax aggregate, backward
// Pass 1 over segments: delta[s,h] = <g[s,h], out[s,h]>, and, with dst logits,
// grad_dst[s,h] = sum_i p_i (<g[s,h], v_i,h> - delta[s,h]) act'(pre_i).
template <typename T>
void ssa_backward_segments(const T* g, const T* out, const T* lse, const T* src, const T* val,
                           const int64_t* indptr, const int64_t* indices, const T* dst, T slope,
                           int64_t H, int64_t D, int64_t begin, int64_t end, T* delta, T* gdst,
                           std::vector<T>& buf) {
  const int64_t HD = H * D;
  constexpr int64_t kMaxH = kMaxHeads;
  T acc[kMaxH];
  for (int64_t s = begin; s < end; ++s) {
    const T* gs = g + s * HD;
    T* del = delta + s * H;
    for (int64_t h = 0; h < H; ++h) del[h] = vec_dot(gs + h * D, out + s * HD + h * D, D);
    if (!dst) continue;
    const int64_t lo = indptr[s], len = indptr[s + 1] - lo;
    if (static_cast<int64_t>(buf.size()) < 2 * len * H) buf.resize(2 * len * H);
    T* p = buf.data();
    T* da = slope != T(1) ? p + len * H : nullptr;
    const T* ls = lse + s * H;
    gather_logits(p, src, indices + lo, dst + s * H, len, H);
    if (da) vec_leaky(p, da, slope, len * H);
    for (int64_t i = 0; i < len; ++i)
      for (int64_t h = 0; h < H; ++h) p[i * H + h] -= ls[h];
    vec_exp_inplace(p, len * H);
    for (int64_t h = 0; h < H; ++h) acc[h] = 0;
    for (int64_t i = 0; i < len; ++i) {
      const T* vr = val + indices[lo + i] * HD;
      for (int64_t h = 0; h < H; ++h) {
        const T dz = p[i * H + h] * (vec_dot(gs + h * D, vr + h * D, D) - del[h]);
        acc[h] += da ? dz * da[i * H + h] : dz;
      }
    }
    for (int64_t h = 0; h < H; ++h) gdst[s * H + h] = acc[h];
  }
}

// Horizontal sum of a vector.
template <typename T>
inline T vec_hsum(const Vectorized<T>& v) {
  T buf[Vectorized<T>::size()];
  v.store(buf);
  T s = 0;
  for (int64_t k = 0; k < Vectorized<T>::size(); ++k) s += buf[k];
  return s;
}

// The scalar gradient of one source row n with `len` transposed entries (segments segs[j],
// weights pa[j*H+h] = p * act'): gsn[h] = sum_j pa (<g[s_j,h], v_n,h> - delta[s_j,h]), with a
// fixed rounding: per head, common = sum_j pa delta[s_j,h] (in entry order), the dot products
// accumulated element-wise over D in blocks of 4 vectors, then single vectors (entries inner),
// then element by element for the last D % vector-width elements (one running sum over d, then
// j), and gsn = hsum(dsum) + dtail - common. The heads run side by side in the innermost loops
// (independent accumulators) and keep exactly that per-head order. HC: H when known at compile
// time (registers), else 0.
template <typename T, int HC>
inline void source_grad_scalar(T* __restrict gsn, const T* __restrict g, const int64_t* __restrict segs,
                               const T* __restrict pa, const T* __restrict delta, const T* __restrict vn,
                               int64_t len, int64_t Hr, int64_t D) {
  using V = Vectorized<T>;
  constexpr int64_t L = V::size();
  constexpr int64_t B = 4 * L;
  constexpr int64_t kArr = HC > 0 ? HC : kMaxHeads;
  const int64_t H = HC > 0 ? HC : Hr;
  const int64_t HD = H * D;
  T common[kArr], dtail[kArr];
  V dsum[kArr];
  for (int64_t h = 0; h < H; ++h) {
    common[h] = 0;
    dtail[h] = 0;
    dsum[h] = V(T(0));
  }
  for (int64_t j = 0; j < len; ++j) {
    const T* dl = delta + segs[j] * H;
    for (int64_t h = 0; h < H; ++h) common[h] += pa[j * H + h] * dl[h];
  }
  int64_t d = 0;
  for (; d + B <= D; d += B) {
    for (int64_t j = 0; j < len; ++j) {
      const T* gr = g + segs[j] * HD + d;
      for (int64_t h = 0; h < H; ++h) {
        const T* vh = vn + h * D + d;
        const T* gh = gr + h * D;
        const V v0 = V::loadu(vh), v1 = V::loadu(vh + L), v2 = V::loadu(vh + 2 * L), v3 = V::loadu(vh + 3 * L);
        const V g0 = V::loadu(gh), g1 = V::loadu(gh + L), g2 = V::loadu(gh + 2 * L), g3 = V::loadu(gh + 3 * L);
        const V paj(pa[j * H + h]);
        dsum[h] = at::vec::fmadd(paj, g0 * v0 + g1 * v1 + g2 * v2 + g3 * v3, dsum[h]);
      }
    }
  }
  for (; d + L <= D; d += L) {
    for (int64_t j = 0; j < len; ++j) {
      const T* gr = g + segs[j] * HD + d;
      for (int64_t h = 0; h < H; ++h) {
        const V v0 = V::loadu(vn + h * D + d);
        const V g0 = V::loadu(gr + h * D);
        dsum[h] = at::vec::fmadd(V(pa[j * H + h]), g0 * v0, dsum[h]);
      }
    }
  }
  for (; d < D; ++d) {
    for (int64_t j = 0; j < len; ++j) {
      const T* gr = g + segs[j] * HD + d;
      for (int64_t h = 0; h < H; ++h) {
        const T gj = gr[h * D];
        dtail[h] += pa[j * H + h] * gj * vn[h * D + d];
      }
    }
  }
  for (int64_t h = 0; h < H; ++h) gsn[h] = vec_hsum(dsum[h]) + dtail[h] - common[h];
}

// For one source row n with `len` transposed entries (segments segs[j], weights p[j*H+h] and
// pa[j*H+h] = p * act'): gv[h*D+d] = sum_j p g[s_j,h,d] (weighted_row_sum over the rows of g,
// pe its scratch) and gsn (source_grad_scalar).
template <typename T>
inline void source_grad_row(T* __restrict gv, T* __restrict gsn, const T* __restrict g,
                            const int64_t* __restrict segs, const T* __restrict p, const T* __restrict pa,
                            T* __restrict pe, const T* __restrict delta, const T* __restrict vn, int64_t len,
                            int64_t H, int64_t D) {
  const int64_t HD = H * D;
  constexpr int64_t kAhead = 8;  // g rows are prefetched this many entries ahead
  weighted_row_sum(gv, g, segs, p, len, H, D, pe, segs + kAhead, len - kAhead);
  // double keeps the runtime-H loop: with the head count fixed, GCC contracts its multiply-adds
  // differently there, which would change float64 gradients in the last bit
  switch (std::is_same<T, float>::value ? H : 0) {
    case 1: source_grad_scalar<T, 1>(gsn, g, segs, pa, delta, vn, len, H, D); break;
    case 2: source_grad_scalar<T, 2>(gsn, g, segs, pa, delta, vn, len, H, D); break;
    case 4: source_grad_scalar<T, 4>(gsn, g, segs, pa, delta, vn, len, H, D); break;
    case 8: source_grad_scalar<T, 8>(gsn, g, segs, pa, delta, vn, len, H, D); break;
    default: source_grad_scalar<T, 0>(gsn, g, segs, pa, delta, vn, len, H, D); break;
  }
}

// Pass 2 over sources, walking the transpose: grad_src [N,H], grad_val [N,H,D].
//   p_j = exp(leaky(src[n] + dst[s_j]) - lse[s_j])
//   grad_src[n,h] = sum_j p_j act'_j (<g[s_j,h], v[n,h]> - delta[s_j,h])
//   grad_val[n,h] = sum_j p_j g[s_j,h]
template <typename T>
void ssa_backward_sources(const T* g, const T* lse, const T* delta, const T* src, const T* val,
                          const int64_t* t_indptr, const int64_t* t_indices, const T* dst, T slope,
                          int64_t H, int64_t D, int64_t begin, int64_t end, T* gsrc, T* gval,
                          std::vector<T>& buf) {
  const int64_t HD = H * D;
  for (int64_t n = begin; n < end; ++n) {
    const int64_t lo = t_indptr[n], len = t_indptr[n + 1] - lo;
    T* gv = gval + n * HD;
    T* gsn = gsrc + n * H;
    if (len == 0) {
      vec_zero(gv, HD);
      for (int64_t h = 0; h < H; ++h) gsn[h] = 0;
      continue;
    }
    const int64_t need = 2 * len * H + len * HD + Vectorized<T>::size();
    if (static_cast<int64_t>(buf.size()) < need) buf.resize(need);
    T* p = buf.data();
    T* pa = p + len * H;  // first the activation derivative, then p * act'
    T* pe = pa + len * H;
    const T* sr = src + n * H;
    const int64_t* segs = t_indices + lo;
    for (int64_t j = 0; j < len; ++j) {
      T* pj = p + j * H;
      if (dst) {
        const T* dr = dst + segs[j] * H;
        for (int64_t h = 0; h < H; ++h) pj[h] = sr[h] + dr[h];
      } else {
        for (int64_t h = 0; h < H; ++h) pj[h] = sr[h];
      }
    }
    if (slope != T(1)) vec_leaky(p, pa, slope, len * H);
    for (int64_t j = 0; j < len; ++j) {
      const T* ls = lse + segs[j] * H;
      for (int64_t h = 0; h < H; ++h) p[j * H + h] -= ls[h];
    }
    vec_exp_inplace(p, len * H);
    if (slope != T(1)) {
      for (int64_t k = 0; k < len * H; ++k) pa[k] *= p[k];
    } else {
      std::memcpy(pa, p, sizeof(T) * len * H);
    }
    source_grad_row(gv, gsn, g, segs, p, pa, pe, delta, val + n * HD, len, H, D);
  }
}

// ---------------------------------------------------------------- segment aggregate
// reduce: 0 sum, 1 mean, 2 max. out [S,D]; arg [S,D] entry position of the first maximum
// (-1 for an empty segment), only for max.
template <typename T>
void sa_forward_range(const T* val, const int64_t* indptr, const int64_t* indices, const T* w,
                      int reduce, int64_t D, int64_t begin, int64_t end, T* out, int64_t* arg) {
  for (int64_t s = begin; s < end; ++s) {
    const int64_t lo = indptr[s], hi = indptr[s + 1];
    T* o = out + s * D;
    vec_zero(o, D);
    if (reduce == 2) {
      int64_t* a = arg + s * D;
      for (int64_t d = 0; d < D; ++d) a[d] = -1;
      if (hi == lo) continue;
      for (int64_t i = lo; i < hi; ++i) {
        const T* vr = val + indices[i] * D;
        const T wi = w ? w[i] : T(1);
        for (int64_t d = 0; d < D; ++d) {
          const T x = wi * vr[d];
          if (a[d] < 0 || x > o[d]) {
            o[d] = x;
            a[d] = i;
          }
        }
      }
      continue;
    }
    for (int64_t i = lo; i < hi; ++i) vec_axpy(o, val + indices[i] * D, w ? w[i] : T(1), D);
    if (reduce == 1 && hi > lo) {
      const T inv = T(1) / static_cast<T>(hi - lo);
      for (int64_t d = 0; d < D; ++d) o[d] *= inv;
    }
  }
}

// grad_val [N,D] over sources via the transpose.
template <typename T>
void sa_backward_sources(const T* g, const int64_t* arg, const int64_t* indptr, const int64_t* t_indptr,
                         const int64_t* t_indices, const int64_t* t_perm, const T* w, int reduce,
                         int64_t D, int64_t begin, int64_t end, T* gval) {
  for (int64_t n = begin; n < end; ++n) {
    T* gv = gval + n * D;
    vec_zero(gv, D);
    for (int64_t j = t_indptr[n]; j < t_indptr[n + 1]; ++j) {
      const int64_t s = t_indices[j], pos = t_perm[j];
      T scale = w ? w[pos] : T(1);
      if (reduce == 2) {
        const int64_t* a = arg + s * D;
        const T* gs = g + s * D;
        for (int64_t d = 0; d < D; ++d)
          if (a[d] == pos) gv[d] += scale * gs[d];
        continue;
      }
      if (reduce == 1) scale /= static_cast<T>(indptr[s + 1] - indptr[s]);
      vec_axpy(gv, g + s * D, scale, D);
    }
  }
}

// grad_w [nnz] over segments.
template <typename T>
void sa_backward_weights(const T* g, const T* val, const int64_t* arg, const int64_t* indptr,
                         const int64_t* indices, int reduce, int64_t D, int64_t begin, int64_t end,
                         T* gw) {
  for (int64_t s = begin; s < end; ++s) {
    const int64_t lo = indptr[s], hi = indptr[s + 1];
    const T* gs = g + s * D;
    for (int64_t i = lo; i < hi; ++i) {
      const T* vr = val + indices[i] * D;
      if (reduce == 2) {
        const int64_t* a = arg + s * D;
        T acc = 0;
        for (int64_t d = 0; d < D; ++d)
          if (a[d] == i) acc += gs[d] * vr[d];
        gw[i] = acc;
      } else {
        T acc = vec_dot(gs, vr, D);
        if (reduce == 1) acc /= static_cast<T>(hi - lo);
        gw[i] = acc;
      }
    }
  }
}

// ---------------------------------------------------------------- this ISA's table
template <typename T>
const KernelTable<T>& table() {
  static const KernelTable<T> t{&ssa_forward_range<T>, &ssa_backward_segments<T>, &ssa_backward_sources<T>,
                                &sa_forward_range<T>,  &sa_backward_sources<T>,   &sa_backward_weights<T>};
  return t;
}
template const KernelTable<float>& table<float>();
template const KernelTable<double>& table<double>();

}  // namespace MINGLE_KERNEL_NS
}  // namespace mingle

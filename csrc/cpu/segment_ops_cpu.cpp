// CPU implementations of the mingle segment ops: input checks, ISA dispatch and
// at::parallel_for over segments (forward) or over sources via the transpose (backward).
// Every output element is written by exactly one thread in a fixed order: no atomics,
// bitwise-reproducible for a given thread count and ISA.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>
#include <tuple>
#include <vector>

#include "checks.h"
#include "kernels.h"

namespace mingle {

namespace {
bool pick_avx2() {
#ifdef MINGLE_HAS_AVX2_TU
  const char* env = std::getenv("MINGLE_CPU_ISA");
  if (env && std::string(env) == "base") return false;
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}
const bool kUseAvx2 = pick_avx2();

constexpr at::ScalarType kDtypes[] = {at::kFloat, at::kDouble};
const Backend kCpu{c10::DeviceType::CPU, kDtypes, "float32 or float64", /*scan_data=*/true, kMaxHeads};

// Runs f(begin, end) over [0, n) in chunks of about kChunkEntries entries, handed out
// dynamically to at most get_num_threads() workers (a shared counter), so that a worker
// slowed down by a busy machine or a very long segment does not hold the others up.
// Each item is still processed by exactly one worker with the same arithmetic, so results
// do not depend on the schedule.
constexpr int64_t kChunkEntries = 16384;

template <typename F>
void parallel_chunks(int64_t n, int64_t nnz, const F& f) {
  if (n <= 0) return;
  const int64_t avg = std::max<int64_t>(1, nnz / n);
  const int64_t chunk = std::max<int64_t>(1, kChunkEntries / avg);
  const int64_t nchunks = (n + chunk - 1) / chunk;
  const int64_t workers = std::min<int64_t>(at::get_num_threads(), nchunks);
  if (workers <= 1 || at::in_parallel_region()) {
    f(0, n);
    return;
  }
  std::atomic<int64_t> next{0};
  at::parallel_for(0, workers, 1, [&](int64_t wb, int64_t we) {
    for (int64_t w = wb; w < we; ++w) {
      for (int64_t c = next.fetch_add(1); c < nchunks; c = next.fetch_add(1)) {
        f(c * chunk, std::min(n, (c + 1) * chunk));
      }
    }
  });
}

}  // namespace

template <typename T>
const KernelTable<T>& kernel_table() {
#ifdef MINGLE_HAS_AVX2_TU
  if (kUseAvx2) return avx2::table<T>();
#endif
  return base::table<T>();
}
template const KernelTable<float>& kernel_table<float>();
template const KernelTable<double>& kernel_table<double>();

const char* cpu_isa() { return kUseAvx2 ? "avx2" : "base"; }

// ------------------------------------------------------------------ softmax aggregate
std::tuple<at::Tensor, at::Tensor> segment_softmax_aggregate_cpu(
    const at::Tensor& src_logits, const at::Tensor& values, const at::Tensor& indptr, const at::Tensor& indices,
    const at::Tensor& t_indptr, const at::Tensor& t_indices, const std::optional<at::Tensor>& dst_logits,
    double negative_slope, int64_t num_segments, bool data_checked) {
  const SsaShape sh =
      check_ssa_forward(kCpu, src_logits, values, indptr, indices, dst_logits, num_segments, data_checked);
  const int64_t H = sh.H, D = sh.D;
  (void)t_indptr;
  (void)t_indices;  // used by the backward only
  const auto dtype = src_logits.scalar_type();
  auto out = at::empty({num_segments, H, D}, values.options());
  auto lse = at::empty({num_segments, H}, src_logits.options());
  const int64_t nnz = indices.numel();
  AT_DISPATCH_FLOATING_TYPES(dtype, "segment_softmax_aggregate_cpu", [&] {
    const auto& k = kernel_table<scalar_t>();
    const scalar_t* src = src_logits.data_ptr<scalar_t>();
    const scalar_t* val = values.data_ptr<scalar_t>();
    const scalar_t* dst = dst_logits.has_value() ? dst_logits->data_ptr<scalar_t>() : nullptr;
    const int64_t* ptr = indptr.data_ptr<int64_t>();
    const int64_t* idx = indices.data_ptr<int64_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    scalar_t* l = lse.data_ptr<scalar_t>();
    const scalar_t slope = static_cast<scalar_t>(negative_slope);
    parallel_chunks(num_segments, nnz, [&](int64_t b, int64_t e) {
      std::vector<scalar_t> buf;
      k.ssa_forward(src, val, ptr, idx, dst, slope, H, D, b, e, o, l, buf);
    });
  });
  return {out, lse};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> segment_softmax_aggregate_backward_cpu(
    const at::Tensor& grad_out, const at::Tensor& out, const at::Tensor& lse, const at::Tensor& src_logits,
    const at::Tensor& values, const at::Tensor& indptr, const at::Tensor& indices, const at::Tensor& t_indptr,
    const at::Tensor& t_indices, const std::optional<at::Tensor>& dst_logits, double negative_slope,
    bool data_checked) {
  const SsaShape sh = check_ssa_backward(kCpu, grad_out, out, lse, src_logits, values, indptr, indices, t_indptr,
                                         t_indices, dst_logits, data_checked);
  const int64_t N = sh.N, H = sh.H, D = sh.D, S = sh.S;
  const auto dtype = src_logits.scalar_type();
  auto delta = at::empty({S, H}, src_logits.options());
  auto g_src = at::empty({N, H}, src_logits.options());
  auto g_val = at::empty({N, H, D}, values.options());
  auto g_dst = dst_logits.has_value() ? at::empty({S, H}, src_logits.options()) : at::empty({0, H}, src_logits.options());
  const int64_t nnz = indices.numel();
  AT_DISPATCH_FLOATING_TYPES(dtype, "segment_softmax_aggregate_backward_cpu", [&] {
    const auto& k = kernel_table<scalar_t>();
    const scalar_t* g = grad_out.data_ptr<scalar_t>();
    const scalar_t* o = out.data_ptr<scalar_t>();
    const scalar_t* l = lse.data_ptr<scalar_t>();
    const scalar_t* src = src_logits.data_ptr<scalar_t>();
    const scalar_t* val = values.data_ptr<scalar_t>();
    const scalar_t* dst = dst_logits.has_value() ? dst_logits->data_ptr<scalar_t>() : nullptr;
    const int64_t* ptr = indptr.data_ptr<int64_t>();
    const int64_t* idx = indices.data_ptr<int64_t>();
    const int64_t* tptr = t_indptr.data_ptr<int64_t>();
    const int64_t* tidx = t_indices.data_ptr<int64_t>();
    scalar_t* del = delta.data_ptr<scalar_t>();
    scalar_t* gd = dst ? g_dst.data_ptr<scalar_t>() : nullptr;
    const scalar_t slope = static_cast<scalar_t>(negative_slope);
    parallel_chunks(S, dst ? nnz : 0, [&](int64_t b, int64_t e) {
      std::vector<scalar_t> buf;
      k.ssa_backward_segments(g, o, l, src, val, ptr, idx, dst, slope, H, D, b, e, del, gd, buf);
    });
    scalar_t* gs = g_src.data_ptr<scalar_t>();
    scalar_t* gv = g_val.data_ptr<scalar_t>();
    parallel_chunks(N, nnz, [&](int64_t b, int64_t e) {
      std::vector<scalar_t> buf;
      k.ssa_backward_sources(g, l, del, src, val, tptr, tidx, dst, slope, H, D, b, e, gs, gv, buf);
    });
  });
  return {g_src, g_val, g_dst};
}

// ------------------------------------------------------------------ segment aggregate
std::tuple<at::Tensor, at::Tensor> segment_aggregate_cpu(const at::Tensor& values, const at::Tensor& indptr,
                                                         const at::Tensor& indices, const at::Tensor& t_indptr,
                                                         const at::Tensor& t_indices, const at::Tensor& t_perm,
                                                         const std::optional<at::Tensor>& weights,
                                                         c10::string_view reduce, int64_t num_segments,
                                                         bool data_checked) {
  const SaShape sh = check_sa_forward(kCpu, values, indptr, indices, weights, reduce, num_segments, data_checked);
  const int64_t D = sh.D;
  const int red = sh.reduce;
  (void)t_indptr;
  (void)t_indices;
  (void)t_perm;  // used by the backward only
  const auto dtype = values.scalar_type();
  auto out = at::empty({num_segments, D}, values.options());
  auto arg = red == 2 ? at::empty({num_segments, D}, indices.options()) : at::empty({0}, indices.options());
  const int64_t nnz = indices.numel();
  AT_DISPATCH_FLOATING_TYPES(dtype, "segment_aggregate_cpu", [&] {
    const auto& k = kernel_table<scalar_t>();
    const scalar_t* val = values.data_ptr<scalar_t>();
    const scalar_t* w = weights.has_value() ? weights->data_ptr<scalar_t>() : nullptr;
    const int64_t* ptr = indptr.data_ptr<int64_t>();
    const int64_t* idx = indices.data_ptr<int64_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    int64_t* a = red == 2 ? arg.data_ptr<int64_t>() : nullptr;
    parallel_chunks(num_segments, nnz, [&](int64_t b, int64_t e) {
      k.sa_forward(val, ptr, idx, w, red, D, b, e, o, a);
    });
  });
  return {out, arg};
}

std::tuple<at::Tensor, at::Tensor> segment_aggregate_backward_cpu(
    const at::Tensor& grad_out, const at::Tensor& values, const at::Tensor& arg, const at::Tensor& indptr,
    const at::Tensor& indices, const at::Tensor& t_indptr, const at::Tensor& t_indices, const at::Tensor& t_perm,
    const std::optional<at::Tensor>& weights, c10::string_view reduce, bool data_checked) {
  const SaShape sh = check_sa_backward(kCpu, grad_out, values, arg, indptr, indices, t_indptr, t_indices, t_perm,
                                       weights, reduce, data_checked);
  const int64_t N = sh.N, D = sh.D, S = sh.S, nnz = sh.nnz;
  const int red = sh.reduce;
  const auto dtype = values.scalar_type();
  auto g_val = at::empty({N, D}, values.options());
  auto g_w = weights.has_value() ? at::empty({nnz}, values.options()) : at::empty({0}, values.options());
  AT_DISPATCH_FLOATING_TYPES(dtype, "segment_aggregate_backward_cpu", [&] {
    const auto& k = kernel_table<scalar_t>();
    const scalar_t* g = grad_out.data_ptr<scalar_t>();
    const scalar_t* val = values.data_ptr<scalar_t>();
    const scalar_t* w = weights.has_value() ? weights->data_ptr<scalar_t>() : nullptr;
    const int64_t* a = red == 2 ? arg.data_ptr<int64_t>() : nullptr;
    const int64_t* ptr = indptr.data_ptr<int64_t>();
    const int64_t* idx = indices.data_ptr<int64_t>();
    const int64_t* tptr = t_indptr.data_ptr<int64_t>();
    const int64_t* tidx = t_indices.data_ptr<int64_t>();
    const int64_t* tp = t_perm.data_ptr<int64_t>();
    scalar_t* gv = g_val.data_ptr<scalar_t>();
    parallel_chunks(N, nnz, [&](int64_t b, int64_t e) {
      k.sa_backward_sources(g, a, ptr, tptr, tidx, tp, w, red, D, b, e, gv);
    });
    if (w) {
      scalar_t* gw = g_w.data_ptr<scalar_t>();
      parallel_chunks(S, nnz, [&](int64_t b, int64_t e) {
        k.sa_backward_weights(g, val, a, ptr, idx, red, D, b, e, gw);
      });
    }
  });
  return {g_val, g_w};
}

TORCH_LIBRARY_IMPL(mingle, CPU, m) {
  m.impl("segment_softmax_aggregate", &segment_softmax_aggregate_cpu);
  m.impl("segment_softmax_aggregate_backward", &segment_softmax_aggregate_backward_cpu);
  m.impl("segment_aggregate", &segment_aggregate_cpu);
  m.impl("segment_aggregate_backward", &segment_aggregate_backward_cpu);
}

}  // namespace mingle

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

constexpr int64_t kMaxHeads = 64;


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

int reduce_code(const std::string& reduce, const char* op) {
  if (reduce == "sum") return 0;
  if (reduce == "mean") return 1;
  if (reduce == "max") return 2;
  TORCH_CHECK_VALUE(false, op, ": reduce must be one of sum|mean|max, got '", reduce, "'");
  return -1;
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
    double negative_slope, int64_t num_segments) {
  constexpr const char* op = "mingle::segment_softmax_aggregate";
  const auto dev = src_logits.device();
  const auto dtype = src_logits.scalar_type();
  TORCH_CHECK_VALUE(dtype == at::kFloat || dtype == at::kDouble, op,
                    ": src_logits must be float32 or float64 on CPU, got ", dtype);
  check_float(src_logits, op, "src_logits", 2, dtype, dev);
  check_float(values, op, "values", 3, dtype, dev);
  check_index(indptr, op, "indptr", dev);
  check_index(indices, op, "indices", dev);
  const int64_t N = src_logits.size(0), H = src_logits.size(1), D = values.size(2);
  TORCH_CHECK_VALUE(values.size(0) == N && values.size(1) == H, op, ": values must be [N=", N, ", H=", H,
                    ", D], got ", values.sizes());
  TORCH_CHECK_VALUE(H <= kMaxHeads, op, ": at most ", kMaxHeads, " heads are supported, got ", H);
  TORCH_CHECK_VALUE(num_segments >= 0 && indptr.numel() == num_segments + 1, op, ": indptr must have num_segments+1=",
                    num_segments + 1, " elements, got ", indptr.numel());
  if (dst_logits.has_value()) {
    check_float(*dst_logits, op, "dst_logits", 2, dtype, dev);
    TORCH_CHECK_VALUE(dst_logits->size(0) == num_segments && dst_logits->size(1) == H, op,
                      ": dst_logits must be [S=", num_segments, ", H=", H, "], got ", dst_logits->sizes());
  }
  check_csr_data_cpu(indptr, indices, N, op, "indptr", "indices");
  (void)t_indptr;
  (void)t_indices;  // used by the backward only

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
    const at::Tensor& t_indices, const std::optional<at::Tensor>& dst_logits, double negative_slope) {
  constexpr const char* op = "mingle::segment_softmax_aggregate_backward";
  const auto dev = src_logits.device();
  const auto dtype = src_logits.scalar_type();
  TORCH_CHECK_VALUE(dtype == at::kFloat || dtype == at::kDouble, op,
                    ": src_logits must be float32 or float64 on CPU, got ", dtype);
  check_float(src_logits, op, "src_logits", 2, dtype, dev);
  check_float(values, op, "values", 3, dtype, dev);
  check_index(indptr, op, "indptr", dev);
  check_index(indices, op, "indices", dev);
  check_index(t_indptr, op, "t_indptr", dev);
  check_index(t_indices, op, "t_indices", dev);
  const int64_t N = src_logits.size(0), H = src_logits.size(1), D = values.size(2);
  const int64_t S = indptr.numel() - 1;
  TORCH_CHECK_VALUE(values.size(0) == N && values.size(1) == H, op, ": values must be [N, H, D]");
  TORCH_CHECK_VALUE(H <= kMaxHeads, op, ": at most ", kMaxHeads, " heads are supported, got ", H);
  check_float(grad_out, op, "grad_out", 3, dtype, dev);
  check_float(out, op, "out", 3, dtype, dev);
  check_float(lse, op, "lse", 2, dtype, dev);
  TORCH_CHECK_VALUE(grad_out.sizes() == out.sizes() && out.size(0) == S && out.size(1) == H && out.size(2) == D,
                    op, ": grad_out/out must be [S=", S, ", H=", H, ", D=", D, "], got ", grad_out.sizes(), "/",
                    out.sizes());
  TORCH_CHECK_VALUE(lse.size(0) == S && lse.size(1) == H, op, ": lse must be [S, H]");
  TORCH_CHECK_VALUE(t_indptr.numel() == N + 1, op, ": t_indptr must have N+1=", N + 1, " elements, got ",
                    t_indptr.numel());
  TORCH_CHECK_VALUE(t_indices.numel() == indices.numel(), op, ": t_indices must have nnz=", indices.numel(),
                    " elements, got ", t_indices.numel());
  if (dst_logits.has_value()) {
    check_float(*dst_logits, op, "dst_logits", 2, dtype, dev);
    TORCH_CHECK_VALUE(dst_logits->size(0) == S && dst_logits->size(1) == H, op, ": dst_logits must be [S, H]");
  }
  check_csr_data_cpu(indptr, indices, N, op, "indptr", "indices");
  check_csr_data_cpu(t_indptr, t_indices, S, op, "t_indptr", "t_indices");

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
                                                         c10::string_view reduce, int64_t num_segments) {
  constexpr const char* op = "mingle::segment_aggregate";
  const auto dev = values.device();
  const auto dtype = values.scalar_type();
  TORCH_CHECK_VALUE(dtype == at::kFloat || dtype == at::kDouble, op,
                    ": values must be float32 or float64 on CPU, got ", dtype);
  check_float(values, op, "values", 2, dtype, dev);
  check_index(indptr, op, "indptr", dev);
  check_index(indices, op, "indices", dev);
  const int red = reduce_code(std::string(reduce), op);
  const int64_t N = values.size(0), D = values.size(1);
  TORCH_CHECK_VALUE(num_segments >= 0 && indptr.numel() == num_segments + 1, op, ": indptr must have num_segments+1=",
                    num_segments + 1, " elements, got ", indptr.numel());
  if (weights.has_value()) {
    check_float(*weights, op, "weights", 1, dtype, dev);
    TORCH_CHECK_VALUE(weights->numel() == indices.numel(), op, ": weights must be [nnz=", indices.numel(), "], got ",
                      weights->sizes());
  }
  check_csr_data_cpu(indptr, indices, N, op, "indptr", "indices");
  (void)t_indptr;
  (void)t_indices;
  (void)t_perm;
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
    const std::optional<at::Tensor>& weights, c10::string_view reduce) {
  constexpr const char* op = "mingle::segment_aggregate_backward";
  const auto dev = values.device();
  const auto dtype = values.scalar_type();
  TORCH_CHECK_VALUE(dtype == at::kFloat || dtype == at::kDouble, op,
                    ": values must be float32 or float64 on CPU, got ", dtype);
  check_float(values, op, "values", 2, dtype, dev);
  check_index(indptr, op, "indptr", dev);
  check_index(indices, op, "indices", dev);
  check_index(t_indptr, op, "t_indptr", dev);
  check_index(t_indices, op, "t_indices", dev);
  check_index(t_perm, op, "t_perm", dev);
  const int red = reduce_code(std::string(reduce), op);
  const int64_t N = values.size(0), D = values.size(1), S = indptr.numel() - 1, nnz = indices.numel();
  check_float(grad_out, op, "grad_out", 2, dtype, dev);
  TORCH_CHECK_VALUE(grad_out.size(0) == S && grad_out.size(1) == D, op, ": grad_out must be [S=", S, ", D=", D,
                    "], got ", grad_out.sizes());
  if (red == 2) {
    TORCH_CHECK_VALUE(arg.scalar_type() == at::kLong && arg.dim() == 2 && arg.size(0) == S && arg.size(1) == D &&
                          arg.is_contiguous() && arg.device() == dev,
                      op, ": arg must be a contiguous int64 [S, D] tensor for reduce='max'");
  }
  TORCH_CHECK_VALUE(t_indptr.numel() == N + 1, op, ": t_indptr must have N+1=", N + 1, " elements");
  TORCH_CHECK_VALUE(t_indices.numel() == nnz && t_perm.numel() == nnz, op,
                    ": t_indices and t_perm must have nnz=", nnz, " elements");
  if (weights.has_value()) {
    check_float(*weights, op, "weights", 1, dtype, dev);
    TORCH_CHECK_VALUE(weights->numel() == nnz, op, ": weights must be [nnz]");
  }
  check_csr_data_cpu(indptr, indices, N, op, "indptr", "indices");
  check_csr_data_cpu(t_indptr, t_indices, S, op, "t_indptr", "t_indices");
  {
    const int64_t* tp = t_perm.data_ptr<int64_t>();
    bool bad = false;
    for (int64_t j = 0; j < nnz; ++j) bad |= static_cast<uint64_t>(tp[j]) >= static_cast<uint64_t>(nnz);
    TORCH_CHECK_VALUE(!bad, op, ": t_perm has values outside [0, nnz=", nnz, ")");
  }
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

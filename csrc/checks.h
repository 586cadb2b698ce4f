// Argument checks of the mingle ops, written once and called by the CPU entry points
// (csrc/cpu/segment_ops_cpu.cpp) and the CUDA entry points (csrc/cuda/segment_ops_cuda.cu).
// One function per op (forward and backward of segment_softmax_aggregate and of
// segment_aggregate), parameterised by the calling backend (its device type, its floating
// dtypes, whether it scans index data on the host, its head limit). They mirror the Python
// checks in mingle_bench/ops.py and mingle_bench/csr.py, for callers of torch.ops.mingle.*.
//
// Metadata checks (dtype, device, shape, contiguity) always run and name the argument. Data
// checks (indptr monotone from 0 to nnz, indices within [0, N), the transpose likewise) read the
// index arrays, so they run only on a backend with `scan_data` and only when the caller did not
// pass data_checked=true (mingle_bench.ops passes true for a CSR validated once, CSR.validated,
// or one it has just scanned itself). They name the argument and the first bad position.
#pragma once
#include <ATen/ATen.h>
#include <c10/core/DeviceType.h>
#include <c10/util/ArrayRef.h>
#include <c10/util/Exception.h>
#include <c10/util/string_view.h>

#include <cstdint>
#include <optional>
#include <string>

namespace mingle {

// What one backend's kernels accept.
struct Backend {
  c10::DeviceType device_type;
  c10::ArrayRef<at::ScalarType> dtypes;  // floating dtypes of the kernels
  const char* dtype_names;               // the same, for messages ("float32 or float64")
  bool scan_data;                        // scan index data on the host unless data_checked
  int64_t max_heads;                     // 0: no limit
};

// Accumulation type: float32 for the 16-bit types, else the type itself (lse is kept in it).
inline at::ScalarType opmath_of(at::ScalarType t) {
  return (t == at::kHalf || t == at::kBFloat16) ? at::kFloat : t;
}

// reduce of segment_aggregate as the kernels' code: 0 sum, 1 mean, 2 max.
inline int reduce_code(c10::string_view reduce, const char* op) {
  if (reduce == "sum") return 0;
  if (reduce == "mean") return 1;
  if (reduce == "max") return 2;
  TORCH_CHECK_VALUE(false, op, ": reduce must be one of sum|mean|max, got '", std::string(reduce), "'");
  return -1;
}

inline void check_index(const at::Tensor& t, const char* op, const char* name, c10::Device dev) {
  TORCH_CHECK_VALUE(t.scalar_type() == at::kLong, op, ": ", name, " must be int64, got ", t.scalar_type());
  TORCH_CHECK_VALUE(t.dim() == 1, op, ": ", name, " must be 1-D, got ", t.dim(), "-D");
  TORCH_CHECK_VALUE(t.is_contiguous(), op, ": ", name, " must be contiguous");
  TORCH_CHECK_VALUE(t.device() == dev, op, ": ", name, " is on ", t.device(), ", expected ", dev);
}

inline void check_float(const at::Tensor& t, const char* op, const char* name, int64_t dim,
                        at::ScalarType dtype, c10::Device dev) {
  TORCH_CHECK_VALUE(t.dim() == dim, op, ": ", name, " must be ", dim, "-D, got shape ", t.sizes());
  TORCH_CHECK_VALUE(t.scalar_type() == dtype, op, ": ", name, " has dtype ", t.scalar_type(), ", expected ",
                    dtype);
  TORCH_CHECK_VALUE(t.is_contiguous(), op, ": ", name, " must be contiguous");
  TORCH_CHECK_VALUE(t.device() == dev, op, ": ", name, " is on ", t.device(), ", expected ", dev);
}

// A CSR (indptr [S+1], indices [nnz]) over `num_sources` rows, checked on the host.
// Raises naming `ptr_name`/`idx_name` and the first bad position.
inline void check_csr_data_cpu(const at::Tensor& indptr, const at::Tensor& indices, int64_t num_sources,
                               const char* op, const char* ptr_name, const char* idx_name) {
  const int64_t S = indptr.numel() - 1;
  const int64_t nnz = indices.numel();
  TORCH_CHECK_VALUE(S >= 0, op, ": ", ptr_name, " must have at least one element");
  const int64_t* p = indptr.data_ptr<int64_t>();
  TORCH_CHECK_VALUE(p[0] == 0, op, ": ", ptr_name, "[0] must be 0, got ", p[0]);
  TORCH_CHECK_VALUE(p[S] == nnz, op, ": ", ptr_name, "[-1] must equal len(", idx_name, ")=", nnz, ", got ",
                    p[S]);
  int64_t bad = -1;
  for (int64_t s = 0; s < S; ++s) {
    if (p[s + 1] < p[s]) {
      bad = s + 1;
      break;
    }
  }
  TORCH_CHECK_VALUE(bad < 0, op, ": ", ptr_name, " is not monotone at position ", bad, " (", p[bad - 1], " > ", p[bad],
                    ")");
  const int64_t* ix = indices.data_ptr<int64_t>();
  // Vectorisable any-of first, then locate the first offender only on failure.
  bool any_bad = false;
  for (int64_t i = 0; i < nnz; ++i) any_bad |= static_cast<uint64_t>(ix[i]) >= static_cast<uint64_t>(num_sources);
  if (any_bad) {
    int64_t i = 0;
    while (static_cast<uint64_t>(ix[i]) < static_cast<uint64_t>(num_sources)) ++i;
    TORCH_CHECK_VALUE(false, op, ": ", idx_name, "[", i, "]=", ix[i], " is outside [0, ", num_sources, ")");
  }
}

// The leading floating input's dtype must be one of the backend's and its device the backend's.
inline void check_backend(const Backend& b, const at::Tensor& t, const char* op, const char* name) {
  bool ok = false;
  for (const auto d : b.dtypes) ok = ok || t.scalar_type() == d;
  TORCH_CHECK_VALUE(ok, op, ": ", name, " must be ", b.dtype_names, " on ", c10::DeviceTypeName(b.device_type),
                    ", got ", t.scalar_type());
  TORCH_CHECK_VALUE(t.device().type() == b.device_type, op, ": ", name, " is on ", t.device(), ", expected ",
                    c10::DeviceTypeName(b.device_type));
}

// The transpose (t_indptr [N+1], t_indices [nnz] in [0, S), and t_perm [nnz] in [0, nnz) when
// given) that the backward ops walk; its data is scanned like the CSR's.
inline void check_transpose(const Backend& b, const char* op, const at::Tensor& t_indptr, const at::Tensor& t_indices,
                            const at::Tensor* t_perm, int64_t N, int64_t S, int64_t nnz, bool scan) {
  const c10::Device dev = t_indptr.device();
  check_index(t_indices, op, "t_indices", dev);
  TORCH_CHECK_VALUE(t_indptr.numel() == N + 1, op, ": t_indptr must have N+1=", N + 1, " elements, got ",
                    t_indptr.numel());
  TORCH_CHECK_VALUE(t_indices.numel() == nnz, op, ": t_indices must have nnz=", nnz, " elements, got ",
                    t_indices.numel());
  if (t_perm) {
    check_index(*t_perm, op, "t_perm", dev);
    TORCH_CHECK_VALUE(t_perm->numel() == nnz, op, ": t_perm must have nnz=", nnz, " elements, got ", t_perm->numel());
  }
  if (!scan) return;
  check_csr_data_cpu(t_indptr, t_indices, S, op, "t_indptr", "t_indices");
  if (t_perm) {
    const int64_t* tp = t_perm->data_ptr<int64_t>();
    bool bad = false;
    for (int64_t j = 0; j < nnz; ++j) bad |= static_cast<uint64_t>(tp[j]) >= static_cast<uint64_t>(nnz);
    TORCH_CHECK_VALUE(!bad, op, ": t_perm has values outside [0, nnz=", nnz, ")");
  }
}

// ------------------------------------------------------------------ segment_softmax_aggregate
struct SsaShape {
  int64_t N, H, D, S;
};

// src_logits [N,H], values [N,H,D], indptr [S+1], indices [nnz], dst_logits [S,H] | None:
// the inputs shared by the forward and the backward. Scans indptr/indices when `scan`.
inline SsaShape check_ssa_inputs(const Backend& b, const char* op, const at::Tensor& src_logits,
                                 const at::Tensor& values, const at::Tensor& indptr, const at::Tensor& indices,
                                 const std::optional<at::Tensor>& dst_logits, int64_t S, bool scan) {
  check_backend(b, src_logits, op, "src_logits");
  const auto dev = src_logits.device();
  const auto dtype = src_logits.scalar_type();
  check_float(src_logits, op, "src_logits", 2, dtype, dev);
  check_float(values, op, "values", 3, dtype, dev);
  check_index(indptr, op, "indptr", dev);
  check_index(indices, op, "indices", dev);
  const SsaShape sh{src_logits.size(0), src_logits.size(1), values.size(2), S};
  TORCH_CHECK_VALUE(values.size(0) == sh.N && values.size(1) == sh.H, op, ": values must be [N=", sh.N, ", H=", sh.H,
                    ", D], got ", values.sizes());
  TORCH_CHECK_VALUE(b.max_heads == 0 || sh.H <= b.max_heads, op, ": at most ", b.max_heads,
                    " heads are supported, got ", sh.H);
  TORCH_CHECK_VALUE(S >= 0 && indptr.numel() == S + 1, op, ": indptr must have num_segments+1=", S + 1,
                    " elements, got ", indptr.numel());
  if (dst_logits.has_value()) {
    check_float(*dst_logits, op, "dst_logits", 2, dtype, dev);
    TORCH_CHECK_VALUE(dst_logits->size(0) == S && dst_logits->size(1) == sh.H, op, ": dst_logits must be [S=", S,
                      ", H=", sh.H, "], got ", dst_logits->sizes());
  }
  if (scan) check_csr_data_cpu(indptr, indices, sh.N, op, "indptr", "indices");
  return sh;
}

// mingle::segment_softmax_aggregate (t_indptr/t_indices are read by the backward only).
inline SsaShape check_ssa_forward(const Backend& b, const at::Tensor& src_logits, const at::Tensor& values,
                                  const at::Tensor& indptr, const at::Tensor& indices,
                                  const std::optional<at::Tensor>& dst_logits, int64_t num_segments,
                                  bool data_checked) {
  return check_ssa_inputs(b, "mingle::segment_softmax_aggregate", src_logits, values, indptr, indices, dst_logits,
                          num_segments, b.scan_data && !data_checked);
}

// mingle::segment_softmax_aggregate_backward: also grad_out/out [S,H,D], lse [S,H] (opmath
// dtype) and the transpose.
inline SsaShape check_ssa_backward(const Backend& b, const at::Tensor& grad_out, const at::Tensor& out,
                                   const at::Tensor& lse, const at::Tensor& src_logits, const at::Tensor& values,
                                   const at::Tensor& indptr, const at::Tensor& indices, const at::Tensor& t_indptr,
                                   const at::Tensor& t_indices, const std::optional<at::Tensor>& dst_logits,
                                   bool data_checked) {
  constexpr const char* op = "mingle::segment_softmax_aggregate_backward";
  const bool scan = b.scan_data && !data_checked;
  check_index(t_indptr, op, "t_indptr", src_logits.device());
  const SsaShape sh = check_ssa_inputs(b, op, src_logits, values, indptr, indices, dst_logits,
                                       indptr.numel() - 1, scan);
  const auto dev = src_logits.device();
  const auto dtype = src_logits.scalar_type();
  check_float(grad_out, op, "grad_out", 3, dtype, dev);
  check_float(out, op, "out", 3, dtype, dev);
  check_float(lse, op, "lse", 2, opmath_of(dtype), dev);
  TORCH_CHECK_VALUE(grad_out.sizes() == out.sizes() && out.size(0) == sh.S && out.size(1) == sh.H &&
                        out.size(2) == sh.D,
                    op, ": grad_out/out must be [S=", sh.S, ", H=", sh.H, ", D=", sh.D, "], got ", grad_out.sizes(),
                    "/", out.sizes());
  TORCH_CHECK_VALUE(lse.size(0) == sh.S && lse.size(1) == sh.H, op, ": lse must be [S, H]");
  check_transpose(b, op, t_indptr, t_indices, nullptr, sh.N, sh.S, indices.numel(), scan);
  return sh;
}

// ------------------------------------------------------------------ segment_aggregate
struct SaShape {
  int64_t N, D, S, nnz;
  int reduce;  // reduce_code
};

// values [N,D], indptr [S+1], indices [nnz], weights [nnz] | None, reduce: shared by the forward
// and the backward. Scans indptr/indices when `scan`.
inline SaShape check_sa_inputs(const Backend& b, const char* op, const at::Tensor& values, const at::Tensor& indptr,
                               const at::Tensor& indices, const std::optional<at::Tensor>& weights,
                               c10::string_view reduce, int64_t S, bool scan) {
  check_backend(b, values, op, "values");
  const auto dev = values.device();
  check_float(values, op, "values", 2, values.scalar_type(), dev);
  check_index(indptr, op, "indptr", dev);
  check_index(indices, op, "indices", dev);
  const SaShape sh{values.size(0), values.size(1), S, indices.numel(), reduce_code(reduce, op)};
  TORCH_CHECK_VALUE(S >= 0 && indptr.numel() == S + 1, op, ": indptr must have num_segments+1=", S + 1,
                    " elements, got ", indptr.numel());
  if (weights.has_value()) {
    check_float(*weights, op, "weights", 1, values.scalar_type(), dev);
    TORCH_CHECK_VALUE(weights->numel() == sh.nnz, op, ": weights must be [nnz=", sh.nnz, "], got ",
                      weights->sizes());
  }
  if (scan) check_csr_data_cpu(indptr, indices, sh.N, op, "indptr", "indices");
  return sh;
}

// mingle::segment_aggregate (t_indptr/t_indices/t_perm are read by the backward only).
inline SaShape check_sa_forward(const Backend& b, const at::Tensor& values, const at::Tensor& indptr,
                                const at::Tensor& indices, const std::optional<at::Tensor>& weights,
                                c10::string_view reduce, int64_t num_segments, bool data_checked) {
  return check_sa_inputs(b, "mingle::segment_aggregate", values, indptr, indices, weights, reduce, num_segments,
                         b.scan_data && !data_checked);
}

// mingle::segment_aggregate_backward: also grad_out [S,D], arg [S,D] int64 (for max) and the
// transpose with t_perm.
inline SaShape check_sa_backward(const Backend& b, const at::Tensor& grad_out, const at::Tensor& values,
                                 const at::Tensor& arg, const at::Tensor& indptr, const at::Tensor& indices,
                                 const at::Tensor& t_indptr, const at::Tensor& t_indices, const at::Tensor& t_perm,
                                 const std::optional<at::Tensor>& weights, c10::string_view reduce,
                                 bool data_checked) {
  constexpr const char* op = "mingle::segment_aggregate_backward";
  const bool scan = b.scan_data && !data_checked;
  check_index(t_indptr, op, "t_indptr", values.device());
  const SaShape sh = check_sa_inputs(b, op, values, indptr, indices, weights, reduce, indptr.numel() - 1, scan);
  check_float(grad_out, op, "grad_out", 2, values.scalar_type(), values.device());
  TORCH_CHECK_VALUE(grad_out.size(0) == sh.S && grad_out.size(1) == sh.D, op, ": grad_out must be [S=", sh.S,
                    ", D=", sh.D, "], got ", grad_out.sizes());
  if (sh.reduce == 2) {
    TORCH_CHECK_VALUE(arg.scalar_type() == at::kLong && arg.dim() == 2 && arg.size(0) == sh.S &&
                          arg.size(1) == sh.D && arg.is_contiguous() && arg.device() == values.device(),
                      op, ": arg must be a contiguous int64 [S, D] tensor for reduce='max'");
  }
  check_transpose(b, op, t_indptr, t_indices, &t_perm, sh.N, sh.S, sh.nnz, scan);
  return sh;
}

}  // namespace mingle

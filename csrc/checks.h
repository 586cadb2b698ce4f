// Input checks shared by the CPU and CUDA implementations of the mingle ops. Metadata checks
// (dtype, device, shape, contiguity) name the argument; data checks (indptr monotone and within
// [0, nnz], indices within [0, N)) run on CPU tensors before any kernel reads them.
#pragma once
#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <string>

namespace mingle {

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

}  // namespace mingle

// Schemas of the mingle ops and the Python module stub. The CPU and CUDA kernels register
// their implementations in csrc/cpu/segment_ops_cpu.cpp and csrc/cuda/segment_ops_cuda.cu (both
// check their arguments through csrc/checks.h); fake kernels and autograd formulas are
// registered in Python (mingle_bench/ops.py).
#include <Python.h>
#include <torch/library.h>

#include <string>

#include "cpu/kernels.h"

#ifdef WITH_CUDA
#include <cuda.h>
#endif

namespace mingle {

bool built_with_cuda() {
#ifdef WITH_CUDA
  return true;
#else
  return false;
#endif
}

// CUDA_VERSION the kernels were compiled with (e.g. 13000), 0 for a CPU-only build.
int64_t cuda_version() {
#ifdef WITH_CUDA
  return CUDA_VERSION;
#else
  return 0;
#endif
}

std::string cpu_isa_name() { return cpu_isa(); }

TORCH_LIBRARY(mingle, m) {
  // out [S,H,D], lse [S,H] (log-sum-exp per segment and head, saved for the backward).
  // t_indptr/t_indices (the transposed CSR) are only read by the backward; pass empty tensors
  // when no gradient is needed. data_checked: the caller has validated the index data (indptr
  // monotone from 0 to nnz, indices in [0, N); the transpose is derived from it), so the CPU
  // kernels skip their host scan of it (mingle_bench/ops.py passes it for a validated CSR).
  // Every op checks dtypes, devices and shapes regardless (csrc/checks.h).
  m.def(
      "segment_softmax_aggregate(Tensor src_logits, Tensor values, Tensor indptr, Tensor indices, "
      "Tensor t_indptr, Tensor t_indices, Tensor? dst_logits, float negative_slope, SymInt num_segments, "
      "bool data_checked=False) -> (Tensor, Tensor)");
  // grad_src [N,H], grad_values [N,H,D], grad_dst [S,H] (or [0,H] without dst_logits).
  m.def(
      "segment_softmax_aggregate_backward(Tensor grad_out, Tensor out, Tensor lse, Tensor src_logits, "
      "Tensor values, Tensor indptr, Tensor indices, Tensor t_indptr, Tensor t_indices, Tensor? dst_logits, "
      "float negative_slope, bool data_checked=False) -> (Tensor, Tensor, Tensor)");
  // out [S,D], arg [S,D] int64 entry of the maximum for reduce='max' (else [0]).
  m.def(
      "segment_aggregate(Tensor values, Tensor indptr, Tensor indices, Tensor t_indptr, Tensor t_indices, "
      "Tensor t_perm, Tensor? weights, str reduce, SymInt num_segments, bool data_checked=False) -> (Tensor, Tensor)");
  // grad_values [N,D], grad_weights [nnz] (or [0] without weights).
  m.def(
      "segment_aggregate_backward(Tensor grad_out, Tensor values, Tensor arg, Tensor indptr, Tensor indices, "
      "Tensor t_indptr, Tensor t_indices, Tensor t_perm, Tensor? weights, str reduce, bool data_checked=False) "
      "-> (Tensor, Tensor)");
  m.def("built_with_cuda() -> bool", &built_with_cuda);
  m.def("cuda_version() -> int", &cuda_version);
  m.def("cpu_isa() -> str", &cpu_isa_name);
}

}  // namespace mingle

// A module with no methods: importing mingle_bench._C loads this library, whose static
// initialisers register the ops with the dispatcher (no pybind11 needed).
extern "C" {
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

// The same CPU kernels compiled for AVX2+FMA (ATen's Vectorized<float> is then 8 lanes wide and
// its exp is vectorised). Selected at run time by kernel_table() when the CPU supports it.
// The target pragma comes before every include so that all code in this unit, including the
// ATen vector headers (which live in the at::vec::AVX2 inline namespace), is built for AVX2.
#include "kernels.h"
#ifdef MINGLE_HAS_AVX2_TU
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#define CPU_CAPABILITY AVX2
#define CPU_CAPABILITY_AVX2
// GCC's target pragma does not set the ISA macros for the preprocessor; sleef.h (included by the
// ATen AVX2 vector headers) declares its 256-bit functions only when they are set.
#ifndef __AVX__
#define __AVX__ 1
#endif
#ifndef __AVX2__
#define __AVX2__ 1
#endif
#ifndef __FMA__
#define __FMA__ 1
#endif
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

namespace mingle {
namespace avx2 {
#include "kernels_impl.h"

template <typename T>
const KernelTable<T>& table() {
  static const KernelTable<T> t{&ssa_forward_range<T>, &ssa_backward_segments<T>, &ssa_backward_sources<T>,
                                &sa_forward_range<T>,  &sa_backward_sources<T>,   &sa_backward_weights<T>};
  return t;
}
template const KernelTable<float>& table<float>();
template const KernelTable<double>& table<double>();
}  // namespace avx2
}  // namespace mingle
#pragma GCC pop_options
#endif

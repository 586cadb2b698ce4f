// The CPU kernels of csrc/cpu/kernels_impl.h compiled for AVX2+FMA, namespace mingle::avx2
// (ATen's Vectorized<float> is then 8 lanes wide and its exp is vectorised). Selected at run
// time by kernel_table() (csrc/cpu/segment_ops_cpu.cpp) when the CPU supports it.
// The target pragma comes before kernels_impl.h and its includes so that all code in this unit,
// including the ATen vector headers (which live in the at::vec::AVX2 inline namespace), is
// built for AVX2.
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
#define MINGLE_KERNEL_NS avx2
#include "kernels_impl.h"
#pragma GCC pop_options
#endif

// Table of per-range CPU kernels, one instance per instruction set: mingle::base::table()
// (csrc/cpu/kernels_base.cpp) and mingle::avx2::table() (csrc/cpu/kernels_simd_avx2.cpp), both
// compiled from csrc/cpu/kernels_impl.h; kernel_table() (csrc/cpu/segment_ops_cpu.cpp) picks one.
#pragma once
#include <cstdint>
#include <vector>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define MINGLE_HAS_AVX2_TU 1
#endif

namespace mingle {

// Most heads H the softmax kernels take (they keep per-head values in arrays of this size).
constexpr int64_t kMaxHeads = 64;

template <typename T>
struct KernelTable {
  void (*ssa_forward)(const T*, const T*, const int64_t*, const int64_t*, const T*, T, int64_t, int64_t,
                      int64_t, int64_t, T*, T*, std::vector<T>&);
  void (*ssa_backward_segments)(const T*, const T*, const T*, const T*, const T*, const int64_t*,
                                const int64_t*, const T*, T, int64_t, int64_t, int64_t, int64_t, T*, T*,
                                std::vector<T>&);
  void (*ssa_backward_sources)(const T*, const T*, const T*, const T*, const T*, const int64_t*,
                               const int64_t*, const T*, T, int64_t, int64_t, int64_t, int64_t, T*, T*,
                               std::vector<T>&);
  void (*sa_forward)(const T*, const int64_t*, const int64_t*, const T*, int, int64_t, int64_t, int64_t,
                     T*, int64_t*);
  void (*sa_backward_sources)(const T*, const int64_t*, const int64_t*, const int64_t*, const int64_t*,
                              const int64_t*, const T*, int, int64_t, int64_t, int64_t, T*);
  void (*sa_backward_weights)(const T*, const T*, const int64_t*, const int64_t*, const int64_t*, int,
                              int64_t, int64_t, int64_t, T*);
};

namespace base {
template <typename T>
const KernelTable<T>& table();
}
#ifdef MINGLE_HAS_AVX2_TU
namespace avx2 {
template <typename T>
const KernelTable<T>& table();
}
#endif

// The table for the running CPU: AVX2+FMA when supported (and MINGLE_CPU_ISA != "base").
template <typename T>
const KernelTable<T>& kernel_table();

// "avx2" or "base": which table kernel_table() returns.
const char* cpu_isa();

}  // namespace mingle

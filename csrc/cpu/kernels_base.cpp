// CPU kernels compiled with the build's baseline flags (portable fallback).
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels.h"

namespace mingle {
namespace base {
#include "kernels_impl.h"

template <typename T>
const KernelTable<T>& table() {
  static const KernelTable<T> t{&ssa_forward_range<T>, &ssa_backward_segments<T>, &ssa_backward_sources<T>,
                                &sa_forward_range<T>,  &sa_backward_sources<T>,   &sa_backward_weights<T>};
  return t;
}
template const KernelTable<float>& table<float>();
template const KernelTable<double>& table<double>();
}  // namespace base
}  // namespace mingle

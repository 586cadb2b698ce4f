// The CPU kernels of csrc/cpu/kernels_impl.h compiled with the build's baseline flags: the
// portable fallback, namespace mingle::base.
#define MINGLE_KERNEL_NS base
#include "kernels_impl.h"

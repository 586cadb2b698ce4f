#!/usr/bin/env bash
# Compile check of the CUDA kernels (nothing CUDA runs here): builds mingle_bench._C with its
# CUDA sources for sm_80 and sm_90 against a CUDA build of torch in a private venv, then checks
# that the library loads, reports CUDA support and carries code for both architectures.
# Idempotent: the venv (.ci-venv-cuda) and build folders (build/ci-cuda-*) are reused.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${CI_CUDA_VENV:-.ci-venv-cuda}
case "$VENV" in /*) ;; *) VENV="$PWD/$VENV" ;; esac
TORCH_SPEC=${CI_CUDA_TORCH:-torch==2.14.1}
export FORCE_CUDA=1
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-"8.0;9.0"}
export MAX_JOBS=${MAX_JOBS:-2}

# torch derives CUDA_HOME from `which nvcc`; a wrapper script in /usr/local/bin would give /usr/local.
if [ -z "${CUDA_HOME:-}" ]; then
  for c in /usr/local/cuda "$(dirname "$(dirname "$(command -v nvcc 2>/dev/null || echo /x/x)")")"; do
    if [ -f "$c/include/cuda_runtime.h" ] && [ -x "$c/bin/nvcc" ]; then export CUDA_HOME=$c; break; fi
  done
fi
if [ -z "${CUDA_HOME:-}" ]; then
  echo "ci_cuda_compile: no CUDA toolkit found (set CUDA_HOME); cannot compile the CUDA kernels" >&2
  exit 1
fi
echo "ci_cuda_compile: CUDA_HOME=$CUDA_HOME, TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import torch, sys; sys.exit(0 if torch.version.cuda else 1)" 2>/dev/null; then
  "$VENV/bin/pip" install -q "$TORCH_SPEC" setuptools wheel ninja numpy
fi

rm -rf build/ci-cuda-lib
"$VENV/bin/python" setup.py build_ext --build-temp build/ci-cuda-temp --build-lib build/ci-cuda-lib

SO=$(ls build/ci-cuda-lib/mingle_bench/_C*.so)
# Load the built library by path (the source tree's mingle_bench/ may hold a CPU-only build).
(cd /tmp && "$VENV/bin/python" - "$OLDPWD/$SO") <<'PY'
import sys, torch
torch.ops.load_library(sys.argv[1])  # runs the TORCH_LIBRARY registrations
assert torch.ops.mingle.built_with_cuda(), "extension built without CUDA"
built = int(torch.ops.mingle.cuda_version())
assert built // 1000 == int(torch.version.cuda.split(".")[0]), f"compiled with CUDA {built}, torch has {torch.version.cuda}"
for name in ("segment_softmax_aggregate", "segment_softmax_aggregate_backward",
             "segment_aggregate", "segment_aggregate_backward"):
    op = getattr(torch.ops.mingle, name).default
    assert torch._C._dispatch_has_kernel_for_dispatch_key(op.name(), "CUDA"), f"{name}: no CUDA kernel"
    assert torch._C._dispatch_has_kernel_for_dispatch_key(op.name(), "CPU"), f"{name}: no CPU kernel"
print("ci_cuda_compile: torch", torch.__version__, "CUDA", torch.version.cuda, "(kernels:", built, ") - ops registered for CPU and CUDA:", sys.argv[1])
PY
CUOBJDUMP=$(command -v cuobjdump || echo "$CUDA_HOME/bin/cuobjdump")
if [ -x "$CUOBJDUMP" ]; then
  archs=$("$CUOBJDUMP" --list-elf "$SO" | grep -o 'sm_[0-9]*' | sort -u | tr '\n' ' ')
  echo "ci_cuda_compile: device code for: $archs"
  for want in sm_80 sm_90; do
    case " $archs " in *" $want "*) ;; *) echo "ci_cuda_compile: missing $want" >&2; exit 1 ;; esac
  done
else
  echo "ci_cuda_compile: no cuobjdump; device code requested via TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST"
fi
echo "ci_cuda_compile: OK"

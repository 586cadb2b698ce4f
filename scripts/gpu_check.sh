#!/usr/bin/env bash
# One prepared GPU check (run from the repository root on a machine with an NVIDIA GPU, nvcc and a
# CUDA build of torch): build the extension with its CUDA kernels, run the op tests (the CUDA
# variants no longer skip), then profile the op on the GPU at small, MIMIC and 10x MIMIC scale.
#   PYTHON=python3 OUT=results/kernel bash scripts/gpu_check.sh
# Results land in $OUT (default results/kernel) as kernel-cuda.{md,csv,json,png}, labelled with
# the GPU's name. Exits non-zero on the first failing step.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT_DIR=${OUT:-results/kernel}
mkdir -p "$OUT_DIR"

"$PY" - <<'PY'
import importlib, sys
import torch
assert torch.cuda.is_available(), "gpu_check: torch sees no CUDA device"
print("gpu_check: torch", torch.__version__, "CUDA", torch.version.cuda, "on", torch.cuda.get_device_name())
missing = [m for m in ("pytest", "tabulate", "matplotlib") if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"gpu_check: missing Python packages: {', '.join(missing)}")
PY

CAP=$("$PY" -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())")
export FORCE_CUDA=1
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-"8.0;9.0;$CAP"}
export MAX_JOBS=${MAX_JOBS:-8}
echo "== build (TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST)"
"$PY" setup.py -q build_ext --inplace 2>&1 | grep -v "Wunknown-pragmas" | tail -n 20
"$PY" -c "import torch, mingle_bench.ops as o; assert o.cuda_available(), o.extension_error(); print('built with CUDA')"

echo "== tests"
"$PY" -m pytest tests/test_ops.py tests/test_incidence.py -q -o addopts="" -rs 2>&1 | tee "$OUT_DIR/gpu-tests.log" | tail -n 15

echo "== profile"
"$PY" -m mingle_bench profile-kernel --device cuda --sizes small,mimic,mimic10x --repeats 10 \
    --out "$OUT_DIR" --name kernel-cuda

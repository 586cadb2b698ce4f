"""The CPU math mode (mingle_bench/mathmode.py): ``reproducible`` pins torch's AVX2 kernels and MKL's
AVX2 branch before torch is imported, so training runs the same kernels on every x86-64 CPU with AVX2."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mingle_bench import mathmode

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _has_avx2() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return " avx2" in f.read()
    except OSError:
        return False


def test_take_from_argv(monkeypatch):
    monkeypatch.delenv("MINGLE_MATH", raising=False)
    assert mathmode.take_from_argv(["run", "--task", "los"]) == ("reproducible", ["run", "--task", "los"])
    assert mathmode.take_from_argv(["run", "--math", "native", "--task", "los"]) == ("native", ["run", "--task", "los"])
    assert mathmode.take_from_argv(["--math=native", "run"]) == ("native", ["run"])
    monkeypatch.setenv("MINGLE_MATH", "native")
    assert mathmode.take_from_argv(["run"])[0] == "native"
    assert mathmode.take_from_argv(["run", "--math", "reproducible"])[0] == "reproducible"  # the flag wins
    with pytest.raises(mathmode.MathModeError, match=r"--math must be one of reproducible, native, got 'fast'"):
        mathmode.take_from_argv(["--math", "fast"])
    with pytest.raises(mathmode.MathModeError, match="needs a value"):
        mathmode.take_from_argv(["run", "--math"])
    monkeypatch.setenv("MINGLE_MATH", "x")
    with pytest.raises(mathmode.MathModeError, match=r"\$MINGLE_MATH must be one of"):
        mathmode.take_from_argv(["run"])


def test_bad_mode_is_one_line(capsys):
    from mingle_bench.cli import main

    assert main(["--math", "fast", "models"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == ["mingle-bench: error: --math must be one of reproducible, native, got 'fast'"]


def test_pinned_threads(monkeypatch, capsys):
    monkeypatch.delenv("MINGLE_THREADS", raising=False)
    assert mathmode.pinned_threads() == mathmode.PINNED_THREADS == 2
    monkeypatch.setenv("MINGLE_THREADS", "8")
    assert mathmode.pinned_threads() == 8
    for bad in ("0", "-1", "two"):
        monkeypatch.setenv("MINGLE_THREADS", bad)
        with pytest.raises(mathmode.MathModeError, match=rf"\$MINGLE_THREADS must be a positive integer, got '{bad}'"):
            mathmode.pinned_threads()
    from mingle_bench.cli import main

    assert main(["models"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "mingle-bench: error: $MINGLE_THREADS must be a positive integer, got 'two'"]


def test_encoding_threads_lifts_the_pin_for_the_block_only(monkeypatch):
    import torch

    before = torch.get_num_threads()
    monkeypatch.setattr(mathmode, "available_cpus", lambda: before + 1)
    monkeypatch.setitem(mathmode._applied, "mode", "native")
    with mathmode.encoding_threads() as n:  # native: torch's own choice stands
        assert n is None and torch.get_num_threads() == before
    monkeypatch.setitem(mathmode._applied, "mode", "reproducible")
    monkeypatch.setitem(mathmode._applied, "applied", True)
    with pytest.raises(RuntimeError, match="inside"):
        with mathmode.encoding_threads() as n:
            assert n == before + 1 == torch.get_num_threads()
            raise RuntimeError("inside")
    assert torch.get_num_threads() == before  # restored, also after an error
    monkeypatch.setattr(mathmode, "available_cpus", lambda: 1)
    with mathmode.encoding_threads() as n:  # never fewer than the pinned count
        assert n is None and torch.get_num_threads() == before


def test_too_late_in_a_process_that_imported_torch():
    import torch  # noqa: F401  (the test process has imported it)

    before = {k: os.environ.get(k) for k in mathmode.PINNED_ENV}
    st = mathmode.apply("reproducible")
    assert st["applied"] is False and "imported" in st["reason"]
    assert {k: os.environ.get(k) for k in mathmode.PINNED_ENV} == before  # nothing half-set
    s = mathmode.status()
    if s["torch_cpu_capability"] != "AVX2":
        assert s["mode"] == "native" and "imported" in s["reason"]


def _fresh(code: str, env_extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "MINGLE_MATH")}
    env.update(env_extra or {})
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow  # a subprocess end to end: the slow run (CI) keeps it
@pytest.mark.skipif(not _has_avx2(), reason="this CPU has no AVX2: the reproducible mode falls back to DEFAULT kernels")
def test_reproducible_mode_pins_the_kernels_in_a_fresh_process():
    code = ("import json; from mingle_bench.cli import main; import contextlib, io\n"
            "with contextlib.redirect_stdout(io.StringIO()): main(['models'])\n"
            "from mingle_bench import mathmode; print(json.dumps(mathmode.status()))")
    st = _fresh(code, {"OMP_NUM_THREADS": "1"})  # the pinned count wins over the machine's default
    assert st == {"requested": "reproducible", "mode": "reproducible", "torch_cpu_capability": "AVX2",
                  "mkl_cbwr": "AVX2,STRICT", "threads": mathmode.PINNED_THREADS}
    assert _fresh(code, {"MINGLE_THREADS": "1"})["threads"] == 1
    native = _fresh("import json; from mingle_bench import mathmode; mathmode.apply('native'); import torch\n"
                    "print(json.dumps(mathmode.status()))")
    assert native["requested"] == "native" and native["mkl_cbwr"] is None


def test_machine_info_records_the_mode():
    from mingle_bench.io import machine_description, machine_info

    info = machine_info("cpu")
    assert info["math"]["mode"] in mathmode.MODES and "torch_cpu_capability" in info["math"]
    assert f"math {info['math']['mode']}" in machine_description("cpu", info)

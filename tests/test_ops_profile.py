"""mingle-bench profile-kernel: runs end to end at the tiny size and writes labelled outputs."""
from __future__ import annotations

import json

import pytest

from mingle_bench import ops
from mingle_bench.cli import main
from mingle_bench.profiling.kernel import SIZES, make_case, profile, traffic_bytes, write_outputs


def test_make_case_is_deterministic_and_duplicate_free():
    a = make_case("tiny", "cpu", seed=3)
    b = make_case("tiny", "cpu", seed=3)
    assert a[0].indices.equal(b[0].indices) and a[1].equal(b[1])
    csr = a[0]
    pairs = csr.segment_ids * csr.num_sources + csr.indices
    assert pairs.unique().numel() == csr.nnz
    assert csr.num_segments == SIZES["tiny"][0]


def test_traffic_model_counts_the_backward():
    assert traffic_bytes(10, 5, 40, 2, 3, "fwdbwd") > traffic_bytes(10, 5, 40, 2, 3, "fwd") > 0


def test_profile_tiny_writes_outputs(tmp_path):
    arms = ["fused", "reference", "sparse"] if ops.fused_available() else ["reference", "sparse"]
    rows, header = profile(["tiny"], "cpu", arms=arms, passes=["fwd", "fwdbwd"], repeats=1)
    assert len(rows) == 2 * len(arms)
    ref = [r for r in rows if r.arm == "reference"]
    assert all(r.speedup_vs_reference == 1.0 for r in ref)
    assert all(r.median_ms > 0 and r.gbps > 0 for r in rows)
    assert header["copy_gbps"] > 0 and header["torch"]
    paths = write_outputs(rows, header, tmp_path, "kernel-test")
    assert {p.suffix for p in paths} == {".md", ".csv", ".json", ".png"}
    md = (tmp_path / "kernel-test.md").read_text()
    assert "machine: CPU" in md and "torch threads" in md and "copy bandwidth" in md
    data = json.loads((tmp_path / "kernel-test.json").read_text())
    assert len(data["rows"]) == len(rows)


@pytest.mark.parametrize("argv,msg", [
    (["--sizes", "huge"], "--sizes: unknown size 'huge'"),
    (["--arms", "fused,magic"], "--arms: unknown arm 'magic'"),
    (["--repeats", "0"], "--repeats must be >= 1"),
    (["--threads", "0"], "--threads must be >= 1"),
])
def test_cli_errors_are_named(argv, msg, capsys, tmp_path):
    rc = main(["profile-kernel", "--out", str(tmp_path), *argv])
    assert rc == 1
    assert msg in capsys.readouterr().err

"""Shared fixtures: the reference data folder beside the checkout, read in place."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MINGLE_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def mimic3_demo_dir() -> Path:
    d = SHARED_DATA / "mimic3-demo"
    if not (d / "ADMISSIONS.csv").exists():
        pytest.skip(f"MIMIC-III demo not found at {d} (set MINGLE_SHARED_DATA to the folder holding mimic3-demo/)")
    return d


@pytest.fixture(scope="session")
def ccs_dir() -> Path:
    d = SHARED_DATA / "ccs"
    if not (d / "ccs_single_dx_tool_2015.csv").exists():
        pytest.skip(f"CCS tools not found at {d} (set MINGLE_SHARED_DATA to the folder holding ccs/)")
    return d


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache_session(tmp_path_factory):
    """Keep caches out of the user's home from the start of the session, so module- and
    session-scoped fixtures (set up before any function-scoped one) are isolated too."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINGLE_CACHE", str(tmp_path_factory.getbasetemp() / "mingle-cache"))
        yield


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Keep every test's caches out of the user's home (restored after tests that change it)."""
    monkeypatch.setenv("MINGLE_CACHE", str(tmp_path_factory.getbasetemp() / "mingle-cache"))


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny tensors: one intra-op thread is much faster than contended thread pools.

    Modules opt in with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def fakes(monkeypatch):
    """Every pipeline stage replaced by a deterministic fake (tests/pipeline_fakes.py)."""
    from pipeline_fakes import install_fakes

    install_fakes(monkeypatch.setattr)


@pytest.fixture
def toy_pipeline(monkeypatch):
    """The real model registry and trainer on a toy TaskData, one torch thread."""
    from pipeline_fakes import install_toy_pipeline

    install_toy_pipeline(monkeypatch.setattr)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory) -> str:
    """A real PostgreSQL 16 server for the session, started from the ``pgserver`` wheel (no system
    install), as a SQLAlchemy URL for psycopg2 (``postgresql+psycopg2://...``). Skips with the
    reason when the wheel or the driver is missing or the server cannot start."""
    try:
        import pgserver
        import psycopg2  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"PostgreSQL test server unavailable: {exc} (pip install -e '.[distributed]')")
    try:
        server = pgserver.get_server(tmp_path_factory.mktemp("pgdata"), cleanup_mode="stop")
    except Exception as exc:  # noqa: BLE001 - any start failure means: no server here
        pytest.skip(f"PostgreSQL test server (pgserver) could not start: {type(exc).__name__}: {exc}")
    yield server.get_uri().replace("postgresql://", "postgresql+psycopg2://", 1)
    server.cleanup()


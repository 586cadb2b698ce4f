"""Joining a Ray cluster, and the resources every mingle-bench Ray task asks for.

:func:`connect` joins ``address`` (``--ray-address``), else ``$RAY_ADDRESS``, else starts a
local Ray on this machine (``$MINGLE_RAY_NUM_CPUS`` CPUs, default ``os.cpu_count()``); a Ray
already initialised in this process is reused. It then runs one tiny task on every node and
refuses the cluster when a node's ``mingle_bench`` (the pipeline version, part of every cell's
input hash), torch or Python version differs from the driver's: every node must have the same
checkout installed (on one machine the workers use the driver's virtual environment).

Ray is imported inside the functions; without it, :func:`import_ray` raises a one-line
:class:`ClusterError` saying how to install it.
"""
from __future__ import annotations

import logging
import os
import sys

#: threads (= Ray CPUs) per model x seed cell or tuning worker; default: this process's torch threads
ENV_CPUS_PER_CELL = "MINGLE_RAY_CPUS_PER_CELL"
#: CPUs of a local Ray started by :func:`connect` (default: os.cpu_count())
ENV_LOCAL_CPUS = "MINGLE_RAY_NUM_CPUS"
INSTALL_HINT = "pip install -e '.[distributed]'"

#: node ids whose workers passed the version check (per driver process)
_checked_nodes: set[str] = set()


class ClusterError(ValueError):
    """A user-facing Ray problem (not installed, unreachable, mismatched nodes): one line."""


def import_ray():
    """The ``ray`` module, or a :class:`ClusterError` naming the extra that installs it."""
    try:
        import ray
    except ImportError as exc:
        raise ClusterError(f"--executor ray needs Ray, which is not installed here ({exc}); "
                           f"install it with: {INSTALL_HINT}") from None
    return ray


def _env_int(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    try:
        n = int(value)
    except ValueError:
        raise ClusterError(f"${name} must be a positive integer, got {value!r}") from None
    if n < 1:
        raise ClusterError(f"${name} must be a positive integer, got {value!r}")
    return n


def connect(address: str | None = None, num_cpus: int | None = None):
    """Join the Ray cluster at ``address`` (else ``$RAY_ADDRESS``, else a local Ray) and check its nodes.

    Returns the ``ray`` module, initialised. A local Ray gets ``num_cpus`` (else
    ``$MINGLE_RAY_NUM_CPUS``, else ``os.cpu_count()``) CPUs, no dashboard, no usage-stats
    prompt and quiet logs. Raises :class:`ClusterError` when Ray is missing, the address cannot
    be reached, or a node runs another mingle_bench/torch/Python than this driver.
    """
    ray = import_ray()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage-stats prompt or upload
    target = address or os.environ.get("RAY_ADDRESS") or None
    if not ray.is_initialized():
        common = dict(include_dashboard=False, logging_level=logging.ERROR, ignore_reinit_error=True,
                      log_to_driver=True)
        if target:
            _check_reachable(target)  # ray.init retries an unreachable GCS for ever
            try:
                ray.init(address=target, **common)
            except Exception as exc:  # noqa: BLE001 - ConnectionError, ValueError, RuntimeError by Ray version
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise ClusterError(
                    f"--ray-address {target}: cannot join a Ray cluster there ({type(exc).__name__}: {first}); "
                    "start one with `ray start --head` on the head node and pass HEAD:6379, or unset RAY_ADDRESS "
                    "to start a local Ray") from None
        else:
            n = num_cpus or _env_int(ENV_LOCAL_CPUS) or os.cpu_count() or 1
            ray.init(num_cpus=n, **common)
    check_nodes(ray)
    return ray


def _check_reachable(address: str, timeout_s: float = 10.0) -> None:
    """A TCP connection to ``HOST:PORT`` (or ``ray://HOST:PORT``) within ``timeout_s``, else a ClusterError."""
    import socket

    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise ClusterError(f"--ray-address {address}: expected HOST:PORT (e.g. head-node:6379) or ray://HOST:10001")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ClusterError(f"--ray-address {address}: cannot reach a Ray cluster there ({exc.strerror or exc}); start "
                           "one with `ray start --head` on the head node, or unset RAY_ADDRESS to start a local "
                           "Ray") from None


def _versions() -> dict:
    import torch

    import mingle_bench

    return {"mingle_bench": mingle_bench.__version__, "torch": torch.__version__,
            "python": "%d.%d" % sys.version_info[:2]}


def _node_versions() -> dict:  # runs on a worker
    import socket

    return {**_versions(), "host": socket.gethostname()}


def check_nodes(ray) -> None:
    """Run one task on every live node not checked yet; refuse a node whose versions differ."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n for n in ray.nodes() if n.get("Alive") and n["NodeID"] not in _checked_nodes]
    if not nodes:
        return
    probe = ray.remote(_node_versions)
    refs = {n["NodeID"]: probe.options(num_cpus=0, max_retries=0, scheduling_strategy=NodeAffinitySchedulingStrategy(
        n["NodeID"], soft=False)).remote() for n in nodes}
    mine = _versions()
    addr = {n["NodeID"]: n.get("NodeManagerAddress", n["NodeID"][:12]) for n in nodes}
    for node, ref in refs.items():
        try:
            theirs = ray.get(ref, timeout=300)
        except Exception as exc:  # noqa: BLE001 - an import error on the node, a dead node
            msg = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise ClusterError(f"Ray node {addr[node]} cannot run mingle_bench ({msg}); every node must have the "
                               "same mingle-bench checkout installed (pip install -e '.[distributed]') in the "
                               "Python that `ray start` runs") from None
        diff = {k: (mine[k], theirs.get(k)) for k in mine if theirs.get(k) != mine[k]}
        if diff:
            desc = ", ".join(f"{k} {a} here, {b} there" for k, (a, b) in diff.items())
            raise ClusterError(f"Ray node {addr[node]} ({theirs.get('host')}) runs another setup than this driver "
                               f"({desc}); install the same checkout and torch on every node, since cells trained "
                               "there would carry this driver's input hashes")
        _checked_nodes.add(node)


def resources(ray) -> dict:
    """``{"nodes": live nodes, "cpus": total, "gpus": total, "max_node_cpus": largest node's CPUs}``."""
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    cpus = [float(n.get("Resources", {}).get("CPU", 0)) for n in nodes]
    return {"nodes": len(nodes), "cpus": sum(cpus), "gpus": sum(float(n.get("Resources", {}).get("GPU", 0)) for n in nodes),
            "max_node_cpus": int(max(cpus, default=0))}


def cell_threads(ray=None) -> tuple[int, str | None]:
    """Threads (and Ray CPUs) for one cell or tuning worker, and a warning or ``None``.

    ``$MINGLE_RAY_CPUS_PER_CELL`` if set; else this process's ``torch.get_num_threads()``, the
    thread count the local executor trains with, so that a Ray cell's floats equal a local
    run's on the same CPU. A default larger than the largest node is cut to that node's CPUs
    (the warning says so: such cells may then differ from a local run in the last bits).
    """
    n = _env_int(ENV_CPUS_PER_CELL)
    if n is not None:
        if ray is not None:
            biggest = resources(ray)["max_node_cpus"]
            if biggest and n > biggest:
                raise ClusterError(f"${ENV_CPUS_PER_CELL}={n}, but the largest Ray node has {biggest} CPUs")
        return n, None
    import torch

    n = max(1, int(torch.get_num_threads()))
    if ray is not None:
        biggest = resources(ray)["max_node_cpus"]
        if biggest and n > biggest:
            return biggest, (f"this driver trains with {n} torch threads but the largest Ray node has {biggest} CPUs: "
                             f"cells run with {biggest} threads (metrics may differ from a local run in the last "
                             f"digits; set ${ENV_CPUS_PER_CELL} to choose)")
    return n, None


__all__ = ["ClusterError", "connect", "check_nodes", "cell_threads", "resources", "import_ray",
           "ENV_CPUS_PER_CELL", "ENV_LOCAL_CPUS", "INSTALL_HINT"]

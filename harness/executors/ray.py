"""``ray``: a sweep's cells as Ray tasks, on a Ray instance of this machine or a cluster (optional extra).

``harness sweep CONFIG --executor ray [--executor-opt address=auto] [--executor-opt shards=N]``.

Every cell runs through :func:`harness.sweeps.sweep.execute_job`, the function the
local executor calls, inside a Ray task. What the sweep's cells share is built
once, before them: an RL checkpoint several rows quantize, or the quantized
model that the shards of one evaluation read, is a Ray task of its own
(:func:`harness.sweeps.sweep.build_stage`) whose result the cells' tasks take as an
argument, so Ray starts them only once it is in the artifact cache. Cells that
share nothing run at the same time, each asking Ray for what its plugins
declare (a GPU for a strategy or trainer with ``needs_gpu``, one CPU
otherwise).

Large artifacts travel through the cache directory, which every node must be
able to read (a shared filesystem); small results come back through Ray. A
task runs its cell against a store of its own under the cache directory
(``ray-stores/``), so a retried task resumes from the samples already there,
and returns the run as plain data (:func:`harness.runs.transfer.export_run`);
the driver alone writes the sweep's store (:func:`~harness.runs.transfer.import_run`),
whole runs only, so a Ctrl-C never leaves half a run in it.

``ray`` is an optional extra, imported only here and only when this executor
runs: ``harness --help`` and the local executor never load it.
"""

from __future__ import annotations

import importlib.util
import socket
from dataclasses import dataclass, field
from typing import Any

from harness import hookimpl
from harness.base.errors import UserError
from harness.compat.ray import auto_address
from harness.core.executor import Executor, Run
from harness.executors.ray_connect import INSTALL_HINT, connect, require_ray
from harness.executors.ray_driver import RayRun

#: seconds to wait for a TCP answer from a cluster's address before giving up on it
PROBE_SECONDS = 5.0


def check_address(address: str, timeout: float = PROBE_SECONDS) -> None:
    """Refuse, within ``timeout`` seconds, an address where nothing listens.

    ``ray.init`` may wait a long time for a cluster that is not there; a plain
    TCP connect to the head node's GCS port answers in seconds. ``auto`` is the
    cluster that ``ray start`` last started on this machine (or ``RAY_ADDRESS``).
    """
    if address == "auto":
        address = auto_address() or ""
        if not address:
            return
    if address.startswith("local"):
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise UserError(f"address={address!r} is not HOST:PORT (the head node's GCS, e.g. 10.0.0.1:6379), "
                        "ray://HOST:PORT or auto")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        reason = (f"no answer within {timeout:g} s" if isinstance(exc, TimeoutError)
                  else (exc.strerror or type(exc).__name__).lower())
        raise UserError(f"no Ray cluster answers at {address!r} ({reason}); start one with "
                        "`ray start --head` and pass the address it prints (--executor-opt address=HOST:PORT), "
                        "or address=auto on its head node"
                        ) from None


def device_for(resources: dict[str, float]) -> str:
    """What ``device = auto`` resolves to on a cluster with these resources (``ray.cluster_resources()``)."""
    return "cuda" if float(resources.get("GPU", 0)) > 0 else "cpu"


@dataclass
class RayOptions:
    address: str | None = field(default=None, metadata={
        "help": "a running cluster (HOST:PORT as `ray start --head` prints it, or auto); "
                "default: start a Ray instance with this machine's CPUs and GPUs"})
    shards: int = field(default=1, metadata={
        "help": "split each cell's evaluation over N tasks (samples merged by problem id)"})

    def __post_init__(self) -> None:
        if self.shards < 1:
            raise ValueError(f"shards must be >= 1, got {self.shards}")


class RayExecutorPlugin(Executor):
    name = "ray"
    description = "Ray tasks on a local instance or a cluster; shared stages built once (pip install -e '.[ray]')"
    options_class = RayOptions
    runs_here = False  # cells are checked against the cluster's devices, where they run

    def unavailable_reason(self) -> str | None:
        if importlib.util.find_spec("ray") is None:
            return f"Ray is not installed: {INSTALL_HINT}"
        return None

    def check(self, options: RayOptions) -> None:
        require_ray()
        if options.address:
            check_address(options.address)

    def auto_device(self, options: RayOptions) -> str | None:
        """``cuda`` when the cluster has a GPU (a cell on ``auto`` then asks Ray for one: ``task_resources``),
        else ``cpu``; a Ray instance this sweep starts has this machine's devices."""
        ray = require_ray()
        if ray.is_initialized():
            return device_for(ray.cluster_resources())
        if not options.address:
            from harness.base.model import resolve_device

            return resolve_device("auto")
        connect(ray, options.address)
        try:
            return device_for(ray.cluster_resources())
        finally:
            ray.shutdown()

    def start(self, options: RayOptions, console: Any = None) -> Run:
        return RayRun(console=console, ray_address=options.address, shards=options.shards)


@hookimpl
def register_executors(register):
    register(RayExecutorPlugin())

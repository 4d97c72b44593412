"""The Ray executor's driver: plans the cells' tasks, chains the stages they share, imports the results.

What several cells share (an RL checkpoint, the quantized model the shards of
one cell read) is a task of its own whose result the cells' tasks take as an
argument, so it is built once; the driver alone writes the sweep's store.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.base.errors import UserError
from harness.core.config import RunConfig
from harness.core.executor import DoneCallback, Job, Run
from harness.core.graph import run_graph
from harness.core.plan import Plan
from harness.core.plugin_manager import get_registry
from harness.executors.ray_connect import connect, require_ray
from harness.executors.ray_tasks import run_task, stage_task
from harness.runs.cache import ArtifactCache, default_root
from harness.runs.evaluation import compute_metrics
from harness.runs.planning import plan
from harness.runs.results import run_result
from harness.runs.store import Store
from harness.runs.transfer import import_run

#: how many times Ray re-runs a task whose worker process died (a user error is never retried)
MAX_RETRIES = 2
#: seconds a cancelled task gets to mark its run interrupted before the driver leaves
CANCEL_GRACE_SECONDS = 10.0


@dataclass
class CellPlan:
    """A job as the driver sees it: its plan (problems, plugins) and the stages it shares."""

    job: Job
    plan: Any  # harness.runs.pipeline.Plan, planned without this machine's device checks
    graph: Any  # harness.core.graph.RunGraph: which artifact stages the cell builds, in order, and their keys

    @property
    def name(self) -> str:
        return f"cell {self.job.index + 1} ({self.job.label})"


@dataclass
class Unit:
    """One run task: a cell, or one shard of its evaluation."""

    cell: CellPlan
    shard: tuple[int, int] | None
    worker_store: str
    deps: list = field(default_factory=list)  # ObjectRefs of the stage tasks it waits for


def gpu_reason(plan: Plan, stage: str) -> str | None:
    """Why a task of ``plan`` cannot run without a GPU: the run graph's answer for the stages it builds
    (``run``: the whole cell), or None."""
    return run_graph(plan).gpu_reason(None if stage == "run" else stage)


def task_resources(plan: Plan, stage: str, cluster_gpus: float) -> dict[str, float]:
    """What a task asks Ray for: a GPU when the stage needs one, or when its device is ``auto`` and the
    cluster has GPUs (as ``auto`` picks CUDA on a machine that has it); one CPU otherwise."""
    wants_gpu = gpu_reason(plan, stage) is not None or (plan.config.device == "auto" and cluster_gpus > 0)
    return {"num_cpus": 1, "num_gpus": 1} if wants_gpu else {"num_cpus": 1}


class RayRun(Run):
    """Runs the cells as Ray tasks, on this machine's own Ray instance or on a cluster.

    ``ray_address``: a running cluster (``HOST:PORT`` or ``auto``); without it a
    Ray instance with this machine's CPUs (and GPUs) starts for the sweep. A
    Ray already initialised in this process (an embedding program, the tests)
    is used as it is. ``shards`` splits each cell's evaluation over that many
    tasks; the driver merges their samples by problem id.
    """

    name = "ray"
    pauses_display = False  # workers' output stays in Ray's logs; the driver's bar keeps the terminal

    def __init__(self, console=None, ray_address: str | None = None, shards: int = 1):
        # options are checked by the executor plugin (harness.executors.ray) before anything is planned
        self.console = console
        self.address = ray_address
        self.shards = shards
        self._stores: dict[str, Any] = {}

    # -- the sweep ---------------------------------------------------------------------
    def run(self, jobs: list[Job], on_start: Callable[[Job], None], on_done: DoneCallback) -> None:
        if not jobs:
            return  # everything is stored: no cluster needed
        cells = [self._plan(job) for job in jobs]  # refuses bad shard counts before anything starts
        ray = require_ray()
        # Ray prints its cluster's messages (a worker that died, and so on) to stdout; stdout is the
        # sweep's report (``--json``), so they go to stderr while the cells run
        with contextlib.redirect_stdout(sys.stderr):
            started_here = self._connect(ray)
            try:
                gpus = float(ray.cluster_resources().get("GPU", 0))
                self._check_gpus(cells, gpus)
                self._run(ray, cells, gpus, on_start, on_done)
            finally:
                for store in self._stores.values():
                    store.close()
                self._stores.clear()
                if started_here:
                    ray.shutdown()

    def _plan(self, job: Job) -> CellPlan:
        the_plan = plan(RunConfig.from_dict(job.config), get_registry(), check_device=False)
        if self.shards > 1:
            for name, problems in the_plan.problems.items():
                if self.shards > len(problems):
                    raise UserError(f"shards={self.shards} is more than the {len(problems)} problems of "
                                    f"benchmark {name!r} in cell {job.index + 1} ({job.label}); use at most "
                                    f"{len(problems)} shards")
        return CellPlan(job, the_plan, run_graph(the_plan))

    def _connect(self, ray) -> bool:
        """Connect to the cluster (or start a local instance); True when this call did (and must shut down)."""
        if ray.is_initialized():
            return False
        connect(ray, self.address)
        return True

    def _check_gpus(self, cells: list[CellPlan], gpus: float) -> None:
        """A cell that needs a GPU on a cluster without one is refused before anything starts."""
        if gpus > 0:
            return
        needy = [(c, gpu_reason(c.plan, "run")) for c in cells]
        needy = [(c, why) for c, why in needy if why]
        if needy:
            listed = "; ".join(f"{c.name}: {why}" for c, why in needy)
            raise UserError(f"the Ray cluster has no GPU, but {listed}; add GPU nodes, or drop those cells "
                            "(run them with --executor local on a machine with a GPU)")

    def _run(self, ray, cells: list[CellPlan], gpus: float, on_start, on_done: DoneCallback) -> None:
        stage_remote = ray.remote(max_retries=MAX_RETRIES)(stage_task)
        run_remote = ray.remote(max_retries=MAX_RETRIES)(run_task)
        cache_dir = _cache_root(cells[0].job.cache_dir)
        cache = ArtifactCache(Path(cache_dir))
        units = [Unit(c, shard, _worker_store(cache_dir, c, shard)) for c in cells for shard in self._shards()]
        self._chain_shared_stages(units, cache, cache_dir, stage_remote, gpus)

        pending: dict[Any, Unit] = {}
        parts: dict[int, list[tuple[Unit, dict | None, str | None]]] = {}
        for c in cells:
            on_start(c.job)
        for unit in units:
            job = _unit_job(unit, cache_dir)
            ref = run_remote.options(**task_resources(unit.cell.plan, "run", gpus)).remote(
                job, _unit_name(unit), *unit.deps)
            pending[ref] = unit
        stage_refs = self._stage_refs
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
                for ref in ready:
                    unit = pending.pop(ref)
                    try:
                        exported, error = ray.get(ref)
                    except ray.exceptions.RayError as exc:
                        exported, error = None, _ray_error_text(exc)
                    self._settle(unit, exported, error, parts, on_done)
        except KeyboardInterrupt:
            outstanding = list(pending) + stage_refs
            for ref in outstanding:
                try:
                    ray.cancel(ref)
                except Exception:  # noqa: BLE001 - finished meanwhile; cancelling is best effort
                    pass
            ray.wait(outstanding, num_returns=len(outstanding), timeout=CANCEL_GRACE_SECONDS)
            raise

    def _shards(self) -> list[tuple[int, int] | None]:
        return [None] if self.shards == 1 else [(i, self.shards) for i in range(self.shards)]

    def _chain_shared_stages(self, units: list[Unit], cache, cache_dir: str, stage_remote, gpus: float) -> None:
        """One task per artifact stage and key that more than one unit needs and the cache lacks, in
        the graph's order (an RL checkpoint before the quantized models made from it); each waits for
        the shared stage before it, and each unit waits for the last shared stage it needs. A stage
        only one unit needs is built inside that unit's own task."""
        self._stage_refs: list = []
        refs: dict[tuple[str, str], Any] = {}
        names = list(dict.fromkeys(s.name for u in units for s in u.cell.graph.artifacts))
        for name in names:
            users: dict[str, list[Unit]] = {}
            for unit in units:
                key = unit.cell.graph.key(name)
                if key is not None and cache.get(name, key) is None:
                    users.setdefault(key, []).append(unit)
            for key, needing in users.items():
                if len(needing) < 2:
                    continue
                first = needing[0].cell
                previous = first.graph.before(name)
                deps = [refs[previous.name, previous.key]] if previous and (previous.name, previous.key) in refs else []
                ref = stage_remote.options(**task_resources(first.plan, name, gpus)).remote(
                    first.job.config, cache_dir, name, *deps)
                refs[name, key] = ref
                self._stage_refs.append(ref)
                for unit in needing:  # a shared quantized model replaces the checkpoint it waits for
                    unit.deps = [ref]

    # -- results -----------------------------------------------------------------------
    def _settle(self, unit: Unit, exported: dict | None, error: str | None, parts: dict, on_done) -> None:
        """Store a finished cell (all its shards) in the driver's store, then report it."""
        job = unit.cell.job
        got = parts.setdefault(job.index, [])
        got.append((unit, exported, error))
        if len(got) < self.shards:
            return  # the cell is done when all its shards are
        got.sort(key=lambda p: p[0].shard or (0, 1))
        errors = [e if u.shard is None else f"shard {u.shard[0] + 1}/{self.shards}: {e}"
                  for u, _, e in got if e is not None]
        if errors:
            on_done(job, None, "; ".join(errors))
            return
        try:
            result = self._import(unit.cell, [u for u, _, _ in got], [x for _, x, _ in got])
        except UserError as exc:
            on_done(job, None, str(exc))
            return
        on_done(job, result, None)

    def _import(self, cell: CellPlan, units: list[Unit], exports: list[dict]) -> dict:
        """Import the run (shards merged) into the driver's store, then drop the workers' stores."""
        store = self._store(cell.job.store_path)
        data = exports[0] if len(exports) == 1 else merge_shards(exports, cell.plan)
        run_id = import_run(store, data)
        for unit in units:
            _remove_store(unit.worker_store)

        return run_result(store, run_id)

    def _store(self, path: str | None):
        key = str(path)
        if key not in self._stores:
            self._stores[key] = Store(path)
        return self._stores[key]


def merge_shards(exports: list[dict], plan) -> dict:
    """One run from its shards' exports (in shard order): every shard's samples, metrics computed
    over all of them by :func:`harness.runs.evaluation.compute_metrics`, as one worker would.

    The run record, the profile and the training curve are shard 0's: the
    profile's evaluation figures (wall time, problems per second) therefore
    describe shard 0's share of the problems, not the whole evaluation.
    """

    samples: dict[tuple, dict] = {}
    for export in exports:
        for row in export["samples"]:
            samples.setdefault((row["benchmark"], row["problem_id"], row["sample"]), row)
    rows = [samples[k] for k in sorted(samples)]
    metrics = []
    seed = plan.config.seed
    for name, problems in plan.problems.items():
        bench_rows = [r for r in rows if r["benchmark"] == name]
        missing = {p.id for p in problems} - {r["problem_id"] for r in bench_rows}
        if missing:
            raise UserError(f"the shards of run {exports[0]['run']['id']} left {len(missing)} problems of "
                            f"{name!r} unevaluated (e.g. {sorted(missing)[0]!r})")
        computed = compute_metrics(bench_rows, seed=seed, problems=problems, n_requested=plan.config.sampling.n)
        for metric, (value, lo, hi) in computed.items():
            metrics.append((name, metric, value, lo, hi))
    first = exports[0]
    run = dict(first["run"])
    run["finished"] = max(e["run"]["finished"] or 0 for e in exports) or run["finished"]
    run["artifacts"] = {**run["artifacts"], "shards": len(exports)}
    return {**first, "run": run, "samples": rows, "metrics": metrics}


def _cache_root(cache_dir: str | None) -> str:
    """The cache directory as an absolute path, resolved on the driver: every worker must use the
    same one (a shared filesystem on a real cluster), not whatever its own environment says."""

    return str(Path(cache_dir).expanduser().resolve() if cache_dir else default_root().expanduser().resolve())


def _unit_name(unit: Unit) -> str:
    run_id = unit.cell.plan.config.run_id
    return run_id if unit.shard is None else f"{run_id}.shard-{unit.shard[0]}-of-{unit.shard[1]}"


def _worker_store(cache_dir: str, cell: CellPlan, shard: tuple[int, int] | None) -> str:
    """Where a task keeps its run until the driver imports it: under the cache directory (so a retry on
    another node finds it), one file per run and shard."""
    unit = Unit(cell, shard, "")
    return str(Path(cache_dir) / "ray-stores" / f"{_unit_name(unit)}.db")


def _unit_job(unit: Unit, cache_dir: str) -> Job:
    job = unit.cell.job
    return Job(job.index, job.label, job.config, unit.worker_store, cache_dir, shard=unit.shard)


def _remove_store(path: str) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(path + suffix).unlink(missing_ok=True)


def _ray_error_text(exc: Exception) -> str:
    """A task that Ray gave up on (its worker died more than MAX_RETRIES times, or it was cancelled),
    or that raised: the exception inside, not Ray's wrapper (whose first line names only the task)."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        exc = cause
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else 'the task failed'}"

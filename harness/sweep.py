"""Sweeps: many runs from one TOML file, each cell one call of :func:`run_cell`.

A sweep file names its cells three ways, combined: ``[defaults]`` (fields of
every cell), ``[grid]`` (lists whose cartesian product gives cells) and
``[[cell]]`` (explicit rows, for tables such as the seed study's Table 1 that
are not a full grid). Per-plugin options live in ``[trainer_opts.NAME]`` and
``[strategy_opts.NAME]`` and reach only the cells that use that plugin, so a
``grpo`` option never lands on a cell without a trainer.

A ``[faithful]`` table holds overrides that turn each cell into the reference
code's exact settings (``--faithful``). Every cell is planned in both forms, so
a run knows the id of its *twin* (the same row in the other form) and the
leaderboard can pair a corrected row with its faithful one. That pairing is
recorded beside the run (``artifacts["sweep"]``), not in the run's hash: two
sweeps that name the same configuration share one run.

Every cell is planned (checked) before anything runs; a cell that fails its
plan or its run is listed with its error at the end while the others go on.
Cells already complete in the store are skipped, so re-running a sweep runs
only what is missing. :func:`run_cell` takes and returns plain data, so an
executor other than :class:`LocalExecutor` (a Ray cluster) can ship it.
"""

from __future__ import annotations

import dataclasses
import importlib
import itertools
import sys
import time
import tomllib
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from harness.config import PRESETS, RunConfig, Sampling
from harness.errors import UserError

#: sweep file tables
TOP_KEYS = ("name", "description", "defaults", "grid", "cell", "trainer_opts", "strategy_opts", "faithful")
#: decoding settings a cell may set one by one (over its preset's)
SAMPLING_KEYS = ("temperature", "top_p", "n", "max_new_tokens")
#: cell keys that are not RunConfig fields
CELL_EXTRA = ("row", "seeds", "sampling", *SAMPLING_KEYS)
CONFIG_KEYS = tuple(f.name for f in dataclasses.fields(RunConfig) if f.name != "sampling")
CELL_KEYS = frozenset(CONFIG_KEYS + CELL_EXTRA)

#: cell keys --set refuses, and why
NOT_SETTABLE = {
    "seed": "use --seeds N", "seeds": "use --seeds N", "row": "a row's name belongs to the sweep file",
    "trainer_opts": "set plugin options in the sweep file's [trainer_opts.NAME] table",
    "strategy_opts": "set plugin options in the sweep file's [strategy_opts.NAME] table",
}

#: executor name -> "module:Class" (imported on use: naming "ray" here never imports Ray)
EXECUTORS: dict[str, str] = {
    "local": "harness.sweep:LocalExecutor",
    "ray": "harness.ray_executor:RayExecutor",
}


# -- the sweep file ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepSpec:
    """A parsed sweep file; cells come from :func:`expand`."""

    name: str
    description: str = ""
    defaults: dict = field(default_factory=dict)
    grid: dict[str, list] = field(default_factory=dict)
    cells: list[dict] = field(default_factory=list)
    trainer_opts: dict[str, dict] = field(default_factory=dict)
    strategy_opts: dict[str, dict] = field(default_factory=dict)
    faithful: dict | None = None
    source: str = ""


def shipped_sweeps() -> dict[str, Path]:
    """Sweep files shipped with the harness (``harness/sweeps/*.toml``), by name."""
    folder = resources.files("harness") / "sweeps"
    if not folder.is_dir():
        return {}
    return {Path(p.name).stem: Path(str(p)) for p in folder.iterdir() if p.name.endswith(".toml")}


def find_sweep(name_or_path: str) -> SweepSpec:
    """A shipped sweep by name, or a sweep file by path."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return load_sweep(path)
    shipped = shipped_sweeps()
    if name_or_path in shipped:
        return load_sweep(shipped[name_or_path])
    from harness.errors import UnknownNameError

    if name_or_path.endswith(".toml") or "/" in name_or_path:
        raise UserError(f"sweep file {name_or_path!r} does not exist")
    raise UnknownNameError("sweep", name_or_path, shipped)


def load_sweep(path: Path | str) -> SweepSpec:
    """Parse and check a sweep file; errors name the file and the bad key."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: not valid TOML ({exc})") from None
    except OSError as exc:
        raise UserError(f"cannot read sweep file {path}: {exc}") from None
    unknown = sorted(set(data) - set(TOP_KEYS))
    if unknown:
        raise UserError(f"{path}: unknown table or key {', '.join(map(repr, unknown))}; allowed: {', '.join(TOP_KEYS)}")
    defaults = _table(data, "defaults", path)
    grid = _table(data, "grid", path)
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise UserError(f"{path}: [grid] {key} must be a non-empty list, got {values!r}")
    cells = data.get("cell", [])
    if not isinstance(cells, list) or not all(isinstance(c, dict) for c in cells):
        raise UserError(f"{path}: cells are written as [[cell]] tables")
    for where, table in [("defaults", defaults), ("grid", grid), *((f"cell {i + 1}", c) for i, c in enumerate(cells))]:
        _check_cell_keys(table, f"{path} [{where}]")
    faithful = data.get("faithful")
    if faithful is not None:
        _check_overrides(faithful, f"{path} [faithful]")
    if not grid and not cells:
        raise UserError(f"{path}: no cells: add a [grid] or [[cell]] tables")
    return SweepSpec(
        name=str(data.get("name") or path.stem),
        description=str(data.get("description", "")),
        defaults=defaults,
        grid=grid,
        cells=[dict(c) for c in cells],
        trainer_opts=_named_opts(data, "trainer_opts", path),
        strategy_opts=_named_opts(data, "strategy_opts", path),
        faithful=faithful,
        source=str(path),
    )


def _table(data: dict, key: str, path: Path) -> dict:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise UserError(f"{path}: {key} must be a table ([{key}])")
    return dict(value)


def _named_opts(data: dict, key: str, path: Path) -> dict[str, dict]:
    table = _table(data, key, path)
    for name, opts in table.items():
        if not isinstance(opts, dict):
            raise UserError(f"{path}: options are written as [{key}.{name}] tables, got {key}.{name} = {opts!r}")
    return table


def _check_cell_keys(table: dict, where: str) -> None:
    unknown = sorted(set(table) - CELL_KEYS)
    if unknown:
        raise UserError(
            f"{where}: unknown key {', '.join(map(repr, unknown))}; allowed: {', '.join(sorted(CELL_KEYS))}"
        )


def _check_overrides(table: dict, where: str) -> None:
    plain = {k: v for k, v in table.items() if k not in ("trainer_opts", "strategy_opts")}
    _check_cell_keys(plain, where)
    for key in ("trainer_opts", "strategy_opts"):
        for name, opts in table.get(key, {}).items():
            if not isinstance(opts, dict):
                raise UserError(f"{where}: write [faithful.{key}.{name}] as a table of options")


# -- cells ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Overrides:
    """What the command line changes in every cell."""

    model: str | None = None
    seeds: int | None = None
    limit: int | None = None
    faithful: bool = False
    #: ``key=value`` pairs over every cell (value parsed as TOML, else a string)
    sets: tuple[str, ...] = ()


@dataclass
class Cell:
    """One run of a sweep, before and after it runs."""

    index: int
    row: str
    variant: str  # "faithful", "corrected", or "" when the sweep has no [faithful] table
    sweep: str
    order: int = 0  # the row's place in the sweep file (seeds of one row share it)
    seed: int = 0
    config: RunConfig | None = None  # planned: bits filled in
    run_id: str | None = None
    twin_id: str | None = None
    #: pending | stored (complete before this sweep) | done | failed | duplicate
    state: str = "pending"
    error: str | None = None
    seconds: float = 0.0

    @property
    def label(self) -> str:
        return self.config.label if self.config else self.row

    @property
    def tags(self) -> dict:
        """Stored beside the run (not hashed): which sweep row it is and its twin."""
        return {"sweep": self.sweep, "row": self.row, "order": self.order, "variant": self.variant,
                "twin": self.twin_id}

    def to_dict(self) -> dict:
        return {"index": self.index, "row": self.row, "seed": self.seed, "variant": self.variant, "label": self.label,
                "run_id": self.run_id, "twin_id": self.twin_id, "state": self.state, "error": self.error,
                "seconds": round(self.seconds, 3)}


def expand(spec: SweepSpec, overrides: Overrides = Overrides()) -> list[dict]:
    """Cell dicts (row name, variant, the cell and its twin as config dicts), in file order.

    Order of precedence, lowest first: ``[defaults]``, per-plugin options,
    the grid point or ``[[cell]]``, ``[faithful]`` (with ``--faithful``), the
    command line.
    """
    points: list[dict] = []
    if spec.grid:
        keys = list(spec.grid)
        for values in itertools.product(*(spec.grid[k] for k in keys)):
            points.append(dict(zip(keys, values)))
    points.extend(spec.cells)
    sets = _parse_sets(overrides.sets)
    out = []
    for order, point in enumerate(points):
        cell = {**spec.defaults, **point}
        cell = _with_plugin_opts(cell, spec)
        seeds = _seeds(cell, overrides)
        row = str(cell.pop("row", "") or "")
        for seed in seeds:
            plain = {**cell, "seed": seed}
            if overrides.model:
                plain["model"] = overrides.model
            if overrides.limit is not None:
                plain["limit"] = overrides.limit
            plain.update(sets)
            faithful = None if spec.faithful is None else {**apply_overrides(plain, spec.faithful), **sets}
            run, twin = (faithful, plain) if overrides.faithful and faithful is not None else (plain, faithful)
            variant = "" if spec.faithful is None else ("faithful" if overrides.faithful else "corrected")
            out.append({"row": row, "order": order, "seed": seed, "variant": variant, "cell": run, "twin": twin})
    return out


def _seeds(cell: dict, overrides: Overrides) -> list[int]:
    """The cell's seeds (``seeds = [..]`` or ``seeds = N`` for 0..N-1, else ``seed``); --seeds wins."""
    seeds, seed = cell.pop("seeds", None), cell.pop("seed", 0)
    if overrides.seeds is not None:
        if overrides.seeds < 1:
            raise UserError(f"--seeds must be >= 1, got {overrides.seeds}")
        return list(range(overrides.seeds))
    if seeds is None:
        return [int(seed)]
    if isinstance(seeds, int):
        return list(range(seeds))
    return [int(s) for s in seeds]


def _with_plugin_opts(cell: dict, spec: SweepSpec) -> dict:
    """Add ``[trainer_opts.NAME]`` / ``[strategy_opts.NAME]`` of the cell's plugins under its own."""
    cell = dict(cell)
    trainer, strategy = cell.get("trainer", "none"), cell.get("strategy", "none")
    if trainer in spec.trainer_opts:
        cell["trainer_opts"] = {**spec.trainer_opts[trainer], **cell.get("trainer_opts", {})}
    if strategy in spec.strategy_opts:
        cell["strategy_opts"] = {**spec.strategy_opts[strategy], **cell.get("strategy_opts", {})}
    return cell


def apply_overrides(cell: dict, overrides: dict) -> dict:
    """``cell`` with a ``[faithful]``-style table applied: plain fields, then per-plugin options.

    A preset in ``overrides`` brings its prompt and sampling; prompt or
    sampling keys that the cell sets explicitly stay over them.
    """
    out = {**cell, **{k: v for k, v in overrides.items() if k not in ("trainer_opts", "strategy_opts")}}
    for key, plugin_field in (("trainer_opts", "trainer"), ("strategy_opts", "strategy")):
        name = out.get(plugin_field, "none")
        extra = overrides.get(key, {}).get(name)
        if extra:
            out[key] = {**out.get(key, {}), **extra}
    return out


def _parse_sets(pairs: Iterable[str]) -> dict:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise UserError(f"--set expects key=value, got {pair!r}")
        if key in NOT_SETTABLE:
            raise UserError(f"--set {key}: {NOT_SETTABLE[key]}")
        if key not in CELL_KEYS:
            raise UserError(f"--set {key}: unknown key; allowed: {', '.join(sorted(CELL_KEYS - set(NOT_SETTABLE)))}")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw.strip()
        out[key] = value
    return out


def _opt_str(value: Any) -> str:
    """TOML option values as the ``key=value`` strings that plugins' options parse."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(_opt_str(v) for v in value)
    return str(value)


def cell_config(cell: dict) -> RunConfig:
    """A cell dict (sweep-file keys) -> RunConfig: the preset first, explicit fields over it."""
    cell = dict(cell)
    _check_cell_keys(cell, "cell")
    preset_name = cell.get("preset", "default")
    if preset_name not in PRESETS:
        raise UserError(f"unknown preset {preset_name!r}; choose one of {', '.join(sorted(PRESETS))}")
    preset = PRESETS[preset_name]
    sampling = dataclasses.asdict(preset["sampling"])
    sampling.update(cell.pop("sampling", {}) or {})
    for key in SAMPLING_KEYS:
        if key in cell:
            sampling[key] = cell.pop(key)
    cell.pop("row", None)
    cell.pop("seeds", None)
    benchmarks = cell.get("benchmarks", ("arith",))
    if isinstance(benchmarks, str):
        benchmarks = [b.strip() for b in benchmarks.split(",") if b.strip()]
    kwargs = {k: v for k, v in cell.items() if k in CONFIG_KEYS}
    kwargs.update(
        benchmarks=tuple(benchmarks),
        trainer_opts=tuple(sorted((k, _opt_str(v)) for k, v in (cell.get("trainer_opts") or {}).items())),
        strategy_opts=tuple(sorted((k, _opt_str(v)) for k, v in (cell.get("strategy_opts") or {}).items())),
        prompt=cell.get("prompt") or preset["prompt"],
        sampling=Sampling(**sampling),
        preset=preset_name,
    )
    try:
        return RunConfig(**kwargs)
    except TypeError as exc:
        raise UserError(f"bad cell {cell}: {exc}") from None


# -- planning ------------------------------------------------------------------------------------


def prepare(spec: SweepSpec, overrides: Overrides, registry, store, check_device: bool = True) -> list[Cell]:
    """Plan every cell (the checks, nothing written): ids, twins, what is stored, what failed.

    ``check_device=False`` when the cells run on other machines (Ray): whether
    *this* machine has a GPU says nothing about them (the executor checks the
    cluster instead).
    """
    from harness.pipeline import plan

    cells: list[Cell] = []
    seen: dict[str, Cell] = {}
    for i, item in enumerate(expand(spec, overrides)):
        cell = Cell(index=i, row=item["row"], variant=item["variant"], sweep=spec.name, order=item["order"],
                    seed=item["seed"])
        cells.append(cell)
        try:
            config = plan(cell_config(item["cell"]), registry, check_device=check_device).config
        except UserError as exc:
            cell.state, cell.error = "failed", str(exc)
            continue
        except Exception as exc:  # noqa: BLE001 - a plugin's own bug fails its cell, not the sweep
            cell.state, cell.error = "failed", f"{type(exc).__name__}: {exc}"
            continue
        cell.config, cell.run_id = config, config.run_id
        cell.row = cell.row or _default_row(config)
        if item["twin"] is not None:
            try:
                twin = dataclasses.replace(cell_config(item["twin"]), bits=config.bits)
                cell.twin_id = twin.run_id
            except UserError:
                cell.twin_id = None
        if cell.run_id in seen:
            cell.state = "duplicate"
            continue
        seen[cell.run_id] = cell
        existing = store.get_run(cell.run_id)
        if existing and existing["id"] == cell.run_id and existing["status"] == "complete":
            cell.state = "stored"
    return cells


def _default_row(config: RunConfig) -> str:
    return " ".join(config.label.split(" ")[1:])


# -- running -------------------------------------------------------------------------------------


def run_cell(
    config: dict, store_path: str | None, cache_dir: str | None, console=None, shard: tuple[int, int] | None = None,
) -> dict:
    """Run one cell: plain data in (``RunConfig.to_dict()``), plain data out (the run's result).

    The whole pipeline of one run (train, quantize, evaluate, profile, store)
    behind one picklable call, so any executor can ship it to a worker.
    ``shard=(index, count)`` evaluates only that shard's problems (see
    :func:`shard_of`) under the run's own id; its metrics cover the shard
    alone, and whoever merges the shards' samples recomputes them.
    """
    from harness.cache import ArtifactCache
    from harness.pipeline import Runner, plan
    from harness.plugins import get_registry
    from harness.quiet import quiet_libraries
    from harness.store import Store

    quiet_libraries()
    store = Store(store_path)
    try:
        the_plan = plan(RunConfig.from_dict(config), get_registry())
        if shard is not None:
            the_plan.problems = {name: shard_of(problems, *shard) for name, problems in the_plan.problems.items()}
        runner = Runner(store, ArtifactCache(Path(cache_dir) if cache_dir else None), console=console)
        return runner.run(the_plan)
    finally:
        store.close()


def shard_of(problems: list, index: int, count: int) -> list:
    """Problems ``i`` with ``i % count == index``, in their order: every shard gets easy and hard
    ones alike (benchmarks are often sorted by level), and the shards together are the whole list."""
    if not 0 <= index < count:
        raise UserError(f"shard index must be in 0..{count - 1}, got {index}")
    return problems[index::count]


def build_stage(config: dict, cache_dir: str | None, stage: str, console=None) -> str | None:
    """Build one cell's ``train`` or ``quantize`` stage into the artifact cache; its key.

    What several cells share (an RL checkpoint, a quantized model that shards
    of one cell evaluate) is built once, by this, before they run; they then
    find it in the cache. The stages run through the Runner as in
    :func:`run_cell`, against a throw-away store: only the artifact is kept.
    """
    from harness.cache import ArtifactCache
    from harness.model import load_tokenizer
    from harness.pipeline import Runner, plan, quantize_key, train_key
    from harness.plugins import get_registry
    from harness.quiet import quiet_libraries
    from harness.store import Store

    if stage not in ("train", "quantize"):
        raise UserError(f"unknown stage {stage!r}; choose train or quantize")
    quiet_libraries()
    the_plan = plan(RunConfig.from_dict(config), get_registry())
    store = Store(":memory:")
    try:
        runner = Runner(store, ArtifactCache(Path(cache_dir) if cache_dir else None), console=console)
        run_id = the_plan.config.run_id
        if stage == "train":
            runner.train(the_plan, load_tokenizer(the_plan.model.source), run_id)
            return train_key(the_plan)
        runner.materialize(the_plan, run_id)
        return quantize_key(the_plan)
    finally:
        store.close()


@dataclass
class Job:
    """What an executor gets for one cell (plain data, picklable)."""

    index: int
    label: str
    config: dict
    store_path: str | None
    cache_dir: str | None
    #: (index, count): evaluate only that shard of the problems (see :func:`shard_of`); None: all
    shard: tuple[int, int] | None = None


#: on_done(job, result or None, error text or None)
DoneCallback = Callable[[Job, "dict | None", "str | None"], None]


def as_outcome(call: Callable[[], Any], what: str = "") -> tuple[Any, str | None]:
    """``(call(), None)``, or ``(None, error text)`` when it fails: what executors hand back for a cell.

    A user error is its one-line message; anything else also prints its
    traceback on stderr, since it is a bug. One failing cell must not stop
    the sweep, so nothing is re-raised (KeyboardInterrupt is not caught).
    """
    prefix = f"{what}: " if what else ""
    try:
        return call(), None
    except UserError as exc:
        return None, f"{prefix}{exc}"
    except Exception as exc:  # noqa: BLE001 - see the docstring
        print(traceback.format_exc(), file=sys.stderr)
        return None, f"{prefix}{type(exc).__name__}: {exc}"


def execute_job(job: Job, console=None) -> tuple[dict | None, str | None]:
    """Run one job, turning a failure into its error text: (result, None) or (None, error)."""
    return as_outcome(lambda: run_cell(job.config, job.store_path, job.cache_dir, console=console, shard=job.shard))


def _cell_process(job: Job, conn) -> None:
    """Body of the process that runs one cell (``LocalExecutor(isolate=True)``)."""
    try:
        conn.send(execute_job(job))
    except KeyboardInterrupt:
        conn.send(INTERRUPTED)
    finally:
        conn.close()


INTERRUPTED = "__interrupted__"


class LocalExecutor:
    """Runs the cells one after another on this machine (the default).

    With ``isolate`` (the default) each cell runs in a fresh process, so its
    peak memory and timings are its own, not those of the cells before it
    (a process's resident memory never shrinks back after a training run),
    and a cell that crashes the interpreter fails alone. Without it, cells
    run in this process (faster to start; what tests that patch the
    pipeline need).
    """

    name = "local"

    def __init__(self, console=None, isolate: bool = True, **_: Any):
        self.console = console
        self.isolate = isolate

    @property
    def pauses_display(self) -> bool:
        """A child process writes to the terminal: the driver's live bar must stop meanwhile."""
        return self.isolate

    def run(self, jobs: list[Job], on_start: Callable[[Job], None], on_done: DoneCallback) -> None:
        for job in jobs:
            on_start(job)
            result, error = self._in_process(job) if self.isolate else execute_job(job, self.console)
            on_done(job, result, error)

    def _in_process(self, job: Job) -> tuple[dict | None, str | None]:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        receiver, sender = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_cell_process, args=(job, sender), name=f"harness-cell-{job.index}")
        proc.start()
        sender.close()
        try:
            message = None
            while proc.is_alive() or receiver.poll():
                if receiver.poll(0.5):
                    message = receiver.recv()
                    break
            proc.join()
        except KeyboardInterrupt:
            # a Ctrl-C from the terminal reached the child too: let it mark its run interrupted
            proc.join(timeout=15)
            if proc.is_alive():
                proc.terminate()
                proc.join()
            raise
        finally:
            receiver.close()
        if message == INTERRUPTED:
            raise KeyboardInterrupt
        if message is None:
            return None, f"the cell's process died (exit code {proc.exitcode}) before reporting a result"
        return message


def get_executor(name: str, **kwargs: Any):
    target = EXECUTORS.get(name)
    if target is None:
        from harness.errors import UnknownNameError

        raise UnknownNameError("executor", name, EXECUTORS)
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)(**kwargs)


@dataclass
class SweepReport:
    name: str
    cells: list[Cell]
    seconds: float = 0.0
    interrupted: bool = False

    def count(self, state: str) -> int:
        return sum(c.state == state for c in self.cells)

    @property
    def failed(self) -> list[Cell]:
        return [c for c in self.cells if c.state == "failed"]

    def to_dict(self) -> dict:
        return {
            "sweep": self.name, "seconds": round(self.seconds, 3), "interrupted": self.interrupted,
            "counts": {s: self.count(s) for s in ("done", "stored", "failed", "duplicate", "pending")},
            "cells": [c.to_dict() for c in self.cells],
        }


def run_sweep(
    name: str, cells: list[Cell], store, cache_dir: str | None, executor: str = "local", console=None,
    **executor_kwargs: Any,
) -> SweepReport:
    """Run the pending cells, skipping stored ones; a KeyboardInterrupt stops it cleanly.

    The driver alone writes the sweep's tags into the store; each cell's run
    is stored by :func:`run_cell` (the Runner), whose artifacts are published
    atomically and whose samples are committed batch by batch, so an
    interrupted cell resumes on the next run and nothing is half-written.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = console or Console(stderr=True)
    report = SweepReport(name, cells)
    by_index = {c.index: c for c in cells}
    for cell in cells:
        if cell.state == "stored":
            store.tag_sweep(cell.run_id, cell.tags)
    pending = [c for c in cells if c.state == "pending"]
    jobs = [Job(c.index, c.label, c.config.to_dict(), str(store.path), cache_dir) for c in pending]
    runner = get_executor(executor, console=console, **executor_kwargs)
    start = time.perf_counter()
    columns = (TextColumn("[bold]sweep[/bold] {task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[status]}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        settled = sum(c.state in ("stored", "failed", "duplicate") for c in cells)
        task = progress.add_task(name, total=len(cells), completed=settled, status=_status(report))
        started: dict[int, float] = {}

        pause = getattr(runner, "pauses_display", False)
        live = [True]

        def resume() -> None:
            if not live[0]:
                progress.start()
                live[0] = True

        def on_start(job: Job) -> None:
            started[job.index] = time.perf_counter()
            by_index[job.index].state = "running"
            progress.update(task, description=f"{name}: {job.label}", status=_status(report))
            if pause:  # leave the bar printed once, give the terminal to the cell's process
                progress.refresh()
                progress.stop()
                live[0] = False

        def on_done(job: Job, result: dict | None, error: str | None) -> None:
            resume()
            cell = by_index[job.index]
            cell.seconds = time.perf_counter() - started.get(job.index, start)
            if error is None:
                cell.state = "done"
                store.tag_sweep(cell.run_id, cell.tags)
            else:
                cell.state, cell.error = "failed", error
                console.print(f"[red]cell {cell.index + 1} failed[/red] ", end="", highlight=False)
                console.print(f"({cell.label}): {error}", markup=False, highlight=False)
            progress.update(task, advance=1, status=_status(report))

        try:
            runner.run(jobs, on_start, on_done)
        except KeyboardInterrupt:
            resume()
            report.interrupted = True
            for cell in cells:
                if cell.state == "running":
                    cell.state, cell.error = "pending", "interrupted"
        finally:
            report.seconds = time.perf_counter() - start
            progress.update(task, description=name, status=_status(report))
    return report


def _status(report: SweepReport) -> str:
    running = report.count("running")
    return (f"[green]{report.count('done')} run[/green] · {report.count('stored')} stored · "
            + (f"[yellow]{running} running[/yellow] · " if running else "")
            + f"[red]{report.count('failed')} failed[/red]")

"""A sweep's cells: expanded from the file, overridden from the command line, planned against the store.

Every cell, and its twin, is resolved and planned (checked) before anything
runs: a wrong value in any cell refuses the whole sweep, all such cells at
once and one line each, so a typo in the last cell is not found after the
first cells have trained. A cell already complete in the store is skipped.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import tomllib

from harness.base.errors import UserError
from harness.core.config import NO_TRAINER, RunConfig, field_default
from harness.core.graph import run_graph
from harness.core.registry import Registry
from harness.core.resolve import resolve_config
from harness.core.status import CellState, RunStatus
from harness.core.trainer import chain_names
from harness.runs.planning import plan
from harness.runs.store import Store
from harness.sweeps.checks import check_cell_types, check_plugin_tables
from harness.sweeps.file import CELL_KEYS, NOT_SETTABLE, SweepSpec, _check_cell_keys

# -- cells ---------------------------------------------------------------------------------------


class CellsRefused(UserError):
    """Cells whose values cannot run as written: every one of them, one line each, before any cell runs.

    One exception for all of them, so the user fixes the file once rather
    than once per typo; ``lines`` keeps them apart for a caller that prints
    each on its own (the CLI's ``error:`` lines).
    """

    def __init__(self, lines: list[str]):
        super().__init__("\n".join(lines))
        self.lines = lines


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
    #: its graph measures divergence from a reference (a stored run without those figures runs again)
    wants_divergence: bool = False
    #: pending | stored (complete before this sweep) | done | failed | duplicate
    state: CellState = CellState.PENDING
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
                "run_id": self.run_id, "twin_id": self.twin_id, "state": self.state.value, "error": self.error,
                "seconds": round(self.seconds, 3)}


def expand(spec: SweepSpec, overrides: Overrides = Overrides()) -> list[dict]:
    """Cell dicts (row name, variant, the cell and its twin as config dicts), in file order.

    Order of precedence, lowest first: ``[defaults]``, per-plugin options,
    ``[models.NAME]`` of the cell's model (with ``--model``, that one), the
    grid point or ``[[cell]]``, ``[faithful]`` (with ``--faithful``), the
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
        given = {**spec.defaults, **point}
        per_model = spec.models.get(overrides.model or str(given.get("model", field_default("model"))), {})
        plain_for_model = {k: v for k, v in per_model.items() if k not in ("trainer_opts", "strategy_opts")}
        cell = {**spec.defaults, **plain_for_model, **point}
        cell = _add_tables(cell, per_model, underneath=True)  # the model's plugin options under the cell's own
        cell = _with_plugin_opts(cell, spec)  # and the sweep's under both
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
            out.append({"row": row, "order": order, "seed": seed, "variant": variant, "cell": run, "twin": twin,
                        "point": point})
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
    return _add_tables(dict(cell), {"trainer_opts": spec.trainer_opts, "strategy_opts": spec.strategy_opts},
                       underneath=True)


def _trainer_tables(cell: dict, tables: dict[str, dict]) -> dict:
    """The ``[trainer_opts.NAME]`` values for each trainer of the cell; in a chain (``kd,grpo``) each
    key is addressed to its trainer as ``NAME.key`` (:func:`harness.core.trainer.chain_options`)."""
    names = chain_names(str(cell.get("trainer", field_default("trainer"))))
    out: dict = {}
    for name in names:
        for key, value in tables.get(name, {}).items():
            out[f"{name}.{key}" if len(names) > 1 else key] = value
    return out


def _add_tables(cell: dict, tables: dict[str, dict[str, dict]], underneath: bool) -> dict:
    """``cell`` with per-plugin option tables merged into its options: under the cell's own values
    (a sweep's tables) or over them (a ``[faithful]`` table)."""
    found = {
        "trainer_opts": _trainer_tables(cell, tables.get("trainer_opts", {})),
        "strategy_opts": tables.get("strategy_opts", {}).get(str(cell.get("strategy", field_default("strategy"))), {}),
    }
    for key, extra in found.items():
        if extra:
            own = cell.get(key, {})
            cell[key] = {**extra, **own} if underneath else {**own, **extra}
    return cell


def apply_overrides(cell: dict, overrides: dict) -> dict:
    """``cell`` with a ``[faithful]``-style table applied: plain fields, then per-plugin options.

    A preset in ``overrides`` brings its prompt and sampling; prompt or
    sampling keys that the cell sets explicitly stay over them.
    """
    out = {**cell, **{k: v for k, v in overrides.items() if k not in ("trainer_opts", "strategy_opts")}}
    return _add_tables(out, overrides, underneath=False)


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
    check_cell_types(out, "--set")  # once here, rather than once for every cell it reaches
    _check_cell_keys(out, "--set")  # a sampling table's own keys
    return out


def cell_config(cell: dict) -> RunConfig:
    """A cell dict (sweep-file keys) -> RunConfig, exactly as `harness run` builds one from flags."""
    cell = dict(cell)
    _check_cell_keys(cell, "cell")
    check_cell_types(cell, "cell")  # --set values and [faithful] overrides land here unchecked
    cell.pop("row", None)
    cell.pop("seeds", None)
    return resolve_config(cell)


# -- planning ------------------------------------------------------------------------------------


def prepare(spec: SweepSpec, overrides: Overrides, registry: Registry, store: Store, check_device: bool = True,
            auto_device: str | None = None) -> list[Cell]:
    """Resolve and plan every cell and its twin (the checks, nothing written): ids, twins, what is stored.

    All of it happens before the first cell starts, so a wrong value anywhere
    in the file costs seconds, not the cells that trained before it: the
    cells that cannot be planned are refused together, one line each naming
    the cell and what is wrong (:class:`CellsRefused`), and none runs.

    ``check_device=False`` when the cells run on other machines (Ray): whether
    *this* machine has a GPU says nothing about them (the executor checks the
    cluster instead). ``auto_device``: what ``device = auto`` is where they run
    (:meth:`harness.core.executor.Executor.auto_device`); such cells are planned, and
    sent, with that device, so their ids are the ids their workers store.
    """
    cells: list[Cell] = []
    refused: list[str] = []
    seen: dict[str, Cell] = {}
    items = expand(spec, overrides)
    _check_plugin_opts(spec, items, registry)
    seeds_of_row = Counter(item["order"] for item in items)
    for i, item in enumerate(items):
        cell = Cell(index=i, row=item["row"], variant=item["variant"], sweep=spec.name, order=item["order"],
                    seed=item["seed"])
        cells.append(cell)
        error = _plan_cell(cell, item, registry, check_device, auto_device)
        if error is not None:
            name = _cell_name(cell, item, seeded=seeds_of_row[item["order"]] > 1)
            refused.append(f"{spec.source or spec.name}: cell {i + 1} ({name}): {error}")
        if cell.state is not CellState.PENDING or cell.run_id is None:
            continue
        if cell.run_id in seen:
            cell.state = CellState.DUPLICATE
            continue
        seen[cell.run_id] = cell
        existing = store.get_run(cell.run_id)
        if existing and existing["id"] == cell.run_id and existing["status"] == RunStatus.COMPLETE:
            # a run stored without its divergence runs again: the runner adds only the missing stage
            if not cell.wants_divergence or store.divergence(cell.run_id):
                cell.state = CellState.STORED
    if refused:
        raise CellsRefused(refused)
    return cells


def _plan_cell(cell: Cell, item: dict, registry: Registry, check_device: bool, auto_device: str | None) -> str | None:
    """Resolve and plan one cell and its twin into ``cell``; what is wrong with their values, if anything.

    The twin is planned without this machine's devices: it runs in another
    sweep (``--faithful`` or not), perhaps elsewhere, but a wrong value in its
    ``[faithful]`` table is still the file's, and would otherwise give a twin
    id that no run has. A plugin's own bug (not a UserError) fails only its
    cell, listed with the report while the others run: no edit of the file fixes it.
    """
    twin_form = "corrected" if cell.variant == "faithful" else "faithful"
    form = ""
    try:
        config = cell_config(item["cell"])
        if auto_device and config.device == "auto":
            config = dataclasses.replace(config, device=auto_device)
        planned = plan(config, registry, check_device=check_device)
        config = planned.config
        cell.config, cell.run_id = config, config.run_id
        cell.wants_divergence = run_graph(planned).get("divergence") is not None
        cell.row = cell.row or _default_row(config)
        if item["twin"] is not None:
            form = f"its {twin_form} form: "
            twin = cell_config(item["twin"])
            plan(twin, registry, check_device=False)
            # the twin's id as its own sweep plans it: the same benchmarks' data and this cell's device
            cell.twin_id = dataclasses.replace(twin, bits=config.bits, data=config.data, compute=config.compute).run_id
    except UserError as exc:
        cell.state, cell.error = CellState.FAILED, f"{form}{exc}"
        return cell.error
    except Exception as exc:  # noqa: BLE001 - a plugin's own bug fails its cell, not the sweep
        cell.state, cell.error = CellState.FAILED, f"{form}{type(exc).__name__}: {exc}"
    return None


def _cell_name(cell: Cell, item: dict, seeded: bool) -> str:
    """How a refusal names a cell: its row, else the grid point or ``[[cell]]`` values it came from;
    its seed too when its row runs with several."""
    if item["row"]:  # not the name the sweep gives a row-less cell: that is not in the file
        name = f"row {item['row']!r}"
    else:
        point = {k: v for k, v in item["point"].items() if k not in ("seed", "seeds")}
        name = ", ".join(f"{key} = {value!r}" for key, value in point.items()) or "the defaults"
    return f"{name}, seed {cell.seed}" if seeded else name


def _check_plugin_opts(spec: SweepSpec, items: list[dict], registry) -> None:
    """A plugin table whose name no cell uses and no plugin registers is a typo: refuse the sweep."""
    used: dict[str, set[str]] = {"trainer": set(), "strategy": set()}
    for item in items:
        for cell in (item["cell"], item["twin"]):
            if cell is not None:
                used["trainer"].update(chain_names(str(cell.get("trainer", field_default("trainer")))) or [NO_TRAINER])
                used["strategy"].add(str(cell.get("strategy", field_default("strategy"))))
    known = {"trainer": registry.trainers.names(), "strategy": registry.strategies.names()}
    tables = {"trainer_opts": spec.trainer_opts, "strategy_opts": spec.strategy_opts}
    check_plugin_tables(spec.source or spec.name, tables, used, known)
    if spec.faithful:
        faithful = {k: spec.faithful.get(k, {}) for k in tables}
        check_plugin_tables(f"{spec.source or spec.name} [faithful]", faithful, used, known)


def _default_row(config: RunConfig) -> str:
    return " ".join(config.label.split(" ")[1:])



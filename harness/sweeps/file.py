"""A sweep file: ``[defaults]``, ``[grid]``, ``[[cell]]``, per-plugin option tables and ``[faithful]``.

Read and checked here, before any cell is expanded: an unknown table or key,
a value of the wrong type or a plugin table that reaches no cell is one line
naming it (see :mod:`harness.sweeps.sweep` for what a sweep is).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import tomllib

from harness.base.errors import UserError
from harness.core.config import RunConfig, Sampling
from harness.core.resolve import SAMPLING_KEYS
from harness.sweeps.checks import check_cell_types

#: sweep file tables
TOP_KEYS = ("name", "description", "defaults", "grid", "cell", "trainer_opts", "strategy_opts", "faithful", "models")
#: cell keys that are not RunConfig fields
CELL_EXTRA = ("row", "seeds", "sampling", *SAMPLING_KEYS)
#: RunConfig fields a cell may set (``data`` and ``compute`` are the plan's: its benchmarks' data, its device)
CONFIG_KEYS = tuple(f.name for f in dataclasses.fields(RunConfig) if f.name not in ("sampling", "data", "compute"))
CELL_KEYS = frozenset(CONFIG_KEYS + CELL_EXTRA)
#: keys of a cell's ``sampling`` table
SAMPLING_FIELDS = tuple(f.name for f in dataclasses.fields(Sampling))

#: cell keys --set refuses, and why
NOT_SETTABLE = {
    "seed": "use --seeds N", "seeds": "use --seeds N", "row": "a row's name belongs to the sweep file",
    "trainer_opts": "set plugin options in the sweep file's [trainer_opts.NAME] table",
    "strategy_opts": "set plugin options in the sweep file's [strategy_opts.NAME] table",
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
    #: ``[models.NAME]``: what one model's cells set differently (plain keys and plugin option tables, as
    #: ``[faithful]``), over ``[defaults]`` and the sweep's plugin tables, under each cell's own values: a
    #: setting chosen for one model never reaches another's rows
    models: dict[str, dict] = field(default_factory=dict)
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
    from harness.base.errors import UnknownNameError

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
        _check_cell_keys(table, f"{path} [{where}]", grid=where == "grid")
        check_cell_types(table, f"{path} [{where}]", grid=where == "grid")
    faithful = data.get("faithful")
    if faithful is not None:
        _check_overrides(_table(data, "faithful", path), path, "faithful")
    models = _table(data, "models", path)
    for model, table in models.items():
        if not isinstance(table, dict):
            raise UserError(f"{path}: per-model settings are written as [models.\"{model}\"] tables")
        _check_overrides(table, path, f"models.{model}")
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
        models=models,
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


def _check_cell_keys(table: dict, where: str, grid: bool = False) -> None:
    """Refuse a key no cell has, naming the allowed ones; a ``sampling`` table's keys too (a grid: each
    one of its list), which would otherwise reach ``Sampling`` as a keyword it has not."""
    _refuse_unknown(table, CELL_KEYS, where)
    sampling = table.get("sampling")
    for value in (sampling if grid and isinstance(sampling, list) else [sampling]):
        if isinstance(value, dict):
            _refuse_unknown(value, SAMPLING_FIELDS, f"{where} sampling")


def _refuse_unknown(table: dict, allowed: Iterable[str], where: str) -> None:
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise UserError(f"{where}: unknown key {', '.join(map(repr, unknown))}; allowed: {', '.join(sorted(allowed))}")


def _check_overrides(table: dict, path: Path, name: str) -> None:
    """Check a ``[faithful]`` or ``[models.NAME]`` table (``name``): cell keys, and plugin option tables."""
    where = f"{path} [{name}]"
    plain = {k: v for k, v in table.items() if k not in ("trainer_opts", "strategy_opts")}
    _check_cell_keys(plain, where)
    check_cell_types(plain, where)
    for key in ("trainer_opts", "strategy_opts"):
        if not isinstance(table.get(key, {}), dict):
            raise UserError(f"{where}: write [{name}.{key}.NAME] tables of options, got {key} = {table[key]!r}")
        for plugin, opts in table.get(key, {}).items():
            if not isinstance(opts, dict):
                raise UserError(f"{where}: write [{name}.{key}.{plugin}] as a table of options")



"""Checks on a sweep file's values that the TOML parser cannot make.

A value of the wrong type (``limit = "five"``) used to surface as Python's own
``'<' not supported between instances of 'str' and 'int'`` from deep inside a
cell; a misspelled plugin table (``[strategy_opts.rnt]``) reached no cell and
ran every cell with default options without a word. Both are refused here,
in one line that names the key and what was expected.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Callable, Iterable
from typing import Any

from harness.base.errors import UnknownNameError, UserError
from harness.core.config import RunConfig, Sampling

Kind = tuple[Callable[[Any], bool], str]

_INT: Kind = (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer")
_NUMBER: Kind = (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number")
_STR: Kind = (lambda v: isinstance(v, str), "a string")
_BOOL: Kind = (lambda v: isinstance(v, bool), "true or false")
_TABLE: Kind = (lambda v: isinstance(v, dict), "a table")
_STRS: Kind = (lambda v: isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v)),
               "a string or a list of strings")
_SEEDS: Kind = (lambda v: _INT[0](v) or (isinstance(v, list) and all(_INT[0](x) for x in v)),
                "an integer or a list of integers")


def _kind(annotation: Any) -> Kind | None:
    """What a TOML value must be to fill a field of this type (None: not checked here)."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    if annotation is bool:
        return _BOOL
    if annotation is int:
        return _INT
    if annotation is float:
        return _NUMBER
    if annotation is str:
        return _STR
    if annotation is Sampling:
        return _TABLE
    if typing.get_origin(annotation) is tuple:
        inner = typing.get_args(annotation)[0]
        return _TABLE if typing.get_origin(inner) is tuple else _STRS  # (key, value) pairs are TOML tables
    return None


@functools.cache
def cell_kinds() -> dict[str, Kind]:
    """Every cell key and what its value must be: RunConfig's and Sampling's fields, and the sweep's own keys."""
    kinds: dict[str, Kind] = {}
    for cls in (RunConfig, Sampling):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            kind = _kind(hints[f.name])
            if kind is not None:
                kinds[f.name] = kind
    kinds.update(row=_STR, seeds=_SEEDS, sampling=_TABLE, repeats=_INT)
    return kinds


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "a table"}.get(type(value), type(value).__name__)


def check_cell_types(table: dict, where: str, grid: bool = False) -> None:
    """Refuse the first value of the wrong type in ``table`` (a grid holds lists of values)."""
    kinds = cell_kinds()
    for key, value in table.items():
        if key not in kinds:
            continue  # unknown keys are refused by their own check, with the allowed list
        accepts, expected = kinds[key]
        for item in (value if grid and isinstance(value, list) else [value]):
            if not accepts(item):
                raise UserError(f"{where}: {key} = {item!r} is {_type_name(item)}; expected {expected}")
        if key == "sampling":
            check_cell_types(value, f"{where} sampling")


def check_plugin_tables(source: str, tables: dict[str, dict[str, dict]], used: dict[str, set[str]],
                        known: dict[str, Iterable[str]]) -> None:
    """Refuse a ``[trainer_opts.NAME]`` / ``[strategy_opts.NAME]`` that names no plugin a cell could use.

    ``tables``: ``{"strategy_opts": {name: options}}``; ``used``: the plugin
    names the sweep's cells use, per kind; ``known``: the registered ones. A
    known plugin that no cell uses is fine (``--set`` may narrow the grid); a
    name that is neither is a typo, and its options would silently reach nothing.
    """
    for table, kind in (("trainer_opts", "trainer"), ("strategy_opts", "strategy")):
        for name in tables.get(table, {}):
            if name not in used.get(kind, set()) and name not in set(known.get(kind, ())):
                error = UnknownNameError(kind, name, set(known.get(kind, ())) | used.get(kind, set()))
                raise UserError(f"{source}: [{table}.{name}] reaches no cell: {error}")

"""What one registered item (strategy, trainer, benchmark, engine, format...) declares: ``harness plugins NAME``.

Generic over kinds: the facts shown are the attributes the kind's base class declares
(bit widths, phase, needs, version, ...) and the fields of its options dataclass with their
help text, so a new kind or a new declared attribute shows up without code here.
"""

from __future__ import annotations

import dataclasses
from enum import Enum
from typing import Any

from harness.base.errors import UnknownNameError
from harness.core.registry import Registry

#: base-class attributes that are shown elsewhere (or are the options dataclass itself)
_SKIP = {"name", "description"}


def _plain(value: Any) -> Any:
    """A JSON-friendly copy of a declared attribute."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def _declared(base: type, item: object) -> dict[str, Any]:
    """The simple attributes ``base`` declares, as ``item`` sets them."""
    out: dict[str, Any] = {}
    for klass in reversed(base.__mro__):
        for attr, default in vars(klass).items():
            if attr.startswith("_") or attr in _SKIP or callable(default) or isinstance(default, (property, type)):
                continue
            value = getattr(item, attr, default)
            if isinstance(value, (str, int, float, bool, tuple, list, Enum)) or value is None:
                out[attr] = _plain(value)
    return out


def option_fields(options_class: type) -> list[dict[str, Any]]:
    """One entry per field of an options dataclass: name, type, default and its help text."""
    if not dataclasses.is_dataclass(options_class):
        return []
    rows = []
    for f in dataclasses.fields(options_class):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        else:
            default = None
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        rows.append({"name": f.name, "type": kind, "default": _plain(default), "help": f.metadata.get("help", "")})
    return rows


def describe(registry: Registry, name: str) -> list[dict[str, Any]]:
    """Everything registered as ``name`` (one entry per kind that has it), or the items of the
    plugin called ``name`` when no item is. Unknown: a UserError listing what is known."""
    found = [(attr, kind) for attr, kind in registry.kinds().items() if name in kind]
    if not found:
        found_items = [(attr, kind, n) for attr, kind in registry.kinds().items()
                       for n, owner in kind.owners.items() if owner == name]
        if found_items:
            return [_describe_one(kind, n) for _, kind, n in found_items]
        if name in registry.failures:
            return [{"kind": "plugin", "name": name, "error": registry.failures[name]}]
        known = {n for kind in registry.kinds().values() for n in kind.items} | set(registry.failures)
        raise UnknownNameError(", ".join(kind.kind for kind in registry.kinds().values()) + " or plugin", name, known)
    return [_describe_one(kind, name) for _, kind in found]


def _describe_one(kind, name: str) -> dict[str, Any]:
    item = kind.items[name]
    options_class = next(
        (getattr(item, attr) for attr in dir(type(item))
         if attr.endswith("_class") and dataclasses.is_dataclass(getattr(item, attr, None))),
        None,
    )
    reason = item.unavailable_reason() if callable(getattr(item, "unavailable_reason", None)) else None
    return {
        "kind": kind.kind,
        "name": name,
        "plugin": kind.owners[name],
        "description": getattr(item, "description", "") or (type(item).__doc__ or "").strip().split("\n")[0],
        "declares": _declared(kind.base, item),
        "options": option_fields(options_class) if options_class is not None else [],
        "unavailable": reason,
    }

"""Turning ``key=value`` options (CLI, TOML) into a plugin's options dataclass.

Each strategy and trainer owns one dataclass whose fields carry their defaults
and help text (``field(metadata={"help": ...})``); this module is the one place
that parses and type-checks user overrides against it.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from harness.base.errors import UserError


def parse_kv(pairs: tuple[str, ...] | list[str], flag: str) -> dict[str, str]:
    """``["lr=1e-4", "rank=8"]`` -> ``{"lr": "1e-4", "rank": "8"}``."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"{flag} expects key=value, got {pair!r}")
        out[key.strip().replace("-", "_")] = value.strip()
    return out


def _coerce(value: Any, annotation: Any, name: str, owner: str) -> Any:
    if not isinstance(value, str):
        return value
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        if value.lower() in ("none", "null", "") and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, name, owner)
            except UserError:
                continue
        raise UserError(f"{owner}: option {name}={value!r} is not a valid {annotation}")
    if origin is typing.Literal:
        if value not in args:
            raise UserError(
                f"{owner}: option {name}={value!r} is not allowed; choose one of {', '.join(map(str, args))}"
            )
        return value
    if origin in (list, tuple):
        items = [v.strip() for v in value.split(",") if v.strip()]
        inner = args[0] if args else str
        coerced = [_coerce(v, inner, name, owner) for v in items]
        return tuple(coerced) if origin is tuple else coerced
    try:
        if annotation is bool:
            low = value.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if annotation in (int, float, str):
            return annotation(value)
    except ValueError:
        raise UserError(
            f"{owner}: option {name}={value!r} is not a valid {annotation.__name__}"
        ) from None
    return value


def build_options(cls: type, opts: dict[str, Any], owner: str) -> Any:
    """Instantiate ``cls`` from overrides, naming unknown keys and the known ones."""
    if not dataclasses.is_dataclass(cls):
        if opts:
            raise UserError(f"{owner} takes no options, got: {', '.join(sorted(opts))}")
        return None
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(opts) - set(fields))
    if unknown:
        raise UserError(
            f"{owner} has no option {', '.join(map(repr, unknown))}; "
            f"options: {', '.join(sorted(fields)) or '(none)'}"
        )
    kwargs = {k: _coerce(v, hints[k], k, owner) for k, v in opts.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise UserError(f"{owner}: {exc}") from None


def options_help(cls: type) -> list[dict]:
    """Name, type, default and help of each option, for ``harness plugins`` and docs."""
    if not dataclasses.is_dataclass(cls):
        return []
    rows = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None  # type: ignore[misc]
        )
        rows.append(
            {"name": f.name, "type": str(f.type), "default": default, "help": f.metadata.get("help", "")}
        )
    return rows


def shell_words(text: str, name: str) -> list[str]:
    """``text`` split as a shell would (a server's extra flags); ValueError naming the option when it is not
    shell-quoted text, so an options dataclass refuses it when built."""
    import shlex

    try:
        return shlex.split(text)
    except ValueError as exc:
        raise ValueError(f"{name} {text!r} is not shell-quoted text: {exc}") from None

"""Reading benchmark files: JSON Lines, one problem a line, all or nothing.

A file is read whole before anything is returned, so a bad line anywhere
fails the load with a :class:`~harness.base.errors.DataError` naming the file and
the line: a benchmark is never scored on part of its problems.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from harness.base.errors import DataError, UserError

#: environment variable naming the local data folder (``--data-dir`` wins over it)
DATA_DIR_ENV = "HARNESS_DATA_DIR"
#: fields every line must have
REQUIRED = ("id", "problem", "answer")


def data_dir_from(data_dir: Path | str | None) -> Path | None:
    """The local data folder: ``data_dir`` if given, else ``$HARNESS_DATA_DIR``, else None."""
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    env = os.environ.get(DATA_DIR_ENV, "").strip()
    return Path(env).expanduser() if env else None


def _text(value: object) -> str:
    """A field value as text: JSON numbers keep their written form (``142.0`` stays ``142.0``)."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def read_jsonl(path: Path, required: Iterable[str] = REQUIRED) -> list[dict]:
    """Every row of ``path``; blank lines are skipped.

    Raises :class:`DataError` ("FILE:LINE: why") for a line that is not a JSON
    object, lacks a required field (or has it empty), or repeats an ``id``.
    """
    required = tuple(required)
    try:
        # split on "\n" only: str.splitlines() also breaks at U+2028 and friends,
        # which JSON strings may hold unescaped (GSM8K's train set does)
        lines = path.read_text(encoding="utf-8").split("\n")
    except FileNotFoundError:
        raise UserError(f"benchmark file not found: {path}") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc})") from None
    rows: list[dict] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{lineno}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
        missing = [f for f in required if row.get(f) is None or _text(row[f]).strip() == ""]
        if missing:
            raise DataError(
                f"{path}:{lineno}: missing field(s) {', '.join(missing)} "
                f"(every line needs: {', '.join(required)})"
            )
        pid = _text(row["id"])
        if pid in seen:
            raise DataError(f"{path}:{lineno}: duplicate id {pid!r} (first on line {seen[pid]})")
        seen[pid] = lineno
        rows.append(row)
    if not rows:
        raise DataError(f"{path}: no problems in the file")
    return rows


def text_field(row: dict, name: str) -> str | None:
    """An optional field as text, None when absent or empty."""
    value = row.get(name)
    if value is None:
        return None
    text = _text(value).strip()
    return text or None

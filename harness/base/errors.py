"""The harness's error hierarchy.

Library code raises these; only the CLI turns them into one-line messages and
exit status 2. Anything else escaping is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class HarnessError(Exception):
    """Base of every error the harness raises on purpose."""


class UserError(HarnessError):
    """Bad input from the user: unknown name, unsupported bits, missing file..."""


class UnknownNameError(UserError):
    """A name that no plugin registered; the message lists the known ones."""

    def __init__(self, kind: str, name: str, known: Iterable[str]):
        known = sorted(known)
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        super().__init__(
            f"unknown {kind} {name!r}.{hint} Available: {', '.join(known) or '(none)'}"
        )
        self.kind, self.name, self.known = kind, name, known


class DuplicateNameError(HarnessError):
    """Two plugins registered the same name for the same kind."""


class DataError(UserError):
    """A data file that cannot be read: names the file and the line."""


class StoreError(UserError):
    """A result store that is not a harness database, or is corrupt."""


class MissingDependencyError(UserError):
    """An optional library a command needs is not installed."""

"""The artifact cache: stage outputs addressed by the hash of everything that made them.

A stage writes into a temporary folder beside its final place and renames it
into place only when complete, so a crash never leaves a half-written
artifact that a later run would trust. Building holds an advisory lock per
artifact, so two processes that need the same artifact at once (two sweeps,
a sweep and a ``harness run``) build it once: the second waits, then reads it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
DONE = "harness-artifact.json"


def default_root() -> Path:
    """``$HARNESS_CACHE_DIR``, else the user cache directory."""
    env = os.environ.get("HARNESS_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "quant-rl-harness"


class ArtifactCache:
    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root else default_root()

    def path(self, stage: str, key: str) -> Path:
        return self.root / "artifacts" / stage / key

    def get(self, stage: str, key: str) -> tuple[Path, dict] | None:
        """The finished artifact and its record, or None."""
        path = self.path(stage, key)
        marker = path / DONE
        if marker.exists():
            return path, json.loads(marker.read_text())
        return None

    def build(self, stage: str, key: str, make: Callable[[Path], dict], meta: dict | None = None) -> tuple[Path, dict]:
        """Return the cached artifact, or run ``make(tmp_dir) -> record`` and publish it atomically."""
        found = self.get(stage, key)
        if found:
            return found
        final = self.path(stage, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        locks = self.root / "locks" / stage
        locks.mkdir(parents=True, exist_ok=True)
        with exclusive(locks / f"{key}.lock", f"{stage} artifact {key}"):
            found = self.get(stage, key)  # built by whoever held the lock before us
            if found:
                return found
            tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=final.parent))
            try:
                record = make(tmp)
                record = {**(meta or {}), **(record or {})}
                (tmp / DONE).write_text(json.dumps(record, indent=2, default=str))
                if final.exists():  # a stale, unfinished folder from an older layout
                    shutil.rmtree(final)
                os.replace(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        return final, record

    def scratch(self, stage: str, key: str) -> Path:
        """A persistent folder for resumable state (training checkpoints) of one artifact."""
        path = self.root / "scratch" / stage / key
        path.mkdir(parents=True, exist_ok=True)
        return path


@contextlib.contextmanager
def exclusive(lock_path: Path, what: str) -> Iterator[None]:
    """Hold an advisory lock on ``lock_path`` (POSIX ``flock``; a no-op where there is none).

    The lock dies with its process, so a killed builder never blocks the next
    one; a waiter says once on stderr what it waits for.
    """
    try:
        import fcntl
    except ImportError:  # Windows: no lock, the atomic rename still keeps artifacts whole
        yield
        return
    with open(lock_path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another process that is building the {what}", file=sys.stderr)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

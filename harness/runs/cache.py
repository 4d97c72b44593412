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

from harness.base.errors import UserError

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
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            locks = self.root / "locks" / stage
            locks.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create the artifact cache {self.root}: {exc.strerror or exc}; "
                            "choose another --cache-dir") from None
        self.remove_stale(stage, skip=key)
        with exclusive(locks / f"{key}.lock", f"{stage} artifact {key}"):
            found = self.get(stage, key)  # built by whoever held the lock before us
            if found:
                return found
            for dead in final.parent.glob(f".{key}.*"):  # we hold the lock: no live builder owns these
                shutil.rmtree(dead, ignore_errors=True)
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
            shutil.rmtree(self.root / "scratch" / stage / key, ignore_errors=True)  # resumable state, now moot
        return final, record

    def remove_stale(self, stage: str, skip: str | None = None) -> list[Path]:
        """Delete what killed builders left behind in ``stage``; returns what was removed.

        A temporary ``.KEY.xxxx`` folder whose key's lock is free has no live
        builder (the lock dies with its process), and the scratch folder of a
        published artifact is resumable state nothing will resume.
        """
        removed: list[Path] = []
        artifacts, locks = self.root / "artifacts" / stage, self.root / "locks" / stage
        for tmp in sorted(artifacts.glob(".*.*")) if artifacts.is_dir() else []:
            key = tmp.name[1:].split(".", 1)[0]
            if key == skip or not tmp.is_dir():
                continue
            if _holds_if_free(locks / f"{key}.lock", lambda: shutil.rmtree(tmp, ignore_errors=True)):  # noqa: B023
                removed.append(tmp)
        scratch = self.root / "scratch" / stage
        for folder in sorted(scratch.iterdir()) if scratch.is_dir() else []:
            if (artifacts / folder.name / DONE).exists():
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
        return removed

    def scratch(self, stage: str, key: str) -> Path:
        """A persistent folder for resumable state (training checkpoints) of one artifact."""
        path = self.root / "scratch" / stage / key
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create {path}: {exc.strerror or exc}; choose another --cache-dir") from None
        return path


def _holds_if_free(lock_path: Path, action: Callable[[], object]) -> bool:
    """Run ``action`` under the lock if no process holds it now (never waits); whether it ran."""
    try:
        import fcntl
    except ImportError:  # no flock: cannot tell a live builder from a dead one, so touch nothing
        return False
    if not lock_path.exists():
        return False  # never locked by this layout's builders: not ours to judge
    with open(lock_path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        try:
            action()
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
    return True


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

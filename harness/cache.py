"""The artifact cache: stage outputs addressed by the hash of everything that made them.

A stage writes into a temporary folder beside its final place and renames it
into place only when complete, so a crash never leaves a half-written
artifact that a later run would trust.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
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

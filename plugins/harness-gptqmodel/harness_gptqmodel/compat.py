"""The plugin's seam with gptqmodel: how it is imported on a small CPU machine, and where it writes logs.

Both depend on gptqmodel's behaviour in the release this plugin was written
against (its CPU worker pool, its ``./logs`` folder), so the plugin refuses a
release outside the range it is known to hold for, in one line.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.api import Seam, UserError

SEAM = Seam(
    library="gptqmodel",
    written_against="7.6.0",
    supported=">=7.6,<7.7",
    what="the harness-gptqmodel plugin (gptqmodel's CPU worker pool and its ./logs folder)",
)


def import_gptqmodel():
    """Import gptqmodel, sized to this machine's cores (its CPU pool otherwise asks for more than 2 cores
    provide and stops), with its warnings and banners kept off the console."""
    SEAM.require()
    os.environ.setdefault("GPTQMODEL_CPU_WORKERS", str(max(1, min(os.cpu_count() or 1, 4))))
    try:
        import gptqmodel
    except Exception as exc:  # noqa: BLE001 - any import failure means the backend is unusable here
        raise UserError(f"strategy 'gptqmodel' is unavailable: importing gptqmodel failed: {exc}") from None
    return gptqmodel


@contextmanager
def working_directory(path: Path) -> Iterator[None]:
    """Run inside ``path``: gptqmodel writes per-layer quantization logs to ``./logs`` relative to the
    current directory, and a strategy must write nothing outside its output folder."""
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)

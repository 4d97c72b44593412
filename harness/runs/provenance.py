"""What every stored result records about where it came from: versions and the commit.

Scores drift between versions of the harness, its libraries and the
benchmarks' data, so each run stores them beside its results.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from harness import __version__
from harness.core.plan import Plan
from harness.core.strategy import library_versions


def versions(plan: Plan) -> dict[str, str]:
    """Versions recorded with every result: scores drift between versions."""
    out = {"quant-rl-harness": __version__}
    out.update(library_versions(("torch", "transformers", "trl", "peft", "math-verify")))
    out.update(library_versions(plan.strategy.libraries))
    for name in plan.config.benchmarks:
        out[f"benchmark:{name}"] = plan.registry.benchmarks.get(name).version
    return out


def git_commit() -> str | None:
    """The checkout's commit (None outside a git checkout: an installed wheel)."""
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        ).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None

"""The benchmark interface: a named problem set with reference answers.

Benchmarks are plugins (``register_benchmarks``). They also serve as RL
training data and as calibration data, through their ``train`` split.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Problem:
    """One problem. ``answer`` is the reference final answer (LaTeX or plain)."""

    id: str
    problem: str
    answer: str
    solution: str | None = None
    level: str | None = None
    subject: str | None = None
    meta: dict = field(default_factory=dict, hash=False, compare=False)


class Benchmark:
    """Base class for benchmark plugins.

    Subclasses set the class attributes and implement :meth:`load`.
    """

    #: unique name used on the command line (``--benchmarks NAME``)
    name: str = ""
    #: one line for ``harness benchmarks``
    description: str = ""
    #: where the data comes from (dataset id, paper, or "generated")
    source: str = ""
    #: splits this benchmark can load
    splits: tuple[str, ...] = ("test",)
    #: bump when the problems or grading change: part of every run's identity (a bumped benchmark
    #: is a new run, never a replay of stale results) and stored with every result
    version: str = "1"
    #: True when :meth:`load` computes the problems (a seeded generator): they are then a function of
    #: the code, identified by :attr:`version`; problems read from files or the hub are fingerprinted
    generated: bool = False

    def load(self, split: str = "test", data_dir: Path | None = None) -> list[Problem]:
        """Every problem of ``split``, in a stable order."""
        raise NotImplementedError

    def identity(self, problems: list[Problem]) -> str:
        """What a run's id holds of this benchmark: its version, and for data read from files or a
        hub a fingerprint of the problems evaluated (ids, texts, answers). So a changed data file,
        or hub data that differs from a local copy, is another run; the same data from another
        folder is the same run."""
        if self.generated:
            return f"v{self.version}"
        import hashlib

        digest = hashlib.sha256()
        for p in problems:
            digest.update("\x1f".join((p.id, p.problem, str(p.answer))).encode())
            digest.update(b"\x1e")
        return f"v{self.version}:{digest.hexdigest()[:16]}"

    def unavailable_reason(self) -> str | None:
        """Why this benchmark cannot load here, or None when it can."""
        return None

    def check_split(self, split: str) -> None:
        from harness.base.errors import UserError

        if split not in self.splits:
            raise UserError(
                f"benchmark {self.name!r} has no split {split!r}; it has: {', '.join(self.splits)}"
            )

"""The splits of a seeded synthetic benchmark (``arith``, ``chain``): one shape for all of them.

A test split of the same number of problems per level, interleaved by level
(so ``--limit N`` keeps the level mix of the whole split), and a train split
drawn from its own generator that never holds a test problem (RL, calibration
and the embedded models' own training read it). Deterministic for a seed.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path

from harness.core.benchmark import Benchmark, Problem

#: ``make(rng, level, problem_id)``: one problem of a level, drawn from ``rng``
Maker = Callable[[random.Random, int, str], Problem]


def split_problems(name: str, split: str, seed: int, make: Maker, levels: Sequence[int],
                   test_per_level: int, train_size: int) -> tuple[Problem, ...]:
    """The problems of ``split`` (``test`` or ``train``) of benchmark ``name``."""
    if split == "test":
        rng = random.Random(f"{name}-test-{seed}")
        by_level = {level: [make(rng, level, f"L{level}-{i:03d}") for i in range(test_per_level)] for level in levels}
        return tuple(by_level[level][i] for i in range(test_per_level) for level in levels)
    if split == "train":
        held_out = {p.problem for p in split_problems(name, "test", seed, make, levels, test_per_level, train_size)}
        rng = random.Random(f"{name}-train-{seed}")
        out: list[Problem] = []
        while len(out) < train_size:
            level = rng.choice(levels)
            p = make(rng, level, f"train-{len(out):05d}")
            if p.problem not in held_out:
                out.append(p)
        return tuple(out)
    raise ValueError(f"{name} has the splits test and train, not {split!r}")


class SyntheticBenchmark(Benchmark):
    """A generated benchmark: its problems come from :meth:`generate` (seeded), not from files."""

    source = "generated (seeded, deterministic)"
    splits = ("test", "train")
    generated = True

    @staticmethod
    def generate(split: str) -> tuple[Problem, ...]:
        raise NotImplementedError

    def load(self, split: str = "test", data_dir: Path | None = None) -> list[Problem]:
        self.check_split(split)
        return list(self.generate(split))

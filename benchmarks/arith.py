"""``arith``: seeded synthetic arithmetic in five levels, solvable by tiny-arith.

The levels grow like MATH's: one-digit sums, then longer operands, products,
and finally two operations with an intermediate step. Every problem has a
step-by-step solution ending in ``\\boxed{N}``. The train split (for RL,
calibration and tiny-arith's own training) never contains a test problem.
"""

from __future__ import annotations

import random
from functools import cache
from pathlib import Path

from harness import hookimpl
from harness.benchmark import Benchmark, Problem

LEVELS = (1, 2, 3, 4, 5)
TEST_PER_LEVEL = 100
TRAIN_SIZE = 50_000
_PHRASES = ("What is {e}?", "Compute {e}.", "Calculate {e}.", "Evaluate {e}.")


def _op(rng: random.Random, a: int, b: int, ops: str) -> tuple[str, int]:
    op = rng.choice(ops)
    if op == "-" and b > a:
        a, b = b, a
    value = {"+": a + b, "-": a - b, "*": a * b}[op]
    return f"{a} {op} {b}", value


def make_problem(rng: random.Random, level: int) -> tuple[str, str, int]:
    """(expression, solution, answer) for one problem of ``level``."""
    r = rng.randint
    if level == 1:
        expr, val = _op(rng, r(0, 9), r(0, 9), "+-")
    elif level == 2:
        expr, val = _op(rng, r(10, 99), r(0, 9), "+-")
    elif level == 3:
        if rng.random() < 0.5:
            expr, val = _op(rng, r(10, 99), r(10, 99), "+-")
        else:
            expr, val = _op(rng, r(10, 99), r(2, 9), "*")
    elif level == 4:
        expr, val = _op(rng, r(100, 999), r(10, 999), "+-")
    elif level == 5:
        first, v1 = _op(rng, r(10, 99), r(2, 9), "+-*")
        c = r(10, 99)
        op = rng.choice("+-")
        if op == "-" and c > v1:
            op = "+"
        val = v1 + c if op == "+" else v1 - c
        expr = f"({first}) {op} {c}"
        solution = f"{first} = {v1}. {v1} {op} {c} = {val}. The answer is \\boxed{{{val}}}."
        return expr, solution, val
    else:
        raise ValueError(f"arith has levels {LEVELS}, not {level}")
    return expr, f"{expr} = {val}. The answer is \\boxed{{{val}}}.", val


def _problem(rng: random.Random, level: int, idx: str) -> Problem:
    expr, solution, val = make_problem(rng, level)
    text = rng.choice(_PHRASES).format(e=expr)
    return Problem(id=idx, problem=text, answer=str(val), solution=solution, level=str(level))


@cache
def generate(split: str, seed: int = 0) -> tuple[Problem, ...]:
    """The deterministic problems of a split (test: 100 a level, interleaved; train: 50k mixed)."""
    if split == "test":
        rng = random.Random(f"arith-test-{seed}")
        by_level = {
            level: [_problem(rng, level, f"L{level}-{i:03d}") for i in range(TEST_PER_LEVEL)] for level in LEVELS
        }
        # Interleaved by level, so that --limit N keeps the level mix of the whole split.
        return tuple(by_level[level][i] for i in range(TEST_PER_LEVEL) for level in LEVELS)
    if split == "train":
        held_out = {p.problem for p in generate("test", seed)}
        rng = random.Random(f"arith-train-{seed}")
        out: list[Problem] = []
        while len(out) < TRAIN_SIZE:
            level = rng.choice(LEVELS)
            p = _problem(rng, level, f"train-{len(out):05d}")
            if p.problem not in held_out:
                out.append(p)
        return tuple(out)
    raise ValueError(split)


class Arith(Benchmark):
    name = "arith"
    description = "synthetic arithmetic, 5 levels x 100 test problems; tiny-arith's home turf"
    source = "generated (seeded, deterministic)"
    splits = ("test", "train")
    version = "1"
    generated = True

    def load(self, split: str = "test", data_dir: Path | None = None) -> list[Problem]:
        self.check_split(split)
        return list(generate(split))


@hookimpl
def register_benchmarks(register):
    register(Arith())

"""``arith``: seeded synthetic arithmetic in five levels, solvable by tiny-arith.

The levels grow like MATH's: one-digit sums, then longer operands, products,
and finally two operations with an intermediate step. Every problem has a
step-by-step solution ending in ``\\boxed{N}``. The train split (for RL,
calibration and tiny-arith's own training) never contains a test problem.
"""

from __future__ import annotations

import random
from functools import cache

from harness import hookimpl
from harness.core.benchmark import Problem
from harness.toolkit.synthetic import SyntheticBenchmark, split_problems

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
    return split_problems("arith", split, seed, _problem, LEVELS, TEST_PER_LEVEL, TRAIN_SIZE)


class Arith(SyntheticBenchmark):
    name = "arith"
    description = "synthetic arithmetic, 5 levels x 100 test problems; tiny-arith's home turf"
    version = "1"
    generate = staticmethod(generate)


@hookimpl
def register_benchmarks(register):
    register(Arith())

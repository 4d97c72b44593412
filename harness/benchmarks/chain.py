"""``chain``: seeded multi-step problems whose answer needs every intermediate result; tiny-reason's home.

A problem starts from a number and applies a list of operations to the carried
value ("Start with 7. Add 5, multiply by 3, subtract 4."). The solution writes
one equation per operation ("7 + 5 = 12. 12 * 3 = 36. 36 - 4 = 32. The answer
is \\boxed{32}."), so it grows with the level: level k chains k operations,
and its solution is three to four times as many tokens at level 5 as at level 1. That makes the
completion budget matter (a cap near the median solution length cuts the long
levels off) and makes errors compound, which is what a low-bit model shows
first. Each step adds or subtracts 2-19 or multiplies by 2-3, and carried
values stay in 0..MAX_VALUE, so each step is two- or three-digit arithmetic.
The train split never contains a test problem. The validation split (100 a level, interleaved as the
test split is) is drawn from the same generator as both, and holds no problem of either (by problem
text, as train excludes test): every choice of a recipe is made on it, so the test split is read once.
"""

from __future__ import annotations

import random
from functools import cache

from harness import hookimpl
from harness.core.benchmark import Problem
from harness.toolkit.synthetic import SyntheticBenchmark, split_problems

LEVELS = (1, 2, 3, 4, 5)
TEST_PER_LEVEL = 100
TRAIN_SIZE = 60_000
VALIDATION_PER_LEVEL = 100
#: carried values never leave 0..MAX_VALUE (an operation that would is not drawn)
MAX_VALUE = 199
_WORDS = {"+": "add {a}", "-": "subtract {a}", "*": "multiply by {a}"}
_OPENINGS = ("Start with {s}.", "Begin with {s}.", "Take {s}.")


def operations(level: int) -> int:
    """Operations a problem of ``level`` chains: one at level 1, five at level 5."""
    if level not in LEVELS:
        raise ValueError(f"chain has levels {LEVELS}, not {level}")
    return level


def _step(rng: random.Random, value: int) -> tuple[str, int, int]:
    """One operation on the carried ``value``: (op, operand, new value), staying in range."""
    while True:
        op = rng.choice("+-*")
        a = rng.randint(2, 3) if op == "*" else rng.randint(2, 19)
        new = {"+": value + a, "-": value - a, "*": value * a}[op]
        if 0 <= new <= MAX_VALUE:
            return op, a, new


def make_problem(rng: random.Random, level: int) -> tuple[str, str, int]:
    """(problem text, step-by-step solution, answer) for one problem of ``level``."""
    value = rng.randint(10, 99)
    words, equations = [], []
    for _ in range(operations(level)):
        op, a, new = _step(rng, value)
        words.append(_WORDS[op].format(a=a))
        equations.append(f"{value} {op} {a} = {new}.")
        value = new
    text = f"{rng.choice(_OPENINGS).format(s=equations[0].split()[0])} {', '.join(words).capitalize()}."
    solution = f"{' '.join(equations)} The answer is \\boxed{{{value}}}."
    return text, solution, value


def _problem(rng: random.Random, level: int, idx: str) -> Problem:
    text, solution, value = make_problem(rng, level)
    return Problem(id=idx, problem=text, answer=str(value), solution=solution, level=str(level))


@cache
def generate(split: str, seed: int = 0) -> tuple[Problem, ...]:
    """The deterministic problems of a split (test and validation: 100 a level, interleaved; train: 60k,
    levels mixed)."""
    if split == "validation":
        return _validation(seed)
    return split_problems("chain", split, seed, _problem, LEVELS, TEST_PER_LEVEL, TRAIN_SIZE)


def _validation(seed: int) -> tuple[Problem, ...]:
    """Problems of the training distribution (the same generator, its own seeded stream) that are
    neither test nor train problems, nor repeated: the split a recipe is chosen on. Interleaved by
    level like the test split, so ``--limit N`` keeps the level mix and each level has a figure."""
    held_out = {p.problem for split in ("test", "train") for p in generate(split, seed)}
    rng = random.Random(f"chain-validation-{seed}")
    by_level: dict[int, list[Problem]] = {}
    for level in LEVELS:
        found: list[Problem] = []
        while len(found) < VALIDATION_PER_LEVEL:
            p = _problem(rng, level, f"V{level}-{len(found):03d}")
            if p.problem not in held_out:
                held_out.add(p.problem)
                found.append(p)
        by_level[level] = found
    return tuple(by_level[level][i] for i in range(VALIDATION_PER_LEVEL) for level in LEVELS)


class Chain(SyntheticBenchmark):
    name = "chain"
    description = "synthetic chained operations on a carried value, 5 levels (1-5 steps) x 100; tiny-reason's home"
    version = "1"
    splits = ("test", "train", "validation")
    generate = staticmethod(generate)


@hookimpl
def register_benchmarks(register):
    register(Chain())

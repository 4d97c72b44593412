"""chain's validation split: the problems every recipe choice is made on, disjoint from train and test."""

from __future__ import annotations

import hashlib
from collections import Counter

import pytest

from harness.base.errors import UserError


def _hashes(problems) -> set[str]:
    return {hashlib.sha256(p.problem.encode()).hexdigest() for p in problems}


def test_validation_is_500_problems_100_a_level_interleaved():
    from harness.benchmarks.chain import LEVELS, VALIDATION_PER_LEVEL, generate

    val = generate("validation")
    assert len(val) == VALIDATION_PER_LEVEL * len(LEVELS) == 500
    assert Counter(p.level for p in val) == {str(level): VALIDATION_PER_LEVEL for level in LEVELS}
    # interleaved as the test split: any prefix (--limit) keeps the level mix
    assert [p.level for p in val[: len(LEVELS)]] == [str(level) for level in LEVELS]
    assert len({p.id for p in val}) == len(val)
    # a function of the code: the same problems every time
    assert generate.__wrapped__("validation") == val


def test_validation_is_disjoint_from_train_and_test_by_hash():
    from harness.benchmarks.chain import generate

    val, train, test = generate("validation"), generate("train"), generate("test")
    hashes = _hashes(val)
    assert len(hashes) == len(val)  # no problem twice
    assert not hashes & _hashes(train)
    assert not hashes & _hashes(test)
    assert not {p.id for p in val} & {p.id for p in test}


def test_validation_is_drawn_from_the_training_distribution():
    """Same generator: every problem's solution chains its level's operations and ends in its answer,
    and the operations' mix is the train split's (within sampling error)."""
    from harness.benchmarks.chain import generate

    def ops(problems):
        counts = Counter(op for p in problems for eq in p.solution.split(". ")[:-1] for op in "+-*"
                         if f" {op} " in eq)
        total = sum(counts.values())
        return {op: counts[op] / total for op in "+-*"}

    val, train = generate("validation"), generate("train")
    for p in val:
        equations = p.solution.count(" = ")
        assert equations == int(p.level)
        assert p.solution.endswith(f"\\boxed{{{p.answer}}}.")
    val_mix, train_mix = ops(val), ops(train[:5000])
    for op in "+-*":
        assert val_mix[op] == pytest.approx(train_mix[op], abs=0.05)


def test_the_benchmark_loads_validation_and_names_it_when_refusing():
    from harness.benchmarks.chain import generate
    from harness.core.plugin_manager import get_registry

    chain = get_registry().benchmarks.get("chain")
    assert "validation" in chain.splits
    assert chain.load("validation") == list(generate("validation"))
    with pytest.raises(UserError, match="validation"):
        chain.load("dev")

"""Whether two final answers are the same mathematics: fast paths, then math-verify, bounded in time.

math-verify bounds its own time with ``signal.alarm``, which only works in the
main thread; elsewhere it is called without timeouts and :func:`too_costly`
keeps the inputs that can make sympy run for minutes (exponent towers, huge
powers and factorials, deep nesting, very long strings) away from it.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence
from fractions import Fraction
from functools import lru_cache
from typing import Any

from harness.grading.normalize import (
    canonical,
    choice_label,
    decimal_comma,
    lenient_reading,
    normalize,
    top_level_parts,
)

#: seconds math-verify may spend parsing one answer or comparing two (main thread only)
#: (math-verify's own default; 2 s expired on sympy's first, lazy-import call on a loaded machine)
TIMEOUT_S = 5
#: answers longer than this (after normalization) are compared as strings only
MAX_SYMBOLIC_CHARS = 1500
#: brackets nested deeper than this are compared as strings only (sympy's parser recurses per level)
MAX_NESTING = 30

_INT = re.compile(r"[-+]?\d+")
_PERCENT = re.compile(r"%|\\text\s*\{\s*percent|\bpercent\b")
_DECIMAL = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)")
_FRAC = re.compile(r"([-+]?)\\frac\{(\d+)\}\{(\d+)\}|([-+]?\d+)\s*/\s*(\d+)")


def plain_number(s: str) -> Fraction | None:
    """The exact value of an integer, decimal or simple fraction; None for anything else."""
    try:
        if _DECIMAL.fullmatch(s):
            return Fraction(s)
        m = _FRAC.fullmatch(s)
        if m:
            if m.group(2) is not None:
                value = Fraction(int(m.group(2)), int(m.group(3)))
                return -value if m.group(1) == "-" else value
            return Fraction(int(m.group(4)), int(m.group(5)))
    except (ValueError, ZeroDivisionError):  # ValueError also for integers past Python's 4,300 digits
        return None
    return None


# numeric exponent towers (10^{10^{10}}), huge integer powers and factorials; symbolic
# nesting such as e^{-x^{2}} is harmless and stays symbolic
_TOWER = re.compile(r"\d\s*\^\s*\{?\s*\d+\s*\}?\s*\^|\^\s*\{?\s*\d{5,}|\d{5,}\s*!|\\binom\s*\{\s*\d{5,}")
_BRACKET = re.compile(r"[{}()\[\]]")


def _nesting(s: str) -> int:
    depth = deepest = 0
    for m in _BRACKET.finditer(s):
        depth += 1 if m.group(0) in "{([" else -1
        deepest = max(deepest, depth)
    return deepest


def too_costly(s: str) -> bool:
    """Inputs that can keep sympy busy for minutes: exponent towers, huge powers and factorials, nesting."""
    return len(s) > MAX_SYMBOLIC_CHARS or bool(_TOWER.search(s)) or _nesting(s) > MAX_NESTING


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _quiet_math_verify() -> None:
    # math-verify warns once when timeouts are off, and on every timeout: we
    # bound time ourselves and treat a timeout as "not equal".
    for name in ("math_verify", "math_verify.parser", "math_verify.grader", "math_verify.utils"):
        logging.getLogger(name).setLevel(logging.ERROR)


@lru_cache(maxsize=1)
def _extraction_config() -> tuple:
    """math-verify's default extraction, minus its unit stripping.

    math-verify drops trailing single letters as units, so ``6m`` would equal
    ``6`` and ``\\frac{1}{m}t`` would equal ``\\frac{1}{m}``; :func:`normalize`
    removes real units (``\\text{}``/``\\mathrm{}`` groups, unit words) instead.
    """
    from math_verify import (
        ExprExtractionConfig,
        LatexExtractionConfig,
        LatexNormalizationConfig,
    )

    latex = LatexExtractionConfig(
        normalization_config=LatexNormalizationConfig(
            basic_latex=True, units=False, malformed_operators=True, nits=True, boxed="all", equations=False
        )
    )
    return (latex, ExprExtractionConfig())


@lru_cache(maxsize=65536)
def _parse(normalized: str, main_thread: bool) -> tuple[Any, ...]:
    """math-verify's parse of one normalized answer (cached: references repeat)."""
    from math_verify import parse

    _quiet_math_verify()
    if not normalized or too_costly(normalized):
        return ()
    timeout = TIMEOUT_S if main_thread else None
    try:
        parsed = parse(f"${normalized}$", extraction_config=_extraction_config(), parsing_timeout=timeout)
        return tuple(parsed)
    except Exception:  # noqa: BLE001 - math-verify raises on odd input; unparsable is not equal
        return ()


def _symbolic(parsed: Sequence[Any]) -> bool:
    return any(not isinstance(p, str) for p in parsed)


def _different_variables(gold: tuple, pred: tuple) -> bool:
    """True when both answers are plain expressions over different variables (``3`` vs ``3n``).

    Such pairs cannot be equal for math-verify either (it compares variables
    strictly), but proving it costs a sympy simplification, ~0.1-1 s each:
    most wrong answers a model writes end here, so this check is worth having.
    Equations, sets, tuples and intervals are left to math-verify.
    """
    from sympy import Expr

    g = next((x for x in gold if not isinstance(x, str)), None)
    p = next((x for x in pred if not isinstance(x, str)), None)
    return isinstance(g, Expr) and isinstance(p, Expr) and g.free_symbols != p.free_symbols


def _verify(gold: tuple, pred: tuple, main_thread: bool) -> bool:
    from math_verify import verify

    if _different_variables(gold, pred):
        return False
    try:
        # allow_set_relation_comp: "x > 2" answers "(2, \infty)", "-2 \le x \le 7" answers "x \in [-2,7]"
        return bool(verify(list(gold), list(pred), allow_set_relation_comp=True,
                           timeout_seconds=TIMEOUT_S if main_thread else None))
    except Exception:  # noqa: BLE001 - a comparison that fails is not a match
        return False


@lru_cache(maxsize=65536)
def several_parts(reference: str) -> bool:
    """True when the reference lists several answers (``2, 5``; ``(1,2),(2,1)``), not one value."""
    if "," not in reference and ";" not in reference and "\\text" not in reference:
        return False  # (normalize turns only "\\text{ and }" into a comma)
    return len(top_level_parts(normalize(reference))) > 1


_ROUNDED = re.compile(r"[-+]?\d*\.(\d{2,})")


def _fraction_value(ref: str, main_thread: bool) -> Fraction | None:
    """The exact value of a reference that is a non-integer rational (``\\frac13``, ``1/3``, ``3\\frac13``).

    math-verify parses decimals as floats and fractions as rationals, so this
    is also what tells a reference written as a fraction from one written in decimals.
    """
    from sympy import Rational

    value = next((x for x in _parse(ref, main_thread) if not isinstance(x, str)), None)
    if isinstance(value, Rational) and not value.is_integer:
        return Fraction(int(value.p), int(value.q))
    return None


def rounded_match(pred: str, ref: str, main_thread: bool = True) -> bool:
    """True when ``pred``, a decimal of two places or more, is the fraction ``ref`` rounded to as many.

    A model that gives ``0.33`` for ``\\frac{1}{3}`` has the right value at the
    precision it chose; two places at least, so ``0.3`` stays wrong, and
    rounding is half away from zero, so ``0.67`` answers ``\\frac23`` and
    ``0.66`` does not. References in decimals (``0.49``) or irrational
    (``\\pi``, ``\\sqrt{2}``) ask for exactly their value: no rounding there.
    """
    places = _ROUNDED.fullmatch(pred)
    if places is None:
        return False
    exact = _fraction_value(ref, main_thread)
    if exact is None:
        return False
    scale = 10 ** len(places.group(1))
    scaled = abs(exact) * scale
    rounded = int(scaled) + (1 if scaled - int(scaled) >= Fraction(1, 2) else 0)
    return Fraction(pred) == (rounded if exact > 0 else -rounded) / Fraction(scale)


@lru_cache(maxsize=65536)
def _lenient_equal(predicted: str, reference: str) -> bool:
    """The strict verdict, else the same answers under the lenient readings, else a rounded fraction."""
    if _equal(predicted, reference):
        return True
    before = normalize(predicted), normalize(reference)
    pred, ref = lenient_reading(before[0]), lenient_reading(before[1])
    if not pred or not ref:
        return False
    if (pred, ref) != before and _equal(pred, ref):
        return True
    return rounded_match(pred, ref, _in_main_thread())


@lru_cache(maxsize=65536)
def _equal(predicted: str, reference: str) -> bool:
    pred, ref = normalize(predicted), normalize(reference)
    if not pred or not ref:
        return False
    if canonical(pred) == canonical(ref):
        return True
    if not several_parts(reference):  # one value expected: "3,5" is 3.5, "(C) 142" is 142
        before = pred, ref
        pred, ref = decimal_comma(pred), decimal_comma(ref)
        choice = choice_label(pred)
        if choice is not None:
            if ref.strip("() ") == choice[0]:
                return True
            pred = choice[1]
        if (pred, ref) != before and canonical(pred) == canonical(ref):
            return True
    a, b = plain_number(pred), plain_number(ref)
    if a is not None and b is not None:
        if a == b:
            return True
        if b != 0 and _PERCENT.search(reference) and not _PERCENT.search(predicted) and a == b / 100:
            return True  # "62.5%" answered as 0.625: math-verify accepts it too
        if _INT.fullmatch(pred) and _INT.fullmatch(ref):
            return False  # two different integers: no need for sympy
    main = _in_main_thread()
    gold, target = _parse(ref, main), _parse(pred, main)
    if not gold or not target:
        return False
    return _verify(gold, target, main)


def answers_equal(predicted: str, reference: str, *, lenient: bool = False) -> bool:
    """Mathematical equivalence of two final answers (math-verify, bounded in time).

    Not symmetric in principle (math-verify treats the reference as gold, e.g.
    for ``x = 5`` against ``5``); in practice it almost always is. ``lenient``
    adds the lenient grader's readings on top (amounts of money, a fraction
    given as a rounded decimal: :func:`lenient_reading`, :func:`rounded_match`),
    never taking away an answer the strict reading accepts.
    """
    equal = _lenient_equal if lenient else _equal
    return equal(str(predicted), str(reference))


def answer_parseable(reference: str) -> bool:
    """True when the grader understands ``reference`` as mathematics.

    False means it can only be matched as a string (after normalization), so a
    correct but differently written answer would be scored wrong: evaluation
    should count and report such problems rather than trust their scores.
    """
    ref = normalize(reference)
    if not ref:
        return False
    if plain_number(ref) is not None:
        return True
    return _symbolic(_parse(ref, _in_main_thread()))


def clear_caches() -> None:
    """Forget every cached parse and verdict (benchmarks measure the grader cold)."""
    for cached in (_equal, _lenient_equal, _parse, several_parts):
        cached.cache_clear()

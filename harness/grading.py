"""Answer extraction and equivalence: the grader behind every score and every RL reward.

``grade`` is public API: the RL reward calls it, so training and evaluation
can never disagree on what "correct" means.

How a completion is graded:

1. :func:`extract_answer` takes the final answer: the last ``\\boxed{}``
   (an ``<answer>`` tag written after it wins, for R1-style prompts), else
   "the (final) answer is ...", else GSM8K's ``#### N``.
2. :func:`normalize` rewrites notation that carries no mathematical content:
   ``$``, ``\\!``, ``\\left``, ``\\dfrac``, ``\\text{}`` units, degrees,
   percent signs, thousands separators, ``4.5e33`` scientific notation.
3. Fast paths settle the common cases without sympy: identical normalized
   strings, and two plain integers (the RL reward grades thousands of these).
4. Everything else goes to math-verify (``parse`` + ``verify``), which knows
   ``\\frac{1}{2} = 0.5 = 1/2``, sets, intervals, tuples and equations.

math-verify bounds its own time with ``signal.alarm``, which only works in the
main thread; elsewhere it is called without timeouts and :func:`_too_costly`
keeps the inputs that can make sympy run for minutes (exponent towers, huge
powers and factorials, very long strings) away from it.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import Any

#: reward of the seed study: 1 for a correct answer, +0.1 for a boxed answer
CORRECT_REWARD = 1.0
FORMAT_REWARD = 0.1

#: seconds math-verify may spend parsing one answer or comparing two (main thread only)
TIMEOUT_S = 2
#: answers longer than this (after normalization) are compared as strings only
MAX_SYMBOLIC_CHARS = 1500

# ---------------------------------------------------------------------------
# extraction


def _braced(text: str, start: int) -> tuple[str, int] | None:
    """Content of the brace group opening at ``text[start]`` and the index after it."""
    depth = 0
    for i in range(start, len(text)):
        ch = text[i]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i], i + 1
    return None


_BOXED = re.compile(r"\\(?:boxed|fbox)\b")


def _last_boxed_span(text: str) -> tuple[str, int] | None:
    """(content, start index) of the last ``\\boxed{...}``/``\\fbox{...}``/``\\boxed N``.

    The last box decides: when it never closes, the answer was cut off and
    there is none (an earlier box is an intermediate result, not the answer).
    """
    matches = list(_BOXED.finditer(text))
    if not matches:
        return None
    match = matches[-1]
    rest = match.end()
    while rest < len(text) and text[rest] == " ":
        rest += 1
    if rest < len(text) and text[rest] == "{":
        group = _braced(text, rest)
        return None if group is None else (group[0].strip(), match.start())
    bare = re.match(r"[^\s$.,{}]+", text[rest:])  # "\\boxed 5" (no braces)
    if bare and rest > match.end():
        return bare.group(0), match.start()
    return None


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``), braces balanced."""
    span = _last_boxed_span(text)
    return None if span is None else span[0]


_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.S)
_ANSWER_IS = re.compile(
    r"(?:final answer|the answer)\s*(?:is\b|:)\s*:?\s*(?:(?:therefore|thus|then|clearly)\b[\s:,]*)?", re.I
)
_ANSWER_TAIL = re.compile(r"\$+([^$]+?)\$+|([^\n]+?)\s*(?:\.\s|\.?\s*$|\n)")
_HASHES = re.compile(r"^\s*####\s*(.+?)\s*$", re.M)


def extract_answer(text: str) -> str | None:
    """The completion's final answer: last boxed (or a later ``<answer>`` tag), else
    "the answer is ...", else GSM8K's ``#### N``; None when there is none."""
    boxed = _last_boxed_span(text)
    tags = list(_ANSWER_TAG.finditer(text))
    if tags and (boxed is None or tags[-1].start() > boxed[1]):
        inner = tags[-1].group(1)
        return last_boxed(inner) or inner.strip() or None
    if boxed is not None:
        return boxed[0]
    # without a box: whichever of "the answer is ..." and "#### ..." comes last
    candidates: list[tuple[int, str]] = []
    heads = list(_ANSWER_IS.finditer(text))
    if heads:
        tail = _ANSWER_TAIL.match(text, heads[-1].end())
        if tail:
            candidates.append((heads[-1].start(), tail.group(1) or tail.group(2)))
    hashes = list(_HASHES.finditer(text))
    if hashes:
        candidates.append((hashes[-1].start(), hashes[-1].group(1)))
    if not candidates:
        return None
    answer = max(candidates)[1].strip()
    # "The answer is \\boxed{12" was cut off mid-box: a truncated answer is no answer
    if _BOXED.match(answer) or not re.search(r"\w", answer):
        return None
    return answer


def is_formatted(text: str) -> bool:
    """True when the completion gives its answer in the expected ``\\boxed{}`` form."""
    return last_boxed(text) is not None


# ---------------------------------------------------------------------------
# normalization

_UNIT_WORDS = (
    # several letters: safe to strip when they follow a number
    "cm|mm|km|nm|pm|kg|mg|Hz|kHz|MHz|GHz|eV|keV|MeV|GeV|kJ|kW|MW|mol|atm|kPa|Pa|mph|ft|lb|lbs|oz|"
    "sec|secs|mins?|hrs?|yrs?|mL|ml|"
    r"[a-zA-Z]{3,}"  # any plain word of 3+ letters: "dollars", "apples", "seconds"
)
_FUNCTION_WORDS = frozenset(
    "sin cos tan cot sec csc log ln exp max min mod gcd lcm det arcsin arccos arctan sinh cosh tanh".split()
)
# \text{...}, \mathrm{...}, \mbox{...} groups (with an optional exponent) after a number
_TEXT_UNIT = r"\\(?:text|textrm|mathrm|mbox|rm)\s*\{[^{}]*\}(?:\s*\^\s*\{?\s*-?\d+\s*\}?)?"
_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:\s*(?:\\times|\\cdot)\s*10\s*\^\s*\{?\s*[-+]?\d+\s*\}?)?"
_TRAILING_TEXT_UNITS = re.compile(rf"^(?P<num>{_NUMBER})\s*(?:{_TEXT_UNIT}\s*)+$")
_TRAILING_WORD_UNITS = re.compile(
    rf"^(?P<num>{_NUMBER})\s+(?P<unit>(?:(?:{_UNIT_WORDS})(?:\s*\^\s*\{{?-?\d+\}}?)?[\s/.]*)+)$"
)
_SCI_E = re.compile(r"^([-+]?\d+(?:\.\d+)?)\s*[eE]\s*([-+]?\d+)$")
_SCI_X = re.compile(r"^([-+]?\d+(?:\.\d+)?)\s*(?:x|×|\*)\s*10\s*(?:\^|\*\*)\s*\{?\s*([-+]?\d+)\s*\}?$")
_THOUSANDS = re.compile(r"^[-+]?\d{1,3}(?:(?:,|\{,\}|\\,|\\ | )\d{3})+(?:\.\d+)?$")
_DEGREE = re.compile(r"(?<=[\d}])\s*(?:\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\\circ|°|\\degree)(?:\s*(?:C|F)\b)?")
_ARCSEC = re.compile(r"(\d)\s*(?:\^\s*\{\s*\\prime\s*\\prime\s*\}|'')")
_ARCMIN = re.compile(r"(\d)\s*(?:\^\s*\{\s*\\prime\s*\}|\^\s*\\prime\b)")
_SPACING = re.compile(r"\\[!,;: ]|\\q?quad\b")


def normalize(answer: str) -> str:
    """The answer with notation that carries no mathematical content removed.

    Keeps the mathematics itself untouched: the result still goes through
    math-verify, this only spares it the notation it would misread
    (``4.5e33`` as ``4.5 * e * 33``, ``62.5%`` as a LaTeX comment, units as
    variables).
    """
    s = str(answer).strip()
    # a whole answer in \boxed{} or \text{} keeps only its content
    while True:
        inner = last_boxed(s)
        if inner is None or not re.fullmatch(r"\\(?:boxed|fbox)\s*\{.*\}", s, re.S):
            break
        s = inner
    s = s.replace("\\$", "").replace("$", "")
    whole_text = re.fullmatch(r"\\(?:text|textbf|textrm|mathrm|mbox)\s*\{([^{}]*)\}", s.strip())
    if whole_text:  # \text{Evelyn} is the word Evelyn, \text{(C)} the choice (C)
        s = whole_text.group(1)
    s = _SPACING.sub(" ", s)
    s = re.sub(r"\\(?:left|right)(?![a-zA-Z])\s*", "", s)
    s = re.sub(r"\\[dt]frac", r"\\frac", s)
    s = re.sub(r"\\(?:displaystyle|textstyle)\b\s*", "", s)
    s = s.replace("\\geqslant", "\\geq").replace("\\leqslant", "\\leq")
    s = re.sub(r"_\{\s*\\(max|min)\s*\}", r"_{\1}", s)
    s = _ARCSEC.sub(r"\1", s)
    s = _ARCMIN.sub(r"\1", s)
    s = _DEGREE.sub("", s)
    s = re.sub(r"\s*\\%|\s*%|\s*\\text\s*\{\s*percent\s*\}|\s+percent\b", "", s)
    s = re.sub(r"\s*\\text\s*\{\s*(?:or|and)\s*\}\s*", ", ", s)
    s = s.strip().rstrip(".").strip()
    match = _TRAILING_TEXT_UNITS.match(s)
    if match:
        s = match.group("num").strip()
    match = _TRAILING_WORD_UNITS.match(s)
    if match and not (set(re.findall(r"[a-zA-Z]+", match.group("unit"))) & _FUNCTION_WORDS):
        s = match.group("num").strip()
    if _THOUSANDS.match(s):
        s = re.sub(r"\{,\}|\\,|\\ |,| ", "", s)
    match = _SCI_E.match(s) or _SCI_X.match(s)
    if match:
        s = f"{match.group(1)}\\times10^{{{match.group(2)}}}"
    return re.sub(r"\s+", " ", s).strip()


def _canonical(s: str) -> str:
    """A spacing- and brace-insensitive form for string comparison (words: case-insensitive)."""
    if re.fullmatch(r"[A-Za-z][A-Za-z ]+", s):
        return " ".join(s.lower().split())
    s = re.sub(r"([_^])\{(\w)\}", r"\1\2", s)
    s = re.sub(r"\\frac\s*(\d)\s*(\d)", r"\\frac{\1}{\2}", s)
    return re.sub(r"\s+", "", s)


_INT = re.compile(r"[-+]?\d+")
_PERCENT = re.compile(r"%|\\text\s*\{\s*percent|\bpercent\b")
_DECIMAL = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)")
_FRAC = re.compile(r"([-+]?)\\frac\{(\d+)\}\{(\d+)\}|([-+]?\d+)\s*/\s*(\d+)")


def _plain_number(s: str) -> Fraction | None:
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
    except (ValueError, ZeroDivisionError):
        return None
    return None


# ---------------------------------------------------------------------------
# math-verify, bounded

# numeric exponent towers (10^{10^{10}}), huge integer powers and factorials; symbolic
# nesting such as e^{-x^{2}} is harmless and stays symbolic
_TOWER = re.compile(r"\d\s*\^\s*\{?\s*\d+\s*\}?\s*\^|\^\s*\{?\s*\d{5,}|\d{5,}\s*!|\\binom\s*\{\s*\d{5,}")


def _too_costly(s: str) -> bool:
    """Inputs that can keep sympy busy for minutes: exponent towers, huge powers, factorials."""
    return len(s) > MAX_SYMBOLIC_CHARS or bool(_TOWER.search(s))


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
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, LatexNormalizationConfig

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
    if not normalized or _too_costly(normalized):
        return ()
    timeout = TIMEOUT_S if main_thread else None
    try:
        return tuple(parse(f"${normalized}$", extraction_config=_extraction_config(), parsing_timeout=timeout))
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
        return bool(verify(list(gold), list(pred), timeout_seconds=TIMEOUT_S if main_thread else None))
    except Exception:  # noqa: BLE001 - a comparison that fails is not a match
        return False


@lru_cache(maxsize=65536)
def _equal(predicted: str, reference: str) -> bool:
    pred, ref = normalize(predicted), normalize(reference)
    if not pred or not ref:
        return False
    if _canonical(pred) == _canonical(ref):
        return True
    a, b = _plain_number(pred), _plain_number(ref)
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


def answers_equal(predicted: str, reference: str) -> bool:
    """Mathematical equivalence of two final answers (math-verify, bounded in time).

    Not symmetric in principle (math-verify treats the reference as gold, e.g.
    for ``x = 5`` against ``5``); in practice it almost always is.
    """
    return _equal(str(predicted), str(reference))


def answer_parseable(reference: str) -> bool:
    """True when the grader understands ``reference`` as mathematics.

    False means it can only be matched as a string (after normalization), so a
    correct but differently written answer would be scored wrong: evaluation
    should count and report such problems rather than trust their scores.
    """
    ref = normalize(reference)
    if not ref:
        return False
    if _plain_number(ref) is not None:
        return True
    return _symbolic(_parse(ref, _in_main_thread()))


def unparseable_answers(problems: Sequence[Any]) -> list[str]:
    """Ids of the problems whose reference answer the grader cannot parse (see :func:`answer_parseable`)."""
    return [p.id for p in problems if not answer_parseable(p.answer)]


# ---------------------------------------------------------------------------
# public grading API

References = str | Sequence[str]


def _as_list(reference: References) -> list[str]:
    return [reference] if isinstance(reference, str) else [str(r) for r in reference]


def references(problem: Any) -> list[str]:
    """Every accepted answer of a problem: its ``answer``, then ``meta["alternatives"]``."""
    alternatives = (getattr(problem, "meta", None) or {}).get("alternatives", ())
    return [str(problem.answer), *(str(a) for a in alternatives)]


def grade(completion: str, reference: References) -> bool:
    """True when the completion's final answer matches the reference answer.

    ``reference`` may also be a list of accepted answers (any one matches).
    """
    predicted = extract_answer(completion)
    return predicted is not None and any(answers_equal(predicted, r) for r in _as_list(reference))


@dataclass(frozen=True)
class Grade:
    predicted: str | None
    correct: bool
    formatted: bool

    @property
    def reward(self) -> float:
        """The seed study's reward (and its Table 1 metric): values in {0, 0.1, 1.1}."""
        return CORRECT_REWARD * self.correct + FORMAT_REWARD * self.formatted


def grade_full(completion: str, reference: References) -> Grade:
    """Extracted answer, correctness and format of one completion."""
    predicted = extract_answer(completion)
    correct = predicted is not None and any(answers_equal(predicted, r) for r in _as_list(reference))
    return Grade(predicted, correct, is_formatted(completion))

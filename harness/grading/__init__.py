"""Answer extraction and equivalence: the grader behind every score and every RL reward.

``grade`` is public API: the RL reward calls it (always with the ``strict``
policy), so training and evaluation can never disagree on what "correct" means.

How a completion is graded:

1. :mod:`~harness.grading.extraction` takes the final answer under one of two
   policies, ``strict`` (the default: last box, ``<answer>`` tag, "the answer
   is", ``#### N``) or ``lenient`` (also the final expression of an
   unformatted completion). When the reference has several parts and the
   completion several boxes side by side (``\\boxed{2} and \\boxed{5}``), the
   boxes are graded together as one list; against a single value the last box
   wins (``\\boxed{3}`` then ``\\boxed{4}`` answered 4).
2. :mod:`~harness.grading.normalize` removes notation without mathematical
   content that math-verify would misread (units in ``\\text{}``-style groups,
   spacing commands as thousands separators, percent, ``4.5e33``, ...).
3. Fast paths settle the common cases without sympy: identical normalized
   strings, two plain numbers (the RL reward grades thousands of these).
4. Everything else goes to math-verify (``parse`` + ``verify``), which knows
   ``\\frac{1}{2} = 0.5 = 1/2``, sets, intervals, tuples, matrices, relations
   and equations.

The decimal-comma rule: a comma inside a number is a thousands separator
when every group after it has exactly three digits and the first group has one
to three digits, not starting with 0 (``1,000``, ``12,345,678``; also written
``12,\\!345``, ``12{,}345``, ``12\\,345``). Any other single comma between
digits, with no space around it, is a decimal comma (``3,5`` = 3.5, ``0,25`` =
0.25, ``0,250`` = 0.25) -- but only when the reference is one value: against a
reference that lists several answers (``3, 5``) a comma separates answers.
References themselves are read the same way. So ``1,000`` is never 1.0, and
``1,5`` is 1.5 when the reference is ``1.5`` but the list {1, 5} when the
reference is ``1,5``.

Tolerance: none beyond math-verify's own (it rounds numbers to six decimal
places before comparing), so ``0.333333`` is ``1/3`` and, under ``strict``,
``0.33`` is not: the RL reward asks for the exact answer. ``lenient`` grades
as a free-form reader would and accepts a decimal of at least two places that
is a fraction reference rounded (half away from zero) to as many places
(``0.33`` and ``0.333`` for ``\\frac13``, not ``0.3`` or ``0.34``). Never a
fixed tolerance, and never against a reference written in decimals or an
irrational one: ``3.14`` for ``\\pi`` stays wrong. Units are dropped, not
converted: only the number before them is compared (so ``150 mm^2`` does not
match ``15 cm^2``).

What else ``lenient`` reads and ``strict`` does not (so the RL reward, always
strict, never changes): a reference written as separate boxes
(``\\boxed{2}, \\boxed{5}``) is the list ``2, 5``, where ``strict`` keeps its last
box; an amount of money keeps its decimal comma (``€3,50``, ``3,50 euros``: a
comma followed by one or two digits beside a currency; ``€1,000`` is still
1000); thousands may be grouped with no-break or thin spaces or ``~``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harness.grading.equivalence import (
    answer_parseable,
    answers_equal,
    clear_caches,
    several_parts,
)
from harness.grading.extraction import (
    EXTRACTION_POLICIES,
    check_extraction,
    extract,
    extract_answer,
    is_formatted,
    last_boxed,
    separate_boxes,
)
from harness.grading.normalize import normalize

__all__ = [
    "CORRECT_REWARD", "EXTRACTION_POLICIES", "FORMAT_REWARD", "Grade", "References", "answer_parseable",
    "answers_equal", "check_extraction", "clear_caches", "extract_answer", "grade", "grade_full",
    "is_formatted", "last_boxed", "normalize", "references", "unparseable_answers",
]

#: reward of the seed study: 1 for a correct answer, +0.1 for a boxed answer
CORRECT_REWARD = 1.0
FORMAT_REWARD = 0.1

References = str | Sequence[str]


def _as_list(reference: References) -> list[str]:
    return [reference] if isinstance(reference, str) else [str(r) for r in reference]


def references(problem: Any) -> list[str]:
    """Every accepted answer of a problem: its ``answer``, then ``meta["alternatives"]``."""
    alternatives = (getattr(problem, "meta", None) or {}).get("alternatives", ())
    return [str(problem.answer), *(str(a) for a in alternatives)]


def unparseable_answers(problems: Sequence[Any]) -> list[str]:
    """Ids of the problems whose reference answer the grader cannot parse (see :func:`answer_parseable`)."""
    return [p.id for p in problems if not answer_parseable(p.answer)]


def _lenient_reference(reference: str) -> str:
    """A reference written as separate boxes (``\\boxed{2}, \\boxed{5}``) as the list it gives (``2, 5``)."""
    boxes = separate_boxes(reference) if "box" in reference else None
    return reference if boxes is None else ", ".join(boxes)


def _judge(completion: str, reference: References, extraction: str) -> tuple[str | None, bool]:
    """(the answer graded, whether it matches any accepted reference)."""
    lenient = extraction == "lenient"
    refs = [_lenient_reference(r) for r in _as_list(reference)] if lenient else _as_list(reference)
    multi = [several_parts(r) for r in refs]
    found = extract(completion, extraction, group=any(multi))
    if found is None:
        return None, False
    for ref, several in zip(refs, multi):
        answer = found.union if several else found.answer
        if answers_equal(answer, ref, lenient=lenient):
            return answer, True
    return (found.union if any(multi) else found.answer), False


def grade(completion: str, reference: References, extraction: str = "strict") -> bool:
    """True when the completion's final answer matches the reference answer.

    ``reference`` may also be a list of accepted answers (any one matches).
    ``extraction`` is the policy that finds the answer: ``strict`` or ``lenient``.
    """
    return _judge(completion, reference, extraction)[1]


@dataclass(frozen=True)
class Grade:
    predicted: str | None
    correct: bool
    formatted: bool

    @property
    def reward(self) -> float:
        """The seed study's reward (and its Table 1 metric): values in {0, 0.1, 1.1}."""
        return CORRECT_REWARD * self.correct + FORMAT_REWARD * self.formatted


def grade_full(completion: str, reference: References, extraction: str = "strict") -> Grade:
    """Extracted answer (the list graded, for several boxes), correctness and format of one completion."""
    predicted, correct = _judge(completion, reference, extraction)
    return Grade(predicted, correct, is_formatted(completion))

"""What the lenient grader reads that the strict one does not, one parametrized family each.

Every case is ``(reference, completion, lenient, strict)``: the verdict under
each policy. The strict column pins the strict grader (and so the RL reward,
which always grades strictly) to what it decided before the lenient readings
existed; ``None`` there means the case says nothing about strict. Each family
holds near misses that must stay wrong under lenient too.
"""

from __future__ import annotations

import pytest

from harness.grading import answers_equal, grade, grade_full
from harness.grading.equivalence import rounded_match
from harness.grading.extraction import extract_answer, separate_boxes

BARE_LATEX = [  # a completion (or its last line) that is LaTeX without $...$: read whole, not its last digit
    ("\\frac34", "\\frac{3}{4}", True, False),
    ("\\sqrt{12}", "2\\sqrt{3}", True, False),
    ("\\frac{14}{3}", "\\dfrac{14}{3}.", True, False),
    ("\\frac{1}{\\sqrt{2}}", "Combining the terms we get\n\\frac{\\sqrt{2}}{2}", True, False),
    ("1024", "2^{10}", True, False),
    ("0.75", "Answer: \\frac{3}{4}", True, False),
    ("2\\sqrt{3}", "\\therefore x = 2\\sqrt{3}", True, False),
    ("\\frac34", "x = \\frac{3}{4} \\blacksquare", True, False),
    ("\\frac34", "$\\frac{3}{4}$", True, False),  # with delimiters, as before
    ("\\frac34", "\\frac{4}{3}", False, False),
    ("\\sqrt{3}", "2\\sqrt{3}", False, False),
    ("4", "\\frac{3}{4}", False, False),  # its last digit is not its value
    ("3", "2\\sqrt{3}", False, False),
    ("2", "\\sqrt{2}", False, False),
]

LONE_VARIABLE = [  # an inline variable in the final sentence names the unknown; its number is the answer
    ("12", "so $x$ equals 12.", True, False),
    ("12", "Hence 12 is the value of $x$.", True, False),
    ("42", "Thus $n = 5$ gives 42", True, False),
    ("30", "So $\\theta$ is 30 degrees.", True, False),
    ("12", "so $x$ equals 12 cm^2.", True, False),  # an exponent is not the number
    ("12", "Substituting, $x = 12$ where $n$ counts the steps.", True, False),
    ("\\frac34", "Therefore $a_n$ tends to 3/4.", True, False),
    ("-12", "Thus $x$ equals \u221212.", True, False),  # a typographic minus
    ("x", "It simplifies to $x$.", True, False),  # no number: the variable is the answer
    ("e", "so the limit is $e$.", True, False),  # e is a constant, not a lone variable
    ("x", "so $x$ equals 12.", False, False),
    ("13", "Hence 12 is the value of $x$.", False, False),
    ("12", "so $x$ equals 12 and $y$ equals 5.", False, False),  # the last number decides
    ("5", "Thus $n = 5$ gives 42", False, False),
]

SEPARATE_BOXES = [  # a reference of several boxes is the list they hold, against one box or several
    ("\\boxed{2}, \\boxed{5}", "\\boxed{2, 5}", True, False),
    ("\\boxed{2}, \\boxed{5}", "\\boxed{5, 2}", True, False),
    ("\\boxed{2}, \\boxed{5}", "\\boxed{2}, \\boxed{5}", True, True),
    ("$\\boxed{2}$ and $\\boxed{5}$", "so the roots are $2$ and $5$.", True, False),
    ("\\boxed{(1,2)}, \\boxed{(3,4)}", "\\boxed{(1,2), (3,4)}", True, False),
    ("\\boxed{2} \\text{ or } \\boxed{5}", "Answer: $2, 5$", True, False),
    ("\\boxed{2, 5}", "\\boxed{2}, \\boxed{5}", True, True),  # the reverse
    ("\\boxed{2, 5}", "\\boxed{2} and \\boxed{5}", True, True),
    ("\\boxed{2}, \\boxed{5}", "\\boxed{5}", False, None),  # one of two (strict compares the last box only)
    ("\\boxed{2}, \\boxed{5}", "\\boxed{2, 5, 7}", False, False),
    ("\\boxed{2}, \\boxed{5}", "\\boxed{2, 7}", False, False),
    ("\\boxed{2}, \\boxed{5}", "\\boxed{7}", False, False),
    ("\\boxed{2, 5}", "\\boxed{5}", False, False),
    ("\\boxed{2, 5}", "\\boxed{2}, \\boxed{7}", False, False),
]

SPACE_THOUSANDS = [  # thousands grouped with spaces, in running text and with no-break spaces
    ("1000000", "There are 1 000 000 ways.", True, False),
    ("12345", "Answer: 12 345", True, False),
    ("12345", "\\boxed{12 345}", True, True),
    ("12345", "The total is 12\u00a0345.", True, False),
    ("10080", "so there are 10\u202f080 arrangements", True, False),
    ("1000000", "\\boxed{1~000~000}", True, False),
    ("1234", "There are 12 34 ways.", False, False),  # a group has three digits
    ("12345", "So 1 2345 in total.", False, False),
    ("345", "There are 12 345 ways.", False, False),  # the last group alone is not the number
    ("12.345", "\\boxed{12 345}", False, False),
]

CURRENCY_COMMA = [  # a decimal comma beside a currency sign or word; three digits after it are thousands
    ("3.5", "It costs €3,50.", True, False),
    ("3.50", "That is 3,50 euros.", True, False),
    ("2.75", "It costs 2,75 dollars", True, False),
    ("2.75", "The answer is 2,75 dollars.", True, False),
    ("1234.56", "The bill comes to 1.234,56 €.", True, False),
    ("3.5", "\\boxed{€3,50}", True, False),
    ("3.5", "\\boxed{3,50 euros}", True, False),
    ("1000", "It costs €1,000.", True, False),  # thousands, not a decimal comma
    ("1", "It costs €1,000.", False, False),
    ("1.0", "\\boxed{€1,000}", False, False),
    ("350", "It costs 3,50 euros", False, False),
    ("3.5", "so we pick 3,50 apples.", False, False),  # no currency: the comma may separate answers
]

ROUNDED_FRACTIONS = [  # a decimal of two places or more that is the fraction rounded (half away from zero)
    ("\\frac{1}{3}", "\\boxed{0.33}", True, False),
    ("\\frac13", "we get 0.333.", True, False),
    ("\\frac{2}{3}", "\\boxed{0.67}", True, False),
    ("1/8", "\\boxed{0.13}", True, False),
    ("-\\frac{1}{3}", "\\boxed{-0.33}", True, False),
    ("\\frac{100}{3}", "\\boxed{33.33}", True, False),
    ("3\\frac{1}{3}", "\\boxed{3.33}", True, False),
    ("\\frac13", "\\boxed{0.3}", False, False),  # one place is too coarse
    ("\\frac23", "\\boxed{0.66}", False, False),  # truncated, not rounded
    ("\\frac13", "\\boxed{0.334}", False, False),
    ("1/8", "\\boxed{0.12}", False, False),
    ("-\\frac13", "\\boxed{0.33}", False, False),
    ("\\pi", "\\boxed{3.14}", False, False),  # irrational: exactly its value
    ("\\sqrt{2}", "\\boxed{1.41}", False, False),
    ("0.49", "\\boxed{0.5}", False, False),  # a reference in decimals asks for exactly its value
    ("0.125", "\\boxed{0.13}", False, False),
]

FAMILIES = {
    "bare_latex": BARE_LATEX, "lone_variable": LONE_VARIABLE, "separate_boxes": SEPARATE_BOXES,
    "space_thousands": SPACE_THOUSANDS, "currency_comma": CURRENCY_COMMA,
    "rounded_fractions": ROUNDED_FRACTIONS,
}
ALL = [(name, *case) for name, cases in FAMILIES.items() for case in cases]


def _params(cases):
    return [pytest.param(*case, id=f"{i}-{case[1][:30]}") for i, case in enumerate(cases)]


def _check(reference: str, completion: str, lenient: bool, strict: bool | None) -> None:
    assert grade(completion, reference, extraction="lenient") is lenient
    if strict is not None:
        assert grade(completion, reference, extraction="strict") is strict


@pytest.mark.parametrize(("reference", "completion", "lenient", "strict"), _params(BARE_LATEX))
def test_bare_latex_completions(reference, completion, lenient, strict):
    _check(reference, completion, lenient, strict)


@pytest.mark.parametrize(("reference", "completion", "lenient", "strict"), _params(LONE_VARIABLE))
def test_lone_variable_before_the_number(reference, completion, lenient, strict):
    _check(reference, completion, lenient, strict)


@pytest.mark.parametrize(("reference", "completion", "lenient", "strict"), _params(SEPARATE_BOXES))
def test_references_written_as_separate_boxes(reference, completion, lenient, strict):
    _check(reference, completion, lenient, strict)


@pytest.mark.parametrize(("reference", "completion", "lenient", "strict"), _params(SPACE_THOUSANDS))
def test_spaces_as_thousands_separators(reference, completion, lenient, strict):
    _check(reference, completion, lenient, strict)


@pytest.mark.parametrize(("reference", "completion", "lenient", "strict"), _params(CURRENCY_COMMA))
def test_decimal_comma_beside_a_currency(reference, completion, lenient, strict):
    _check(reference, completion, lenient, strict)


@pytest.mark.parametrize(("reference", "completion", "lenient", "strict"), _params(ROUNDED_FRACTIONS))
def test_rounded_decimals_for_fractions(reference, completion, lenient, strict):
    _check(reference, completion, lenient, strict)


def test_every_family_keeps_cases_that_must_stay_wrong():
    for name, cases in FAMILIES.items():
        verdicts = [lenient for _, _, lenient, _ in cases]
        assert verdicts.count(True) >= 4 and verdicts.count(False) >= 4, name


def test_lenient_accepts_whatever_strict_accepts():
    for name, reference, completion, _, strict in ALL:
        if strict:
            assert grade(completion, reference, extraction="lenient"), (name, completion)


def test_the_reward_and_the_default_grade_stay_strict():
    """grade_full's default is what the RL reward calls: none of the lenient readings reach it."""
    for name, reference, completion, lenient, strict in ALL:
        if lenient and strict is False:
            assert grade_full(completion, reference).reward in (0.0, 0.1), (name, completion)


def test_extracted_answers():
    assert extract_answer("\\frac{3}{4}", "lenient") == "\\frac{3}{4}"
    assert extract_answer("= 2\\sqrt{3} \\qed", "lenient") == "2\\sqrt{3}"
    assert extract_answer("Hence 12 is the value of $x$.", "lenient") == "12"
    assert extract_answer("There are 1\u00a0000\u00a0000 ways.", "lenient") == "1 000 000"
    assert extract_answer("It costs €1.234,56.", "lenient") == "1234.56"
    assert extract_answer("It costs €1,000.", "lenient") == "1,000"
    assert extract_answer("We are done.\n-\\pi", "lenient") == "-\\pi"
    assert extract_answer("\\end{aligned}", "lenient") is None  # formatting, not an answer
    assert extract_answer("\\hline", "lenient") is None
    assert extract_answer("\\frac{3}{4}") is None  # strict reads no format here


def test_separate_boxes():
    assert separate_boxes("\\boxed{2}, \\boxed{5}") == ("2", "5")
    assert separate_boxes("$\\boxed{(1,2)}$ and $\\boxed{(3,4)}$.") == ("(1,2)", "(3,4)")
    assert separate_boxes("\\boxed{2, 5}") is None  # one box
    assert separate_boxes("\\boxed{2} so \\boxed{5}") is None  # words between
    assert separate_boxes("x \\boxed{2}, \\boxed{5}") is None
    assert separate_boxes("\\boxed{2}, \\boxed{5") is None  # cut off


def test_lenient_equality_is_a_keyword_and_off_by_default():
    assert answers_equal("0.33", "\\frac13", lenient=True)
    assert not answers_equal("0.33", "\\frac13")
    assert answers_equal("€3,50", "3.5", lenient=True)
    assert not answers_equal("€3,50", "3.5")
    assert rounded_match("0.67", "\\frac{2}{3}")
    assert not rounded_match("0.7", "\\frac{2}{3}")
    assert not rounded_match("\\frac{2}{3}", "0.67")  # the decimal is the answer, the fraction the reference

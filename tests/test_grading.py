"""The grader: extraction, answer equivalence (a table of cases), rewards, threads and time bounds."""

from __future__ import annotations

import threading
import time

import pytest

from harness.grading import (
    CORRECT_REWARD,
    FORMAT_REWARD,
    answer_parseable,
    answers_equal,
    extract_answer,
    grade,
    grade_full,
    is_formatted,
    last_boxed,
    normalize,
    references,
    unparseable_answers,
)

# (predicted, reference): the grader must call these equal
EQUAL = [
    # fractions and decimals
    ("\\frac{1}{2}", "0.5"),
    ("\\dfrac12", "\\frac{1}{2}"),
    ("1/2", "\\frac{1}{2}"),
    ("0.5", "\\dfrac{1}{2}"),
    ("\\tfrac{3}{4}", "0.75"),
    ("-\\frac{1}{3}", "-1/3"),
    ("\\frac{-1}{3}", "-\\frac{1}{3}"),
    ("0.333333", "\\frac{1}{3}"),
    (".5", "0.5"),
    # integers written as floats, signs, spaces
    ("142", "142.0"),
    ("025", "25"),
    ("+2", "2"),
    ("  7 ", "7"),
    ("517", "517"),
    # thousands separators
    ("1000", "1,000"),
    ("1{,}000", "1000"),
    ("1\\,000", "1000"),
    ("1,234,567", "1234567"),
    # units, \text{}, money
    ("10", "10 \\text{ cm}"),
    ("15000", "15000 \\text{ kcal m}^{-2} \\text{yr}^{-1}"),
    ("4.4677 \\times 10^{14}", "4.4677 \\times 10^{14} Hz"),
    ("18", "18 dollars"),
    ("\\$18.50", "18.5"),
    ("5 \\mathrm{~cm}", "5"),
    ("\\text{Evelyn}", "Evelyn"),
    ("\\text{(C)}", "C"),
    # degrees and percent
    ("41.8", "41.8^\\circ"),
    ("30^{\\circ}", "30"),
    ("1950", "1950^\\circ C"),
    ("45°", "45"),
    ("50", "50\\%"),
    ("62.5", "62.5%"),
    ("8\\%", "8 \\%"),
    ("0.625", "62.5\\%"),
    ("1", "100%"),
    # scientific notation
    ("4.5 \\times 10^{33}", "4.5e33"),
    ("3.3e-10", "3.3 \\times 10^{-10}"),
    ("4.4 x 10^7", "4.4e7"),
    ("10^{-3}", "1 \\times 10^{-3}"),
    # radicals, pi, expressions
    ("\\frac{\\sqrt{2}}{2}", "\\sqrt{2}/2"),
    ("2\\sqrt{3}", "\\sqrt{12}"),
    ("\\frac{\\pi}{2}", "\\pi/2"),
    ("p-q", "p - q"),
    ("x^2+2x+1", "(x+1)^2"),
    ("e^{-x^2}", "e^{-x^{2}}"),
    ("1+i\\sqrt{3}", "1 + i \\sqrt{3}"),
    # equations and assignments
    ("5", "x=5"),
    ("x = 5", "5"),
    ("2x", "f(x)=2 x"),
    ("k\\geq 2", "k \\geqslant 2"),
    # tuples, intervals, sets, several answers
    ("(3, \\frac{\\pi}{2})", "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ("[0.5, 8]", "[\\frac{1}{2}, 8]"),
    ("(-\\infty,0)\\cup\\{1\\}", "(-\\infty, 0) \\cup\\{1\\}"),
    ("(-\\infty, -5)", "(-\\infty,-5)"),
    ("84, 69", "$69$,$84$"),
    ("1, 3, 5", "5,3,1"),
    ("-2,0,2", "$-2,0,2$"),
    ("(1,1), (3,2)", "$(1,1), (3,2)$"),
    ("\\frac{1}{2}, \\sqrt{x}", "$\\frac{1}{2},\\sqrt{x}$"),
    ("E_1, E_2", "E_{1},E_{2}"),
    ("\\frac{t}{m}", "\\frac{1}{m}t"),
    ("\\frac{c}{\\sqrt{2}}", "\\frac{1}{\\sqrt{2}}c"),
    # minutes/seconds of arc, \! spacing, boxed references
    ("0.003", "0.003^{\\prime \\prime}"),
    ("12\\!345", "12345"),
    ("7", "\\boxed{7}"),
]

# (predicted, reference): the grader must call these different
NOT_EQUAL = [
    ("516", "517"),
    ("0", "517"),
    ("-517", "517"),
    ("\\frac{1}{3}", "0.5"),
    ("0.33", "\\frac{1}{3}"),
    ("2", "1/2"),
    ("6630", "6630.65"),
    ("142.5", "142"),
    ("1", "1,2"),
    ("1,2", "1,2,3"),
    ("(1,2)", "(2,1)"),
    ("[0,1]", "(0,1)"),
    ("(0, 1]", "[0, 1)"),
    ("x+1", "x-1"),
    ("\\sqrt{2}", "\\sqrt{3}"),
    ("e^{x^2}", "e^{x^3}"),
    ("\\pi", "3"),
    ("2\\sqrt{3}", "2"),
    ("3n", "3"),
    ("6", "6m"),
    ("\\frac{1}{m}", "\\frac{t}{m}"),
    ("2", "2t"),
    ("10^{10^{10}}", "1"),
    ("4.5 \\times 10^{33}", "4.5 \\times 10^{32}"),
    ("50", "5\\%"),
    ("0.5", "5\\%"),
    ("1000", "100"),
    ("x=5", "x=6"),
    ("A", "B"),
    ("", "5"),
]


@pytest.mark.parametrize(("predicted", "reference"), EQUAL)
def test_equivalent_answers_are_equal(predicted, reference):
    assert answers_equal(predicted, reference), (predicted, reference, normalize(predicted), normalize(reference))


@pytest.mark.parametrize(("predicted", "reference"), NOT_EQUAL)
def test_different_answers_are_not_equal(predicted, reference):
    assert not answers_equal(predicted, reference), (predicted, reference)


def test_the_table_is_big_enough():
    assert len(EQUAL) + len(NOT_EQUAL) >= 60
    assert len(NOT_EQUAL) >= 20


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("15 + 27 = 42. The answer is \\boxed{42}.", "42"),
        ("first \\boxed{1}, then \\boxed{\\frac{a}{b}}", "\\frac{a}{b}"),
        ("nested \\boxed{\\frac{\\sqrt{2}}{2}} done", "\\frac{\\sqrt{2}}{2}"),
        ("\\fbox{12}", "12"),
        ("so \\boxed 5.", "5"),
        ("unbalanced \\boxed{3} and \\boxed{4", None),  # the last box was cut off
        ("<think>maybe \\boxed{3}</think> <answer> 4 </answer>", "4"),
        ("<answer>\\boxed{7}</answer>", "7"),
        ("The answer is 3.5.", "3.5"),
        ("Thus the final answer is $\\frac{1}{2}$. I hope", "\\frac{1}{2}"),
        ("Final Answer: The final answer is 7e37. I hope it is correct.", "7e37"),
        ("The answer is therefore 3.", "3"),
        ("She pays 2 * 9 = <<2*9=18>>18 dollars\n#### 18", "18"),
        ("The answer is \\boxed{1111", None),  # cut off inside the box
        ("1 = 1. The answer is \\", None),
        ("no answer here", None),
        ("", None),
    ],
)
def test_extract_answer(completion, expected):
    assert extract_answer(completion) == expected


def test_last_boxed_and_format():
    assert last_boxed("a \\boxed{x^{2}} b") == "x^{2}"
    assert last_boxed("none") is None
    assert is_formatted("The answer is \\boxed{517}.")
    assert not is_formatted("The answer is 517.")


def test_tiny_arith_outputs_grade_right():
    """The tiny model's own format: "... The answer is \\boxed{N}."."""
    assert grade("123 + 394 = 517. The answer is \\boxed{517}.", "517")
    assert not grade("123 + 394 = 518. The answer is \\boxed{518}.", "517")
    assert grade("12 * 3 = 36. 36 - 40 = -4. The answer is \\boxed{-4}.", "-4")
    assert not grade("The answer is \\boxed{}.", "0")


def test_grade_full_rewards():
    right = grade_full("so \\boxed{0.5}", "\\frac{1}{2}")
    assert (right.predicted, right.correct, right.formatted) == ("0.5", True, True)
    assert right.reward == pytest.approx(CORRECT_REWARD + FORMAT_REWARD)
    wrong_boxed = grade_full("so \\boxed{3}", "4")
    assert wrong_boxed.reward == pytest.approx(FORMAT_REWARD)
    right_unboxed = grade_full("The answer is 4.", "4")
    assert right_unboxed.correct and not right_unboxed.formatted
    assert right_unboxed.reward == pytest.approx(CORRECT_REWARD)
    nothing = grade_full("I don't know", "4")
    assert (nothing.predicted, nothing.correct, nothing.reward) == (None, False, 0.0)


def test_several_accepted_references():
    assert grade("\\boxed{6630}", ["6630.65", "6630"])
    assert not grade("\\boxed{6631}", ["6630.65", "6630"])

    class P:
        answer = "4.4e7"
        meta = {"alternatives": ["4.4 \\times 10^7"]}

    assert references(P()) == ["4.4e7", "4.4 \\times 10^7"]


def test_answer_parseable():
    for ref in ("142.0", "\\frac{1}{2n+2}", "$69$,$84$", "(-\\infty,-5)", "4.5e33", "m"):
        assert answer_parseable(ref), ref
    for ref in ("E_{1},E_{2}", "", "   "):
        assert not answer_parseable(ref), ref


def test_unparseable_answers_are_counted():
    from harness.core.benchmark import Problem

    problems = [Problem("a", "p", "\\frac{1}{2}"), Problem("b", "p", "E_{1},E_{2}"), Problem("c", "p", "7")]
    assert unparseable_answers(problems) == ["b"]


def test_grading_works_off_the_main_thread():
    """math-verify's signal.alarm only works in the main thread: the grader must not depend on it."""
    results: dict[str, object] = {}

    def worker():
        try:
            results["eq"] = answers_equal("\\frac{2}{4}", "0.5000001")  # not cached by earlier tests
            results["ne"] = answers_equal("\\sqrt{5}", "2.2")
        except Exception as exc:  # noqa: BLE001
            results["error"] = exc

    t = threading.Thread(target=worker)
    t.start()
    t.join(60)
    assert "error" not in results, results.get("error")
    assert results == {"eq": True, "ne": False}


def test_costly_answers_are_bounded_in_time():
    start = time.perf_counter()
    assert not answers_equal("9^{9^{9^{9}}}", "3")
    assert not answers_equal("123456789!", "4")
    assert not answers_equal("2^{123456789}", "5")
    assert time.perf_counter() - start < 3


def test_integer_fast_path_is_fast():
    """The RL reward grades thousands of plain-integer answers: they must not touch sympy."""
    completions = [f"{i} + 1 = {i + 1}. The answer is \\boxed{{{i + 1}}}." for i in range(2000)]
    start = time.perf_counter()
    hits = sum(grade(c, str(i + 1 + (i % 2))) for i, c in enumerate(completions))
    elapsed = time.perf_counter() - start
    assert hits == 1000
    assert elapsed < 2.0, f"{len(completions) / elapsed:.0f} grades/s"

"""The grader's answer families, one parametrized case list each, on real reference answers.

Every reference below is copied from ``../shared/benchmarks`` (MATH500,
OlympiadBench, Minerva, AMC 2023), keyed by its problem id;
:func:`test_references_are_the_files` checks them against the files when the
folder is there. The completions are written here, as a model would write
them, and include the cases that must stay wrong (an open interval for a
closed one, a reversed tuple, ``0.3`` for ``1/3``, the sum of two answers for
the list of them, a tuple for a column vector).
"""

from __future__ import annotations

import json

import pytest

from harness.grading import grade

#: problem id -> reference answer(s), exactly as in the shared files (Minerva: its ``answers`` list)
REFS: dict[str, str | list[str]] = {
    "olympiadbench-005": "$(1,8,19), (2,7,13), (4,5,7)$",
    "olympiadbench-013": "$69$,$84$",
    "olympiadbench-027": "$(6,3),(9,3),(9,5),(54,5)$",
    "olympiadbench-037": "1,3",
    "olympiadbench-064": "$(1,1), (3,2)$",
    "olympiadbench-072": "$k \\geqslant 2$",
    "olympiadbench-087": "2500,7500",
    "olympiadbench-132": "(-\\infty,-5)",
    "olympiadbench-148": "5,1",
    "olympiadbench-044": "$(3,2)$",
    "math500-002": "\\frac{14}{3}",
    "math500-003": "9",
    "math500-025": "1,-2",
    "math500-099": "\\begin{pmatrix} -1/3 \\\\ 2/3 \\\\ 5/3 \\end{pmatrix}",
    "math500-103": "(3,4]",
    "math500-138": "\\frac{1}{3}",
    "math500-166": "\\frac{270}7\\text{ degrees}",
    "math500-184": "(2,\\infty)",
    "math500-198": "10,\\!080",
    "math500-217": "11,\\! 111,\\! 111,\\! 100",
    "math500-242": "\\$32,\\!348",
    "math500-248": "\\begin{pmatrix} -1 & 0 \\\\ 0 & -1 \\end{pmatrix}",
    "math500-257": "864 \\mbox{ inches}^2",
    "math500-301": "5.4 \\text{ cents}",
    "math500-307": "(-\\infty, 0]",
    "math500-343": "58,500",
    "math500-383": "x \\in [-2,7]",
    "math500-430": "4.5",
    "math500-467": "15\\mbox{ cm}^2",
    "minerva-011": "0.49",
    "minerva-012": "27.39",
    "minerva-017": ["6630.65", "6630"],
    "minerva-063": ["15000 \\text{ kcal m}^{-2} \\text{yr}^{-1}", "15000"],
    "minerva-158": ["4.4677 \\times 10^{14} Hz", "4.4677 \\times 10^{14}"],
    "amc23-000": "142.0",
    "amc23-001": "144.0",
}

S, L = "strict", "lenient"

MULTI_PART = [  # several boxes against a reference of several parts; one value: the last box wins
    ("olympiadbench-013", "so $\\boxed{69}$ and $\\boxed{84}$.", S, True),
    ("olympiadbench-013", "The two values are \\boxed{84}, \\boxed{69}", S, True),  # a set: order free
    ("olympiadbench-013", "\\boxed{69, 84}", S, True),
    ("olympiadbench-013", "Their sum is \\boxed{153}", S, False),  # the sum of the answers, not the list
    ("olympiadbench-013", "\\boxed{84}", S, False),  # one of two
    ("olympiadbench-013",
     "One root is \\boxed{69}. After checking the other case we find \\boxed{84}", S, False),
    ("olympiadbench-027", "\\boxed{(6,3)}, \\boxed{(9,3)}, \\boxed{(9,5)}, \\boxed{(54,5)}", S, True),
    # reversed
    ("olympiadbench-027", "\\boxed{(6,3)}, \\boxed{(9,3)}, \\boxed{(9,5)}, \\boxed{(5,54)}", S, False),
    ("olympiadbench-027", "\\boxed{(6,3)}, \\boxed{(9,3)}, \\boxed{(9,5)}", S, False),  # one missing
    ("olympiadbench-005", "\\boxed{(1,8,19)},\\quad \\boxed{(2,7,13)},\\quad \\boxed{(4,5,7)}", S, True),
    ("olympiadbench-037", "Hence $n = \\boxed{1}$ or $n = \\boxed{3}$.", S, True),
    ("olympiadbench-037", "\\boxed{1} \\text{ and } \\boxed{3}", S, True),
    ("olympiadbench-037", "\\boxed{1}, \\boxed{3}, \\boxed{5}", S, False),  # one too many
    ("olympiadbench-087", "\\boxed{2500} and \\boxed{7500}", S, True),
    ("olympiadbench-064", "\\boxed{(1, 1)}, \\boxed{(3, 2)}", S, True),
    ("olympiadbench-064", "\\boxed{(1, 1)}, \\boxed{(2, 3)}", S, False),
    ("math500-025", "\\boxed{1}, \\boxed{-2}", S, True),
    ("math500-025", "\\boxed{-1}, \\boxed{2}", S, False),
    ("math500-003", "First \\boxed{3}. Wait, that is wrong: \\boxed{9}", S, True),  # single value: last box
    ("math500-003", "\\boxed{9}, \\boxed{3}", S, False),  # a model that ends on 3 answered 3
    ("olympiadbench-044", "\\boxed{3}, \\boxed{2}", S, False),  # a tuple is one answer in one box
    ("olympiadbench-044", "\\boxed{(3,2)}", S, True),
]

UNITS = [  # words and units in text commands; the number decides, the unit is not compared
    ("math500-257", "\\boxed{864}", S, True),
    ("math500-257", "\\boxed{864\\textbf{ square inches}}", S, True),
    ("math500-257", "\\boxed{864 \\text{ in}^2}", S, True),
    ("math500-257", "\\boxed{846 \\mbox{ inches}^2}", S, False),
    ("math500-467", "\\boxed{15\\textnormal{ cm}^2}", S, True),
    ("math500-467", "\\boxed{15\\,\\mathrm{cm}^{2}}", S, True),
    ("math500-467", "\\boxed{150\\textnormal{ mm}^2}", S, False),  # units are not converted
    ("math500-301", "\\boxed{5.4}", S, True),
    ("math500-301", "\\boxed{5.4\\textit{ cents}}", S, True),
    ("math500-301", "\\boxed{54 \\text{ cents}}", S, False),
    ("math500-166", "\\boxed{\\frac{270}{7}^\\circ}", S, True),
    ("math500-166", "\\boxed{\\frac{270}{7}\\text{ degrees}}", S, True),
    ("math500-166", "\\boxed{38.57^\\circ}", S, False),  # rounded
    ("minerva-063", "\\boxed{15000 \\mathrm{~kcal} \\mathrm{~m}^{-2} \\mathrm{~yr}^{-1}}", S, True),
    ("minerva-063", "\\boxed{1.5 \\times 10^{4} \\text{ kcal m}^{-2} \\text{yr}^{-1}}", S, True),
    ("minerva-063", "\\boxed{1500 \\text{ kcal m}^{-2} \\text{yr}^{-1}}", S, False),
    ("minerva-158", "\\boxed{4.4677 \\times 10^{14} \\text{ Hz}}", S, True),
    ("minerva-158", "\\boxed{4.4677 \\times 10^{15} \\text{ Hz}}", S, False),
    ("amc23-001", "\\boxed{144 \\text{ ways}}", S, True),
]

SEPARATORS = [  # spacing commands as thousands separators
    ("math500-198", "\\boxed{10080}", S, True),
    ("math500-198", "\\boxed{10,080}", S, True),
    ("math500-198", "\\boxed{10\\,080}", S, True),
    ("math500-198", "\\boxed{10{,}080}", S, True),
    ("math500-198", "\\boxed{10,\\!080}", S, True),
    ("math500-198", "\\boxed{10\\ 080}", S, True),
    ("math500-198", "\\boxed{10.080}", S, False),  # a decimal point is never a separator
    ("math500-198", "\\boxed{1008}", S, False),
    ("math500-217", "\\boxed{11111111100}", S, True),
    ("math500-217", "\\boxed{11,111,111,100}", S, True),
    ("math500-217", "\\boxed{11\\,111\\,111\\,100}", S, True),
    ("math500-217", "\\boxed{1111111110}", S, False),
    ("math500-242", "\\boxed{\\$32,348}", S, True),
    ("math500-242", "\\boxed{32{,}348}", S, True),
    ("math500-242", "\\boxed{32.348}", S, False),
    ("math500-343", "\\boxed{58\\,500}", S, True),
    ("math500-343", "\\boxed{58.5}", S, False),
    ("minerva-017", "\\boxed{6,630}", S, True),  # thousands: 6630, an accepted answer
]

DECIMAL_COMMAS = [  # a comma that cannot separate thousands, against a single value
    ("math500-430", "\\boxed{4,5}", S, True),
    ("minerva-011", "\\boxed{0,49}", S, True),
    ("minerva-012", "\\boxed{27,39}", S, True),
    ("amc23-000", "\\boxed{142,0}", S, True),
    ("minerva-011", "\\boxed{0,490}", S, True),  # a thousands group never starts with 0
    ("minerva-011", "\\boxed{49}", S, False),
    ("minerva-012", "\\boxed{2,739}", S, False),  # three digits after the comma: thousands, 2739
    ("math500-430", "\\boxed{4, 5}", S, False),  # with a space: two answers
    ("olympiadbench-148", "\\boxed{5,1}", S, True),  # against a list, the comma separates answers
    ("olympiadbench-148", "\\boxed{5.1}", S, False),
]

MATRICES = [  # pmatrix, bmatrix, array against one another; a tuple is not a column vector
    ("math500-099", "\\boxed{\\begin{bmatrix} -1/3 \\\\ 2/3 \\\\ 5/3 \\end{bmatrix}}", S, True),
    ("math500-099",
     "\\boxed{\\left(\\begin{array}{c} -\\frac13 \\\\ \\frac23 \\\\ \\frac53 \\end{array}\\right)}",
     S, True),
    ("math500-099",
     "\\boxed{\\begin{pmatrix} -\\dfrac{1}{3} \\\\ \\dfrac{2}{3} \\\\ \\dfrac{5}{3} \\end{pmatrix}}",
     S, True),
    ("math500-099", "\\boxed{\\begin{pmatrix} 1/3 \\\\ 2/3 \\\\ 5/3 \\end{pmatrix}}", S, False),
    # a row, not a column
    ("math500-099", "\\boxed{\\begin{pmatrix} -1/3 & 2/3 & 5/3 \\end{pmatrix}}", S, False),
    ("math500-099", "\\boxed{\\left(-\\frac13, \\frac23, \\frac53\\right)}", S, False),
    ("math500-099", "\\boxed{\\begin{pmatrix} -0.33 \\\\ 0.67 \\\\ 1.67 \\end{pmatrix}}", S, False),
    ("math500-248", "\\boxed{\\begin{bmatrix} -1 & 0 \\\\ 0 & -1 \\end{bmatrix}}", S, True),
    ("math500-248", "\\boxed{\\left[\\begin{array}{cc} -1 & 0 \\\\ 0 & -1 \\end{array}\\right]}", S, True),
    ("math500-248", "\\boxed{\\begin{pmatrix} 0 & -1 \\\\ -1 & 0 \\end{pmatrix}}", S, False),
    ("math500-248", "\\boxed{\\begin{pmatrix} 1 & 0 \\\\ 0 & -1 \\end{pmatrix}}", S, False),
]

RELATIONS = [  # inequalities in any spelling, and against intervals; open and closed ends differ
    ("olympiadbench-072", "\\boxed{k \\geq 2}", S, True),
    ("olympiadbench-072", "\\boxed{k >= 2}", S, True),
    ("olympiadbench-072", "\\boxed{2 \\leq k}", S, True),
    ("olympiadbench-072", "\\boxed{k \\ge 2}", S, True),
    ("olympiadbench-072", "\\boxed{[2, \\infty)}", S, True),
    ("olympiadbench-072", "\\boxed{k > 2}", S, False),
    ("olympiadbench-072", "\\boxed{k \\leq 2}", S, False),
    ("olympiadbench-072", "\\boxed{k \\geq 3}", S, False),
    ("math500-383", "\\boxed{[-2,7]}", S, True),
    ("math500-383", "\\boxed{-2 \\leq x \\leq 7}", S, True),
    ("math500-383", "\\boxed{(-2,7)}", S, False),  # an open interval for a closed one
    ("math500-383", "\\boxed{-2 < x \\le 7}", S, False),
    ("math500-307", "\\boxed{x \\le 0}", S, True),
    ("math500-307", "\\boxed{x < 0}", S, False),
    ("math500-307", "\\boxed{(-\\infty, 0)}", S, False),
    ("math500-184", "\\boxed{x > 2}", S, True),
    ("math500-184", "\\boxed{[2, \\infty)}", S, False),
    ("math500-103", "\\boxed{3 < x \\leq 4}", S, True),
    ("math500-103", "\\boxed{[3,4]}", S, False),
    ("olympiadbench-132", "\\boxed{x<-5}", S, True),
    ("olympiadbench-132", "\\boxed{x>-5}", S, False),
]

UNBOXED = [  # completions without a box or "the answer is": lenient reads them, strict does not
    ("math500-138", "Answer: $\\frac13$", L, True),
    ("math500-138", "Answer: $\\frac13$", S, False),
    ("math500-002", "Adding the two parts, so we get $\\frac{14}{3}$.", L, True),
    ("math500-002", "Adding the two parts, so we get $\\frac{14}{3}$.", S, False),
    ("math500-003", "Putting it together:\n\\[ 9 \\]", L, True),
    ("math500-003", "Putting it together:\n\\[ 9 \\]", S, False),
    ("math500-003", "so $x = 9$. I hope it is correct.", L, True),
    ("math500-198", "Multiplying, there are 10,080 arrangements.", L, True),
    ("math500-198", "Multiplying, there are 10,080 arrangements.", S, False),
    ("amc23-000", "So $m = 109$ and $n = 33$, and m+n = 142.", L, True),
    ("amc23-000", "We get $\\frac{m}{n} = \\frac{109}{33}$.", L, False),  # the fraction, not m + n
    ("minerva-017", "The observed wavelength is about 6630 Angstroms.", L, True),
    ("olympiadbench-064", "so the pairs are $(1,1)$ and $(3,2)$.", L, True),
    ("olympiadbench-013", "so the values are $69$ and $84$.", L, True),
    ("olympiadbench-013", "so the values add up to $153$.", L, False),
    ("olympiadbench-037", "Checking each case, the solutions are n = 1 and n = 3.", L, True),
    ("olympiadbench-037", "Checking each case, n = 1 works, and for n = 3 we get 0.", L, False),
    ("math500-138", "we get 0.33.", L, True),  # lenient: 1/3 rounded to the two places given
    ("math500-138", "we get 0.33.", S, False),  # strict: 0.33 is not 1/3
    ("math500-138", "we get 0.3.", L, False),  # one place is too coarse to read as 1/3
    ("math500-003", "The answer is \\boxed{9", L, False),  # cut off inside the box: no answer
    ("math500-003", "1 = 1. The answer is \\", L, False),  # cut off after "the answer is"
    ("math500-003", "I could not finish this one.", L, False),
    ("math500-003", "We have 3 cases.\n\nThe total is 9 but we must subtract the 2 overlaps: 7.", L, False),
    # lenient keeps strict's answer
    ("math500-003", "Step by step... so the answer is \\boxed{9}.", L, True),
]

AMC = [  # AMC 2023 answers are stored as floats
    ("amc23-000", "\\boxed{142}", S, True),
    ("amc23-000", "\\boxed{142.0}", S, True),
    ("amc23-000", "\\boxed{\\textbf{(C) }142}", S, True),  # a choice label before the value
    ("amc23-000", "\\boxed{(C)\\ 142}", S, True),
    ("amc23-000", "\\boxed{\\frac{109}{33}}", S, False),
    ("amc23-000", "\\boxed{141}", S, False),
    ("amc23-001", "The final answer is $144$. I hope it is correct.", S, True),
    ("amc23-001", "\\boxed{144.5}", S, False),
]

FAMILIES = {
    "multi_part": MULTI_PART, "units": UNITS, "separators": SEPARATORS, "decimal_commas": DECIMAL_COMMAS,
    "matrices": MATRICES, "relations": RELATIONS, "unboxed": UNBOXED, "amc": AMC,
}


def _params(cases):
    return [pytest.param(pid, c, ex, want, id=f"{pid}-{i}") for i, (pid, c, ex, want) in enumerate(cases)]


@pytest.mark.parametrize(("pid", "completion", "extraction", "want"), _params(MULTI_PART))
def test_multi_part(pid, completion, extraction, want):
    assert grade(completion, REFS[pid], extraction=extraction) is want


@pytest.mark.parametrize(("pid", "completion", "extraction", "want"), _params(UNITS))
def test_units_in_text_commands(pid, completion, extraction, want):
    assert grade(completion, REFS[pid], extraction=extraction) is want


@pytest.mark.parametrize(("pid", "completion", "extraction", "want"), _params(SEPARATORS))
def test_thousands_separators(pid, completion, extraction, want):
    assert grade(completion, REFS[pid], extraction=extraction) is want


@pytest.mark.parametrize(("pid", "completion", "extraction", "want"), _params(DECIMAL_COMMAS))
def test_decimal_commas(pid, completion, extraction, want):
    assert grade(completion, REFS[pid], extraction=extraction) is want


@pytest.mark.parametrize(("pid", "completion", "extraction", "want"), _params(MATRICES))
def test_matrices_and_vectors(pid, completion, extraction, want):
    assert grade(completion, REFS[pid], extraction=extraction) is want


@pytest.mark.parametrize(("pid", "completion", "extraction", "want"), _params(RELATIONS))
def test_relations(pid, completion, extraction, want):
    assert grade(completion, REFS[pid], extraction=extraction) is want


@pytest.mark.parametrize(("pid", "completion", "extraction", "want"), _params(UNBOXED))
def test_unboxed_completions(pid, completion, extraction, want):
    assert grade(completion, REFS[pid], extraction=extraction) is want


@pytest.mark.parametrize(("pid", "completion", "extraction", "want"), _params(AMC))
def test_amc_answers(pid, completion, extraction, want):
    assert grade(completion, REFS[pid], extraction=extraction) is want


def test_every_family_keeps_cases_that_must_stay_wrong():
    for name, cases in FAMILIES.items():
        verdicts = [want for *_, want in cases]
        assert verdicts.count(True) >= 3 and verdicts.count(False) >= 2, name


def test_references_are_the_files(benchmarks_dir):
    """The references above are the shared files' (Minerva: its list of accepted answers)."""
    rows = {}
    for name in ("olympiadbench", "math500", "minerva", "amc23"):
        path = benchmarks_dir / f"{name}.jsonl"
        if not path.exists():
            pytest.skip(f"{path} is not in the shared folder")
        for line in path.read_text("utf-8").splitlines():
            row = json.loads(line)
            rows[row["id"]] = row
    for pid, ref in REFS.items():
        row = rows[pid]
        stored = row.get("answers") if isinstance(ref, list) else row["answer"]
        expected = ref if isinstance(ref, list) else str(ref)
        assert expected == (stored if isinstance(ref, list) else str(stored)), pid

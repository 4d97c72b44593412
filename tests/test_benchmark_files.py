"""The grader against every shared benchmark file: a reference solution must grade as correct.

For each file in ``../shared/benchmarks`` the benchmark that owns it loads it;
each problem's reference solution (or, where the file has none, the reference
answer written as a model would write it: dollar signs dropped, ``142.0`` as
``142``, inside "... so the answer is \\boxed{...}") is graded against the
reference answer(s). At least 99% must agree, per benchmark; the rate and the
disagreements are printed (``pytest -s``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.grading import answer_parseable, extract_answer, grade, last_boxed, references

MIN_AGREEMENT = 0.99


def _owners() -> dict[str, tuple]:
    """file name -> (benchmark, split), for every benchmark that reads local files."""
    from harness.core.plugin_manager import get_registry

    owners = {}
    for bench in get_registry().benchmarks:
        for split, file in (getattr(bench, "files", None) or {}).items():
            owners[file] = (bench, split)
    return owners


def _as_written(answer: str) -> str:
    """The reference answer the way a model would box it."""
    text = answer.replace("$", "").strip()
    try:
        value = float(text)
    except ValueError:
        return text
    return str(int(value)) if value.is_integer() and "." in text else text


def reference_completion(problem) -> str:
    """A completion that must grade as correct: the reference solution, or the answer boxed."""
    if problem.solution and last_boxed(problem.solution) is not None:
        return problem.solution
    if problem.solution:  # GSM8K: the source's own format ends the solution with "#### N"
        return f"{problem.solution}\n#### {_as_written(problem.answer)}"
    return f"Working through the problem step by step, so the answer is \\boxed{{{_as_written(problem.answer)}}}."


def _files(benchmarks_dir: Path) -> list[Path]:
    return sorted(benchmarks_dir.glob("*.jsonl"))


def test_every_shared_file_has_a_benchmark(benchmarks_dir):
    owners = _owners()
    files = _files(benchmarks_dir)
    assert files, f"no .jsonl files in {benchmarks_dir}"
    unowned = [f.name for f in files if f.name not in owners]
    assert not unowned, f"no benchmark reads {unowned}"


@pytest.mark.parametrize(
    "file",
    ["math500.jsonl", "aime24.jsonl", "amc23.jsonl", "minerva.jsonl", "olympiadbench.jsonl",
     "gsm8k.jsonl", "gsm8k-train.jsonl", "math-l3-5.jsonl"],
)
def test_reference_solutions_grade_correct(benchmarks_dir, file):
    path = benchmarks_dir / file
    if not path.is_file():
        pytest.skip(f"{path} is not in the shared folder")
    bench, split = _owners()[file]
    problems = bench.load(split, benchmarks_dir)
    disagreements = []
    unparseable = []
    for p in problems:
        completion = reference_completion(p)
        if not grade(completion, references(p)):
            disagreements.append((p.id, extract_answer(completion), p.answer))
        if not answer_parseable(p.answer):
            unparseable.append((p.id, p.answer))
    rate = 1 - len(disagreements) / len(problems)
    print(f"\n{file}: {len(problems)} problems, agreement {rate:.4f}, "
          f"{len(disagreements)} disagreements, {len(unparseable)} answers the grader cannot parse")
    for pid, got, want in disagreements:
        print(f"  disagree {pid}: extracted {got!r}, reference {want!r}")
    for pid, ans in unparseable:
        print(f"  unparseable {pid}: {ans!r}")
    assert rate >= MIN_AGREEMENT, disagreements[:20]


def test_minerva_alternative_answers_agree(benchmarks_dir):
    """Minerva lists alternative forms of one answer; the grader should see most as the same.

    Reported, asserted loosely: some alternatives are genuinely different
    numbers the source accepts (``6630.65`` and ``6630``).
    """
    if not (benchmarks_dir / "minerva.jsonl").is_file():
        pytest.skip("no minerva.jsonl")
    bench, split = _owners()["minerva.jsonl"]
    pairs = [(p.id, alt, p.answer) for p in bench.load(split, benchmarks_dir) for alt in p.meta.get("alternatives", [])]
    differ = [(pid, alt, ans) for pid, alt, ans in pairs if not grade(f"\\boxed{{{alt}}}", ans)]
    print(f"\nminerva alternatives: {len(pairs) - len(differ)}/{len(pairs)} graded equal to the first form")
    for d in differ:
        print("  differ:", d)
    assert pairs and len(differ) <= 0.2 * len(pairs)


@pytest.mark.parametrize(
    "file", ["math500.jsonl", "amc23.jsonl", "minerva.jsonl", "olympiadbench.jsonl", "gsm8k.jsonl"]
)
def test_reference_solutions_do_not_match_other_problems(benchmarks_dir, file):
    """The control: a lenient grader would also pass the test above. Graded against the
    next problem's answer, a reference solution must (almost always) be wrong."""
    path = benchmarks_dir / file
    if not path.is_file():
        pytest.skip(f"{path} is not in the shared folder")
    bench, split = _owners()[file]
    problems = bench.load(split, benchmarks_dir)
    shifted = problems[1:] + problems[:1]
    false = [
        (p.id, q.answer)
        for p, q in zip(problems, shifted)
        if grade(reference_completion(p), references(q)) and not grade(f"\\boxed{{{p.answer}}}", references(q))
    ]  # (problems whose answers are the same number may match each other: those do not count)
    rate = len(false) / len(problems)
    print(f"\n{file}: {len(false)} of {len(problems)} reference solutions match the next problem's answer ({rate:.4f})")
    for pid, ans in false:
        print(f"  {pid} also matches {ans!r}")
    assert rate <= 0.01

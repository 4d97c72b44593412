"""Standard math benchmarks: MATH-500, AIME 2024, AMC 2023, Minerva Math, OlympiadBench, GSM8K,
and the MATH level 3-5 training set of the seed study.

Each loads from a local folder of JSON Lines files when one is given
(``--data-dir`` or ``$HARNESS_DATA_DIR``; fields ``id``, ``problem``,
``answer`` and optionally ``solution``, ``level``, ``subject``, ``answers``),
and otherwise from the Hugging Face hub by its usual dataset id, mapping that
dataset's own columns. Without a network the hub load fails at once with one
message saying how to point at local files, instead of retrying for half a
minute.

Problem ids are ``<name>-<index>`` in file (or hub) order, so runs on the same
data pair up problem by problem; the hub's order may differ from a local
file's, so compare runs only on the same data source.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import hookimpl
from harness.base.errors import UserError
from harness.benchmarks.jsonl import DATA_DIR_ENV, data_dir_from, read_jsonl, text_field
from harness.core.benchmark import Benchmark, Problem

#: fields of a data row that become Problem fields (everything else goes to ``meta``)
_FIELDS = {"id", "problem", "answer", "solution", "level", "subject"}
#: seconds to wait for the hub's host before declaring it unreachable
PROBE_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class HubSource:
    """One ``datasets.load_dataset`` call: dataset id, config and split."""

    dataset: str
    split: str
    config: str | None = None

    def __str__(self) -> str:
        return f"{self.dataset}{':' + self.config if self.config else ''} ({self.split})"


def _hub_unreachable() -> str | None:
    """Why the hub cannot be reached, or None when it can (or offline mode lets the cache answer).

    ``datasets`` retries an unreachable host five times with back-off (about
    25 s) before failing; a three-second socket probe answers the same question.
    """
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return None  # datasets answers from its local cache or fails fast by itself
    url = urlparse(constants.ENDPOINT)
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S).close()
    except OSError as exc:
        return f"{host} is unreachable: {exc}"
    return None


def _no_hub(bench: str, what: str, reason: str, file: str) -> UserError:
    return UserError(
        f"benchmark {bench!r} could not load {what} from the Hugging Face hub ({reason}). "
        f"To use local files instead, pass --data-dir DIR or set {DATA_DIR_ENV}=DIR, where DIR holds "
        f"{file} (JSON Lines, one problem a line with fields id, problem, answer), "
        f"e.g. --data-dir ../shared/benchmarks"
    )


class MathBenchmark(Benchmark):
    """A benchmark read from ``<data_dir>/<file>`` or, without a data folder, from the hub."""

    #: split -> file name in the data folder
    files: dict[str, str] = {}
    #: split -> the hub datasets it is built from
    hub: dict[str, tuple[HubSource, ...]] = {}
    #: split -> number of problems in the published set (shown when nothing is loaded; absent when unsure)
    nominal_sizes: dict[str, int] = {}

    # -- loading ---------------------------------------------------------
    def load(self, split: str = "test", data_dir: Path | None = None) -> list[Problem]:
        self.check_split(split)
        folder = data_dir_from(data_dir)
        if folder is not None:
            return self.load_file(split, folder)
        return self.load_hub(split)

    def file_path(self, split: str, folder: Path) -> Path:
        return Path(folder) / self.files[split]

    def load_file(self, split: str, folder: Path) -> list[Problem]:
        """Every problem of ``<folder>/<file>``; a bad line fails the whole load."""
        path = self.file_path(split, folder)
        if not path.is_file():
            present = sorted(p.name for p in Path(folder).glob("*.jsonl")) if Path(folder).is_dir() else []
            raise UserError(
                f"benchmark {self.name!r} ({split}) needs {path}, which does not exist"
                + (f"; {folder} holds: {', '.join(present)}" if present else f"; {folder} has no .jsonl files")
                + f". Without --data-dir/{DATA_DIR_ENV} it loads from the hub: {self.hub_ids(split)}"
            )
        return [self.problem_from_row(row) for row in read_jsonl(path)]

    def load_hub(self, split: str) -> list[Problem]:
        """Every problem of ``split`` from the hub datasets, in their order."""
        rows = _hub_rows(self.name, self.hub[split], self.files[split])
        return self.problems_from_hub(split, rows)

    def hub_ids(self, split: str) -> str:
        return ", ".join(str(s) for s in self.hub.get(split, ()))

    # -- row mapping -----------------------------------------------------
    def problem_from_row(self, row: dict) -> Problem:
        """A local JSONL row as a Problem; fields beyond the known ones go to ``meta``."""
        return Problem(
            id=text_field(row, "id") or "",
            problem=text_field(row, "problem") or "",
            answer=text_field(row, "answer") or "",
            solution=text_field(row, "solution"),
            level=text_field(row, "level"),
            subject=text_field(row, "subject"),
            meta={k: v for k, v in row.items() if k not in _FIELDS},
        )

    def problems_from_hub(self, split: str, rows: list[dict]) -> list[Problem]:
        """Hub rows as Problems (subclasses map their dataset's columns)."""
        return [self.problem_from_hub(i, row) for i, row in enumerate(rows)]

    def problem_from_hub(self, index: int, row: dict) -> Problem:
        raise NotImplementedError

    def _id(self, index: int, split: str = "test") -> str:
        prefix = self.name if split == "test" else f"{self.name}-{split}"
        return f"{prefix}-{index:03d}"


def _hub_rows(bench: str, sources: Iterable[HubSource], file: str) -> list[dict]:
    """Rows of the hub datasets, concatenated; one clear UserError when they cannot be had."""
    sources = tuple(sources)
    what = str(sources[0]) if len(sources) == 1 else ", ".join(dict.fromkeys(s.dataset for s in sources))
    reason = _hub_unreachable()
    if reason is not None:
        raise _no_hub(bench, what, reason, file)
    try:
        import datasets
    except ImportError as exc:  # a declared dependency, but say so plainly if missing
        raise _no_hub(bench, what, f"the datasets library is not installed: {exc}", file) from None
    rows: list[dict] = []
    for source in sources:
        try:
            data = datasets.load_dataset(source.dataset, source.config, split=source.split)
        except Exception as exc:  # noqa: BLE001 - network, auth, missing dataset: all one message
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise _no_hub(bench, str(source), f"{type(exc).__name__}: {first}", file) from None
        rows.extend(dict(r) for r in data)
    return rows


def _s(value: Any) -> str:
    """A hub value as text (numbers keep their written form, lists are joined)."""
    if isinstance(value, (list, tuple)):
        return ", ".join(_s(v) for v in value)
    return value if isinstance(value, str) else ("" if value is None else str(value))


class Math500(MathBenchmark):
    name = "math500"
    description = "MATH-500: 500 competition problems (PRM800K's test split of MATH), levels 1-5, 7 subjects"
    source = "HuggingFaceH4/MATH-500 (local: math500.jsonl)"
    splits = ("test",)
    files = {"test": "math500.jsonl"}
    hub = {"test": (HubSource("HuggingFaceH4/MATH-500", "test"),)}
    nominal_sizes = {"test": 500}

    def problem_from_hub(self, index: int, row: dict) -> Problem:
        return Problem(
            id=self._id(index), problem=row["problem"], answer=_s(row["answer"]), solution=row.get("solution"),
            level=_s(row.get("level")) or None, subject=row.get("subject"),
            meta={"unique_id": row.get("unique_id")},
        )


class Aime24(MathBenchmark):
    name = "aime24"
    description = "AIME 2024 I and II: 30 problems, integer answers 0-999"
    source = "HuggingFaceH4/aime_2024 (local: aime24.jsonl)"
    splits = ("test",)
    files = {"test": "aime24.jsonl"}
    hub = {"test": (HubSource("HuggingFaceH4/aime_2024", "train"),)}
    nominal_sizes = {"test": 30}

    def problem_from_hub(self, index: int, row: dict) -> Problem:
        return Problem(id=self._id(index), problem=row["problem"], answer=_s(row["answer"]),
                       solution=row.get("solution"), meta={"url": row.get("url")})


class Amc23(MathBenchmark):
    name = "amc23"
    description = "AMC 12 2022-2023: 83 problems (answers stored as floats, e.g. 142.0)"
    source = "AI-MO/aimo-validation-amc (local: amc23.jsonl)"
    splits = ("test",)
    files = {"test": "amc23.jsonl"}
    hub = {"test": (HubSource("AI-MO/aimo-validation-amc", "train"),)}
    nominal_sizes = {"test": 83}

    def problem_from_hub(self, index: int, row: dict) -> Problem:
        return Problem(id=self._id(index), problem=row["problem"], answer=_s(row["answer"]),
                       meta={"url": row.get("url")})


class Minerva(MathBenchmark):
    """Minerva Math (MIT OCW science problems).

    Where a row lists several ``answers``, they are alternative accepted forms
    of one answer (``4.4e7`` and ``4.4 \\times 10^7``; ``6630.65`` and ``6630``),
    not parts of it: ``answer`` is the first and ``meta["alternatives"]`` the
    rest; :func:`harness.grading.references` returns them all.
    """

    name = "minerva"
    description = "Minerva Math: 272 undergraduate science problems (units, scientific notation)"
    source = "math-ai/minervamath (local: minerva.jsonl)"
    splits = ("test",)
    files = {"test": "minerva.jsonl"}
    hub = {"test": (HubSource("math-ai/minervamath", "test"),)}
    nominal_sizes = {"test": 272}

    def problem_from_row(self, row: dict) -> Problem:
        problem = super().problem_from_row(row)
        answers = [_s(a).strip() for a in row.get("answers") or [] if _s(a).strip()]
        if not answers:
            return problem
        alternatives = list(dict.fromkeys(a for a in answers[1:] if a != answers[0]))
        meta = {k: v for k, v in problem.meta.items() if k != "answers"} | {"alternatives": alternatives}
        return Problem(id=problem.id, problem=problem.problem, answer=answers[0], solution=problem.solution,
                       level=problem.level, subject=problem.subject, meta=meta)

    def problem_from_hub(self, index: int, row: dict) -> Problem:
        return Problem(id=self._id(index), problem=row["question"], answer=_s(row["answer"]))


class OlympiadBench(MathBenchmark):
    """OlympiadBench, English text-only open-ended math (``OE_TO_maths_en_COMP``).

    A problem with several final answers needs all of them: they are joined
    with ", " into one answer, which the grader compares as a set.
    """

    name = "olympiadbench"
    description = "OlympiadBench: 675 olympiad problems (English, text-only, open-ended math)"
    source = "Hothan/OlympiadBench OE_TO_maths_en_COMP (local: olympiadbench.jsonl)"
    splits = ("test",)
    files = {"test": "olympiadbench.jsonl"}
    hub = {"test": (HubSource("Hothan/OlympiadBench", "train", "OE_TO_maths_en_COMP"),)}
    nominal_sizes = {"test": 675}

    def problem_from_hub(self, index: int, row: dict) -> Problem:
        solution = row.get("solution")
        return Problem(
            id=self._id(index), problem=row["question"], answer=_s(row["final_answer"]),
            solution=_s(solution) or None, subject=row.get("subfield"),
            meta={"source_id": row.get("id"), "unit": row.get("unit"),
                  "is_multiple_answer": row.get("is_multiple_answer")},
        )


def _gsm8k_answer(text: str) -> tuple[str, str]:
    """(solution, final answer) of a GSM8K answer field "... #### 1,234"."""
    solution, _, final = text.rpartition("####")
    return solution.strip(), final.strip().replace(",", "")


class Gsm8k(MathBenchmark):
    name = "gsm8k"
    description = "GSM8K: grade-school word problems, integer answers (test 1319, train 7473)"
    source = "openai/gsm8k main (local: gsm8k.jsonl, gsm8k-train.jsonl)"
    splits = ("test", "train")
    files = {"test": "gsm8k.jsonl", "train": "gsm8k-train.jsonl"}
    hub = {"test": (HubSource("openai/gsm8k", "test", "main"),),
           "train": (HubSource("openai/gsm8k", "train", "main"),)}
    nominal_sizes = {"test": 1319, "train": 7473}

    def problems_from_hub(self, split: str, rows: list[dict]) -> list[Problem]:
        out = []
        for i, row in enumerate(rows):
            solution, answer = _gsm8k_answer(row["answer"])
            out.append(Problem(id=f"{self.name}-{split + '-' if split != 'test' else ''}{i:04d}",
                               problem=row["question"], answer=answer, solution=solution))
        return out


_MATH_SUBJECTS = ("algebra", "counting_and_probability", "geometry", "intermediate_algebra",
                  "number_theory", "prealgebra", "precalculus")


class MathL35(MathBenchmark):
    """The seed study's RL training set: MATH problems of levels 3-5 (about 8.5k).

    From the hub: every MATH problem (train and test splits, all seven
    subjects) of level 3, 4 or 5, minus the MATH-500 problems, so training
    never sees an evaluation problem; the answer is the solution's last
    ``\\boxed{}``. Locally: ``math-l3-5.jsonl`` in the data folder.
    """

    name = "math-l3-5"
    description = "MATH levels 3-5 minus MATH-500 (training set of the seed study, ~8.5k)"
    source = "EleutherAI/hendrycks_math, levels 3-5, minus HuggingFaceH4/MATH-500 (local: math-l3-5.jsonl)"
    splits = ("train",)
    files = {"train": "math-l3-5.jsonl"}
    hub = {"train": tuple(HubSource("EleutherAI/hendrycks_math", split, subject)
                          for subject in _MATH_SUBJECTS for split in ("train", "test"))}
    nominal_sizes: dict[str, int] = {}  # "about 8.5k": the exact count is known once loaded

    def problems_from_hub(self, split: str, rows: list[dict]) -> list[Problem]:
        from harness.grading import last_boxed

        held_out = {_squash(p.problem) for p in Math500().load_hub("test")}
        out = []
        for row in rows:
            level = re.sub(r"\D", "", _s(row.get("level")))
            answer = last_boxed(row.get("solution") or "")
            if level not in {"3", "4", "5"} or not answer or _squash(row["problem"]) in held_out:
                continue
            out.append(Problem(id=f"{self.name}-{len(out):05d}", problem=row["problem"], answer=answer,
                               solution=row.get("solution"), level=level, subject=row.get("type")))
        return out


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


BENCHMARKS = (Math500, Aime24, Amc23, Minerva, OlympiadBench, Gsm8k, MathL35)


@hookimpl
def register_benchmarks(register):
    for cls in BENCHMARKS:
        register(cls())

"""Finding a completion's final answer, under one of two policies.

``strict`` (the default, and the RL reward's): the last ``\\boxed{}`` (an
``<answer>`` tag written after it wins, for R1-style prompts), else "the
(final) answer is ...", else GSM8K's ``#### N``. Nothing else counts: the
seed study's format bonus and strictness are part of its method.

``lenient``: what ``strict`` finds, else the final mathematical expression
of an unformatted completion, as free-form graders read it: after the last
``Answer:``, else a display (``\\[...\\]``, ``$$...$$``) that ends the
completion, else whichever comes last in the final sentence that holds math
or a number (on the last line that holds one): its last inline math
(``$...$``, ``\\(...\\)``) or a number written after it. A completion whose
last box was cut off, or that says "the answer is" and stops, has no answer
under either policy.

Several answers: :func:`extract` also returns the *final group* of boxes (or
of math spans, for lenient) -- the last one and those right before it that
only separators (commas, "and", "or", ``x =``, ``$``, spacing) keep apart.
The grader uses the group only when the reference has several parts.

Every scan here is linear in the completion's length, and lenient reads only
its last :data:`LENIENT_TAIL` characters (a 100 kB number or boxes nested
1,000 deep return in milliseconds).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import pairwise

#: the extraction policies, in the order the CLI lists them
EXTRACTION_POLICIES = ("strict", "lenient")

_BOXED = re.compile(r"\\(?:boxed|fbox)\b")
_BRACE = re.compile(r"[{}]")
#: at most this many boxes (or math spans) form one final group
MAX_PARTS = 32


@dataclass(frozen=True)
class Extracted:
    """The final answer and, when asked for, the final group it belongs to (answer last)."""

    answer: str
    group: tuple[str, ...] = ()

    @property
    def union(self) -> str:
        """The group as one answer: ``2, 5`` from ``\\boxed{2} and \\boxed{5}``."""
        return ", ".join(self.group) if len(self.group) > 1 else self.answer


def check_extraction(name: str) -> str:
    """``name`` when it is a policy; a one-line UserError naming the allowed ones otherwise."""
    if name not in EXTRACTION_POLICIES:
        from harness.errors import UserError

        raise UserError(f"unknown extraction policy {name!r}; choose one of {', '.join(EXTRACTION_POLICIES)}")
    return name


def _braced(text: str, start: int) -> tuple[str, int] | None:
    """Content of the brace group opening at ``text[start]`` and the index after it."""
    depth = 0
    for m in _BRACE.finditer(text, start):
        if m.group(0) == "{":
            depth += 1
        else:
            depth -= 1
            if depth == 0:
                return text[start + 1 : m.start()], m.end()
    return None


def _box_at(text: str, match: re.Match) -> tuple[str, int, int] | None:
    """(content, start, end) of the box whose command ``match`` found; None when it never closes."""
    rest = match.end()
    while rest < len(text) and text[rest] == " ":
        rest += 1
    if rest < len(text) and text[rest] == "{":
        group = _braced(text, rest)
        return None if group is None else (group[0].strip(), match.start(), group[1])
    bare = re.match(r"[^\s$.,{}]+", text[rest : rest + 200])  # "\\boxed 5" (no braces)
    if bare and rest > match.end():
        return bare.group(0), match.start(), rest + bare.end()
    return None


def _last_boxed_span(text: str) -> tuple[str, int, int] | None:
    """(content, start, end) of the last ``\\boxed{...}``/``\\fbox{...}``/``\\boxed N``.

    The last box decides: when it never closes, the answer was cut off and
    there is none (an earlier box is an intermediate result, not the answer).
    """
    match = None
    for match in _BOXED.finditer(text):
        pass
    return None if match is None else _box_at(text, match)


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``), braces balanced."""
    span = _last_boxed_span(text)
    return None if span is None else span[0]


def is_formatted(text: str) -> bool:
    """True when the completion gives its answer in the expected ``\\boxed{}`` form."""
    return last_boxed(text) is not None


#: what may stand between two answers of one group: separators, "and"/"or", "x =", math delimiters
_GAP = re.compile(
    r"(?:\s|\$|\\[()\[\]]|[,;:&.]|\\\\|\\q?quad\b|\\[,;! ]|\\text\s*\{\s*(?:and|or|,)?\s*\}|\band\b|\bor\b"
    r"|[a-zA-Z](?:_\{?\w+\}?)?\s*=)*",
    re.IGNORECASE,
)
MAX_GAP = 80


def _separated(gap: str) -> bool:
    return len(gap) <= MAX_GAP and _GAP.fullmatch(gap) is not None


def _box_group(text: str, last: tuple[str, int, int]) -> tuple[str, ...]:
    """The last box and the boxes right before it that only separators keep apart."""
    matches = [m for m in _BOXED.finditer(text, 0, last[1])][-MAX_PARTS:]
    group, start = [last[0]], last[1]
    for match in reversed(matches):
        box = _box_at(text, match)
        if box is None or box[2] > start or not _separated(text[box[2] : start]):
            break
        group.append(box[0])
        start = box[1]
    return tuple(reversed(group))


_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_ANSWER_IS = re.compile(
    r"(?:final answer|the answer)\s*(?:is\b|:)\s*:?\s*(?:(?:therefore|thus|then|clearly)\b[\s:,]*)?", re.IGNORECASE
)
_ANSWER_TAIL = re.compile(r"\$+([^$]+?)\$+|([^\n]+?)\s*(?:\.\s|\.?\s*$|\n)")
_HASHES = re.compile(r"^\s*####\s*(.+?)\s*$", re.MULTILINE)


class _NoAnchor:
    """Strict found no answer *format* at all (not: found one, but it was cut off)."""


def _strict(text: str, group: bool) -> Extracted | None | type[_NoAnchor]:
    boxed = _last_boxed_span(text)
    tag = None
    for tag in _ANSWER_TAG.finditer(text):
        pass
    if tag is not None and (boxed is None or tag.start() > boxed[1]):
        inner = tag.group(1)
        inner_box = _last_boxed_span(inner)
        if inner_box is not None:
            return Extracted(inner_box[0], _box_group(inner, inner_box) if group else ())
        return Extracted(inner.strip()) if inner.strip() else None
    if boxed is not None:
        return Extracted(boxed[0], _box_group(text, boxed) if group else ())
    # without a box: whichever of "the answer is ..." and "#### ..." comes last
    candidates: list[tuple[int, str]] = []
    head = None
    for head in _ANSWER_IS.finditer(text):
        pass
    if head is not None:
        tail = _ANSWER_TAIL.match(text, head.end())
        candidates.append((head.start(), (tail.group(1) or tail.group(2)) if tail else ""))
    hashes = None
    for hashes in _HASHES.finditer(text):
        pass
    if hashes is not None:
        candidates.append((hashes.start(), hashes.group(1)))
    if not candidates:
        return None if _BOXED.search(text) else _NoAnchor
    answer = max(candidates)[1].strip()
    # "The answer is \\boxed{12" was cut off mid-box: a truncated answer is no answer
    if _BOXED.match(answer) or not re.search(r"\w", answer):
        return None
    return Extracted(answer)


# ---------------------------------------------------------------------------
# lenient

_ANSWER_COLON = re.compile(r"(?:^|(?<=[\s*_#>]))(?:final\s+)?answer\s*\**\s*:\s*\**", re.IGNORECASE)
_MATH_SPAN = re.compile(
    r"\$\$(?P<d1>.+?)\$\$|\\\[(?P<d2>.+?)\\\]|\\\((?P<i1>.+?)\\\)|(?<![\\$])\$(?P<i2>[^$]+?)(?<!\\)\$", re.DOTALL
)
_NUMBER = re.compile(
    r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+)?(?:\s*%)?|(?<![\w.])-?\.\d+"
)
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")
_HAS_DIGIT = re.compile(r"\d")


def _trailing_display(text: str) -> str | None:
    """The content of a display that ends the completion (only punctuation after it)."""
    end = text.rstrip().rstrip(".,;!").rstrip()
    for close, open_ in (("\\]", "\\["), ("$$", "$$")):
        if end.endswith(close):
            start = end.rfind(open_, 0, len(end) - len(close))
            if start >= 0:
                inner = end[start + len(open_) : len(end) - len(close)].strip()
                return inner or None
    return None


def _span_text(m: re.Match) -> str:
    """The math inside a span (each match fills exactly one of its groups, never with nothing)."""
    return next(g for g in (m.group("d1"), m.group("d2"), m.group("i1"), m.group("i2")) if g).strip()


def _spans(segment: str) -> list[re.Match]:
    """The math spans of ``segment`` that hold more than spaces."""
    return [m for m in _MATH_SPAN.finditer(segment) if _span_text(m)]


def _group_of(segment: str, items: list[re.Match], text_of) -> tuple[str, ...]:
    """The last of ``items`` and those right before it that only separators keep apart."""
    last, parts = items[-1], [text_of(items[-1])]
    for prev in reversed(items[-MAX_PARTS:-1]):
        if not _separated(segment[prev.end() : last.start()]):
            break
        parts.append(text_of(prev))
        last = prev
    return tuple(reversed(parts))


def _from_segment(segment: str, group: bool) -> Extracted | None:
    """Whichever ends ``segment`` last: its last math span or a number written after it (with its group)."""
    spans = _spans(segment)
    numbers = list(_NUMBER.finditer(segment, spans[-1].end() if spans else 0))[-MAX_PARTS:]
    if numbers:
        answer = numbers[-1].group(0).strip()
        return Extracted(answer, _group_of(segment, numbers, lambda m: m.group(0).strip()) if group else ())
    if not spans:
        return None
    return Extracted(_span_text(spans[-1]), _group_of(segment, spans, _span_text) if group else ())


def _final_sentence(line: str) -> str:
    """The last sentence of ``line`` that holds math or a number (sentence ends outside math)."""
    inside = [(m.start(), m.end()) for m in _MATH_SPAN.finditer(line)]
    cuts = [0] + [m.end() for m in _SENTENCE_END.finditer(line) if not any(a <= m.start() < b for a, b in inside)]
    cuts.append(len(line))
    for a, b in reversed(list(pairwise(cuts))):
        piece = line[a:b]
        if _HAS_DIGIT.search(piece) or _spans(piece):
            return piece
    return ""


#: lenient reads only the completion's end (from a line start): the final answer is there, and time stays bounded
LENIENT_TAIL = 4000


def _lenient(text: str, group: bool) -> Extracted | None:
    if len(text) > LENIENT_TAIL:
        cut = len(text) - LENIENT_TAIL
        line_start = text.find("\n", cut)
        text = text[line_start + 1 :] if 0 <= line_start < cut + LENIENT_TAIL // 2 else text[cut:]
    answer_at = None
    for answer_at in _ANSWER_COLON.finditer(text):
        pass
    if answer_at is not None:
        rest = text[answer_at.end() :]
        display = _trailing_display(rest)
        if display is not None:
            return Extracted(display, (display,) if group else ())
        found = _from_segment(rest.strip().split("\n", 1)[0], group)
        if found is not None:
            return found
    display = _trailing_display(text)
    if display is not None:
        return Extracted(display, (display,) if group else ())
    for line in reversed(text.split("\n")[-200:]):
        if _HAS_DIGIT.search(line) or _spans(line):
            return _from_segment(_final_sentence(line), group)
    return None


def extract(text: str, extraction: str = "strict", group: bool = False) -> Extracted | None:
    """The completion's final answer under ``extraction``; None when it has none.

    ``group``: also collect the final group of answers (costs a little more:
    the grader asks only when the reference has several parts).
    """
    if extraction not in EXTRACTION_POLICIES:
        check_extraction(extraction)
    found = _strict(text, group)
    if found is _NoAnchor:
        return _lenient(text, group) if extraction == "lenient" else None
    return found  # type: ignore[return-value]


def extract_answer(text: str, extraction: str = "strict") -> str | None:
    """The completion's final answer as text (see :func:`extract`); None when there is none."""
    found = extract(text, extraction)
    return None if found is None else found.answer

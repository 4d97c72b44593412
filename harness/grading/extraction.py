"""Finding a completion's final answer, under one of two policies.

``strict`` (the default, and the RL reward's): the last ``\\boxed{}`` (an
``<answer>`` tag written after it wins, for R1-style prompts), else "the
(final) answer is ...", else GSM8K's ``#### N``. Nothing else counts: the
seed study's format bonus and strictness are part of its method.

``lenient``: what ``strict`` finds, else the final mathematical expression
of an unformatted completion, as free-form graders read it: after the last
``Answer:``, else a display (``\\[...\\]``, ``$$...$$``) or a line of LaTeX
without delimiters (``2\\sqrt{3}``, read whole) that ends the completion, else
whichever comes last in the final sentence that holds math or a number (on
the last line that holds one): its last inline math (``$...$``,
``\\(...\\)``) or a number written after it -- where a lone variable
(``$x$``) gives way to the sentence's number ("so $x$ equals 12"). Numbers
may group thousands with spaces (``1 000 000``); a decimal comma is read
only beside a currency (``€3,50``), as elsewhere it may separate answers.
A completion whose last box was cut off, or that says "the answer is" and
stops, has no answer under either policy.

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
from collections import deque
from collections.abc import Iterator
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
        from harness.base.errors import UserError

        allowed = ", ".join(EXTRACTION_POLICIES)
        raise UserError(f"unknown extraction policy {name!r}; choose one of {allowed}")
    return name


def _last(matches: Iterator[re.Match]) -> re.Match | None:
    """The last of ``matches`` (None when there is none), keeping none of the others."""
    last = deque(matches, maxlen=1)
    return last[0] if last else None


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
    match = _last(_BOXED.finditer(text))
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


def separate_boxes(text: str) -> tuple[str, ...] | None:
    """The contents of a text made only of two or more boxes and separators (``\\boxed{2}, \\boxed{5}``):
    a reference written so lists its answers, as ``\\boxed{2, 5}`` would, and is no single last box."""
    if len(text) > 4 * MAX_GAP * MAX_PARTS:
        return None
    parts: list[str] = []
    end = 0
    for match in _BOXED.finditer(text):
        box = _box_at(text, match)
        if box is None or box[1] < end or not _separated(text[end : box[1]]) or len(parts) == MAX_PARTS:
            return None
        parts.append(box[0])
        end = box[2]
    return tuple(parts) if len(parts) > 1 and _separated(text[end:]) else None


_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_ANSWER_IS = re.compile(
    r"(?:final answer|the answer)\s*(?:is\b|:)\s*:?\s*(?:(?:therefore|thus|then|clearly)\b[\s:,]*)?",
    re.IGNORECASE,
)
_ANSWER_TAIL = re.compile(r"\$+([^$]+?)\$+|([^\n]+?)\s*(?:\.\s|\.?\s*$|\n)")
_HASHES = re.compile(r"^\s*####\s*(.+?)\s*$", re.MULTILINE)


class _NoAnchor:
    """Strict found no answer *format* at all (not: found one, but it was cut off)."""


def _strict(text: str, group: bool) -> Extracted | None | type[_NoAnchor]:
    boxed = _last_boxed_span(text)
    tag = _last(_ANSWER_TAG.finditer(text))
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
    head = _last(_ANSWER_IS.finditer(text))
    if head is not None:
        tail = _ANSWER_TAIL.match(text, head.end())
        candidates.append((head.start(), (tail.group(1) or tail.group(2)) if tail else ""))
    hashes = _last(_HASHES.finditer(text))
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
    r"\$\$(?P<d1>.+?)\$\$|\\\[(?P<d2>.+?)\\\]|\\\((?P<i1>.+?)\\\)|(?<![\\$])\$(?P<i2>[^$]+?)(?<!\\)\$",
    re.DOTALL,
)
#: an amount with a decimal comma (``3,50``, ``1.234,56``): read so only beside a currency sign or word
_COMMA_AMOUNT = r"[-\u2212]?(?:\d{1,3}(?:\.\d{3})+|\d+),\d{1,2}(?![\d,])"
_CURRENCY_SIGN = r"(?:[€£¥]|\\?\$|\\(?:euro|pounds|yen)\b)"
#: the currency words an amount may be followed by (a regular expression)
CURRENCY_WORDS = (
    r"(?:euros?|EUR|dollars?|USD|pounds?|GBP|francs?|CHF|yen|JPY|rubles?|reais|kronor|kroner|zlotys?)\b"
)
#: thousands grouped with spaces (``1 000 000``, no-break and thin spaces too), no digit after them
_SPACED = r"[1-9]\d{0,2}(?:[ \u00a0\u202f\u2009]\d{3})+(?!\d)"
#: a number in running text, maybe with a typographic minus (an exponent, ``cm^2``, is not a number)
_NUMBER = re.compile(
    rf"{_CURRENCY_SIGN}\s*(?P<pre>{_COMMA_AMOUNT})"
    rf"|(?<![\w.,])(?P<post>{_COMMA_AMOUNT})(?=\s*(?:{_CURRENCY_SIGN}|{CURRENCY_WORDS}))"
    rf"|(?<![\w.^])[-\u2212]?(?:\d{{1,3}}(?:,\d{{3}})+|{_SPACED}|\d+)(?:\.\d+)?(?:\s*/\s*\d+)?(?:\s*%)?"
    r"|(?<![\w.])[-\u2212]?\.\d+"
)
_ODD_SPACE = re.compile(r"[\u00a0\u202f\u2009]")
#: a span that only names an unknown (``x``, ``a_n``, ``\\theta``); not ``e``, usually Euler's number
_LONE_VARIABLE = re.compile(
    r"(?:[a-df-zA-Z]|\\(?:alpha|beta|gamma|delta|(?:var)?epsilon|(?:var)?theta|lambda|mu|nu|rho|sigma|tau"
    r"|(?:var)?phi|chi|psi|omega|xi|eta|zeta|kappa))\s*(?:_\s*(?:\{\s*\w+\s*\}|\w)|')*"
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


def _number_text(m: re.Match) -> str:
    """A number as the grader reads it: ``3.50`` for ``€3,50``, no-break spaces as plain ones."""
    amount = m.group("pre") or m.group("post")
    if amount:
        return amount.replace(".", "").replace(",", ".").replace("\u2212", "-")
    return _ODD_SPACE.sub(" ", m.group(0).strip()).replace("\u2212", "-")


def _numbers_outside(segment: str, start: int, spans: list[re.Match]) -> list[re.Match]:
    """The last numbers of ``segment`` from ``start`` on that no math span holds."""
    found: list[re.Match] = []
    for span in spans:
        if span.start() >= start:
            found.extend(_NUMBER.finditer(segment, start, span.start()))
        start = max(start, span.end())
    found.extend(_NUMBER.finditer(segment, start))
    return found[-MAX_PARTS:]


def _from_segment(segment: str, group: bool) -> Extracted | None:
    """Whichever ends ``segment`` last: its last math span or a number written after it (with its group).

    A span that only names a variable gives way to a value: "so $x$ equals 12", "12 is the value of $x$".
    """
    spans = _spans(segment)
    valued = [m for m in spans if not _LONE_VARIABLE.fullmatch(_span_text(m))]
    numbers = _numbers_outside(segment, valued[-1].end() if valued else 0, spans)
    if numbers:
        answer = _number_text(numbers[-1])
        return Extracted(answer, _group_of(segment, numbers, _number_text) if group else ())
    spans = valued or spans
    if not spans:
        return None
    return Extracted(_span_text(spans[-1]), _group_of(segment, spans, _span_text) if group else ())


#: a line of mathematics without delimiters: LaTeX commands, digits, single letters, operators, no prose
_BARE_CHARS = re.compile(r"[\w\\{}()\[\]^_+\-*/=.,;:|<>!' ]+")
_COMMAND = re.compile(r"\\[a-zA-Z]+")
_LATEX_MARK = re.compile(r"\\(?:[a-zA-Z]+|[{}])|\^")
#: a leading "therefore"/"=" and a trailing end-of-proof mark frame the expression, they are not part of it
_FRAME = re.compile(
    r"^(?:\s*(?:=|\\(?:therefore|implies|Rightarrow|Longrightarrow)\b))*"
    r"|(?:\s*\\(?:blacksquare|square|qed|Box|checkmark)\b)+$"
)
_TEXT_ARGUMENT = re.compile(r"\\(?:text\w*|mathrm|mbox)\s*\{[^{}]*\}")
_PROSE_WORD = re.compile(r"[^\W\d_]{2,}")
_CONSTANT = re.compile(r"\\(?:pi|infty|emptyset|varnothing)\b")  # answers with no digit or letter


def _bare_latex(line: str) -> str | None:
    """``line`` as one answer when it is LaTeX without math delimiters: its numbers alone mislead
    (``4`` from ``\\frac{3}{4}``). Words outside commands make it prose; ``$`` or ``\\(`` delimited math."""
    s = _FRAME.sub("", line.strip().rstrip(".")).strip() if len(line) <= 500 else ""
    if not s or not _LATEX_MARK.search(s) or not _BARE_CHARS.fullmatch(s) or _MATH_SPAN.search(s):
        return None
    rest = _COMMAND.sub(" ", _TEXT_ARGUMENT.sub(" ", s))  # what is left is digits, letters, operators
    if re.search(r"\\[()\[\]]", s) or _PROSE_WORD.search(rest):
        return None
    return s if re.search(r"[^\W_]", rest) or _CONSTANT.search(s) else None


def _final_sentence(line: str) -> str:
    """The last sentence of ``line`` that holds math or a number (sentence ends outside math)."""
    inside = [(m.start(), m.end()) for m in _MATH_SPAN.finditer(line)]
    ends = _SENTENCE_END.finditer(line)
    cuts = [0] + [m.end() for m in ends if not any(a <= m.start() < b for a, b in inside)]
    cuts.append(len(line))
    for a, b in reversed(list(pairwise(cuts))):
        piece = line[a:b]
        if _HAS_DIGIT.search(piece) or _spans(piece):
            return piece
    return ""


#: lenient reads only the completion's end (from a line start): the answer is there, and time stays bounded
LENIENT_TAIL = 4000


def _lenient(text: str, group: bool) -> Extracted | None:
    if len(text) > LENIENT_TAIL:
        cut = len(text) - LENIENT_TAIL
        line_start = text.find("\n", cut)
        text = text[line_start + 1 :] if 0 <= line_start < cut + LENIENT_TAIL // 2 else text[cut:]
    answer_at = _last(_ANSWER_COLON.finditer(text))
    if answer_at is not None:
        rest = text[answer_at.end() :]
        first = rest.strip().split("\n", 1)[0]
        whole = _trailing_display(rest) or _bare_latex(first)
        found = Extracted(whole, (whole,) if group else ()) if whole else _from_segment(first, group)
        if found is not None:
            return found
    whole = _trailing_display(text) or _bare_latex(text.rstrip().rsplit("\n", 1)[-1])
    if whole:
        return Extracted(whole, (whole,) if group else ())
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

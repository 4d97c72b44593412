"""Notation without mathematical content, removed before math-verify sees an answer.

Only what math-verify (``latex2sympy2_extended``) does not already read
right is handled here: it knows fractions, radicals, ``\\geq``/``>=``,
matrices (``pmatrix``, ``bmatrix``, ``array``), intervals, sets and tuples,
so those are left to it. What it misreads:

- ``4.5e33`` (as ``4.5 * e * 33``), ``62.5%`` (a LaTeX comment), units as
  variables (its own unit stripping also drops real one-letter variables, so
  ``6m`` would equal ``6``: we strip only ``\\text{}``-style groups and unit
  words, see :func:`normalize`);
- thousands separators written with spacing commands (``12,\\!345``,
  ``12\\,345``, ``12{,}345``);
- decimal commas (``3,5``), read by :func:`decimal_comma` under the rule in
  :mod:`harness.grading`'s docstring;
- an AMC-style choice label before the value (``\\textbf{(C)}\\ 142``),
  split off by :func:`choice_label`.

Relations against intervals (``x > 2`` for ``(2, \\infty)``) need nothing
here: math-verify compares them when asked (``allow_set_relation_comp``).
"""

from __future__ import annotations

import re

from harness.grading.extraction import CURRENCY_WORDS, last_boxed

_UNIT_WORDS = (
    # several letters: safe to strip when they follow a number
    "cm|mm|km|nm|pm|kg|mg|Hz|kHz|MHz|GHz|eV|keV|MeV|GeV|kJ|kW|MW|mol|atm|kPa|Pa|mph|ft|lb|lbs|oz|"
    "sec|secs|mins?|hrs?|yrs?|mL|ml|"
    r"[a-zA-Z]{3,}"  # any plain word of 3+ letters: "dollars", "apples", "seconds"
)
_FUNCTION_WORDS = frozenset(
    ["sin", "cos", "tan", "cot", "sec", "csc", "log", "ln", "exp", "max", "min", "mod", "gcd", "lcm", "det",
     "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh"]
)
#: LaTeX commands whose argument is text (words, units), not mathematics (\\mathbf{j} is math: not here)
_TEXT_COMMANDS = r"(?:text(?:bf|it|rm|sf|tt|normal|up)?|mathrm|mbox|hbox|rm)"
# \text{...}-style groups (with an optional exponent): units and words
_TEXT_GROUP = rf"\\{_TEXT_COMMANDS}\s*\{{[^{{}}]*\}}(?:\s*\^\s*\{{?\s*-?\d+\s*\}}?)?"
_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:\s*(?:\\times|\\cdot)\s*10\s*\^\s*\{?\s*[-+]?\d+\s*\}?)?"
# trailing text groups after any expression; the group must hold no digit or math
_TRAILING_TEXT = re.compile(
    rf"^(?P<expr>.*?[\w}})\]])\s*(?:\\[,;: ]\s*|~\s*)*(?:{_TEXT_GROUP}\s*)+$", re.DOTALL
)
_TRAILING_WORD_UNITS = re.compile(
    rf"^(?P<num>{_NUMBER})\s+(?P<unit>(?:(?:{_UNIT_WORDS})(?:\s*\^\s*\{{?-?\d+\}}?)?[\s/.]*)+)$"
)
_WHOLE_TEXT = re.compile(rf"\\{_TEXT_COMMANDS}\s*\{{([^{{}}]*)\}}")
_SCI_E = re.compile(r"^([-+]?\d+(?:\.\d+)?)\s*[eE]\s*([-+]?\d+)$")
_SCI_X = re.compile(r"^([-+]?\d+(?:\.\d+)?)\s*(?:x|×|\*)\s*10\s*(?:\^|\*\*)\s*\{?\s*([-+]?\d+)\s*\}?$")
#: a thousands group never starts with 0: "0,250" is a decimal comma, not 250
_THOUSANDS = re.compile(r"^[-+]?[1-9]\d{0,2}(?:(?:,|\\,| )\d{3})+(?:\.\d+)?$")
_DEGREE = re.compile(
    r"(?<=[\d}])\s*(?:\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\\circ|°|\\degree)(?:\s*(?:C|F)\b)?"
)
_ARCSEC = re.compile(r"(\d)\s*(?:\^\s*\{\s*\\prime\s*\\prime\s*\}|'')")
_ARCMIN = re.compile(r"(\d)\s*(?:\^\s*\{\s*\\prime\s*\}|\^\s*\\prime\b)")
# spacing commands; never the "\\" of a matrix row break (the lookbehind)
_SPACING = re.compile(r"(?<!\\)\\[,;: ]|(?<!\\)\\q?quad\b")
_GLUED_COMMA = re.compile(r"\s*(?:\{,\}|,\s*\\!)\s*")  # 12{,}345 and 12,\!345: one number
_NEG_SPACE = re.compile(r"(?<!\\)\\!")
_PLAIN = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)")
_WHOLE_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{.*\}", re.DOTALL)
_TEXT_AND_OR = re.compile(r"\s*\\text\s*\{\s*(?:or|and)\s*\}\s*")
_LETTERS = re.compile(r"[a-zA-Z]+")
_THOUSANDS_SEP = re.compile(r"\\,|,| ")
_SPACES = re.compile(r"\s+")
#: in order: spacing commands, \left/\right, \dfrac, \displaystyle, _{\max}, arc seconds and minutes,
#: degrees, percent
_REWRITES = (
    (_SPACING, " "),
    (re.compile(r"\\(?:left|right)(?![a-zA-Z])\s*"), ""),
    (re.compile(r"\\[dt]frac"), r"\\frac"),
    (re.compile(r"\\(?:displaystyle|textstyle)\b\s*"), ""),
    (re.compile(r"_\{\s*\\(max|min)\s*\}"), r"_{\1}"),
    (_ARCSEC, r"\1"),
    (_ARCMIN, r"\1"),
    (_DEGREE, ""),
    (re.compile(r"\s*\\%|\s*%|\s*\\text\s*\{\s*percent\s*\}|\s+percent\b"), ""),
)


def normalize(answer: str) -> str:
    """The answer with notation that carries no mathematical content removed.

    Keeps the mathematics itself untouched: the result still goes through
    math-verify, this only spares it the notation it would misread.
    """
    s = str(answer).strip()
    if _PLAIN.fullmatch(s):  # most answers a model writes: nothing to do
        return s
    # a whole answer in \boxed{} keeps only its content
    while s.startswith(("\\boxed", "\\fbox")):
        inner = last_boxed(s)
        if inner is None or not _WHOLE_BOX.fullmatch(s) or inner == s:
            break
        s = inner
    s = s.replace("\\$", "").replace("$", "")
    whole_text = _WHOLE_TEXT.fullmatch(s.strip())
    if whole_text:  # \text{Evelyn} is the word Evelyn, \text{(C)} the choice (C)
        s = whole_text.group(1)
    s = _GLUED_COMMA.sub(",", s)
    s = _NEG_SPACE.sub("", s)
    s = _TEXT_AND_OR.sub(", ", s)
    s = s.strip().rstrip(".").strip()
    match = _TRAILING_TEXT.match(s)
    if match:
        s = match.group("expr").strip()
    for pattern, replacement in _REWRITES:
        s = pattern.sub(replacement, s)
    s = s.replace("\\geqslant", "\\geq").replace("\\leqslant", "\\leq")
    s = s.strip().rstrip(".").strip()
    match = _TRAILING_WORD_UNITS.match(s)
    if match and not (set(_LETTERS.findall(match.group("unit"))) & _FUNCTION_WORDS):
        s = match.group("num").strip()
    if _THOUSANDS.match(s):
        s = _THOUSANDS_SEP.sub("", s)
    match = _SCI_E.match(s) or _SCI_X.match(s)
    if match:
        s = f"{match.group(1)}\\times10^{{{match.group(2)}}}"
    return _SPACES.sub(" ", s).strip()


def canonical(s: str) -> str:
    """A spacing- and brace-insensitive form for string comparison (words: case-insensitive)."""
    if _PLAIN.fullmatch(s):
        return s
    if re.fullmatch(r"[A-Za-z][A-Za-z ]+", s):
        return " ".join(s.lower().split())
    s = re.sub(r"([_^])\{(\w)\}", r"\1\2", s)
    s = re.sub(r"\\frac\s*(\d)\s*(\d)", r"\\frac{\1}{\2}", s)
    return re.sub(r"\s+", "", s)


# ---------------------------------------------------------------------------
# answers in several parts


def top_level_parts(s: str) -> list[str]:
    """``s`` split at the commas and semicolons outside brackets: ``(1,2),(2,1)`` -> two parts."""
    parts, depth, start = [], 0, 0
    for m in re.finditer(r"[,;(){}\[\]]|\\[{}]", s):
        tok = m.group(0)
        if tok in "([{" or tok == "\\{":
            depth += 1
        elif tok in ")]}" or tok == "\\}":
            depth = max(depth - 1, 0)
        elif depth == 0:
            parts.append(s[start : m.start()])
            start = m.end()
    parts.append(s[start:])
    return [p.strip() for p in parts if p.strip()]


# ---------------------------------------------------------------------------
# decimal commas

_DECIMAL_COMMA = re.compile(r"([-+]?\d+),(\d+)")


def decimal_comma(s: str) -> str:
    """``3,5`` -> ``3.5`` when the comma cannot be a thousands separator (rule: see the package docstring).

    Called only where one value is expected (a single-part reference), so
    ``3,5`` against the list ``3, 5`` stays a list.
    """
    match = _DECIMAL_COMMA.fullmatch(s) if "," in s else None
    if match and not _THOUSANDS.match(s):
        return f"{match.group(1)}.{match.group(2)}"
    return s


# ---------------------------------------------------------------------------
# the lenient grader's readings of a normalized answer

_SIGN = r"(?:[€£¥]|\\(?:euro|pounds|yen|textdollar)\b)"
_AMOUNT = re.compile(
    rf"^(?P<pre>{_SIGN}\s*)?(?P<num>[-+]?(?:(?:\d{{1,3}}(?:\.\d{{3}})+|\d+),\d{{1,2}}|\d[\d,]*(?:\.\d+)?))"
    rf"(?P<post>\s*(?:{_SIGN}|{CURRENCY_WORDS}))?$"
)
#: a thousands group after a no-break space, thin space or ``~`` (``1~000~000``)
_WIDE_SEPARATOR = re.compile(r"(?<=\d)(?:~|[\u00a0\u202f\u2009])(?=\d{3}(?!\d))")


def lenient_reading(s: str) -> str:
    """A normalized answer as the lenient grader reads it: an amount of money as its number.

    ``€3,50`` and ``3,50 euros`` are 3.50: beside a currency a comma with one or
    two digits after it can only be a decimal comma (``1.234,56 €`` too). A
    thousands group may also follow a no-break space, thin space or ``~``.
    The strict grader keeps its own rules, so the RL reward never changes.
    """
    s = _WIDE_SEPARATOR.sub(" ", s)
    if _THOUSANDS.match(s):
        return _THOUSANDS_SEP.sub("", s)
    money = _AMOUNT.match(s)
    if money and (money.group("pre") or money.group("post")):
        num = money.group("num")
        if _THOUSANDS.match(num) or "," not in num:
            return _THOUSANDS_SEP.sub("", num)
        return num.replace(".", "").replace(",", ".") if re.search(r",\d{1,2}$", num) else s
    return s


# ---------------------------------------------------------------------------
# choice labels (AMC): "\textbf{(C)}\ 142", "(C) 142"

_CHOICE = re.compile(r"^\(?([A-E])\)\s*[:.]?\s*(?=\S)(?P<value>.+)$", re.DOTALL)
_TEXTBF_CHOICE = re.compile(r"\\text(?:bf|rm)?\s*\{\s*(\([A-E]\))\s*\}")


def choice_label(s: str) -> tuple[str, str] | None:
    """(letter, value) of ``(C) 142``; None when ``s`` does not start with a choice label."""
    if "(" not in s[:12] and ")" not in s[:4]:
        return None
    s = _TEXTBF_CHOICE.sub(r"\1 ", s).strip()
    match = _CHOICE.match(s)
    return (match.group(1), match.group("value").strip()) if match else None

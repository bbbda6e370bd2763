"""Checks that a paraphrase (TeLL) keeps its problem: numbers as values, and an independent solve.

A paraphrase is produced by an LLM, so nothing it says about itself is trusted:

- **Numbers as values.** The numbers of the original and of the rewording are
  read as values, whatever their spelling: digits (`1,200`, `2.5`), number
  words (`three`, `twenty-five`; via the maintained `text2num` package),
  fractions (`1/2`, `3 1/2`, `half`, `a third`, `two thirds`, `three
  quarters`, `4 and a half`), percents (`25%` and `25 percent` are 1/4),
  `a dozen` / `2 dozen` (12, 24), multiplicative words (`twice`/`double` 2,
  `triple`/`thrice` 3) and signs (`-5`, `minus 5`). The two multisets must be
  equal, so `3` -> `three` passes while `half` -> `a third` or `1/2` -> `2/1`
  does not. A bare `one` may be a pronoun ("the red one"): one-valued words
  may appear or disappear, digits may not. Ordinals (`3rd`, `third day`) are
  not compared: `first`/`second` are too often not numbers at all.
- **Independent solve.** Digits can survive a rewording that changes the
  mathematics (roles swapped, "gives away" -> "receives", hours -> minutes).
  So the reworded text alone, with no original and no earlier program in
  context, is given to a fresh solver (`prompts/solve_program.jinja`, k
  samples); the executed answers must reproduce the instance's answer
  (`solve_outcome`). A paraphraser's own program is never run: it may follow
  the original rather than its rewording.

What is not checked: that the wording is fluent, or that a number kept as a
value keeps its role when the solver also misreads the text the same way.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction

from text_to_num import alpha2digit

_WORD_HYPHEN = re.compile(r"(?<=[A-Za-z])-(?=[A-Za-z])")
_DENOMINATORS = {"half": 2, "halves": 2, "quarter": 4, "quarters": 4}
_COUNT = r"(?:\d+|an?)"
# Applied in order; each match is replaced by a blank so later patterns do not see it again.
_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("percent", re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)\s*(?:%|per\s?cent\b)", re.I)),
    ("and_a_fraction", re.compile(r"(?<![\w.])(\d+) and (?:a|1) (half|quarter|(\d+)(?:rd|th))\b", re.I)),
    ("word_fraction", re.compile(rf"(?<![\w.])({_COUNT})\s+(halves|half|quarters?|(\d+)(?:rd|th)s?)\b", re.I)),
    ("bare_half", re.compile(r"\bhalf\b", re.I)),
    ("dozen", re.compile(rf"(?<![\w.])({_COUNT})\s+dozens?\b", re.I)),
    ("times_word", re.compile(r"\b(twice|double[sd]?|thrice|triple[sd]?|quadruple[sd]?)\b", re.I)),
    ("ordinal", re.compile(r"(?<![\w.])\d+(?:st|nd|rd|th)\b", re.I)),
    ("mixed", re.compile(r"(?<![\w.,/])(\d+) (\d+)/(\d+)(?![\w.,/])")),
    ("fraction", re.compile(r"(?<![\w.,/)])(-?)(\d+)/(\d+)(?![\w.,/])")),
    # A sign counts only where it cannot be subtraction or a range ("10-5", "3-5 days").
    ("number", re.compile(r"(?<![\w.)])(-|minus\s+|negative\s+)?(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?", re.I)),
]
_TIMES = {"twice": 2, "double": 2, "thrice": 3, "triple": 3, "quadruple": 4}
# "one" inside a fraction or a compound number is not the ambiguous pronoun-like "one".
_BARE_ONE = re.compile(r"\bone\b(?!\s+(?:half|halves|quarters?|thirds?|\w+ths?|and|hundred|thousand|million)\b)", re.I)


@dataclass(frozen=True)
class NumberValues:
    """The numbers of a text as values, and how many of them are a bare word `one` (maybe a pronoun)."""

    values: Counter[Fraction]
    optional_ones: int


def number_values(text: str) -> NumberValues:
    """Read every number in `text` as a value (see the module docstring for the spellings).

    >>> sorted(number_values("Tom buys three pens at $2.50, half of 1,200 clips and 25% more.").values.elements())
    [Fraction(1, 4), Fraction(1, 2), Fraction(5, 2), Fraction(3, 1), Fraction(1200, 1)]
    >>> number_values("One of them ran a third of 9 miles.").optional_ones
    1
    """
    words = _WORD_HYPHEN.sub(" ", text)  # text2num reads "twenty five" and "two thirds", not the hyphenated forms
    optional_ones = len(_BARE_ONE.findall(words))
    digits = alpha2digit(words, "en", threshold=0)
    values: Counter[Fraction] = Counter()
    for kind, pattern in _PATTERNS:
        digits = pattern.sub(lambda match: _take(kind, match, values), digits)
    return NumberValues(values=values, optional_ones=optional_ones)


def _take(kind: str, match: re.Match[str], values: Counter[Fraction]) -> str:
    """Record the value of one match and blank it out (keeping word boundaries)."""
    value = _value(kind, match)
    if value is not None:
        values[value] += 1
    return " "


def _count(text: str) -> int:
    return 1 if text.lower() in ("a", "an") else int(text)


def _denominator(word: str, ordinal: str | None) -> int:
    return int(ordinal) if ordinal else _DENOMINATORS[word.lower()]


def _value(kind: str, match: re.Match[str]) -> Fraction | None:
    if kind == "percent":
        return Fraction(match.group(1)) / 100
    if kind == "and_a_fraction":
        return int(match.group(1)) + Fraction(1, _denominator(match.group(2), match.group(3)))
    if kind == "word_fraction":
        if match.group(3) == "2":  # "a 2nd" is a unit of time or a position, never a half
            return None
        return Fraction(_count(match.group(1)), _denominator(match.group(2), match.group(3)))
    if kind == "bare_half":
        return Fraction(1, 2)
    if kind == "dozen":
        return Fraction(12 * _count(match.group(1)))
    if kind == "times_word":
        word = match.group(1).lower()
        return next(Fraction(n) for stem, n in _TIMES.items() if word.startswith(stem))
    if kind == "ordinal":
        return None
    if kind == "mixed":
        return int(match.group(1)) + Fraction(int(match.group(2)), int(match.group(3))) if int(match.group(3)) else None
    if kind == "fraction":
        if not int(match.group(3)):
            return None
        value = Fraction(int(match.group(2)), int(match.group(3)))
        return -value if match.group(1) else value
    value = Fraction(match.group(2).replace(",", "") + (match.group(3) or ""))
    return -value if match.group(1) else value


def number_change(original: str, paraphrase: str) -> str | None:
    """Describe how the paraphrase's numbers differ from the original's as values, or None when they agree.

    >>> number_change("Tom has 3 apples and eats half.", "Ann owns three pears and eats 1/2 of them.") is None
    True
    >>> number_change("Eat half of the 12 plums.", "Eat a third of the 12 plums.")
    "missing ['1/2'], added ['1/3']"
    """
    before, after = number_values(original), number_values(paraphrase)
    missing, added = before.values - after.values, after.values - before.values
    # A bare "one" may be a pronoun: it may be dropped or added, up to the count of such words.
    for counter, allowance in ((missing, before.optional_ones), (added, after.optional_ones)):
        counter[Fraction(1)] -= min(counter[Fraction(1)], allowance)
    missing, added = +missing, +added
    if not missing and not added:
        return None
    return f"missing {sorted(map(str, missing.elements()))}, added {sorted(map(str, added.elements()))}"


@dataclass(frozen=True)
class SolveAttempt:
    """One independent program for the reworded text: its executed answer, or why there is none."""

    answer: object | None
    reproduces: bool
    failure: str | None = None


def solve_outcome(attempts: list[SolveAttempt], *, min_reproducing: int) -> tuple[str, str] | None:
    """Decide a paraphrase from its independent solutions: None (kept) or (reason, detail).

    Kept when at least `min_reproducing` attempts reproduce the instance's
    answer. Otherwise 'paraphrase_answer_changed' when some attempt ran to
    another answer (the solver read a different problem), 'solve_failed' when
    none did (no program, or the programs failed: the solver, not the
    rewording, is in doubt).
    """
    reproducing = sum(attempt.reproduces for attempt in attempts)
    if reproducing >= min_reproducing:
        return None
    answered = [attempt.answer for attempt in attempts if attempt.failure is None and not attempt.reproduces]
    if answered:
        return "paraphrase_answer_changed", (
            f"{reproducing}/{len(attempts)} independent solutions reproduce the answer; others gave {answered!r}"
        )
    failures = sorted({attempt.failure or "" for attempt in attempts})
    return "solve_failed", f"no independent solution ran: {failures}"

r"""Filter out broken samples; each check returns (ok, reason).

The checks, in the order a sample meets them (the first failure is its reason):

- ``truncated``: the backend stopped at max_tokens (finish_reason "length").
- ``code_error_in_trace``: the last code execution of a tool-integrated trace
  failed (a traceback or ``SomeError:`` line). Earlier errors that a later
  run fixed are kept: correcting them is what self-correction traces teach.
  ``traceback_in_response``: a response without executions shows a traceback.
- ``missing_final_answer``: `mathforge.verify.extract_answer` finds none.
- ``multiple_boxed_answers``: the response boxes an answer that is neither
  its final answer nor a part of it. The final answer is the verifier's
  (`verify.extract_answer`), which joins adjacent boxes such as
  ``\boxed{-2}, \boxed{1}`` into one answer; contents are compared after
  `verify.normalize.clean_latex`, spaces removed.
- ``unevaluated_final_answer``: the final answer is still arithmetic on
  plain numbers (``7 + 5``, ``3 \times 4``, ``12 \div 4``): the response
  boxed a computation, not its result. The verifier evaluates it, so a
  response that boxes the question's own expression verifies while its text
  concludes something else ("... so she has 51. \boxed{7 + 5}"): a row that
  teaches wrong reasoning. Single numbers, fractions, powers and
  expressions with symbols pass.
- ``false_arithmetic``: an equation on plain numbers in the response's prose
  does not hold ("so she has 7 + 50 = 12 apples"): the final answer verified,
  a step is false, and the row would teach it. `mathforge.curate.arithmetic`
  says what it reads and what it leaves alone.
- ``too_short`` / ``too_long``: `n_completion_tokens` outside
  [`min_tokens`, `max_tokens`] or outside Tukey's fences on log length,
  ``exp(Q1 - k * IQR)`` and ``exp(Q3 + k * IQR)``, computed over the table.
  Log scale because lengths are right-skewed; k = 3 marks only far outliers.
- ``language_mismatch``: for "en", a cheap, dependency-free heuristic on
  the response with LaTeX commands and code blocks removed: more than 10% of
  its letters are outside ASCII (Greek letters are math and not counted:
  this catches Cyrillic, CJK, Arabic...), or it has at least 3 function
  words of Spanish, French, German, Portuguese or Italian and more of them
  than English ones ("que", "les", "und" against "the", "is", "of"; words
  shared by two languages and one-letter words are in neither list). Texts with fewer than 20
  letters are not judged. Terse English ("Cody eats 5*3 = 15 cookies.") has
  few function words but no foreign ones, so it passes.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Literal, get_args

import numpy as np
import pyarrow as pa
from pydantic import Field

from mathforge.curate.arithmetic import CODE_BLOCK, false_equations
from mathforge.curate.result import CurateResult, detail_json, require_columns, split_rows
from mathforge.section import Section
from mathforge.verify.extract import extract_answer
from mathforge.verify.normalize import clean_latex, matching_brace

CheckName = Literal[
    "truncated",
    "code_error",
    "missing_final_answer",
    "multiple_boxed_answers",
    "unevaluated_answer",
    "arithmetic",
    "length",
    "language",
]
Check = tuple[bool, str | None]
ALL_CHECKS: tuple[CheckName, ...] = get_args(CheckName)  # in the order a sample meets them

_OK: Check = (True, None)
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_ERROR_LINE = re.compile(
    r"^.*(?:Traceback \(most recent call last\)|\b[A-Z]\w*(?:Error|Exception)\b:?).*$", re.MULTILINE
)
_OUTPUT_BLOCK = re.compile(r"```output\s*\n(.*?)```", re.DOTALL)
_LATEX_COMMAND = re.compile(r"\\[A-Za-z]+")
_WORD = re.compile(r"[^\W\d_]+")
_ENGLISH_WORDS = frozenset(
    """the is are was were be been has have had do does did of to on at by for with from as and or but not no so
    if then than that this these those it its there their they we you he she his her him our us what how many
    much which who when where why each every all some more less after before into will would can could should
    must""".split()
)
# Function words of Spanish, French, German, Portuguese and Italian that are not English words
# (one-letter ones like Spanish "y" are left out: in math they are variables).
_FOREIGN_WORDS = (
    frozenset(
        """el la los las lo del al que es una unos unas por para con como pero su sus muy tiene son hay entonces
    le les des du au aux et est une ou mais avec pour dans sur ce cette ces il elle ils nous vous sont donc qui
    der das den dem des und ist ein eine einen nicht mit von zu auf ich er sie wir ihr sind hat dann oder aber wie
    um uma os da do dos das em no na não com para mas ele ela eles são tem então
    il lo gli della di che un una sono ha anche perché quindi""".split()
    )
    - _ENGLISH_WORDS
)
_NUMBER = r"\d+(?:\.\d+)?"
_UNEVALUATED = re.compile(rf"-?{_NUMBER}(?:(?:[-+*×·÷]|\\times|\\cdot|\\div){_NUMBER})+")
_MIN_LETTERS = 20
_MAX_NON_ASCII_SHARE = 0.10
_MIN_FOREIGN_WORDS = 3


class FilterConfig(Section):
    """Sample filters (every drop has a reason)."""

    enabled: bool = Field(default=True, description="Run the filters.")
    checks: tuple[CheckName, ...] = Field(default=ALL_CHECKS, description="Checks to run, in this order.")
    answer_mode: Literal["strict", "lenient"] = Field(
        default="lenient",
        description="Extraction mode of missing_final_answer: 'strict' needs an explicit final answer "
        "(boxed, 'The answer is', '####'); 'strict' suits training sets best.",
    )
    min_tokens: int = Field(default=1, ge=0, description="Fewest completion tokens kept.")
    max_tokens: int | None = Field(default=None, ge=1, description="Most completion tokens kept; None: no bound.")
    outlier_iqr_k: float | None = Field(
        default=3.0, gt=0, description="Tukey fence factor on log token counts; None: absolute bounds only."
    )
    outlier_min_rows: int = Field(
        default=20, ge=4, description="Fewest rows for which the outlier fences are computed (quartiles need data)."
    )
    language: Literal["en"] = Field(default="en", description="Expected response language (heuristic: see filters.py).")


def check_truncated(finish_reason: str | None) -> Check:
    """Fail a generation cut at max_tokens."""
    return (False, "truncated") if finish_reason == "length" else _OK


def check_code_errors(response: str, trace_json: str | None) -> Check:
    """Fail a trace whose last execution errored, or a response without executions that shows a traceback.

    Executions are the `tool` turns of `trace_json` (a JSON list of
    {role, content}) or, without them, the ```output blocks of the response.
    """
    outputs = _execution_outputs(response, trace_json)
    if outputs:
        return (False, "code_error_in_trace") if _ERROR_LINE.search(outputs[-1]) else _OK
    return (False, "traceback_in_response") if "Traceback (most recent call last)" in response else _OK


def check_final_answer(response: str, *, mode: Literal["strict", "lenient"] = "lenient") -> Check:
    """Fail a response in which no final answer can be extracted."""
    return _OK if extract_answer(response, mode=mode) is not None else (False, "missing_final_answer")


def check_boxed_answers(response: str) -> Check:
    r"""Fail a response that boxes an answer other than its final one.

    >>> check_boxed_answers(r"\boxed{\frac12}, that is \boxed{\dfrac{1}{2}}")
    (True, None)
    >>> check_boxed_answers(r"The roots are \boxed{-2} and \boxed{1}.")
    (True, None)
    >>> check_boxed_answers(r"So \boxed{3}. Let me check again. It is \boxed{4}.")
    (False, 'multiple_boxed_answers')
    """
    return (False, "multiple_boxed_answers") if other_boxed_answers(response) else _OK


def check_evaluated_answer(response: str, *, mode: Literal["strict", "lenient"] = "lenient") -> Check:
    r"""Fail a response whose final answer is unevaluated arithmetic on plain numbers.

    >>> check_evaluated_answer(r"She has 51 apples. \boxed{7 + 5}")
    (False, 'unevaluated_final_answer')
    >>> [check_evaluated_answer(rf"\boxed{{{a}}}")[0] for a in ("12", "-5", r"\frac{1}{2}", r"3 \times 10^5", "x + 1")]
    [True, True, True, True, True]
    """
    answer = extract_answer(response, mode=mode)
    if answer is not None and _UNEVALUATED.fullmatch(clean_latex(answer).replace(" ", "")):
        return False, "unevaluated_final_answer"
    return _OK


def check_arithmetic(response: str) -> Check:
    """Fail a response whose prose has an equation on plain numbers that does not hold.

    >>> check_arithmetic("She has 7 + 50 = 12 apples. The answer is 12.")
    (False, 'false_arithmetic')
    >>> check_arithmetic("She has 7 + 5 = 12 apples, 12 boxes x 3 = 36 in all.")
    (True, None)
    """
    return (False, "false_arithmetic") if false_equations(response) else _OK


def check_length(n_tokens: int, *, low: float, high: float) -> Check:
    """Fail a token count outside [low, high]."""
    if n_tokens < low:
        return False, "too_short"
    if n_tokens > high:
        return False, "too_long"
    return _OK


def check_language(text: str, *, language: Literal["en"] = "en") -> Check:
    """Fail a text that is not in `language` by the module's heuristic ("en" only)."""
    if language != "en":
        raise ValueError(f"unsupported language {language!r}: only 'en'")
    evidence = language_evidence(text)
    if evidence is None:
        return _OK
    non_ascii_share, n_english, n_foreign = evidence
    if non_ascii_share > _MAX_NON_ASCII_SHARE or (n_foreign >= _MIN_FOREIGN_WORDS and n_foreign > n_english):
        return False, "language_mismatch"
    return _OK


def language_evidence(text: str) -> tuple[float, int, int] | None:
    """Return (share of non-ASCII letters, English function words, foreign function words) of `text`'s prose.

    None when the text has too few letters to judge.
    """
    prose = _LATEX_COMMAND.sub(" ", CODE_BLOCK.sub(" ", text))
    letters = [c for c in prose if c.isalpha() and not "\u0370" <= c <= "\u03ff"]
    if len(letters) < _MIN_LETTERS:
        return None
    words = [w.lower() for w in _WORD.findall(prose)]
    return (
        sum(not c.isascii() for c in letters) / len(letters),
        sum(w in _ENGLISH_WORDS for w in words),
        sum(w in _FOREIGN_WORDS for w in words),
    )


def boxed_contents(text: str) -> list[str]:
    r"""Return the contents of every \boxed{...} and \fbox{...}, nested braces matched.

    >>> boxed_contents(r"so \boxed{\frac{1}{2}} and \boxed {x^{2}}")
    ['\\frac{1}{2}', 'x^{2}']
    """
    contents = []
    position = 0
    for match in _BOXED.finditer(text):
        if match.start() < position:
            continue  # inside a box already read
        end = matching_brace(text, match.end() - 1)
        if end < 0:
            break
        contents.append(text[match.end() : end])
        position = end + 1
    return contents


def other_boxed_answers(text: str) -> list[str]:
    """Return the boxed answers of `text` that are neither its final answer nor a part of it, normalized."""
    contents = boxed_contents(text)
    final = extract_answer(text, mode="strict") if contents else None
    if final is None:
        return []
    final_answer = _normalize_answer(final)
    parts = {_normalize_answer(part) for part in final.split(",")}
    normalized = (_normalize_answer(content) for content in contents)
    return list(dict.fromkeys(a for a in normalized if a and a != final_answer and a not in parts))


def _normalize_answer(answer: str) -> str:
    return re.sub(r"\s+", "", clean_latex(answer))


def length_bounds(
    n_tokens: np.ndarray,
    *,
    min_tokens: int = 1,
    max_tokens: int | None = None,
    outlier_iqr_k: float | None = 3.0,
    outlier_min_rows: int = 20,
) -> tuple[float, float]:
    """Return the (low, high) token bounds: absolute bounds tightened by log-scale Tukey fences."""
    low, high = float(min_tokens), float(max_tokens) if max_tokens is not None else math.inf
    if outlier_iqr_k is not None and len(n_tokens) >= outlier_min_rows:
        logs = np.log(np.maximum(n_tokens, 1))
        q1, q3 = np.percentile(logs, [25, 75])
        spread = outlier_iqr_k * (q3 - q1)
        low, high = max(low, math.exp(q1 - spread)), min(high, math.exp(q3 + spread))
    return low, high


def filter_samples(
    table: pa.Table,
    *,
    checks: Sequence[CheckName] = ALL_CHECKS,
    answer_mode: Literal["strict", "lenient"] = "lenient",
    min_tokens: int = 1,
    max_tokens: int | None = None,
    outlier_iqr_k: float | None = 3.0,
    outlier_min_rows: int = 20,
    language: Literal["en"] = "en",
) -> CurateResult:
    """Drop samples that fail a check; the first failing check (in `checks` order) is the reason.

    Reads `response`, `finish_reason`, `n_completion_tokens`, `trace_json`,
    `problem_id`, `sample_id`; adds no column. The detail says what failed:
    the error line, the boxed answers, the bound, the letter and word shares.
    """
    require_columns(table, ["sample_id", "problem_id", "response", "finish_reason", "n_completion_tokens"], "filter")
    FilterConfig(
        checks=tuple(checks),
        answer_mode=answer_mode,
        min_tokens=min_tokens,
        max_tokens=max_tokens,
        outlier_iqr_k=outlier_iqr_k,
        outlier_min_rows=outlier_min_rows,
        language=language,
    )
    n_tokens = table.column("n_completion_tokens").to_numpy(zero_copy_only=False)
    low, high = length_bounds(
        n_tokens,
        min_tokens=min_tokens,
        max_tokens=max_tokens,
        outlier_iqr_k=outlier_iqr_k,
        outlier_min_rows=outlier_min_rows,
    )
    responses = table.column("response").to_pylist()
    finish_reasons = table.column("finish_reason").to_pylist()
    traces = table.column("trace_json").to_pylist() if "trace_json" in table.column_names else [None] * table.num_rows
    reasons: list[str | None] = [None] * table.num_rows
    details: list[str | None] = [None] * table.num_rows
    for row, (response, finish_reason, trace, tokens) in enumerate(zip(responses, finish_reasons, traces, n_tokens)):
        for name in checks:
            if name == "truncated":
                ok, reason = check_truncated(finish_reason)
            elif name == "code_error":
                ok, reason = check_code_errors(response, trace)
            elif name == "missing_final_answer":
                ok, reason = check_final_answer(response, mode=answer_mode)
            elif name == "multiple_boxed_answers":
                ok, reason = check_boxed_answers(response)
            elif name == "unevaluated_answer":
                ok, reason = check_evaluated_answer(response, mode=answer_mode)
            elif name == "arithmetic":
                ok, reason = check_arithmetic(response)
            elif name == "length":
                ok, reason = check_length(int(tokens), low=low, high=high)
            else:
                ok, reason = check_language(response, language=language)
            if not ok:
                reasons[row] = reason
                details[row] = _detail(name, response, trace, int(tokens), low, high)
                break
    return split_rows("filter", table, reasons, details)


def _execution_outputs(response: str, trace_json: str | None) -> list[str]:
    """Return the execution outputs of a sample: its trace's tool turns, else its ```output blocks."""
    if trace_json:
        turns = json.loads(trace_json)
        outputs = [
            str(turn.get("content", "")) for turn in turns if isinstance(turn, dict) and turn.get("role") == "tool"
        ]
        if outputs:
            return outputs
    return _OUTPUT_BLOCK.findall(response)


def _detail(check: CheckName, response: str, trace_json: str | None, n_tokens: int, low: float, high: float) -> str:
    """Describe why `check` failed, for the rejected table."""
    if check == "code_error":
        outputs = _execution_outputs(response, trace_json) or [response]
        error = _ERROR_LINE.search(outputs[-1]) or _ERROR_LINE.search(response)
        return detail_json(error=error.group().strip()[:200] if error else None)
    if check == "multiple_boxed_answers":
        others = other_boxed_answers(response)
        final = extract_answer(response, mode="strict") or ""
        return detail_json(final=final[:100], others=[answer[:100] for answer in others[:5]])
    if check == "unevaluated_answer":
        return detail_json(final=(extract_answer(response, mode="lenient") or "")[:100])
    if check == "arithmetic":
        equations = false_equations(response)
        return detail_json(equations=[f"{e} (left is {float(e.left_value):g})" for e in equations[:3]])
    if check == "length":
        return detail_json(n_completion_tokens=n_tokens, low=round(low, 1), high=round(high, 1))
    if check == "language":
        non_ascii_share, n_english, n_foreign = language_evidence(response) or (None, None, None)
        share = round(non_ascii_share, 3) if non_ascii_share is not None else None
        return detail_json(non_ascii_letter_share=share, english_words=n_english, foreign_words=n_foreign)
    return detail_json(check=check)

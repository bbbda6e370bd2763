"""Running template programs on many slot assignments in the sandbox (`run_batches`).

A program is followed by a driver that calls `solve` once per case and prints
one marked JSON line per case. Guarantees: every case gets exactly its own
outcome (lines carry the case index, so program prints or cut output never
shift answers between cases); ints, floats and Fractions come back exactly;
an exception or a missing line is that case's error, not the batch's; one
execution holds at most `MAX_CASES_PER_RUN` cases, so its output stays under
the sandbox's limit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Collection, Mapping, Sequence

from mathforge.synthesis.templates.rendering import format_answer

if TYPE_CHECKING:
    from mathforge.sandbox import SandboxPool

_MARK = "@@mathforge-case@@"
#: Cases per sandbox execution: ~100 bytes of output each stays far below the sandbox's 64 KiB.
MAX_CASES_PER_RUN = 100


# Appended to a template's program: runs solve on every case and prints one
# marked JSON line per case, carrying the case's index (output the sandbox cut,
# or the program's own prints, can then never shift answers onto other cases).
# Numbers are tagged by kind so that ints, floats (repr keeps every digit) and
# Fractions survive JSON exactly; an exception in one case is that case's
# result, not the batch's.
_DRIVER = """

def _mf_encode(value):
    import numbers
    from decimal import Decimal
    from fractions import Fraction
    if isinstance(value, bool):
        raise TypeError("solve returned a bool")
    if isinstance(value, numbers.Integral):
        return ["int", str(int(value))]
    if isinstance(value, Fraction):
        return ["fraction", f"{value.numerator}/{value.denominator}"]
    if isinstance(value, Decimal):
        return ["fraction", str(Fraction(value))]
    if isinstance(value, numbers.Real):
        return ["float", repr(float(value))]
    if isinstance(value, str):
        return ["str", value[:200]]
    raise TypeError(f"solve returned a {type(value).__name__}")


def _mf_run(cases, keys):
    import json
    for index, case in enumerate(cases):
        try:
            result = solve(**case)
            if not isinstance(result, dict):
                result = {"answer": result}
            wanted = {str(key): value for key, value in result.items() if keys is None or str(key) in keys}
            line = {"case": index, "values": {key: _mf_encode(value) for key, value in wanted.items()}}
        except Exception as error:
            line = {"case": index, "error": f"{type(error).__name__}: {str(error)[:300]}"}
        print("\\n" + __MF_MARK__ + json.dumps(line), flush=True)


_mf_run(__import__("json").loads(__MF_CASES__), __MF_KEYS__)
"""


@dataclass(frozen=True)
class CaseOutcome:
    """What solve returned for one set of slot values: named values, or an error description."""

    values: dict[str, object] | None
    error: str | None

    @property
    def answer(self) -> object:
        """The 'answer' value (None when absent or on error)."""
        return (self.values or {}).get("answer")


def _decode(tagged: list[str]) -> object:
    kind, text = tagged
    if kind == "int":
        return int(text)
    if kind == "fraction":
        return Fraction(text)
    if kind == "float":
        return float(text)
    return text


def batch_code(program: str, cases: Sequence[Mapping[str, int | float]], keys: Collection[str] | None = None) -> str:
    """The program followed by a driver that prints one tagged JSON line per case.

    `keys` limits the values printed from a dict solve returns (None: all).
    """
    driver = _DRIVER.replace("__MF_MARK__", repr(_MARK)).replace("__MF_CASES__", repr(json.dumps(list(cases))))
    return program + "\n" + driver.replace("__MF_KEYS__", repr(None if keys is None else sorted(keys)))


def run_batches(
    pool: SandboxPool,
    batches: Sequence[tuple[str, Sequence[Mapping[str, int | float]]]],
    *,
    timeout_s: float,
    keys: Sequence[Collection[str] | None] | None = None,
) -> list[list[CaseOutcome]]:
    """Run each (program, cases) batch in the sandbox; return solve's outcome per case, per batch.

    A batch is split into executions of at most `MAX_CASES_PER_RUN` cases
    (the sandbox keeps 64 KiB of output), all run in parallel; `keys[i]`
    limits the values batch i prints to those its caller uses. A case with no
    line in its execution's output (it timed out, ran out of memory, crashed,
    or the output was cut) gets an error naming the execution's status.
    """
    keys = keys if keys is not None else [None] * len(batches)
    chunks = [
        (number, program, cases[start : start + MAX_CASES_PER_RUN], keys[number])
        for number, (program, cases) in enumerate(batches)
        for start in range(0, len(cases), MAX_CASES_PER_RUN)
    ]
    results = pool.run_many(
        [batch_code(program, cases, wanted) for _, program, cases, wanted in chunks], timeout_s=timeout_s
    )
    outcomes: list[list[CaseOutcome]] = [[] for _ in batches]
    for (number, _, cases, _), result in zip(chunks, results, strict=True):
        by_case = _case_lines(result.stdout)
        tail = (result.stderr.strip().splitlines() or [""])[-1][:300]
        missing = CaseOutcome(values=None, error=f"{result.status}: {tail or 'no output for this case'}")
        outcomes[number].extend(by_case.get(index, missing) for index in range(len(cases)))
    return outcomes


def _case_lines(stdout: str) -> dict[int, CaseOutcome]:
    """The driver's lines in `stdout` by case index; lines cut by output truncation are skipped."""
    by_case = {}
    for text in stdout.splitlines():
        if not text.startswith(_MARK):
            continue
        try:
            line = json.loads(text[len(_MARK) :])
            values = {key: _decode(value) for key, value in line["values"].items()} if "values" in line else None
            by_case[int(line["case"])] = CaseOutcome(values=values, error=line.get("error"))
        except (ValueError, KeyError, TypeError):
            continue
    return by_case


def answer_text(outcome: CaseOutcome, answer_type: str, max_places: int) -> str | None:
    value = outcome.answer
    if isinstance(value, (int, float, Fraction)):
        return format_answer(value, answer_type, max_places=max_places)
    return None

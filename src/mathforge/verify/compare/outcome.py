"""What one comparison step returns (`Outcome`), and how equal parts add up (`combine`).

An outcome is equal / not equal / undecidable (None), with a snake_case
reason and the method that decided it. A structure whose parts are all equal
is reported under the most expensive method any part needed.
"""

from __future__ import annotations

from dataclasses import dataclass

_METHOD_RANK = {"string": 0, "text": 1, "numeric": 2, "structure": 2, "symbolic": 3}


@dataclass(frozen=True)
class Outcome:
    """Result of one comparison step: equal / not equal / undecidable, with why and how."""

    is_equal: bool | None
    reason: str
    method: str


def combine(outcomes: list[Outcome]) -> Outcome:
    """Summarize equal parts by the most expensive method that decided one of them."""
    if not outcomes:
        return Outcome(True, "string_match", "string")
    return max(outcomes, key=lambda outcome: _METHOD_RANK.get(outcome.method, 0))

"""Fixtures of the curation tests: small sample tables built from a few fields."""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa
import pytest

from mathforge.records import SAMPLE_SCHEMA, to_table


def sample_row(**fields: object) -> dict[str, object]:
    """A SAMPLE_SCHEMA row: the given fields over neutral defaults (a correct, stopped, boxed response)."""
    row: dict[str, object] = {
        "sample_id": "s0",
        "problem_id": "p0",
        "problem": "Tom has 3 apples and buys 4 more. How many apples does he have now?",
        "answer": "7",
        "source": "seeds",
        "response": "Tom starts with 3 apples and buys 4 more, so he has 3 + 4 = 7 apples. The answer is \\boxed{7}.",
        "finish_reason": "stop",
        "n_completion_tokens": 40,
        "model": "scripted",
        "sampling_json": "{}",
        "prompt_hash": "h",
        "round": 0,
        "sample_index": 0,
        "strategy": "generate",
        "is_surplus": False,
    }
    row.update(fields)
    return row


@pytest.fixture()
def make_samples() -> Callable[..., pa.Table]:
    """Build a SAMPLE_SCHEMA table from dicts of the fields that matter to a test."""

    def build(*rows: dict[str, object]) -> pa.Table:
        return to_table([sample_row(**row) for row in rows], SAMPLE_SCHEMA)

    return build

"""Fixtures of the selector tests: SAMPLE_SCHEMA tables built from a few fields per row."""

from __future__ import annotations

from typing import Any, Callable

import pyarrow as pa
import pytest

from mathforge.records import SAMPLE_SCHEMA, to_table

SAMPLE_DEFAULTS: dict[str, Any] = {
    "answer": "1",
    "source": "test",
    "finish_reason": "stop",
    "n_completion_tokens": 10,
    "model": "test-model",
    "sampling_json": "{}",
    "prompt_hash": "0" * 16,
    "round": 0,
    "sample_index": 0,
    "strategy": "generate",
    "is_surplus": False,
}


@pytest.fixture
def make_samples() -> Callable[[list[dict[str, Any]]], pa.Table]:
    """Return a builder: rows with at least sample_id, problem_id, problem, response -> SAMPLE_SCHEMA table."""

    def build(rows: list[dict[str, Any]]) -> pa.Table:
        return to_table([{**SAMPLE_DEFAULTS, **row} for row in rows], SAMPLE_SCHEMA)

    return build

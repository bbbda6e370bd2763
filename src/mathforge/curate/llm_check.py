"""LLM confirmation of embedding hits: is this row a rewritten copy of that benchmark item?

Method: the contamination check of NeMo-Skills (`check_contamination`):
retrieve the most similar benchmark item by embedding similarity, then ask an
LLM whether the two problems are the same, allowing rewording and changed
numbers. Here the retrieval is `mathforge.curate.retrieval`; the question is
the prompt file `prompts/decontam_check.jinja`, sent through the build's own
generator (any backend), greedy; the reply is read by `parse_verdict`.
Simplified: one candidate per row (NeMo-Skills can send the top k).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pydantic import Field

from mathforge.section import Section
from mathforge.generation.base import GenerationParams, Generator
from mathforge.prompts import chat

PROMPT = "decontam_check"
_VERDICT = re.compile(r"\b(true|false|yes|no)\b", re.IGNORECASE)


class LLMCheckConfig(Section):
    """Optional LLM confirmation of embedding candidates."""

    enabled: bool = Field(default=False, description="Ask the build's generator to confirm embedding candidates.")
    min_cosine: float = Field(
        default=0.75,
        ge=-1.0,
        le=1.0,
        description="Rows whose nearest benchmark item has at least this cosine are candidates sent to the LLM; "
        "its verdict then decides (an unparsable reply falls back to the embedding threshold).",
    )
    max_tokens: int = Field(default=8, ge=1, description="Longest reply, tokens (the verdict is one word).")


def parse_verdict(reply: str) -> bool | None:
    """Read the first True/False (or yes/no) of a reply; None when there is none.

    >>> parse_verdict("True."), parse_verdict("no, they differ"), parse_verdict("maybe")
    (True, False, None)
    """
    match = _VERDICT.search(reply)
    if match is None:
        return None
    return match.group(1).lower() in ("true", "yes")


def confirm_pairs(
    pairs: Sequence[tuple[str, str]], generator: Generator, *, max_tokens: int = 8
) -> list[tuple[bool | None, str]]:
    """Ask whether each (row text, benchmark item text) pair is the same problem; return (verdict, reply) per pair."""
    if not pairs:
        return []
    prompts = [chat(PROMPT, problem=row, benchmark_problem=item) for row, item in pairs]
    replies = generator.generate(prompts, GenerationParams(n=1, temperature=0.0, max_tokens=max_tokens))
    return [(parse_verdict(completions[0].text), completions[0].text.strip()) for completions in replies]

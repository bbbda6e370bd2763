"""Drawing slot values: rejection sampling against the constraints (`draw_values`).

Guarantees: results depend only on the seed and the template id (each
template and purpose has its own RNG, so template order does not matter); an
assignment is never drawn twice for one template; the number of draws is
bounded, and refused draws are counted by reason.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from typing import Mapping

from mathforge.records import stable_id
from mathforge.synthesis.templates.parsing import ParsedTemplate


def values_key(values: Mapping[str, int | float]) -> str:
    return json.dumps(values, sort_keys=True)


def template_rng(seed: int, template_id: str, purpose: str) -> random.Random:
    """An RNG private to one template and purpose: results do not depend on template order."""
    return random.Random(int(stable_id(seed, template_id, purpose), 16))


def draw_values(
    parsed: ParsedTemplate, rng: random.Random, n: int, *, max_draws: int, seen: set[str]
) -> tuple[list[dict[str, int | float]], int, Counter[str]]:
    """Rejection-sample up to `n` new slot assignments that satisfy the constraints.

    Draws each slot uniformly from its domain, at most `max_draws` times.
    Accepted assignments are added to `seen` (keys of `values_key`), so they
    are never drawn twice. Returns the assignments, the draws used, and counts
    of refused draws: 'duplicate_values' and 'constraint_violated'.
    """
    accepted: list[dict[str, int | float]] = []
    refused: Counter[str] = Counter()
    draws = 0
    while len(accepted) < n and draws < max_draws:
        draws += 1
        values = {name: spec.draw(rng) for name, spec in parsed.slots.items()}
        key = values_key(values)
        if key in seen:
            refused["duplicate_values"] += 1
        elif not parsed.satisfies(values):
            refused["constraint_violated"] += 1
        else:
            seen.add(key)
            accepted.append(values)
    return accepted, draws, refused

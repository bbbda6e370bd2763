"""Instantiation (TemplateGSM / TDG): new problems from a template with sampled slot values (`instantiate`).

Reads Template rows; writes Problem rows. Guarantees: the answer of every
instance is computed by running the template's `solve` in the sandbox, never
guessed; an instance is kept only when its answer has the template's type,
is not negative unless the seed's was, its solution template fills
completely, and its text is new; the same templates and seed give the same
rows. Refusals are Rejected rows, or counts for draws that never became a
problem.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Sequence

from mathforge.records import Problem, Rejected, Template, stable_id
from mathforge.synthesis.templates.batches import CaseOutcome, answer_text, run_batches
from mathforge.synthesis.templates.config import INSTANTIATE_STAGE, TemplateSynthesisConfig, count_reasons, rejected_row
from mathforge.synthesis.templates.parsing import ParsedTemplate, parse_template
from mathforge.synthesis.templates.rendering import PLACEHOLDER, format_value, render_text
from mathforge.synthesis.templates.sampling import draw_values, template_rng, values_key
from mathforge.synthesis.templates.slots import TemplateError

if TYPE_CHECKING:
    from mathforge.sandbox import SandboxPool


@dataclass(frozen=True)
class InstantiateResult:
    """Instances, rejected instances/templates, counts by reason, and instances kept per template.

    `counts` also holds draw-level reasons that have no Rejected row (a draw is
    not a problem yet): 'constraint_violated' and 'duplicate_values', and
    'surplus_instance' for valid instances beyond the target (a later round
    runs more candidates than it needs, sized by the observed yield).
    """

    problems: list[Problem]
    rejected: list[Rejected]
    counts: dict[str, int]
    per_template: dict[str, int]


@dataclass
class _Progress:
    """Sampling state of one template during `instantiate`."""

    parsed: ParsedTemplate
    rng: random.Random
    seen: set[str]
    n_draws: int = 0
    n_tried: int = 0
    n_kept: int = 0
    is_stalled: bool = False
    allows_negative: bool = False

    @property
    def used_values(self) -> set[str]:
        """Names of solve's values that instances use: the answer and the solution's placeholders."""
        solution = self.parsed.record.solution_template or ""
        return {"answer"} | {match.group(1) for match in PLACEHOLDER.finditer(solution)}


def instantiate(
    templates: Sequence[Template],
    *,
    n_per_template: int,
    seed: int,
    pool: SandboxPool,
    config: TemplateSynthesisConfig,
) -> InstantiateResult:
    """Instantiate templates with sampled slot values; answers computed by running `solve` in the sandbox.

    Per template, slot values are rejection-sampled (`draw_values`, at most
    `n_per_template * max_attempts_factor` draws; the seed's own values are
    never reused) and run in batches, one sandbox execution per template per
    round; rounds continue until `n_per_template` instances are kept, the draw
    budget is spent, or a round keeps nothing. An instance is kept when solve
    ran ('program_error'), its answer has the template's type
    ('wrong_answer_type': no '894.0' for an integer, no 1/3 for a decimal), it
    is not negative unless the seed's answer was ('negative_answer'), its
    solution template fills completely ('solution_placeholder_unresolved'),
    and its normalized text is new across all templates ('duplicate_text').
    A template that cannot be parsed, or whose constraints no draw satisfies
    ('constraint_unsatisfiable'), gets one Rejected row with row_id = its id.

    Writes Problem rows: `problem_id` = stable_id(template_id, values),
    `problem`, `answer`, `source` 'template:<template_id>', `solution` (from
    the solution template, if any), `program`, `template_id`,
    `variables_json`, `seed_problem_id`. Same inputs and seed, same output.
    """
    if n_per_template < 1:
        raise ValueError(f"n_per_template must be >= 1, got {n_per_template}")
    from mathforge.curate.text import normalize_texts  # the project's one text normalization for exact dedup

    budget = n_per_template * config.max_attempts_factor
    rejected: list[Rejected] = []
    refused: Counter[str] = Counter()
    progress: list[_Progress] = []
    for template in templates:
        try:
            parsed = parse_template(template)
        except TemplateError as error:
            rejected.append(rejected_row(INSTANTIATE_STAGE, template.template_id, None, error.reason, error.detail))
            continue
        originals = parsed.originals
        progress.append(
            _Progress(
                parsed=parsed,
                rng=template_rng(seed, template.template_id, "instances"),
                seen={values_key(originals)} if originals else set(),
            )
        )

    problems: list[Problem] = []
    texts_seen: dict[str, str] = {}
    while True:
        batches, owners = [], []
        for state in progress:
            need = n_per_template - state.n_kept
            if need <= 0 or state.n_draws >= budget or state.is_stalled:
                continue
            # After the first round, ask for enough candidates to reach the target at the observed yield.
            wanted = need if state.n_tried == 0 else math.ceil(need * state.n_tried / max(state.n_kept, 1))
            values, n_draws, counts = draw_values(
                state.parsed, state.rng, wanted, max_draws=budget - state.n_draws, seen=state.seen
            )
            state.n_draws += n_draws
            refused.update(counts)
            if not values:
                if state.n_tried == 0:
                    template_id = state.parsed.record.template_id
                    detail = f"no draw satisfied the constraints in {state.n_draws} draws"
                    rejected.append(
                        rejected_row(INSTANTIATE_STAGE, template_id, None, "constraint_unsatisfiable", detail)
                    )
                state.is_stalled = True
                continue
            # The seed's own values run once, first, only to learn whether its answer was negative.
            originals = state.parsed.originals
            reference = [originals] if state.n_tried == 0 and originals else []
            batches.append((state.parsed.record.program, [*reference, *values]))
            owners.append((state, bool(reference), values))
        if not batches:
            break
        used = [state.used_values for state, _, _ in owners]
        outcomes = run_batches(pool, batches, timeout_s=config.timeout_s, keys=used)
        for (state, has_reference, values), batch in zip(owners, outcomes, strict=True):
            if has_reference:
                reference_answer = batch.pop(0).answer
                state.allows_negative = isinstance(reference_answer, (int, float, Fraction)) and reference_answer < 0
            built = [
                _instance(state, case, outcome, config.max_decimal_places)
                for case, outcome in zip(values, batch, strict=True)
            ]
            texts = normalize_texts([problem.problem if problem else "" for problem, _ in built]).to_pylist()
            kept_before = state.n_kept
            for case, (problem, failure), text in zip(values, built, texts, strict=True):
                state.n_tried += 1
                if problem is not None and state.n_kept >= n_per_template:
                    refused["surplus_instance"] += 1  # valid, but the round asked for more than were needed
                    continue
                if problem is not None and text in texts_seen:
                    failure = ("duplicate_text", f"same text as {texts_seen[text]}")
                elif problem is not None:
                    texts_seen[text] = problem.problem_id
                    problems.append(problem)
                    state.n_kept += 1
                    continue
                problem_id = stable_id(state.parsed.record.template_id, case)
                rejected.append(rejected_row(INSTANTIATE_STAGE, problem_id, problem_id, *failure))
            state.is_stalled = state.n_kept == kept_before

    per_template = {state.parsed.record.template_id: state.n_kept for state in progress}
    return InstantiateResult(
        problems=problems, rejected=rejected, counts=count_reasons(rejected, refused), per_template=per_template
    )


def _instance(
    state: _Progress, values: dict[str, int | float], outcome: CaseOutcome, max_places: int
) -> tuple[Problem, None] | tuple[None, tuple[str, str]]:
    """Build one instance from solve's outcome, or say why not."""
    parsed, template = state.parsed, state.parsed.record
    if outcome.error is not None:
        return None, ("program_error", outcome.error)
    answer = answer_text(outcome, template.answer_type, max_places)
    if answer is None:
        return None, ("wrong_answer_type", f"solve returned {outcome.answer!r} for a {template.answer_type} answer")
    if answer.startswith("-") and not state.allows_negative:
        return None, ("negative_answer", answer)
    solution = None
    if template.solution_template:
        named = {**(outcome.values or {}), **values, "answer": answer}
        solution, unresolved = render_text(
            template.solution_template,
            named,
            lambda name, value: parsed.slots[name].render(value) if name in parsed.slots else format_value(value),
        )
        if unresolved:
            return None, ("solution_placeholder_unresolved", f"no value for {sorted(set(unresolved))}")
    problem_id = stable_id(template.template_id, values)
    return (
        Problem(
            problem_id=problem_id,
            problem=parsed.render_problem(values),
            answer=answer,
            source=f"template:{template.template_id}",
            solution=solution,
            program=template.program,
            template_id=template.template_id,
            variables_json=json.dumps(values, sort_keys=True),
            seed_problem_id=template.seed_problem_id,
        ),
        None,
    )

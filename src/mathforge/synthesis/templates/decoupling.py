"""Decoupling (InfinityMATH): an LLM turns a seed problem into a template plus program (`decouple`).

Reads `problem_id`, `problem`, `answer` of the seeds; writes Template rows.
Guarantee: a decoupled template is kept only when `validate_template` accepts
it: it parses (`parsing.py`), holds the seed's own numbers inside its domains
and constraints, renders back to the seed text, runs deterministically in the
sandbox (twice, also on sampled values), and its answer verifies against the
seed's reference answer. Every refused reply is a Rejected row with a reason.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

from mathforge.generation.base import Generator
from mathforge.prompts import chat
from mathforge.records import Problem, Rejected, Template, stable_id
from mathforge.synthesis.templates.batches import answer_text, run_batches
from mathforge.synthesis.templates.config import DECOUPLE_STAGE, TemplateSynthesisConfig, count_reasons, rejected_row
from mathforge.synthesis.templates.parsing import FENCE, ParsedTemplate, parse_template
from mathforge.synthesis.templates.rendering import answer_type_of
from mathforge.synthesis.templates.sampling import draw_values, template_rng, values_key
from mathforge.synthesis.templates.slots import SlotSpec, TemplateError

if TYPE_CHECKING:
    from mathforge.sandbox import SandboxPool
    from mathforge.verify import VerifyConfig


@dataclass(frozen=True)
class DecoupleResult:
    """Validated templates, one Rejected row per refused reply or seed, and counts by reason."""

    templates: list[Template]
    rejected: list[Rejected]
    counts: dict[str, int] = field(default_factory=dict)


def _similarity_text(text: str) -> str:
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text.lower())
    return re.sub(r"\s+", " ", text).strip()


def _seed_failure(parsed: ParsedTemplate, seed: Problem, min_similarity: float) -> tuple[str, str] | None:
    """Check a template against its seed without running it: answer type, seed numbers, text."""
    if answer_type_of(seed.answer) is None:
        return "unsupported_answer_type", f"seed answer {seed.answer!r} is not an integer, decimal or fraction"
    originals = parsed.originals
    if originals is None:
        missing = sorted(name for name, spec in parsed.slots.items() if spec.original is None)
        return "missing_original", f"slots without the seed's value: {missing}"
    outside = sorted(name for name, value in originals.items() if not parsed.slots[name].contains(value))
    broken = [c.expression for c in parsed.constraints if not c.holds(originals)]
    if outside or broken:
        return "original_violates_constraints", f"outside domain: {outside}; constraints false: {broken}"
    rendered = parsed.render_problem(originals)
    ratio = difflib.SequenceMatcher(None, _similarity_text(rendered), _similarity_text(seed.problem)).ratio()
    if ratio < min_similarity:
        return "text_mismatch", f"similarity {ratio:.3f} < {min_similarity}: {rendered[:300]!r}"
    return None


def _validation_failures(
    candidates: Sequence[tuple[Template, Problem]],
    *,
    pool: SandboxPool,
    verify_config: VerifyConfig,
    config: TemplateSynthesisConfig,
) -> list[tuple[str, str] | None]:
    """Validate (template, seed) pairs, running all their programs in one batch; None where valid.

    Each program runs twice, in separate sandbox executions, on the seed's
    values plus `n_probe` sampled ones; the two runs must agree exactly.
    """
    from mathforge.verify import compare_answers  # imports SymPy: only when templates are validated

    failures: list[tuple[str, str] | None] = [None] * len(candidates)
    runs: list[int] = []
    batches = []
    for index, (template, seed) in enumerate(candidates):
        try:
            parsed = parse_template(template)
        except TemplateError as error:
            failures[index] = (error.reason, error.detail)
            continue
        failures[index] = _seed_failure(parsed, seed, config.decouple.min_text_similarity)
        if failures[index] is not None:
            continue
        originals = parsed.originals or {}
        probes, _, _ = draw_values(
            parsed,
            template_rng(config.seed, template.template_id, "probe"),
            config.decouple.n_probe,
            max_draws=config.decouple.n_probe * config.max_attempts_factor,
            seen={values_key(originals)},
        )
        cases = [originals, *probes]
        runs.append(index)
        batches += [(template.program, cases), (template.program, cases)]

    outcomes = run_batches(pool, batches, timeout_s=config.timeout_s)
    for index, first, second in zip(runs, outcomes[::2], outcomes[1::2], strict=True):
        template, seed = candidates[index]
        original = first[0]
        if original.error is not None:
            failures[index] = ("program_error", original.error)
        elif first != second:
            differing = next(i for i, (a, b) in enumerate(zip(first, second, strict=True)) if a != b)
            failures[index] = ("nondeterministic", f"case {differing}: {first[differing]} vs {second[differing]}")
        else:
            answer = answer_text(original, template.answer_type, config.max_decimal_places)
            if answer is None:
                failures[index] = (
                    "wrong_answer_type",
                    f"solve returned {original.answer!r} for a {template.answer_type} answer",
                )
            elif compare_answers(seed.answer, answer, verify_config).is_correct is not True:
                failures[index] = ("answer_mismatch", f"solve gives {answer}, the seed's answer is {seed.answer}")
    return failures


def validate_template(
    template: Template,
    seed_problem: Problem,
    *,
    pool: SandboxPool,
    verify_config: VerifyConfig,
    config: TemplateSynthesisConfig | None = None,
) -> tuple[bool, str]:
    """Check a decoupled template against its seed; return (True, 'valid') or (False, reason).

    Checks, in order: structure (`parse_template` reasons); the seed's answer
    is a plain number ('unsupported_answer_type'); every slot has the seed's
    value ('missing_original'), inside its domain and satisfying the
    constraints ('original_violates_constraints'); the template rendered with
    those values reproduces the seed text ('text_mismatch'); `solve` on them
    runs ('program_error'), twice identically, also on a few sampled values
    ('nondeterministic'); its answer has the template's type
    ('wrong_answer_type') and verifies against the seed's reference answer
    ('answer_mismatch').
    """
    failure = _validation_failures(
        [(template, seed_problem)], pool=pool, verify_config=verify_config, config=config or TemplateSynthesisConfig()
    )[0]
    return (True, "valid") if failure is None else (False, failure[0])


_SLOT_TYPE_ALIASES = {"integer": "integer", "int": "integer", "decimal": "decimal", "float": "decimal"}


def _first_json_object(text: str) -> dict[str, Any] | None:
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict) and "template" in value:
            return value
    return None


def _clean_slot(spec: object) -> object:
    """Keep the SlotSpec keys of an LLM's slot spec and map type aliases ('int', 'float')."""
    if not isinstance(spec, dict):
        return spec
    cleaned = {key: spec[key] for key in SlotSpec.model_fields if key in spec}
    if isinstance(cleaned.get("type"), str):
        cleaned["type"] = _SLOT_TYPE_ALIASES.get(cleaned["type"].lower(), cleaned["type"])
    return cleaned


def parse_decoupling(reply: str, seed: Problem) -> Template:
    """Parse a decoupling reply into a Template; raise TemplateError('unparsable_reply') when it cannot.

    The reply should hold a JSON object with `template`, `slots` and
    `constraints` (fenced or bare) and a fenced Python block defining `solve`;
    a `program` string inside the JSON is accepted instead of the block. Slot
    specs keep only SlotSpec's keys. The answer type is the seed's.
    """
    blocks = [(language.lower(), body) for language, body in FENCE.findall(reply)]
    data = None
    for language, body in blocks:
        if language in ("json", ""):
            try:
                candidate = json.loads(body)
            except json.JSONDecodeError:
                continue
            if isinstance(candidate, dict):
                data = candidate
                break
    data = data if data is not None else _first_json_object(reply)
    if data is None:
        raise TemplateError("unparsable_reply", "no JSON object with a 'template' key")
    program = next((body for language, body in blocks if language in ("python", "py")), None)
    program = program or next((body for language, body in blocks if language == "" and "def solve" in body), None)
    program = program or data.get("program")
    template, slots, constraints = data.get("template"), data.get("slots"), data.get("constraints", [])
    if not isinstance(template, str) or not template.strip():
        raise TemplateError("unparsable_reply", "'template' must be a non-empty string")
    if not isinstance(slots, dict):
        raise TemplateError("unparsable_reply", "'slots' must be an object of slot name -> domain")
    if not isinstance(constraints, list) or not all(isinstance(c, str) for c in constraints):
        raise TemplateError("unparsable_reply", "'constraints' must be a list of strings")
    if not isinstance(program, str) or not program.strip():
        raise TemplateError("unparsable_reply", "no program: a ```python block defining solve is needed")
    answer_type = answer_type_of(seed.answer)
    if answer_type is None:
        raise TemplateError("unsupported_answer_type", f"seed answer {seed.answer!r} is not a plain number")
    # Models trained on Jinja / f-strings often write {{slot}}: read it as {slot}.
    template = re.sub(r"\{\{([A-Za-z_]\w*)\}\}", r"{\1}", template.strip())
    program = program.strip() + "\n"
    return Template(
        template_id="dec-" + stable_id(seed.problem_id, template, program, length=12),
        seed_problem_id=seed.problem_id,
        template=template,
        program=program,
        slots_json=json.dumps({name: _clean_slot(spec) for name, spec in slots.items()}, sort_keys=True),
        constraints_json=json.dumps(constraints),
        solution_template=None,
        answer_type=answer_type,
        origin="decoupled",
    )


def decouple(
    problems: Sequence[Problem],
    generator: Generator,
    *,
    config: TemplateSynthesisConfig,
    pool: SandboxPool,
    verify_config: VerifyConfig,
) -> DecoupleResult:
    """Turn seed problems into validated number-decoupled templates with an LLM.

    Reads `problem_id`, `problem`, `answer` of each seed. Seeds whose answer is
    not a plain number are rejected up front ('unsupported_answer_type');
    the first `decouple.max_seeds` others are sent to the generator with the
    `decouple_numbers` prompt. Each reply is parsed (`parse_decoupling`:
    'unparsable_reply', or 'truncated_reply' when it was cut at max_tokens)
    and validated (`validate_template`'s reasons). Per seed, the first valid
    reply becomes a template; later valid ones are rejected as
    'surplus_template'. Rejected rows: row_id '<seed problem_id>#<reply
    index>' (the seed's id alone for seed-level reasons).
    """
    if not config.decouple.enabled:
        return DecoupleResult(templates=[], rejected=[])
    supported, rejected = [], []
    for problem in problems:
        if answer_type_of(problem.answer) is None:
            rejected.append(
                rejected_row(
                    DECOUPLE_STAGE,
                    problem.problem_id,
                    problem.problem_id,
                    "unsupported_answer_type",
                    problem.answer[:200],
                )
            )
        else:
            supported.append(problem)
    seeds = supported[: config.decouple.max_seeds]
    if not seeds:
        return DecoupleResult(templates=[], rejected=rejected, counts=count_reasons(rejected))

    prompts = [chat("decouple_numbers", problem=seed.problem, answer=seed.answer) for seed in seeds]
    replies = generator.generate(prompts, config.decouple.params.generation_params())
    parsed: list[tuple[Problem, int, Template]] = []
    for seed, completions in zip(seeds, replies, strict=True):
        for index, completion in enumerate(completions):
            try:
                parsed.append((seed, index, parse_decoupling(completion.text, seed)))
            except TemplateError as error:
                is_truncated = completion.finish_reason == "length"
                reason = "truncated_reply" if is_truncated and error.reason == "unparsable_reply" else error.reason
                rejected.append(
                    rejected_row(DECOUPLE_STAGE, f"{seed.problem_id}#{index}", seed.problem_id, reason, error.detail)
                )

    failures = _validation_failures(
        [(template, seed) for seed, _, template in parsed], pool=pool, verify_config=verify_config, config=config
    )
    templates: dict[str, Template] = {}
    for (seed, index, template), failure in zip(parsed, failures, strict=True):
        if failure is None and seed.problem_id in templates:
            failure = ("surplus_template", f"seed already has template {templates[seed.problem_id].template_id}")
        if failure is None:
            templates[seed.problem_id] = template
        else:
            rejected.append(rejected_row(DECOUPLE_STAGE, f"{seed.problem_id}#{index}", seed.problem_id, *failure))
    return DecoupleResult(templates=list(templates.values()), rejected=rejected, counts=count_reasons(rejected))

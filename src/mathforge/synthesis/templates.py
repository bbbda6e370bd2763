"""Number-decoupled problem synthesis: InfinityMATH, TemplateGSM/TDG and TeLL.

A *template* is a problem text with named numeric slots (``{price}``), the
slots' domains and constraints, and a number-independent program
``solve(**slots)`` that computes the answer. Re-instantiating it with new slot
values gives effectively unlimited new problems whose answers are computed by
execution, never guessed by a model.

- **Decoupling** (InfinityMATH, Zhang et al., 2024): an LLM turns a seed
  problem into a template plus program (`decouple`). The paper keeps a
  decoupled program when it reproduces the seed's answer; here a template must
  also render back to the seed text, accept the seed's numbers under its own
  constraints, and run deterministically in the sandbox (`validate_template`).
- **Instantiation** (TemplateGSM / TDG, Zhang et al., 2024): slot values are
  drawn uniformly from their domains and rejection-sampled against the
  constraints with a bounded number of draws; the program runs in the sandbox
  and an instance is kept only when its answer is well formed and of the
  template's answer type (`instantiate`). TDG's meta-templates are written by
  GPT-4; the authored templates here are written by hand
  (`template_files.py`). Both carry a chain-of-thought solution template whose
  placeholders are filled from the program's intermediate values.
- **Paraphrase** (TeLL, Kang et al., 2024): an LLM rewrites an instance's
  wording and context. TeLL relies on the template for correctness; here a
  paraphrase must keep exactly the same numbers, and the LLM must also write a
  program for its own wording whose executed answer verifies against the
  instance's answer (`paraphrase`), so a rewording that changes the
  arithmetic (e.g. "gives away" -> "receives") is caught.

Structured output: the `Generator` protocol has no schema-constrained
decoding, so replies are parsed from fenced JSON / Python blocks, and every
failure is a rejection with a snake_case reason.
"""

from __future__ import annotations

import ast
import difflib
import json
import math
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from functools import cached_property
from typing import TYPE_CHECKING, Any, Callable, Collection, Literal, Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mathforge.config import Section
from mathforge.generation.base import GenerationParams, Generator
from mathforge.prompts import chat
from mathforge.records import Problem, Rejected, Template, stable_id

if TYPE_CHECKING:
    from mathforge.sandbox import SandboxPool
    from mathforge.verify import VerifyConfig

AnswerType = Literal["integer", "decimal", "fraction"]
Number = int | float | Fraction

DECOUPLE_STAGE = "template_decouple"
INSTANTIATE_STAGE = "template_instantiate"
PARAPHRASE_STAGE = "template_paraphrase"


class CallConfig(Section):
    """Sampling parameters of one kind of LLM call (decoupling or paraphrasing)."""

    n: int = Field(default=1, ge=1, description="Replies per prompt; the first valid one is used.")
    temperature: float = Field(default=0.2, ge=0.0, description="Sampling temperature.")
    top_p: float = Field(default=1.0, gt=0.0, le=1.0, description="Nucleus sampling.")
    max_tokens: int = Field(default=768, ge=1, description="Longest reply, tokens.")
    seed: int = Field(default=0, description="Per-call seed (honoured by backends that can).")

    def generation_params(self) -> GenerationParams:
        """These settings as backend-neutral GenerationParams."""
        return GenerationParams(
            n=self.n, temperature=self.temperature, top_p=self.top_p, max_tokens=self.max_tokens, seed=self.seed
        )


class DecoupleConfig(Section):
    """LLM decoupling of seed problems into templates (InfinityMATH)."""

    enabled: bool = Field(default=True, description="Decouple seed problems (authored templates are used either way).")
    max_seeds: int = Field(
        default=50, ge=0, description="Most seed problems sent to the LLM (first ones in input order)."
    )
    params: CallConfig = Field(default_factory=CallConfig, description="Sampling of the decoupling replies.")
    min_text_similarity: float = Field(
        default=0.9,
        gt=0.0,
        le=1.0,
        description="Least difflib ratio between the seed text and the template rendered with the seed's numbers "
        "(both lowercased, whitespace and thousands separators normalized).",
    )
    n_probe: int = Field(
        default=3, ge=0, description="Sampled slot values run, besides the seed's, in the determinism check."
    )


class ParaphraseConfig(Section):
    """LLM rewording of instances (TeLL), kept only when numbers and answer survive."""

    enabled: bool = Field(default=False, description="Paraphrase instances.")
    max_problems: int | None = Field(default=None, ge=0, description="Most instances sent to the LLM; None: all.")
    params: CallConfig = Field(
        default_factory=lambda: CallConfig(temperature=0.7, max_tokens=512),
        description="Sampling of the paraphrase replies.",
    )


class TemplateSynthesisConfig(Section):
    """Template / number-decoupled problem synthesis (stage `template_synthesis`)."""

    enabled: bool = Field(default=True, description="Run the stage.")
    authored_dir: str = Field(
        default="configs/templates", description="Directory of authored template YAML files (TDG style)."
    )
    templates: tuple[str, ...] | None = Field(
        default=None, description="Authored template ids to use; None: every file in authored_dir."
    )
    decouple: DecoupleConfig = Field(default_factory=DecoupleConfig, description="LLM decoupling of seeds.")
    n_instances_per_template: int = Field(default=100, ge=1, description="Instances wanted per template.")
    max_attempts_factor: int = Field(
        default=50,
        ge=1,
        description="Rejection-sampling bound: at most this many slot-value draws per wanted instance.",
    )
    max_decimal_places: int = Field(
        default=2, ge=0, le=10, description="Most decimal places of a 'decimal' answer; longer ones are rejected."
    )
    timeout_s: float = Field(
        default=10.0, gt=0.0, description="Sandbox limit of one batch run (one template, many slot values), seconds."
    )
    paraphrase: ParaphraseConfig = Field(default_factory=ParaphraseConfig, description="Optional paraphrase step.")
    emit_solutions: bool = Field(
        default=False,
        description="Also write each instance with a rendered solution as an SFT row (output `solutions`, "
        "strategy 'template-solution'; see synthesis.template_solutions), exported alongside DART rows.",
    )
    seed: int = Field(
        default=0, description="Seed of slot-value sampling (per template: hash of seed and template id)."
    )


class TemplateError(ValueError):
    """A template is unusable: snake_case `reason`, human `detail`, and the offending `key` when known."""

    def __init__(self, reason: str, detail: str, key: str | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.key = key


@dataclass(frozen=True)
class DecoupleResult:
    """Validated templates, one Rejected row per refused reply or seed, and counts by reason."""

    templates: list[Template]
    rejected: list[Rejected]
    counts: dict[str, int] = field(default_factory=dict)


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


@dataclass(frozen=True)
class ParaphraseResult:
    """Accepted paraphrases (new rows), one Rejected row per refused reply, and counts by reason."""

    problems: list[Problem]
    rejected: list[Rejected]
    counts: dict[str, int] = field(default_factory=dict)


def _rejected(stage: str, row_id: str, problem_id: str | None, reason: str, detail: str | None) -> Rejected:
    return Rejected(stage=stage, row_id=row_id, problem_id=problem_id, reason=reason, detail=detail)


def _count(rows: Sequence[Rejected], extra: Counter[str] | None = None) -> dict[str, int]:
    counts = Counter(row.reason for row in rows)
    counts.update(extra or {})
    return dict(sorted(counts.items()))


class SlotSpec(BaseModel):
    """Domain of one numeric slot: integers in [min, max] by `step`, or decimals with `places` digits.

    >>> SlotSpec(type="integer", min=1, max=9, step=2).n_values
    5
    >>> SlotSpec(type="decimal", min=0.5, max=2, step=0.25).render(1.5)
    '1.50'
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["integer", "decimal"] = Field(description="'integer' or 'decimal' (fixed places).")
    min: int | float = Field(description="Smallest value, inclusive.")
    max: int | float = Field(description="Largest value, inclusive.")
    step: int | float | None = Field(default=None, description="Spacing of values from min; default 1 / 10**-places.")
    places: int | None = Field(default=None, ge=1, le=6, description="Decimal places (decimal slots; default 2).")
    original: int | float | None = Field(default=None, description="The seed problem's value (decoupled templates).")

    @model_validator(mode="before")
    @classmethod
    def _integers_stay_integers(cls, data: Any) -> Any:
        """Read 5.0 as 5 in an integer slot, so solve never receives a float for it."""
        if isinstance(data, dict) and data.get("type") == "integer":
            return {
                key: int(value)
                if key in ("min", "max", "step", "original") and isinstance(value, float) and value.is_integer()
                else value
                for key, value in data.items()
            }
        return data

    @model_validator(mode="after")
    def _check_domain(self) -> SlotSpec:
        if self.type == "integer":
            if self.places is not None:
                raise ValueError("'places' applies to decimal slots only")
            for name in ("min", "max", "step", "original"):
                value = getattr(self, name)
                if value is not None and not float(value).is_integer():
                    raise ValueError(f"{name} of an integer slot must be an integer, got {value}")
        if self.min > self.max:
            raise ValueError(f"min {self.min} is larger than max {self.max}")
        if self.step is not None and self.step <= 0:
            raise ValueError(f"step must be positive, got {self.step}")
        if self.type == "decimal" and self._units_of(self.step_value).denominator != 1:
            raise ValueError(f"step {self.step_value} has more than {self.n_places} decimal places")
        if self.n_values < 1:
            raise ValueError(f"no value between {self.min} and {self.max}")
        return self

    @property
    def n_places(self) -> int:
        """Decimal places of values (0 for integers)."""
        return 0 if self.type == "integer" else (self.places or 2)

    @property
    def step_value(self) -> Fraction:
        """Spacing of the domain's values."""
        if self.step is not None:
            return Fraction(str(self.step))
        return Fraction(1, 10**self.n_places)

    def _units_of(self, value: Fraction | int | float) -> Fraction:
        return Fraction(str(value)) * 10**self.n_places

    @cached_property
    def _grid(self) -> tuple[int, int, int]:
        """(first, count, step) of the domain in units of 10**-places (computed once: draws are hot)."""
        step = int(self._units_of(self.step_value))
        first = math.ceil(self._units_of(self.min))
        last = math.floor(self._units_of(self.max))
        return first, max(0, (last - first) // step + 1), step

    @property
    def n_values(self) -> int:
        """Number of values in the domain."""
        return self._grid[1]

    def draw(self, rng: random.Random) -> int | float:
        """One value drawn uniformly from the domain."""
        first, count, step = self._grid
        units = first + step * rng.randrange(count)
        return units if self.type == "integer" else round(units / 10**self.n_places, self.n_places)

    def contains(self, value: object) -> bool:
        """Whether `value` is one of the domain's values."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.type == "integer" and not float(value).is_integer():
            return False
        first, count, step = self._grid
        units = self._units_of(value)
        return units.denominator == 1 and 0 <= units - first < count * step and (units - first) % step == 0

    def render(self, value: int | float) -> str:
        """The value as it appears in a problem text: fixed places for decimals."""
        return str(int(value)) if self.type == "integer" else f"{value:.{self.n_places}f}"


# Constraints come from an LLM. They are evaluated in-process, on every draw of
# rejection sampling (thousands per template), where a sandbox round trip per
# draw would dominate the stage. That is safe because the evaluator below only
# walks a whitelisted AST: slot names, numeric literals, arithmetic,
# comparisons and and/or/not. No calls, attributes, subscripts or other names
# exist to escape through; the one remaining cost, huge powers, is closed by
# allowing `**` only with a small literal exponent.
_MAX_EXPONENT = 6
_BINARY = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: Fraction(a) / Fraction(b),
    ast.FloorDiv: lambda a, b: a // b,
    ast.Mod: lambda a, b: a % b,
    ast.Pow: lambda a, b: a**b,
}
_COMPARE = {
    ast.Eq: lambda a, b: a == b,
    ast.NotEq: lambda a, b: a != b,
    ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b,
    ast.Gt: lambda a, b: a > b,
    ast.GtE: lambda a, b: a >= b,
}


@dataclass(frozen=True)
class Constraint:
    """A boolean expression over slot names, checked against a whitelist once and evaluated without `eval`.

    >>> Constraint.compile("a > b and (a + b) % 3 == 0", {"a", "b"}).holds({"a": 5, "b": 1})
    True
    """

    expression: str
    tree: ast.expr

    @classmethod
    def compile(cls, expression: str, names: set[str]) -> Constraint:
        """Parse `expression`; raise TemplateError('invalid_constraint') on anything outside the whitelist."""
        try:
            tree = ast.parse(expression.strip(), mode="eval").body
        except SyntaxError as error:
            raise TemplateError("invalid_constraint", f"{expression!r}: {error.msg}") from None
        for node in ast.walk(tree):
            problem = _constraint_node_problem(node, names)
            if problem:
                raise TemplateError("invalid_constraint", f"{expression!r}: {problem}")
        return cls(expression=expression, tree=tree)

    def holds(self, values: Mapping[str, Number]) -> bool:
        """Evaluate with exact arithmetic (Fraction division); division by zero makes it false."""
        try:
            return bool(_evaluate(self.tree, values))
        except ZeroDivisionError:
            return False


def _constraint_node_problem(node: ast.AST, names: set[str]) -> str | None:
    if isinstance(node, ast.Name):
        return None if node.id in names else f"unknown name {node.id!r}"
    if isinstance(node, ast.Constant):
        is_number = isinstance(node.value, (int, float)) and not isinstance(node.value, bool)
        return None if is_number else f"literal {node.value!r} is not a number"
    if isinstance(node, ast.BinOp):
        if type(node.op) not in _BINARY:
            return f"operator {type(node.op).__name__} is not allowed"
        if isinstance(node.op, ast.Pow):
            exponent = node.right
            if not (
                isinstance(exponent, ast.Constant)
                and isinstance(exponent.value, int)
                and abs(exponent.value) <= _MAX_EXPONENT
            ):
                return f"'**' needs a literal integer exponent of at most {_MAX_EXPONENT}"
        return None
    if isinstance(node, ast.Compare):
        bad = [type(op).__name__ for op in node.ops if type(op) not in _COMPARE]
        return f"comparison {bad[0]} is not allowed" if bad else None
    allowed = (ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.UAdd, ast.Load, *_BINARY, *_COMPARE)
    return None if isinstance(node, allowed) else f"{type(node).__name__} is not allowed"


def _evaluate(node: ast.expr, values: Mapping[str, Number]) -> Any:
    if isinstance(node, ast.Name):
        return values[node.id]
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.BinOp):
        return _BINARY[type(node.op)](_evaluate(node.left, values), _evaluate(node.right, values))
    if isinstance(node, ast.UnaryOp):
        operand = _evaluate(node.operand, values)
        return (
            not operand if isinstance(node.op, ast.Not) else (-operand if isinstance(node.op, ast.USub) else +operand)
        )
    if isinstance(node, ast.BoolOp):
        if isinstance(node.op, ast.And):
            return all(_evaluate(value, values) for value in node.values)
        return any(_evaluate(value, values) for value in node.values)
    left = _evaluate(node.left, values)
    for op, right_node in zip(node.ops, node.comparators, strict=True):
        right = _evaluate(right_node, values)
        if not _COMPARE[type(op)](left, right):
            return False
        left = right
    return True


PLACEHOLDER = re.compile(r"\{([A-Za-z_]\w*)(?::([^{}]*))?\}")


@dataclass(frozen=True)
class ParsedTemplate:
    """A Template record with its slots and constraints parsed and its program checked statically."""

    record: Template
    slots: dict[str, SlotSpec]
    constraints: tuple[Constraint, ...]

    @property
    def originals(self) -> dict[str, int | float] | None:
        """The seed's slot values, when every slot has one."""
        values = {name: spec.original for name, spec in self.slots.items()}
        return None if any(value is None for value in values.values()) else values  # type: ignore[return-value]

    def satisfies(self, values: Mapping[str, Number]) -> bool:
        """Whether `values` satisfy every constraint."""
        return all(constraint.holds(values) for constraint in self.constraints)

    def render_problem(self, values: Mapping[str, int | float]) -> str:
        """The problem text with slot values filled in."""
        text, _ = render_text(self.record.template, values, lambda name, value: self.slots[name].render(value))
        return text


def parse_template(template: Template) -> ParsedTemplate:
    """Check a template's structure and parse it; raise TemplateError with a reason and key.

    Reasons: 'invalid_slots' (JSON or a domain), 'slot_mismatch' (a slot the
    text never shows), 'invalid_constraint', 'program_syntax_error',
    'missing_solve' (no top-level `def solve`), 'solve_signature_mismatch'
    (solve cannot take exactly the slots as keyword arguments).
    """
    try:
        raw_slots = json.loads(template.slots_json)
        if not isinstance(raw_slots, dict) or not raw_slots:
            raise TemplateError("invalid_slots", "slots must be a non-empty JSON object", "slots")
        slots = {}
        for name, spec in raw_slots.items():
            if not re.fullmatch(r"[A-Za-z_]\w*", name):
                raise TemplateError("invalid_slots", f"slot name {name!r} is not an identifier", "slots")
            slots[name] = SlotSpec.model_validate(spec)
    except json.JSONDecodeError as error:
        raise TemplateError("invalid_slots", f"slots_json: {error}", "slots") from None
    except ValidationError as error:
        first = error.errors()[0]
        key = ".".join(["slots", name, *map(str, first["loc"])])
        raise TemplateError("invalid_slots", f"{key}: {first['msg']}", key) from None

    shown = {match.group(1) for match in PLACEHOLDER.finditer(template.template)}
    hidden = sorted(set(slots) - shown)
    if hidden:
        raise TemplateError("slot_mismatch", f"slots never shown in the template text: {hidden}", "template")

    try:
        expressions = json.loads(template.constraints_json)
    except json.JSONDecodeError as error:
        raise TemplateError("invalid_constraint", f"constraints_json: {error}", "constraints") from None
    if not isinstance(expressions, list) or not all(isinstance(e, str) for e in expressions):
        raise TemplateError("invalid_constraint", "constraints must be a list of strings", "constraints")
    constraints = []
    for index, expression in enumerate(expressions):
        try:
            constraints.append(Constraint.compile(expression, set(slots)))
        except TemplateError as error:
            raise TemplateError(error.reason, error.detail, f"constraints.{index}") from None

    _check_program(template.program, set(slots))
    return ParsedTemplate(record=template, slots=slots, constraints=tuple(constraints))


def _check_program(program: str, slot_names: set[str]) -> None:
    """Statically check that `program` parses and defines solve(**slots) at top level."""
    try:
        module = ast.parse(program)
    except SyntaxError as error:
        raise TemplateError("program_syntax_error", f"line {error.lineno}: {error.msg}", "program") from None
    solves = [node for node in module.body if isinstance(node, ast.FunctionDef) and node.name == "solve"]
    if not solves:
        raise TemplateError("missing_solve", "the program defines no top-level function solve", "program")
    arguments = solves[-1].args
    positional = arguments.posonlyargs + arguments.args
    required = {a.arg for a in positional[: len(positional) - len(arguments.defaults)]}
    required |= {
        a.arg for a, default in zip(arguments.kwonlyargs, arguments.kw_defaults, strict=True) if default is None
    }
    by_keyword = {a.arg for a in arguments.args + arguments.kwonlyargs}
    unknown = set() if arguments.kwarg is not None else slot_names - by_keyword
    if unknown or required - slot_names:
        named = [a.arg for a in positional + arguments.kwonlyargs]
        detail = f"solve({', '.join(named)}) cannot be called with exactly the slots {sorted(slot_names)}"
        raise TemplateError("solve_signature_mismatch", detail, "program")


def render_text(
    text: str, values: Mapping[str, object], default_format: Callable[[str, Any], str]
) -> tuple[str, list[str]]:
    """Fill `{name}` / `{name:spec}` placeholders; return the text and the placeholders left unresolved.

    Names not in `values` stay as written (LaTeX braces such as `\\text{cm}`
    are not placeholders); so does a placeholder whose format spec does not
    apply to its value. A format spec is applied to the raw value.

    >>> render_text("{a} + {b:.1f} = {c}", {"a": 1, "b": 2}, lambda name, value: str(value))
    ('1 + 2.0 = {c}', ['c'])
    """
    unresolved: list[str] = []

    def replace(match: re.Match[str]) -> str:
        name, spec = match.group(1), match.group(2)
        if name not in values:
            unresolved.append(name)
            return match.group(0)
        value = values[name]
        if not spec:
            return default_format(name, value)
        try:
            return format(value, spec)
        except (TypeError, ValueError):
            unresolved.append(f"{name}:{spec}")
            return match.group(0)

    return PLACEHOLDER.sub(replace, text), unresolved


def answer_type_of(answer: str) -> AnswerType | None:
    """Infer the answer type of a reference answer, None when it is not a plain number.

    Dollar and percent signs and thousands separators are ignored.

    >>> [answer_type_of(a) for a in ["1,200", "-3.5", "\\\\frac{3}{4}", "x+1"]]
    ['integer', 'decimal', 'fraction', None]
    """
    text = answer.strip().strip("$").strip()
    text = re.sub(r"^\\boxed\{(.*)\}$", r"\1", text).replace("\\$", "").replace("\\%", "").rstrip("%").strip()
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)
    if re.fullmatch(r"-?\d+", text):
        return "integer"
    if re.fullmatch(r"-?\d*\.\d+", text):
        return "decimal"
    if re.fullmatch(r"-?\\d?frac\{\d+\}\{0*[1-9]\d*\}|-?\d+\s*/\s*0*[1-9]\d*", text):
        return "fraction"
    return None


def format_answer(value: Number, answer_type: str, *, max_places: int) -> str | None:
    """Format a program's answer as `answer_type`, or None when it is not of that type.

    Floats within 1e-9 (relative) of an integer or of a short decimal are read
    as that value, so a program that divides still gives '894', never '894.0';
    a fraction is written `\\frac{p}{q}` (an integer when q is 1).

    >>> format_answer(894.0, "integer", max_places=2), format_answer(2.5, "integer", max_places=2)
    ('894', None)
    >>> format_answer(12.500000000001, "decimal", max_places=2), format_answer(Fraction(6, 4), "fraction", max_places=2)
    ('12.5', '\\\\frac{3}{2}')
    """
    exact = _exact(value, answer_type, max_places)
    if exact is None:
        return None
    if exact.denominator == 1:
        return str(exact.numerator)
    if answer_type == "fraction":
        sign = "-" if exact < 0 else ""
        return f"{sign}\\frac{{{abs(exact.numerator)}}}{{{exact.denominator}}}"
    return _decimal_text(exact)


def _exact(value: Number, answer_type: str, max_places: int) -> Fraction | None:
    """The exact value a program's answer stands for under `answer_type`, or None."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        limit = 1 if answer_type == "integer" else (10**max_places if answer_type == "decimal" else 10**4)
        candidate = (
            Fraction(round(value * limit), limit)
            if answer_type != "fraction"
            else Fraction(value).limit_denominator(limit)
        )
        if abs(float(candidate) - value) > 1e-9 * max(1.0, abs(value)):
            return None
        value = candidate
    exact = Fraction(value)
    if answer_type == "integer":
        return exact if exact.denominator == 1 else None
    if answer_type == "decimal":
        return exact if (exact * 10**max_places).denominator == 1 else None
    return exact if answer_type == "fraction" else None


def _terminates(value: Fraction) -> bool:
    """Whether `value` has a finite decimal expansion (its denominator has no prime factor but 2 and 5)."""
    denominator = value.denominator
    for prime in (2, 5):
        while denominator % prime == 0:
            denominator //= prime
    return denominator == 1


def _decimal_text(value: Fraction) -> str:
    """A Fraction with a terminating decimal expansion as a plain decimal string, trailing zeros dropped."""
    if not _terminates(value):
        raise ValueError(f"{value} has no finite decimal expansion")
    places = 0
    while (value * 10**places).denominator != 1:
        places += 1
    text = f"{Decimal(value.numerator) / Decimal(value.denominator):.{places}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def format_value(value: object) -> str:
    """Format an intermediate value for a solution text: integers plainly, others as short decimals or p/q.

    >>> format_value(7.050000000000001), format_value(Fraction(1, 3)), format_value(12.0)
    ('7.05', '1/3', '12')
    """
    if isinstance(value, float) and math.isfinite(value):
        value = Fraction(round(value, 6)).limit_denominator(10**6)
    if isinstance(value, Fraction):
        if value.denominator == 1:
            return str(value.numerator)
        return (
            _decimal_text(value)
            if _terminates(value) and value.denominator <= 10**6
            else f"{value.numerator}/{value.denominator}"
        )
    return str(value)


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


def _values_key(values: Mapping[str, int | float]) -> str:
    return json.dumps(values, sort_keys=True)


def _rng(seed: int, template_id: str, purpose: str) -> random.Random:
    """An RNG private to one template and purpose: results do not depend on template order."""
    return random.Random(int(stable_id(seed, template_id, purpose), 16))


def draw_values(
    parsed: ParsedTemplate, rng: random.Random, n: int, *, max_draws: int, seen: set[str]
) -> tuple[list[dict[str, int | float]], int, Counter[str]]:
    """Rejection-sample up to `n` new slot assignments that satisfy the constraints.

    Draws each slot uniformly from its domain, at most `max_draws` times.
    Accepted assignments are added to `seen` (keys of `_values_key`), so they
    are never drawn twice. Returns the assignments, the draws used, and counts
    of refused draws: 'duplicate_values' and 'constraint_violated'.
    """
    accepted: list[dict[str, int | float]] = []
    refused: Counter[str] = Counter()
    draws = 0
    while len(accepted) < n and draws < max_draws:
        draws += 1
        values = {name: spec.draw(rng) for name, spec in parsed.slots.items()}
        key = _values_key(values)
        if key in seen:
            refused["duplicate_values"] += 1
        elif not parsed.satisfies(values):
            refused["constraint_violated"] += 1
        else:
            seen.add(key)
            accepted.append(values)
    return accepted, draws, refused


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
            _rng(config.seed, template.template_id, "probe"),
            config.decouple.n_probe,
            max_draws=config.decouple.n_probe * config.max_attempts_factor,
            seen={_values_key(originals)},
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
            answer = _answer_text(original, template.answer_type, config.max_decimal_places)
            if answer is None:
                failures[index] = (
                    "wrong_answer_type",
                    f"solve returned {original.answer!r} for a {template.answer_type} answer",
                )
            elif compare_answers(seed.answer, answer, verify_config).is_correct is not True:
                failures[index] = ("answer_mismatch", f"solve gives {answer}, the seed's answer is {seed.answer}")
    return failures


def _answer_text(outcome: CaseOutcome, answer_type: str, max_places: int) -> str | None:
    value = outcome.answer
    if isinstance(value, (int, float, Fraction)):
        return format_answer(value, answer_type, max_places=max_places)
    return None


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


_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)```", re.S)
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
    blocks = [(language.lower(), body) for language, body in _FENCE.findall(reply)]
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
                _rejected(
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
        return DecoupleResult(templates=[], rejected=rejected, counts=_count(rejected))

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
                    _rejected(DECOUPLE_STAGE, f"{seed.problem_id}#{index}", seed.problem_id, reason, error.detail)
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
            rejected.append(_rejected(DECOUPLE_STAGE, f"{seed.problem_id}#{index}", seed.problem_id, *failure))
    return DecoupleResult(templates=list(templates.values()), rejected=rejected, counts=_count(rejected))


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
            rejected.append(_rejected(INSTANTIATE_STAGE, template.template_id, None, error.reason, error.detail))
            continue
        originals = parsed.originals
        progress.append(
            _Progress(
                parsed=parsed,
                rng=_rng(seed, template.template_id, "instances"),
                seen={_values_key(originals)} if originals else set(),
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
                    rejected.append(_rejected(INSTANTIATE_STAGE, template_id, None, "constraint_unsatisfiable", detail))
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
                rejected.append(_rejected(INSTANTIATE_STAGE, problem_id, problem_id, *failure))
            state.is_stalled = state.n_kept == kept_before

    per_template = {state.parsed.record.template_id: state.n_kept for state in progress}
    return InstantiateResult(
        problems=problems, rejected=rejected, counts=_count(rejected, refused), per_template=per_template
    )


def _instance(
    state: _Progress, values: dict[str, int | float], outcome: CaseOutcome, max_places: int
) -> tuple[Problem, None] | tuple[None, tuple[str, str]]:
    """Build one instance from solve's outcome, or say why not."""
    parsed, template = state.parsed, state.parsed.record
    if outcome.error is not None:
        return None, ("program_error", outcome.error)
    answer = _answer_text(outcome, template.answer_type, max_places)
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


_NUMBER = re.compile(r"(?<![\w.])(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")


def numbers_in(text: str) -> Counter[Fraction]:
    """The multiset of numbers written in digits in `text` (signs ignored, '1,200' is 1200, '2.50' is 2.5).

    >>> sorted(numbers_in("Buy 3 pens at $2.50 and 1,200 clips.").elements())
    [Fraction(5, 2), Fraction(3, 1), Fraction(1200, 1)]
    """
    return Counter(Fraction(match.group(0).replace(",", "")) for match in _NUMBER.finditer(text))


def parse_paraphrase(reply: str) -> tuple[str, str | None]:
    """Split a paraphrase reply into (problem text, program or None); raise TemplateError on an empty text.

    The text is what precedes the first fenced block, without a leading
    'Problem:' label; the program is the first ```python block.
    """
    blocks = [(language.lower(), body) for language, body in _FENCE.findall(reply)]
    program = next(
        (body for language, body in blocks if language in ("python", "py", "") and "def solve" in body), None
    )
    text = reply.split("```", 1)[0].strip()
    text = re.sub(r"^\**\s*(rewritten\s+)?problem\s*:?\s*\**\s*", "", text, flags=re.I).strip()
    if not text:
        raise TemplateError("unparsable_reply", "no problem text before the program")
    return text, program


def _paraphrase_text_failure(
    text: str, program: str | None, is_unchanged: bool, numbers: Counter[Fraction]
) -> tuple[str, str | None] | None:
    """Check a paraphrase before running it: new wording, the same numbers, a zero-argument solve."""
    if is_unchanged:
        return "paraphrase_unchanged", None
    found = numbers_in(text)
    if found != numbers:
        lost, added = sorted(map(str, (numbers - found).elements())), sorted(map(str, (found - numbers).elements()))
        return "paraphrase_number_changed", f"missing {lost}, added {added}"
    if program is None:
        return "missing_program", "no ```python block defining solve()"
    _check_program(program, set())
    return None


def paraphrase(
    problems: Sequence[Problem],
    generator: Generator,
    *,
    pool: SandboxPool,
    config: TemplateSynthesisConfig,
    verify_config: VerifyConfig,
) -> ParaphraseResult:
    """Reword instances with an LLM; keep a rewording only if its numbers and its executed answer are unchanged.

    Reads `problem_id`, `problem`, `answer` (and copies `program`,
    `template_id`, `variables_json`, `seed_problem_id`, `source`). The
    `paraphrase_problem` prompt asks for the rewritten problem and a `solve()`
    written for the new wording. A reply is rejected when it cannot be parsed
    ('unparsable_reply'), repeats the problem ('paraphrase_unchanged'), does
    not contain exactly the same numbers ('paraphrase_number_changed'), lacks
    a runnable zero-argument `solve` ('missing_program', or `parse_template`'s
    program reasons), fails to run ('program_error'), or its answer does not
    verify against the instance's ('paraphrase_answer_changed'). The first
    accepted reply per problem becomes a new row (problem_id =
    stable_id(problem_id, 'paraphrase', text), source '<source>+paraphrase',
    `solution` None: a templated solution would describe the old wording).
    """
    from mathforge.curate.text import normalize_texts
    from mathforge.verify import compare_answers

    chosen = list(problems if config.paraphrase.max_problems is None else problems[: config.paraphrase.max_problems])
    if not config.paraphrase.enabled or not chosen:
        return ParaphraseResult(problems=[], rejected=[])
    prompts = [chat("paraphrase_problem", problem=problem.problem) for problem in chosen]
    replies = generator.generate(prompts, config.paraphrase.params.generation_params())

    rejected: list[Rejected] = []
    runnable: list[tuple[Problem, int, str]] = []
    batches = []
    for problem, completions in zip(chosen, replies, strict=True):
        original_key = normalize_texts([problem.problem]).to_pylist()[0]
        numbers = numbers_in(problem.problem)
        for index, completion in enumerate(completions):
            try:
                text, program = parse_paraphrase(completion.text)
                failure = _paraphrase_text_failure(
                    text, program, normalize_texts([text]).to_pylist()[0] == original_key, numbers
                )
            except TemplateError as error:
                failure = (error.reason, error.detail)
            if failure is not None:
                rejected.append(
                    _rejected(PARAPHRASE_STAGE, f"{problem.problem_id}#{index}", problem.problem_id, *failure)
                )
                continue
            runnable.append((problem, index, text))
            batches.append((program, [{}]))

    accepted: dict[str, Problem] = {}
    outcomes = run_batches(pool, batches, timeout_s=config.timeout_s)
    for (problem, index, text), (outcome,) in zip(runnable, outcomes, strict=True):
        answer_type = answer_type_of(problem.answer) or "decimal"
        answer = _answer_text(outcome, answer_type, config.max_decimal_places)
        if outcome.error is not None:
            failure = ("program_error", outcome.error)
        elif answer is None or compare_answers(problem.answer, answer, verify_config).is_correct is not True:
            failure = (
                "paraphrase_answer_changed",
                f"the rewording's program gives {outcome.answer!r}, not {problem.answer}",
            )
        elif problem.problem_id in accepted:
            failure = ("surplus_paraphrase", f"already paraphrased as {accepted[problem.problem_id].problem_id}")
        else:
            accepted[problem.problem_id] = problem.model_copy(
                update={
                    "problem_id": stable_id(problem.problem_id, "paraphrase", text),
                    "problem": text,
                    "source": f"{problem.source}+paraphrase",
                    "solution": None,
                }
            )
            continue
        rejected.append(_rejected(PARAPHRASE_STAGE, f"{problem.problem_id}#{index}", problem.problem_id, *failure))
    return ParaphraseResult(problems=list(accepted.values()), rejected=rejected, counts=_count(rejected))

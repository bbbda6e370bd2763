"""Reading a Template record: `parse_template` checks its structure and parses it.

Guarantee: a `ParsedTemplate` has valid slot domains, every slot shown in the
text, whitelisted constraints (`constraints.py`), and a program that parses
and defines a top-level `solve` callable with exactly the slots as keyword
arguments (checked statically, nothing is run). Anything else is a
TemplateError naming the reason and the offending key. `FENCE` finds the
fenced blocks of an LLM reply (decoupling and independent solving).
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from typing import Mapping

from pydantic import ValidationError

from mathforge.records import Template
from mathforge.synthesis.templates.constraints import Constraint
from mathforge.synthesis.templates.rendering import PLACEHOLDER, render_text
from mathforge.synthesis.templates.slots import Number, SlotSpec, TemplateError

FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)```", re.S)


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

    check_program(template.program, set(slots))
    return ParsedTemplate(record=template, slots=slots, constraints=tuple(constraints))


def check_program(program: str, slot_names: set[str]) -> None:
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

"""Authored problem templates (TDG style): YAML files under configs/templates/, loaded as Template records.

TemplateGSM's meta-templates (Zhang et al., 2024) pair a parameterized problem
with code that samples its values and generates a solution; here one YAML file
declares the same parts: problem text with {slot} placeholders, slot domains,
constraints, a `solve(**slots)` program and a chain-of-thought solution
template. `synthesis.templates.instantiate` samples and runs them. The format
is documented in configs/templates/README.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mathforge.config_files import read_yaml_mapping, validation_message
from mathforge.records import Template
from mathforge.synthesis.templates import SlotSpec, TemplateError, parse_template


class TemplateFileError(ValueError):
    """An authored template file is invalid; the message names the file and the key."""


class TemplateFile(BaseModel):
    """One authored template file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(
        pattern=r"^[a-z][a-z0-9_]*$", description="Template id (snake_case, unique); instances' template_id."
    )
    topic: str = Field(description="Grade-school topic: rates, percentages, ratios, ages, geometry, money, time, ...")
    answer_type: Literal["integer", "decimal", "fraction"] = Field(description="Kind of answer an instance must have.")
    template: str = Field(min_length=1, description="Problem text with {slot} or {slot:format} placeholders.")
    slots: dict[str, SlotSpec] = Field(min_length=1, description="Slot name -> domain (type, min, max, step, places).")
    constraints: list[str] = Field(default_factory=list, description="Python boolean expressions over the slots.")
    program: str = Field(
        min_length=1,
        description="Python source defining solve(**slots); returns the answer, or a dict of named "
        "intermediate values including 'answer'.",
    )
    solution_template: str = Field(
        min_length=1,
        description="Chain-of-thought solution with {slot} and {value} placeholders, {value} being a key "
        "of the dict solve returns; {answer} is the formatted answer.",
    )

    def to_record(self) -> Template:
        """The file as a Template record (origin 'authored', no seed problem)."""
        return Template(
            template_id=self.id,
            seed_problem_id=None,
            template=self.template.strip(),
            program=self.program,
            slots_json=json.dumps({name: spec.model_dump(exclude_none=True) for name, spec in self.slots.items()}),
            constraints_json=json.dumps(self.constraints),
            solution_template=self.solution_template.strip(),
            answer_type=self.answer_type,
            origin="authored",
        )


def load_template_file(path: str | Path) -> TemplateFile:
    """Read and check one template file; raise TemplateFileError naming the file and the key."""
    path = Path(path)
    data = read_yaml_mapping(path, TemplateFileError)
    try:
        file = TemplateFile.model_validate(data)
    except ValidationError as error:
        raise TemplateFileError(validation_message(path, error)) from None
    try:
        parse_template(file.to_record())
    except TemplateError as error:
        raise TemplateFileError(f"{path}: {error.key or '(template)'}: {error.reason}: {error.detail}") from None
    return file


def load_authored_templates(directory: str | Path, ids: Sequence[str] | None = None) -> list[Template]:
    """Load every `*.yaml` template in `directory` (sorted by file name), or only `ids`, in that order.

    Raises TemplateFileError on an invalid file (naming it and the key), on an
    id used by two files, or on a requested id no file has.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise TemplateFileError(f"{directory}: template directory not found")
    by_id: dict[str, tuple[Path, Template]] = {}
    for path in sorted(directory.glob("*.yaml")):
        file = load_template_file(path)
        if file.id in by_id:
            raise TemplateFileError(f"{path}: id: {file.id!r} is already used by {by_id[file.id][0]}")
        by_id[file.id] = (path, file.to_record())
    if ids is None:
        return [record for _, record in by_id.values()]
    unknown = [template_id for template_id in ids if template_id not in by_id]
    if unknown:
        raise TemplateFileError(f"{directory}: no template file with id {unknown}")
    return [by_id[template_id][1] for template_id in ids]

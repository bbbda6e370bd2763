"""Prompt templates: one Jinja2 file per prompt in prompts/, rendered with StrictUndefined.

Each template starts with a comment listing its variables, e.g.
`{# variables: problem #}`; a missing variable is an error, never an empty
string. Parsing the model's reply belongs to the stage that sent the prompt.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path

import jinja2

from mathforge.generation.base import ChatMessage

VARIABLES_PATTERN = re.compile(r"\{#\s*variables:\s*(.*?)\s*#\}")


def prompts_dir() -> Path:
    """The prompts directory: `$MATHFORGE_PROMPTS`, else the repository's `prompts/`."""
    override = os.environ.get("MATHFORGE_PROMPTS")
    return Path(override) if override else Path(__file__).resolve().parents[2] / "prompts"


@lru_cache(maxsize=None)
def _environment(directory: Path) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(directory)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=False,
        autoescape=False,
    )


def template_names() -> list[str]:
    """Names of all prompt templates (file names without `.jinja`)."""
    return sorted(p.stem for p in prompts_dir().glob("*.jinja"))


def declared_variables(name: str) -> list[str]:
    """The variables a template declares in its header comment."""
    text = (prompts_dir() / f"{name}.jinja").read_text()
    match = VARIABLES_PATTERN.search(text)
    if not match:
        raise ValueError(f"prompts/{name}.jinja does not start with a '{{# variables: ... #}}' comment")
    return [v.strip() for v in match.group(1).split(",") if v.strip()]


def render(name: str, **variables: object) -> str:
    """Render prompt `name` with `variables`; undefined variables raise."""
    directory = prompts_dir()
    if not (directory / f"{name}.jinja").exists():
        raise FileNotFoundError(f"no prompt template {directory / (name + '.jinja')}")
    try:
        return _environment(directory).get_template(f"{name}.jinja").render(**variables).strip()
    except jinja2.UndefinedError as error:
        raise ValueError(f"prompts/{name}.jinja: {error}") from error


def chat(name: str, **variables: object) -> list[ChatMessage]:
    """Render prompt `name` as a single-user-message chat prompt."""
    return [{"role": "user", "content": render(name, **variables)}]

"""Read YAML files that pydantic validates, with errors that name the file and the key.

Used for build configs (`mathforge.config`) and template files
(`mathforge.synthesis.template_files`); it imports nothing of mathforge.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError


class ConfigError(ValueError):
    """A config file is missing, unreadable or invalid; the message names the file and key."""


def validation_message(path: Path, error: ValidationError) -> str:
    """One line per problem: `<file>: <dotted key>: <message>`."""
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"{path}: {key}: {item['msg']}")
    return "\n".join(lines)


def read_yaml_mapping(path: str | Path, error: type[Exception] = ConfigError) -> dict[str, Any]:
    """Read a YAML file that must hold a mapping; raise `error` naming the file otherwise."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{path}: file not found") from None
    except yaml.YAMLError as problem:
        raise error(f"{path}: invalid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise error(f"{path}: expected a mapping of keys at the top level")
    return data

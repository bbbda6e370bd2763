"""Read YAML files that pydantic validates, with errors that name the file and the key.

Used for build configs (`mathforge.config`), evaluation and training configs
(`mathforge.evaluate`, `mathforge.finetune`) and template files
(`mathforge.synthesis.template_files`); it imports nothing of mathforge.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, TypeVar

import yaml
from pydantic import ValidationError

T = TypeVar("T")


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


def merge_overrides(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Return `base` with the nested dict `overrides` merged over it (neither is modified).

    >>> merge_overrides({"run": {"name": "a", "shard_size": 8}}, {"run": {"name": "b"}})
    {'run': {'name': 'b', 'shard_size': 8}}
    """
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_overrides(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_config_file(path: str | Path, validate: Callable[[dict[str, Any]], T], overrides: dict[str, Any] | None = None) -> T:
    """Read the YAML mapping at `path`, merge `overrides` over it and validate it with `validate`.

    Raises ConfigError naming the file (and, for invalid values, each dotted key).
    """
    data = merge_overrides(read_yaml_mapping(path), overrides or {})
    try:
        return validate(data)
    except ValidationError as error:
        raise ConfigError(validation_message(Path(path), error)) from None

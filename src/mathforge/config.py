"""Job configs: YAML files in configs/ validated by pydantic.

Every section is a frozen pydantic model with `extra="forbid"`, so an unknown
key or a wrong type is an error; `load_config` turns such errors into a
`ConfigError` that names the file and the dotted key. Sections are declared
next to the code they configure and composed here into `BuildConfig`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ConfigError(ValueError):
    """A config file is missing, unreadable or invalid; the message names the file and key."""


class RunConfig(Section):
    """Identity and location of a build."""

    name: str = Field(default="run", description="Run name: the directory under runs_dir (CLI --run overrides).")
    runs_dir: str = Field(default="data/runs", description="Where run directories live.")
    shard_size: int = Field(default=64, ge=1, description="Rows per Parquet shard in sharded stages (the unit of resume).")


class OutputConfig(Section):
    """The exported dataset."""

    export_dir: str = Field(default="data/exports/run", description="Directory of the exported dataset (a new version each build).")
    include_surplus: bool = Field(default=False, description="Export DART surplus correct responses too.")
    system_prompt: str | None = Field(default=None, description="Optional system message put first in every `messages`.")
    prompt: str = Field(default="solve_cot", description="Prompt template whose rendering becomes the user message.")
    tokenizer: str | None = Field(
        default="generation",
        description="Tokenizer whose chat template pre-tokenizes every row (input_ids + completion_mask, 0 on the "
        "prompt and on tool outputs), which TRL's SFTTrainer uses as is: 'generation' = generation.model when the "
        "backend is 'vllm' (a model on this machine), none for 'scripted' and 'openai'; a model id "
        "('embedded:<name>', a local directory, a hub id); or null: no pre-tokenized columns.",
    )

    def tokenizer_model(self, backend: str, model: str) -> str | None:
        """The model whose tokenizer pre-tokenizes the export, given the generation backend and model; None: none."""
        if self.tokenizer != "generation":
            return self.tokenizer
        return model if backend == "vllm" else None


def _sections() -> dict[str, Any]:
    # Imported here, not at module top: section modules import `Section` from this module.
    from mathforge.curate import CurateConfig
    from mathforge.generation import GenerationConfig
    from mathforge.ingest import IngestConfig
    from mathforge.sandbox import SandboxConfig
    from mathforge.scale import ScaleConfig
    from mathforge.select import SelectConfig
    from mathforge.synthesis.dart import DartConfig
    from mathforge.synthesis.self_correction import SelfCorrectionConfig
    from mathforge.synthesis.templates import TemplateSynthesisConfig
    from mathforge.verify import VerifyConfig

    return {
        "CurateConfig": CurateConfig,
        "SelectConfig": SelectConfig,
        "TemplateSynthesisConfig": TemplateSynthesisConfig,
        "SandboxConfig": SandboxConfig,
        "SelfCorrectionConfig": SelfCorrectionConfig,
        "ScaleConfig": ScaleConfig,
        "GenerationConfig": GenerationConfig,
        "IngestConfig": IngestConfig,
        "DartConfig": DartConfig,
        "VerifyConfig": VerifyConfig,
    }


if TYPE_CHECKING:
    from mathforge.curate import CurateConfig
    from mathforge.generation import GenerationConfig
    from mathforge.ingest import IngestConfig
    from mathforge.sandbox import SandboxConfig
    from mathforge.scale import ScaleConfig
    from mathforge.select import SelectConfig
    from mathforge.synthesis.dart import DartConfig
    from mathforge.synthesis.self_correction import SelfCorrectionConfig
    from mathforge.synthesis.templates import TemplateSynthesisConfig
    from mathforge.verify import VerifyConfig


class BuildConfig(Section):
    """A whole dataset build: one YAML file in configs/."""

    run: RunConfig = Field(default_factory=RunConfig, description="Run name and directories.")
    ingest: "IngestConfig" = Field(description="Seed problem sources.")
    generation: "GenerationConfig" = Field(description="Backend and model.")
    templates: "TemplateSynthesisConfig" = Field(
        default_factory=lambda: _sections()["TemplateSynthesisConfig"](enabled=False), description="Template synthesis."
    )
    sampling: "DartConfig" = Field(description="DART rejection sampling.")
    verification: "VerifyConfig" = Field(description="Answer verification policy.")
    self_correction: "SelfCorrectionConfig" = Field(
        default_factory=lambda: _sections()["SelfCorrectionConfig"](), description="Self-correction / tool-integrated traces."
    )
    curation: "CurateConfig | None" = Field(default=None, description="Dedup, decontamination, filters, capping; null: off.")
    selection: "SelectConfig | None" = Field(default=None, description="Selection steps; null: keep every row.")
    sandbox: "SandboxConfig" = Field(
        default_factory=lambda: _sections()["SandboxConfig"](), description="Sandbox for model-written code."
    )
    output: OutputConfig = Field(default_factory=OutputConfig, description="Export.")
    scale: "ScaleConfig" = Field(default_factory=lambda: _sections()["ScaleConfig"](), description="Where generation-heavy stages run (local or Ray).")


def build_config(data: dict[str, Any]) -> BuildConfig:
    """Validate a config dict into a BuildConfig (raises pydantic's ValidationError)."""
    # Resolved on first use rather than at import: the section modules import this module.
    if not BuildConfig.__pydantic_complete__:
        BuildConfig.model_rebuild(_types_namespace=_sections())
    return BuildConfig.model_validate(data)


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


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> BuildConfig:
    """Load and validate a build config; raise ConfigError naming the file and the key.

    `overrides` is a nested dict merged over the file (e.g. {"run": {"name": "x"}}).
    """
    data = _merge(read_yaml_mapping(path), overrides or {})
    try:
        return build_config(data)
    except ValidationError as error:
        raise ConfigError(validation_message(Path(path), error)) from None


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged

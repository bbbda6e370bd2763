"""Job configs: YAML files in configs/ validated by pydantic.

Every section is a frozen pydantic model with `extra="forbid"`, so an unknown
key or a wrong type is an error; `load_config` turns such errors into a
`ConfigError` that names the file and the dotted key. Sections are declared
next to the code they configure and composed here into `BuildConfig`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, ValidationError

from mathforge.config_files import ConfigError, load_config_file, read_yaml_mapping, validation_message
from mathforge.section import Section


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
        "prompt and on tool outputs), which TRL's SFTTrainer uses as is: 'generation' = the model to be fine-tuned "
        "(selection's GRAPE target_model if set, else generation.model) when its backend is 'vllm' (a model on "
        "this machine), none for 'scripted' and 'openai'; a model id "
        "('embedded:<name>', a local directory, a hub id); or null: no pre-tokenized columns.",
    )

    def tokenizer_model(self, backend: str, model: str) -> str | None:
        """The model whose tokenizer pre-tokenizes the export, given the generation backend and model; None: none."""
        if self.tokenizer != "generation":
            return self.tokenizer
        return model if backend == "vllm" else None


def _sections() -> dict[str, Any]:
    # Imported here, not at module top: section modules still import `Section` from this module.
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


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> BuildConfig:
    """Load and validate a build config; raise ConfigError naming the file and the key.

    `overrides` is a nested dict merged over the file (e.g. {"run": {"name": "x"}}).
    """
    return load_config_file(path, build_config, overrides)

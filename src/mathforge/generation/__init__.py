"""Generation backends behind one protocol, chosen by config.

`make_generator` builds the configured backend; `shared_generator` keeps one
per process and config so that every stage of a build reuses the same vLLM
engine (starting one costs tens of seconds on CPU). Only one model is kept:
asking for another releases the engines held (`release_shared_generators`),
because two engines do not fit next to each other on a small machine (a build
that samples with several models, or scores with a separate GRAPE target,
loads them one after another).
"""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Iterable, Literal

from pydantic import Field

from mathforge.section import Section
from mathforge.generation.base import (
    Completion,
    GenerationParams,
    Generator,
    LogLikelihood,
    MaskedTokens,
    Prompt,
    TokenScorer,
    TokenUsage,
    prompt_hash,
)
from mathforge.generation.embedded import DEFAULT_MODEL
from mathforge.generation.openai_backend import ServerConfig
from mathforge.generation.scripted import ScriptedGenerator, ScriptedProblem
from mathforge.generation.vllm_backend import EngineConfig

__all__ = [
    "Completion",
    "EngineConfig",
    "GenerationConfig",
    "GenerationParams",
    "Generator",
    "LogLikelihood",
    "MaskedTokens",
    "ModelConfig",
    "Prompt",
    "ScriptedConfig",
    "ScriptedGenerator",
    "ScriptedProblem",
    "ServerConfig",
    "TokenScorer",
    "TokenUsage",
    "make_generator",
    "prompt_hash",
    "release_shared_generators",
    "shared_generator",
]


class ScriptedConfig(Section):
    """The scripted (model-free) backend used by tests and benchmarks."""

    pass_rate: float = Field(default=0.5, ge=0.0, le=1.0, description="Probability that a response is correct.")
    seed: int = Field(default=0, description="Seed of the scripted draws.")
    latency_s: float = Field(
        default=0.0, ge=0.0, description="Seconds each generate call sleeps, to stand in for a model's latency."
    )
    answers: dict[str, str] = Field(
        default_factory=dict,
        description="problem_id -> the answer the scripted model believes (its correct responses give it, its "
        "wrong ones are near it); other problems: their reference. Plants wrong references for the audit.",
    )
    tokenizer: str = Field(
        default=DEFAULT_MODEL,
        description="Model (embedded name or directory) whose tokenizer and chat template the backend exposes for token scoring.",
    )


class ModelConfig(Section):
    """A model behind a backend: which backend, which model, and the backend's options."""

    backend: Literal["vllm", "openai", "scripted"] = Field(
        default="vllm", description="'vllm' in-process, 'openai' any OpenAI-compatible server, 'scripted' no model."
    )
    model: str = Field(
        default=DEFAULT_MODEL,
        description="'embedded:smollm2-135m-instruct' (the bundled default), a local model directory or a hub id.",
    )
    engine: EngineConfig = Field(default_factory=EngineConfig, description="In-process vLLM engine options.")
    server: ServerConfig | None = Field(default=None, description="Endpoint options; required for backend 'openai'.")
    scripted: ScriptedConfig = Field(default_factory=ScriptedConfig, description="Scripted backend options.")

    def model_key(self) -> str:
        """Canonical JSON of the model fields alone: equal keys mean the same loaded model."""
        return ModelConfig.model_validate(self.model_dump(include=set(ModelConfig.model_fields))).model_dump_json()


class GenerationConfig(ModelConfig):
    """Which backend generates, with which model; optionally more models that sample DART solutions."""

    additional: list[ModelConfig] = Field(
        default_factory=list,
        description="More models that sample solutions into the same pool: DART runs once per model "
        "(stages dart-1, dart-2, ... in this order, each to its own per-problem target) and every row keeps its "
        "`model`, so GRAPE chooses among models' responses. Templates and self-correction use the main model.",
    )

    def primary(self) -> ModelConfig:
        """The main model alone (without `additional`)."""
        return ModelConfig.model_validate_json(self.model_key())

    def models(self) -> list[ModelConfig]:
        """Every sampling model: the main one first, then `additional` in order."""
        return [self.primary(), *self.additional]


def make_generator(
    config: ModelConfig, *, problems: Iterable[ScriptedProblem] = (), decode_tokens: int | None = None
) -> Generator:
    """Build the configured backend; `problems` tells the scripted backend what it may be asked.

    `decode_tokens` (an upper bound of the tokens the caller will generate,
    None if unknown) lets the vLLM engine decide whether compiling pays off.
    """
    if config.backend == "scripted":
        believed = config.scripted.answers
        return ScriptedGenerator(
            [replace(p, answer=believed.get(p.problem_id, p.answer)) for p in problems],
            pass_rate=config.scripted.pass_rate,
            seed=config.scripted.seed,
            latency_s=config.scripted.latency_s,
            model_id=f"scripted:{config.model}",
            tokenizer_model=config.scripted.tokenizer,
        )
    if config.backend == "openai":
        from mathforge.generation.openai_backend import OpenAIGenerator

        if config.server is None:
            raise ValueError("generation.server is required when generation.backend is 'openai'")
        return OpenAIGenerator(config.model, config.server)
    from mathforge.generation.vllm_backend import VLLMGenerator

    return VLLMGenerator(config.model, config.engine, decode_tokens=decode_tokens)


_SHARED: dict[str, Generator] = {}
_SHARED_LOCK = threading.Lock()


def shared_generator(
    config: ModelConfig, *, problems: Iterable[ScriptedProblem] = (), decode_tokens: int | None = None
) -> Generator:
    """Return this process's generator for `config`, building it on first use.

    The scripted backend is rebuilt per call (it depends on `problems`); model
    backends are shared, so `decode_tokens` should bound the whole build's
    generation, not one stage's. Building one for another model first releases
    the one held, so at most one engine is in memory.
    """
    if config.backend == "scripted":
        return make_generator(config, problems=problems)
    key = config.model_key()
    with _SHARED_LOCK:
        if key not in _SHARED:
            _release_locked()
            _SHARED[key] = make_generator(config, decode_tokens=decode_tokens)
        return _SHARED[key]


def release_shared_generators() -> None:
    """Close and forget this process's shared generators (their engines' memory is freed)."""
    with _SHARED_LOCK:
        _release_locked()


def _release_locked() -> None:
    generators = list(_SHARED.values())
    _SHARED.clear()
    for generator in generators:
        close = getattr(generator, "close", None)
        if callable(close):
            close()

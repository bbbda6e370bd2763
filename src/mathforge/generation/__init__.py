"""Generation backends behind one protocol, chosen by config.

`make_generator` builds the configured backend; `shared_generator` keeps one
per process and config so that every stage of a build reuses the same vLLM
engine (starting one costs tens of seconds on CPU).
"""

from __future__ import annotations

import threading
from typing import Iterable, Literal

from pydantic import Field

from mathforge.config import Section
from mathforge.generation.base import (
    Completion,
    GenerationParams,
    Generator,
    LogLikelihood,
    Prompt,
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
    "Prompt",
    "ScriptedConfig",
    "ScriptedGenerator",
    "ScriptedProblem",
    "ServerConfig",
    "TokenUsage",
    "make_generator",
    "prompt_hash",
    "shared_generator",
]


class ScriptedConfig(Section):
    """The scripted (model-free) backend used by tests and benchmarks."""

    pass_rate: float = Field(default=0.5, ge=0.0, le=1.0, description="Probability that a response is correct.")
    seed: int = Field(default=0, description="Seed of the scripted draws.")
    latency_s: float = Field(
        default=0.0, ge=0.0, description="Seconds each generate call sleeps, to stand in for a model's latency."
    )


class GenerationConfig(Section):
    """Which backend generates, with which model."""

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


def make_generator(
    config: GenerationConfig, *, problems: Iterable[ScriptedProblem] = (), decode_tokens: int | None = None
) -> Generator:
    """Build the configured backend; `problems` tells the scripted backend what it may be asked.

    `decode_tokens` (an upper bound of the tokens the caller will generate,
    None if unknown) lets the vLLM engine decide whether compiling pays off.
    """
    if config.backend == "scripted":
        return ScriptedGenerator(
            problems,
            pass_rate=config.scripted.pass_rate,
            seed=config.scripted.seed,
            latency_s=config.scripted.latency_s,
            model_id=f"scripted:{config.model}",
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
    config: GenerationConfig, *, problems: Iterable[ScriptedProblem] = (), decode_tokens: int | None = None
) -> Generator:
    """Return this process's generator for `config`, building it on first use.

    The scripted backend is rebuilt per call (it depends on `problems`); model
    backends are shared, so `decode_tokens` should bound the whole build's
    generation, not one stage's.
    """
    if config.backend == "scripted":
        return make_generator(config, problems=problems)
    key = config.model_dump_json()
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = make_generator(config, decode_tokens=decode_tokens)
        return _SHARED[key]

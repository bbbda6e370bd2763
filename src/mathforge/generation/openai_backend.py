"""OpenAI-compatible HTTP backend: `vllm serve` replicas or hosted providers.

Requests run concurrently on an asyncio loop with a bounded number in flight.
Timeouts, connection errors, 429 and 5xx are retried with exponential backoff
and full jitter; other errors fail at once. When retries run out, the error
names the endpoint and carries every completion already received
(`GenerationError.partial`) so a caching layer can keep them. The API key is
read from the environment variable named in the config and never logged.

Log-likelihood needs the server's tokenizer and prompt log-probabilities,
which vLLM's server offers (`/tokenize`, `prompt_logprobs`); other servers get a
clear `LoglikelihoodUnsupported` error. `score_tokens` sends token ids the
caller rendered with `tokenizer`, which is loaded locally from the model
directory (the config's model: an embedded name, a directory or a hub id), so
the scored tokens are exactly the caller's.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from typing import Any, Callable, Sequence

import httpx
from pydantic import Field

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
from mathforge.generation.embedded import load_tokenizer

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class ServerConfig(Section):
    """Where and how to reach an OpenAI-compatible server."""

    base_url: str = Field(description="Endpoint root including /v1, e.g. http://127.0.0.1:8000/v1.")
    api_key_env: str | None = Field(
        default=None, description="Name of the environment variable holding the API key (the key itself never goes in a config)."
    )
    max_in_flight: int = Field(default=32, ge=1, description="Requests in flight at once.")
    request_timeout_s: float = Field(default=120.0, gt=0, description="Per-request timeout, seconds.")
    max_retries: int = Field(default=5, ge=0, description="Retries per request on timeouts, connection errors, 429 and 5xx.")
    backoff_base_s: float = Field(default=0.5, gt=0, description="First backoff delay, seconds; doubles each retry.")
    backoff_max_s: float = Field(default=30.0, gt=0, description="Longest backoff delay, seconds.")
    served_model: str | None = Field(
        default=None, description="Model name the server expects in requests; defaults to the config's model."
    )


class GenerationError(RuntimeError):
    """A batch could not be completed; `partial` maps prompt index -> completions received."""

    def __init__(self, message: str, partial: dict[int, list[Completion]]) -> None:
        super().__init__(message)
        self.partial = partial


class LoglikelihoodUnsupported(RuntimeError):
    """The server cannot score continuations (no tokenizer endpoint or prompt log-probabilities)."""


class OpenAIGenerator:
    """`Generator` over an OpenAI-compatible endpoint.

    Args:
        model: model id recorded in lineage (and sent, unless `server.served_model` is set).
        server: endpoint options.
    """

    def __init__(self, model: str, server: ServerConfig) -> None:
        self.model_id = model
        self.server = server
        self.usage = TokenUsage()
        self.served_model = server.served_model or model
        self._headers = {}
        if server.api_key_env:
            key = os.environ.get(server.api_key_env)
            if not key:
                raise RuntimeError(f"environment variable {server.api_key_env} (the API key) is not set")
            self._headers["Authorization"] = f"Bearer {key}"

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams) -> list[list[Completion]]:
        """Return `params.n` completions per prompt, in input order; raise GenerationError with partial results."""
        started = time.perf_counter()
        results = asyncio.run(self._gather([self._generate_body(p, params) for p in prompts], self._parse_generation))
        self.usage.n_requests += len(prompts)
        self.usage.n_samples += sum(len(r) for r in results)
        self.usage.completion_tokens += sum(c.n_tokens for r in results for c in r)
        self.usage.wall_s += time.perf_counter() - started
        return results

    def loglikelihood(self, pairs: Sequence[tuple[Prompt, str]]) -> list[LogLikelihood]:
        """Score continuations with vLLM's `/tokenize` and `prompt_logprobs` (continuation tokens only)."""
        return asyncio.run(self._loglikelihood(pairs))

    @property
    def tokenizer(self) -> Any:
        """The served model's tokenizer, loaded once from the local model directory (`model`)."""
        return load_tokenizer(self.model_id)

    def score_tokens(self, sequences: Sequence[MaskedTokens]) -> list[LogLikelihood]:
        """Sum each sequence's masked-token log-probabilities (nats) from the server's `prompt_logprobs`."""
        check_masked_tokens(sequences)
        return asyncio.run(self._score(sequences))

    def _generate_body(self, prompt: Prompt, params: GenerationParams) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {
            "model": self.served_model,
            "n": params.n,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_tokens,
        }
        if params.stop:
            body["stop"] = list(params.stop)
        if params.include_stop_str_in_output:
            body["include_stop_str_in_output"] = True
        if params.seed is not None:
            body["seed"] = params.seed
        if isinstance(prompt, str):
            return "/completions", {**body, "prompt": prompt}
        return "/chat/completions", {**body, "messages": prompt}

    def _parse_generation(self, payload: dict[str, Any]) -> list[Completion]:
        choices = sorted(payload["choices"], key=lambda c: c.get("index", 0))
        usage = payload.get("usage") or {}
        self.usage.prompt_tokens += usage.get("prompt_tokens", 0)
        texts = [(c["message"]["content"] if "message" in c else c["text"]) or "" for c in choices]
        # Servers report completion tokens per request, not per choice: share them
        # out by text length (exact for n=1).
        total_tokens = usage.get("completion_tokens")
        total_chars = sum(len(t) for t in texts) or 1
        completions = []
        for choice, text in zip(choices, texts):
            stop_reason = choice.get("stop_reason")
            if total_tokens is None:
                n_tokens = len(text.split())
            else:
                n_tokens = round(total_tokens * len(text) / total_chars)
            completions.append(
                Completion(
                    text=text,
                    n_tokens=max(1, n_tokens),
                    finish_reason=choice.get("finish_reason") or "stop",
                    stop_reason=stop_reason if isinstance(stop_reason, str) else None,
                )
            )
        return completions

    async def _gather(self, requests: list[tuple[str, dict[str, Any]]], parse: Callable[[dict[str, Any]], Any]) -> list:
        """Send all requests, at most max_in_flight at once; results in input order, or GenerationError with the partial ones."""
        semaphore = asyncio.Semaphore(self.server.max_in_flight)
        results: dict[int, Any] = {}
        timeout = httpx.Timeout(self.server.request_timeout_s)
        async with httpx.AsyncClient(base_url=self.server.base_url, headers=self._headers, timeout=timeout) as client:

            async def one(index: int, path: str, body: dict[str, Any]) -> None:
                async with semaphore:
                    results[index] = parse(await self._post(client, path, body))

            tasks = [asyncio.create_task(one(i, path, body)) for i, (path, body) in enumerate(requests)]
            done = await asyncio.gather(*tasks, return_exceptions=True)
        errors = [e for e in done if isinstance(e, BaseException)]
        if errors:
            raise GenerationError(
                f"{len(errors)} of {len(requests)} requests to {self.server.base_url} failed: {errors[0]}", results
            ) from errors[0]
        return [results[i] for i in range(len(requests))]

    async def _post(self, client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST with retries on transient failures; raise naming the endpoint when they run out."""
        last_error: str = ""
        for attempt in range(self.server.max_retries + 1):
            try:
                response = await client.post(path, json=body)
            except (httpx.TimeoutException, httpx.TransportError) as error:
                last_error = f"{type(error).__name__}: {error}"
            else:
                if response.status_code < 400:
                    return response.json()
                if response.status_code not in RETRY_STATUS:
                    raise RuntimeError(
                        f"{self.server.base_url}{path} answered {response.status_code}: {response.text[:500]}"
                    )
                last_error = f"HTTP {response.status_code}"
            if attempt < self.server.max_retries:
                delay = min(self.server.backoff_max_s, self.server.backoff_base_s * 2**attempt)
                await asyncio.sleep(random.uniform(0, delay))
        raise RuntimeError(
            f"{self.server.base_url}{path} failed after {self.server.max_retries + 1} attempts: {last_error}"
        )

    async def _loglikelihood(self, pairs: Sequence[tuple[Prompt, str]]) -> list[LogLikelihood]:
        root = self.server.base_url.rstrip("/").removesuffix("/v1")
        timeout = httpx.Timeout(self.server.request_timeout_s)
        async with httpx.AsyncClient(base_url=root, headers=self._headers, timeout=timeout) as client:
            token_lists = []
            for prompt, continuation in pairs:
                if isinstance(prompt, str):
                    prompt_body: dict[str, Any] = {"model": self.served_model, "prompt": prompt, "add_special_tokens": False}
                else:
                    prompt_body = {"model": self.served_model, "messages": prompt, "add_generation_prompt": True}
                prompt_ids = await self._tokenize(client, prompt_body)
                continuation_ids = await self._tokenize(
                    client, {"model": self.served_model, "prompt": continuation, "add_special_tokens": False}
                )
                token_lists.append((prompt_ids, continuation_ids))
        return await self._score([(p + c, [0] * len(p) + [1] * len(c)) for p, c in token_lists])

    async def _score(self, sequences: Sequence[MaskedTokens]) -> list[LogLikelihood]:
        """One /completions request per sequence (token-id prompt, one generated token, prompt_logprobs=0)."""
        started = time.perf_counter()
        requests = [
            ("/completions", {"model": self.served_model, "prompt": list(ids), "max_tokens": 1, "prompt_logprobs": 0, "temperature": 0.0})
            for ids, _ in sequences
        ]
        payloads = await self._gather(requests, dict)
        results = []
        for (ids, mask), payload in zip(sequences, payloads):
            # vLLM's server returns one {token id (a JSON string key): {logprob, rank, decoded_token}} per position.
            logprobs = payload["choices"][0].get("prompt_logprobs")
            if logprobs is None:
                raise LoglikelihoodUnsupported(f"{self.server.base_url} returned no prompt_logprobs")
            results.append(sum_masked(ids, mask, lambda position, token, rows=logprobs: rows[position][str(token)]["logprob"]))
        self.usage.prompt_tokens += sum(len(ids) for ids, _ in sequences)
        self.usage.wall_s += time.perf_counter() - started
        return results

    async def _tokenize(self, client: httpx.AsyncClient, body: dict[str, Any]) -> list[int]:
        response = await client.post("/tokenize", json=body)
        if response.status_code == 404:
            raise LoglikelihoodUnsupported(
                f"{self.server.base_url}: the server has no /tokenize endpoint, so continuations cannot be scored; "
                "use a vLLM server or the in-process vLLM backend"
            )
        response.raise_for_status()
        return response.json()["tokens"]

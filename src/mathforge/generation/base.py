"""The generation protocol every backend implements (vLLM, OpenAI-compatible, scripted).

Batch in, batch out: `generate` returns one list of `n` completions per prompt,
in input order (vLLM's contract). `loglikelihood` scores continuations given a
prompt, counting the continuation's tokens only. Model backends (vLLM,
OpenAI-compatible, scripted) are also `TokenScorer`s: they score token ids the
caller rendered (`score_tokens`) with the tokenizer they expose, so a
selector scores exactly the tokens an export trains on. Backend-specific types
(vLLM's SamplingParams, HTTP responses) never leave the adapter that uses them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Protocol, Sequence, Union, runtime_checkable

ChatMessage = dict[str, str]
#: Token ids and a same-length 0/1 mask: 1 on the positions whose log-probability counts.
MaskedTokens = tuple[Sequence[int], Sequence[int]]
#: A prompt is a raw string (sent as is) or a chat message list (the backend applies the chat template).
Prompt = Union[str, list[ChatMessage]]


@dataclass(frozen=True)
class GenerationParams:
    """Sampling parameters shared by all backends.

    `seed` is a per-call seed honoured by backends that can (scripted, OpenAI
    servers); in-process vLLM on CPU is seeded once per engine instead, since
    per-request seeds crash its CPU sampler.
    """

    n: int = 1
    temperature: float = 0.7
    top_p: float = 1.0
    max_tokens: int = 512
    stop: tuple[str, ...] = ()
    include_stop_str_in_output: bool = False
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")

    def to_json(self) -> str:
        """Canonical JSON of the parameters (for lineage columns and cache keys)."""
        return json.dumps(asdict(self), sort_keys=True)


@dataclass(frozen=True)
class Completion:
    """One generated continuation.

    `finish_reason` is 'stop' (EOS or a stop string) or 'length' (cut at
    max_tokens): truncation must stay visible downstream.
    """

    text: str
    n_tokens: int
    finish_reason: str
    stop_reason: str | None = None


@dataclass(frozen=True)
class LogLikelihood:
    """Log-likelihood of a continuation given a prompt: sum over its tokens (nats) and their count."""

    sum_logprob: float
    n_tokens: int

    @property
    def per_token(self) -> float:
        """Length-normalized log-likelihood (GRAPE's score)."""
        return self.sum_logprob / max(self.n_tokens, 1)


@dataclass
class TokenUsage:
    """Running token accounting of one generator, reported into stage manifests."""

    n_requests: int = 0
    n_samples: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    wall_s: float = 0.0
    n_cached: int = 0
    extra: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, float]:
        """Plain dict for manifests."""
        data = asdict(self)
        data.update(data.pop("extra"))
        return data


@runtime_checkable
class Generator(Protocol):
    """What every backend implements."""

    model_id: str
    usage: TokenUsage

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams) -> list[list[Completion]]:
        """Return `params.n` completions for each prompt, in input order."""
        ...

    def loglikelihood(self, pairs: Sequence[tuple[Prompt, str]]) -> list[LogLikelihood]:
        """Score each (prompt, continuation) pair; only the continuation's tokens count."""
        ...


@runtime_checkable
class TokenScorer(Protocol):
    """A model that scores token ids it did not render itself (GRAPE's target model).

    `tokenizer` is the model's Hugging Face tokenizer (chat template included):
    the caller renders and tokenizes with it, so what is scored is exactly what
    was rendered.
    """

    model_id: str

    @property
    def tokenizer(self) -> Any:
        """The model's tokenizer (a `transformers` tokenizer)."""
        ...

    def score_tokens(self, sequences: Sequence[MaskedTokens]) -> list[LogLikelihood]:
        """Return, per (input_ids, mask), the summed log-probability (nats) of the masked tokens and their count."""
        ...


def check_masked_tokens(sequences: Sequence[MaskedTokens]) -> None:
    """Raise ValueError unless every mask matches its ids in length, is 0/1, marks a token, and spares the first.

    The first token has no context, so no model gives it a log-probability.
    """
    for index, (ids, mask) in enumerate(sequences):
        if len(ids) != len(mask):
            raise ValueError(f"sequence {index}: {len(ids)} token ids but a mask of {len(mask)}")
        if any(value not in (0, 1) for value in mask):
            raise ValueError(f"sequence {index}: the mask must hold only 0 and 1")
        if not any(mask):
            raise ValueError(f"sequence {index}: the mask marks no token to score")
        if mask[0]:
            raise ValueError(f"sequence {index}: the first token cannot be scored (it has no context)")


def sum_masked(ids: Sequence[int], mask: Sequence[int], logprob_at: Callable[[int, int], float]) -> LogLikelihood:
    """Sum `logprob_at(position, token_id)` over the masked positions of one sequence."""
    positions = [i for i, value in enumerate(mask) if value]
    return LogLikelihood(sum_logprob=sum(logprob_at(i, ids[i]) for i in positions), n_tokens=len(positions))


def prompt_hash(prompt: Prompt) -> str:
    """Return a 16-hex-digit sha256 prefix of a prompt (string or chat messages)."""
    payload = prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]

"""GRAPE on the real engine with two different real models: the target decides, on the exported tokens.

The generator is the embedded SmolLM2-135M; the other model is derived from it
(the session fixture `derived_model`: its first 4 decoder layers, S2L's proxy
cut, saved as a model directory).
Each is the GRAPE target in turn on the in-process vLLM backend, one engine at
a time (`shared_generator` releases the first when the second is asked for).
The kept response per problem must be the argmax of an independent float32
`transformers` forward pass over the exact exported token sequences, masked to
the completion, and the two targets must choose differently on a planted problem.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from mathforge import generation
from mathforge.conversation import row_conversation, tokenize_conversation
from mathforge.generation import ModelConfig, release_shared_generators, shared_generator
from mathforge.generation.embedded import DEFAULT_MODEL
from mathforge.generation.vllm_backend import EngineConfig
from mathforge.records import SAMPLE_SCHEMA
from mathforge.select.grape import select_grape

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CONVERSATION = functools.partial(row_conversation, prompt_by_strategy={}, default_prompt="solve_cot", system_prompt=None)
ENGINE = EngineConfig(seed=0, dtype="float32", max_model_len=1024, kv_cache_gb=0.5, enforce_eager=True)
STYLES = [
    "{a} + {b} = {c}. \\boxed{{{c}}}",
    "First we add the two amounts: {a} and {b} make {c} in total. The answer is \\boxed{{{c}}}.",
    "Quantity: {c}, because combining gives it overall \\boxed{{{c}}}",
    "Let's think step by step. {a} plus {b} equals {c}.\nTherefore, the final answer is \\boxed{{{c}}}.",
]


def _rows():
    rows = []
    for i in range(6):
        a, b = 3 + 2 * i, 4 + 3 * i
        problem = f"Tom has {a} pens and buys {b} more. How many pens does he have?"
        for j, style in enumerate(STYLES):
            rows.append(
                {
                    "sample_id": f"p{i}-{j}", "problem_id": f"p{i}", "problem": problem, "answer": str(a + b), "source": "t",
                    "response": style.format(a=a, b=b, c=a + b), "finish_reason": "stop", "n_completion_tokens": 20,
                    "verdict": "correct", "model": DEFAULT_MODEL, "sampling_json": "{}", "prompt_hash": "h", "round": 0,
                    "sample_index": j, "strategy": "dart-uniform", "is_surplus": False,
                }
            )
    return rows


def _transformers_scores(model_dir, rows) -> dict[str, float]:
    """Mean log-probability per completion token of each row's exported tokens, float32 transformers."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    scores = {}
    for row in rows:
        tokens = tokenize_conversation(tokenizer, CONVERSATION(row))
        ids = torch.tensor([tokens.input_ids])
        with torch.no_grad():
            logprobs = torch.log_softmax(model(ids).logits[0, :-1].float(), dim=-1)
        targets = ids[0, 1:]
        token_logprobs = logprobs[torch.arange(len(targets)), targets]
        mask = torch.tensor(tokens.completion_mask[1:], dtype=torch.bool)
        scores[row["sample_id"]] = token_logprobs[mask].mean().item()
    return scores


def _argmax_per_problem(scores: dict[str, float]) -> dict[str, str]:
    best: dict[str, str] = {}
    for sample_id, score in sorted(scores.items()):
        problem = sample_id.split("-")[0]
        if problem not in best or score > scores[best[problem]]:
            best[problem] = sample_id
    return best


def test_target_model_decides_on_the_exported_tokens(derived_model):
    import pyarrow as pa

    from mathforge.generation.embedded import prepare_model

    rows = _rows()
    table = pa.Table.from_pylist(rows, schema=SAMPLE_SCHEMA)
    targets = {"derived": derived_model, "smollm2": str(prepare_model(DEFAULT_MODEL))}
    independent = {name: _transformers_scores(path, rows) for name, path in targets.items()}
    expected = {name: _argmax_per_problem(scores) for name, scores in independent.items()}
    planted = [p for p in expected["derived"] if expected["derived"][p] != expected["smollm2"][p]]
    assert planted, "the planted candidates must split the two models on at least one problem"

    kept = {}
    exact_argmax = 0
    largest_gap = 0.0
    for name, path in targets.items():
        scorer = shared_generator(ModelConfig(backend="vllm", model=path, engine=ENGINE))
        # Asking for the second model released the first engine: one engine in memory at a time.
        assert list(generation._SHARED.values()) == [scorer]
        result = select_grape(table, scorer=scorer, conversation=CONVERSATION)
        kept[name] = dict(zip(result.table.column("problem_id").to_pylist(), result.table.column("sample_id").to_pylist()))
        engine_scores = dict(zip(result.table.column("sample_id").to_pylist(), result.table.column("loglik_per_token").to_pylist()))
        for problem, sample_id in kept[name].items():
            best = expected[name][problem]
            # The kept row is the transformers argmax (or ties with it within float32 noise).
            assert independent[name][sample_id] >= independent[name][best] - 1e-3, (name, problem, sample_id, best)
            assert engine_scores[sample_id] == pytest.approx(independent[name][sample_id], abs=2e-3)
            exact_argmax += sample_id == best
            largest_gap = max(largest_gap, abs(engine_scores[sample_id] - independent[name][sample_id]))
    release_shared_generators()
    swapped = [p for p in kept["derived"] if kept["derived"][p] != kept["smollm2"][p]]
    assert swapped, "swapping the target must change the choice on a planted problem"
    print(
        f"planted_disagreements={len(planted)} choices_changed_by_swapping_target={len(swapped)} "
        f"kept_is_transformers_argmax={exact_argmax}/{2 * len(expected['derived'])} max_per_token_gap={largest_gap:.2e}"
    )

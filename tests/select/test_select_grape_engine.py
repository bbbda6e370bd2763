"""GRAPE on the real engine: the kept response is the argmax of scores from an independent transformers pass."""

import pytest

from mathforge import prompts
from mathforge.records import SAMPLE_SCHEMA
from mathforge.select.grape import select_grape

pytestmark = pytest.mark.integration

PROBLEM = "Tom has 3 boxes with 4 pens each. How many pens does he have?"
RESPONSES = [
    "Tom has 3 boxes and each box has 4 pens, so he has 3 * 4 = 12 pens. The answer is \\boxed{12}.",
    "3 times 4 is 12. \\boxed{12}",
    "Pens: twelve, because boxes multiply; quantity equals 12 overall \\boxed{12}",
]


def _table():
    rows = [
        {
            "sample_id": f"s{i}", "problem_id": "p", "problem": PROBLEM, "answer": "12", "source": "t", "response": text,
            "finish_reason": "stop", "n_completion_tokens": len(text.split()), "verdict": "correct", "model": "m",
            "sampling_json": "{}", "prompt_hash": "h", "round": 0, "sample_index": i, "strategy": "s", "is_surplus": False,
        }
        for i, text in enumerate(RESPONSES)
    ]
    import pyarrow as pa

    return pa.Table.from_pylist(rows, schema=SAMPLE_SCHEMA)


def test_grape_keeps_the_argmax_of_an_independent_forward_pass(vllm_generator):
    import torch
    from transformers import AutoModelForCausalLM

    from mathforge.generation.embedded import prepare_model

    def prompt_fn(text):
        return prompts.chat("solve_cot", problem=text)

    result = select_grape(_table(), generator=vllm_generator, prompt_fn=prompt_fn)
    (kept,) = result.table.column("sample_id").to_pylist()

    model = AutoModelForCausalLM.from_pretrained(prepare_model(vllm_generator.model_id), dtype=torch.float32).eval()
    scores = []
    for text in RESPONSES:
        prompt_ids, continuation_ids = vllm_generator.token_ids(prompt_fn(PROBLEM), text)
        ids = torch.tensor([prompt_ids + continuation_ids])
        with torch.no_grad():
            logprobs = torch.log_softmax(model(ids).logits[0, :-1].float(), dim=-1)
        targets = ids[0, 1:]
        token_logprobs = logprobs[torch.arange(len(targets)), targets][len(prompt_ids) - 1 :]
        scores.append(token_logprobs.mean().item())
    assert kept == f"s{max(range(len(scores)), key=scores.__getitem__)}", scores
    assert result.table.column("loglik_per_token")[0].as_py() == pytest.approx(max(scores), abs=0.05)

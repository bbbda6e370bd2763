"""Engine start and decode speed of the embedded default: chosen settings vs old defaults vs transformers.

One run measures, on the same 16 chat prompts x 64 greedy tokens (SmolLM2-135M):
- `chosen`: our VLLMGenerator with the settings `cpu_settings` picks for this machine;
- `old`: the settings before they were chosen from the machine (dtype 'auto' = the
  checkpoint's bfloat16, compiled, vLLM's own thread binding);
- `hf`: plain `transformers` float32 `generate` (batched, left padding), no vLLM,
  with as many torch threads as the engine has compute cores (all but the one
  vLLM reserves): on a busy 2-core machine two spinning OpenMP threads made
  it crawl (over 15 minutes for what one thread does in seconds).
Each vLLM configuration runs in its own process, one after the other, so that
start-up is measured from a cold process and only one engine is alive at a
time. Decode speed is completion tokens / wall seconds of the fastest of
`--repeats` batches after a warm-up batch. The machine is shared: compare the
ratios of one run, and read the load average printed with them.

`--emulate-avx2` measures what an AVX2-only CPU (no native bf16, the machines
where the old defaults were 3x slower) would see, on a CPU that has more:
every child runs with oneDNN and PyTorch capped to AVX2 (ONEDNN_MAX_CPU_ISA=AVX2,
ATEN_CPU_CAPABILITY=avx2; vLLM's CPU linear layers are oneDNN matmuls), and
`chosen` gets the settings `cpu_settings` picks for this CPU's flags minus the
native-bf16 ones. vLLM's own attention kernels are compiled per ISA and are
not capped, so this is an approximation of such a machine, not one. Measured
on an AMD EPYC (Zen 4, avx512_bf16, 2 cores, load ~1) with `--emulate-avx2`:
chosen float32 eager start 25.7 s, 112 tok/s; old bf16 compiled start 110.5 s,
39 tok/s (speedup 2.83x); transformers 74 tok/s (ratio 1.51). A second run:
start 32.8 s, 101 tok/s vs 123.4 s, 39 tok/s (2.60x), transformers 69 (1.47). Without it,
the same CPU's chosen bf16 eager engine gave 196 tok/s vs the old default's
225 (its native bf16 makes the old default fast).

Run: PYTHONPATH=src .venv/bin/python benchmarks/embedded_throughput.py [--repeats 3] [--skip-old] [--emulate-avx2]
Last line: start_s=... tok_s=... hf_tok_s=... ratio_vs_hf=... (chosen settings), plus the old defaults'.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

MODEL = "embedded:smollm2-135m-instruct"
N_PROMPTS, MAX_TOKENS = 16, 64


def chats() -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": f"Explain step by step how to add {i} and {i * 7 + 3}."}] for i in range(N_PROMPTS)]


AVX2_ENV = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}


def measure_vllm(which: str, repeats: int, *, emulate_avx2: bool) -> dict:
    """Start a VLLMGenerator with `which` settings, decode the prompts; return start_s, tok_s and settings."""
    from mathforge.generation import GenerationParams
    from mathforge.generation.cpu_settings import NATIVE_BF16_FLAGS, CpuFeatures, choose_engine_settings
    from mathforge.generation.vllm_backend import EngineConfig, VLLMGenerator

    common = {"seed": 0, "max_model_len": 1024, "kv_cache_gb": 1}
    if which == "old":
        # Before: 'auto' passed through to vLLM (the checkpoint's bf16), compiled, vLLM's binding.
        engine = EngineConfig(**common, dtype="bfloat16", enforce_eager=False, cpu_threads_bind="auto")
    elif emulate_avx2:
        # What cpu_settings chooses on a CPU without native bf16, passed explicitly (an explicit value wins).
        machine = CpuFeatures.detect()
        avx2 = CpuFeatures(flags=machine.flags - NATIVE_BF16_FLAGS, n_cpus=machine.n_cpus)
        picked = choose_engine_settings(avx2, EngineConfig(**common), is_cpu=True, environ={}, decode_tokens=N_PROMPTS * MAX_TOKENS)
        engine = EngineConfig(**common, dtype=picked.dtype, enforce_eager=picked.enforce_eager)
    else:
        engine = EngineConfig(**common)
    started = time.perf_counter()
    generator = VLLMGenerator(MODEL, engine)
    start_s = time.perf_counter() - started
    params = GenerationParams(n=1, temperature=0.0, max_tokens=MAX_TOKENS)
    prompts = chats()
    generator.generate(prompts[:2], params)
    times, tokens = [], 0
    for _ in range(repeats):
        began = time.perf_counter()
        out = generator.generate(prompts, params)
        times.append(time.perf_counter() - began)
        tokens = sum(row[0].n_tokens for row in out)
    generator.close()
    settings = {"dtype": generator.settings.dtype, "enforce_eager": generator.settings.enforce_eager, **generator.settings.env}
    return {"start_s": start_s, "tok_s": tokens / min(times), "times": times, "settings": settings}


def measure_hf(repeats: int) -> dict:
    """Plain transformers float32 generate on the same prompts (greedy, one padded batch)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mathforge.generation.embedded import prepare_model

    torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) - 1))
    path = str(prepare_model(MODEL))
    tokenizer = AutoTokenizer.from_pretrained(path, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    texts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in chats()]
    batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    times, tokens = [], 0
    with torch.inference_mode():
        model.generate(**batch, max_new_tokens=4, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        for _ in range(repeats):
            began = time.perf_counter()
            out = model.generate(**batch, max_new_tokens=MAX_TOKENS, do_sample=False, pad_token_id=tokenizer.pad_token_id)
            times.append(time.perf_counter() - began)
            new = out[:, batch["input_ids"].shape[1] :]
            # Tokens up to and including each row's end-of-sequence, as vLLM counts them.
            eos = tokenizer.eos_token_id
            tokens = sum(int((row == eos).nonzero()[0]) + 1 if (row == eos).any() else len(row) for row in new)
    return {"tok_s": tokens / min(times), "times": times, "threads": torch.get_num_threads()}


def run_child(which: str, repeats: int, *, emulate_avx2: bool) -> dict:
    """Measure `which` in a fresh process (cold start, one engine at a time); return its JSON line."""
    command = [sys.executable, __file__, "--child", which, "--repeats", str(repeats)]
    env = {**os.environ, **AVX2_ENV} if emulate_avx2 else None
    if emulate_avx2:
        command.append("--emulate-avx2")
    done = subprocess.run(command, capture_output=True, text=True, timeout=1200, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{which} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-old", action="store_true", help="Do not measure the old defaults (saves minutes).")
    parser.add_argument("--emulate-avx2", action="store_true", help="Approximate an AVX2-only CPU (see the docstring).")
    parser.add_argument("--child", choices=["chosen", "old", "hf"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
        if args.child == "hf":
            result = measure_hf(args.repeats)
        else:
            result = measure_vllm(args.child, args.repeats, emulate_avx2=args.emulate_avx2)
        print(json.dumps(result), flush=True)
        return

    results = {}
    for which in ("chosen", "hf") if args.skip_old else ("chosen", "old", "hf"):
        results[which] = run_child(which, args.repeats, emulate_avx2=args.emulate_avx2)
        print(which, json.dumps(results[which]), f"load={os.getloadavg()[0]:.1f}", flush=True)
    chosen, hf = results["chosen"], results["hf"]
    line = (
        f"start_s={chosen['start_s']:.1f} tok_s={chosen['tok_s']:.0f} hf_tok_s={hf['tok_s']:.0f} "
        f"ratio_vs_hf={chosen['tok_s'] / hf['tok_s']:.2f}"
    )
    if "old" in results:
        old = results["old"]
        line += f" old_start_s={old['start_s']:.1f} old_tok_s={old['tok_s']:.0f} speedup_vs_old={chosen['tok_s'] / old['tok_s']:.2f}"
    print(line + f" emulate_avx2={int(args.emulate_avx2)} load={os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()

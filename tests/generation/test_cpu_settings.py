"""Engine settings chosen from CPU features: fake feature sets, no engine."""

import pytest

from mathforge.generation.cpu_settings import COMPILE_MIN_DECODE_TOKENS, CpuFeatures, choose_engine_settings
from mathforge.generation.vllm_backend import EngineConfig

AVX2_ONLY = CpuFeatures(flags=frozenset({"avx", "avx2", "fma"}), n_cpus=2)
ZEN4 = CpuFeatures(flags=frozenset({"avx2", "avx512f", "avx512_bf16", "avx512_vnni"}), n_cpus=2)
SAPPHIRE_RAPIDS = CpuFeatures(flags=frozenset({"avx2", "avx512f", "amx_tile", "amx_bf16"}), n_cpus=32)
AVX512_NO_BF16 = CpuFeatures(flags=frozenset({"avx2", "avx512f", "avx512_vnni"}), n_cpus=8)


@pytest.mark.parametrize(
    ("features", "expected"),
    [(AVX2_ONLY, "float32"), (AVX512_NO_BF16, "float32"), (ZEN4, "bfloat16"), (SAPPHIRE_RAPIDS, "bfloat16")],
    ids=["avx2-only", "avx512-without-bf16", "avx512-bf16", "amx-bf16"],
)
def test_auto_dtype_is_bf16_only_with_native_bf16(features, expected):
    settings = choose_engine_settings(features, EngineConfig(), is_cpu=True)
    assert settings.dtype == expected
    assert settings.reasons["dtype"].startswith(expected)


def test_cpu_starts_eager_unless_configured():
    assert choose_engine_settings(AVX2_ONLY, EngineConfig(), is_cpu=True).enforce_eager is True
    compiled = choose_engine_settings(AVX2_ONLY, EngineConfig(enforce_eager=False), is_cpu=True)
    assert compiled.enforce_eager is False
    assert compiled.reasons["enforce_eager"] == "False (config)"


@pytest.mark.parametrize(
    ("features", "decode_tokens", "eager"),
    [
        (AVX2_ONLY, 10**7, True),
        (ZEN4, None, True),
        (ZEN4, COMPILE_MIN_DECODE_TOKENS - 1, True),
        (ZEN4, COMPILE_MIN_DECODE_TOKENS, False),
    ],
    ids=["float32-never-compiles", "bf16-unknown-size", "bf16-small-build", "bf16-large-build"],
)
def test_bf16_compiles_only_for_builds_large_enough_to_repay_it(features, decode_tokens, eager):
    settings = choose_engine_settings(features, EngineConfig(), is_cpu=True, decode_tokens=decode_tokens)
    assert settings.enforce_eager is eager


def test_explicit_dtype_wins_over_the_machine():
    settings = choose_engine_settings(ZEN4, EngineConfig(dtype="float32"), is_cpu=True)
    assert (settings.dtype, settings.reasons["dtype"]) == ("float32", "float32 (config)")


def test_gpu_keeps_vllm_defaults_whatever_the_cpu():
    settings = choose_engine_settings(AVX2_ONLY, EngineConfig(), is_cpu=False)
    assert (settings.dtype, settings.enforce_eager, settings.env) == ("auto", False, {})
    explicit = choose_engine_settings(AVX2_ONLY, EngineConfig(enforce_eager=True, cpu_threads_bind="0-1"), is_cpu=False)
    assert (explicit.enforce_eager, explicit.env) == (True, {})


def test_thread_settings_come_from_config_then_environment():
    default = choose_engine_settings(ZEN4, EngineConfig(), is_cpu=True)
    assert default.env == {}  # vLLM's own binding and reservation
    assert "1 of 2 cores" in default.reasons["cpu_reserved_cores"]
    configured = choose_engine_settings(ZEN4, EngineConfig(cpu_threads_bind="0-1", cpu_reserved_cores=0), is_cpu=True)
    assert configured.env == {"VLLM_CPU_OMP_THREADS_BIND": "0-1", "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}
    from_env = choose_engine_settings(ZEN4, EngineConfig(), is_cpu=True, environ={"VLLM_CPU_OMP_THREADS_BIND": "1"})
    assert from_env.env == {}
    assert from_env.reasons["cpu_threads_bind"] == "1 (environment VLLM_CPU_OMP_THREADS_BIND)"


def test_detect_reads_flags_of_a_cpuinfo_file(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16\n\nprocessor\t: 1\nflags\t\t: fpu avx2 avx512_bf16\n")
    features = CpuFeatures.detect(str(cpuinfo))
    assert features.flags == {"fpu", "avx2", "avx512_bf16"} and features.has_native_bf16
    assert features.n_cpus >= 1
    assert CpuFeatures.detect(str(tmp_path / "missing")).flags == frozenset()

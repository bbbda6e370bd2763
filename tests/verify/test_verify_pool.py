"""VerifierPool: real worker processes, hard timeouts, threads, cache, memory cap."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from mathforge.verify import VerifierPool, VerifyConfig, verify_answer

PAIRS = [
    ("42", "So the answer is 42."),
    (r"\frac{1}{2}", r"We get $\boxed{0.5}$."),
    ("x^2 - 1", r"The product is $(x-1)(x+1)$."),
    ("7", "I give up."),
    (r"[0, 3)", r"\boxed{[0, 3]}"),
    ("42", "So the answer is 42."),
]
# Numerical integration of a fast oscillation: seconds of honest SymPy work, no guard applies.
SLOW_PAIR = (r"\int_0^{40} \sin(x^{3}) \, dx", r"\boxed{\int_0^{40} \cos(x^{3}) \, dx}")


@pytest.fixture(scope="module")
def pool() -> Iterator[VerifierPool]:
    with VerifierPool(VerifyConfig(n_workers=2, timeout_s=10.0)) as started:
        yield started


def test_verify_many_matches_the_pure_function(pool: VerifierPool) -> None:
    assert pool.verify_many(PAIRS) == [verify_answer(reference, response) for reference, response in PAIRS]


def test_compare_many_takes_extracted_answers(pool: VerifierPool) -> None:
    verdicts = pool.compare_many([("3", "3.0"), ("3", "4"), ("x+1", "1+x")])
    assert [verdict.is_correct for verdict in verdicts] == [True, False, True]
    assert [verdict.extracted for verdict in verdicts] == ["3.0", "4", "1+x"]


def test_repeated_pairs_hit_the_cache(pool: VerifierPool) -> None:
    pairs = [("120", r"$5! = \boxed{120}$"), ("121", r"$5! = \boxed{120}$")]
    first = pool.verify_many(pairs)
    hits = pool.n_cache_hits
    assert pool.verify_many(pairs) == first
    assert pool.n_cache_hits == hits + 2


def test_calls_from_worker_threads(pool: VerifierPool) -> None:
    expected = pool.verify_many(PAIRS)
    with ThreadPoolExecutor(max_workers=3) as executor:
        results = list(executor.map(lambda _: pool.verify_many(PAIRS), range(3)))
    assert results == [expected] * 3


def test_stuck_worker_is_killed_and_replaced() -> None:
    config = VerifyConfig(n_workers=1, timeout_s=0.25)
    with VerifierPool(config) as pool:
        start = time.perf_counter()
        verdicts = pool.verify_many([("1", "The answer is 1."), SLOW_PAIR, ("2", "The answer is 2.")])
        elapsed = time.perf_counter() - start
        assert [(verdict.is_correct, verdict.reason) for verdict in verdicts] == [
            (True, "string_match"),
            (None, "timeout"),
            (True, "string_match"),
        ]
        assert pool.n_timeouts == 1
        assert elapsed < 5.0
        # The replacement worker keeps serving.
        assert pool.verify_many([("5", r"\boxed{5}")])[0].is_correct is True


def test_timeout_works_from_a_thread() -> None:
    config = VerifyConfig(n_workers=1, timeout_s=0.25)
    with VerifierPool(config) as pool, ThreadPoolExecutor(max_workers=1) as executor:
        verdict = executor.submit(pool.verify_many, [SLOW_PAIR]).result(timeout=30)[0]
    assert (verdict.is_correct, verdict.reason) == (None, "timeout")


def test_guards_answer_before_any_worker_runs(pool: VerifierPool) -> None:
    start = time.perf_counter()
    verdicts = pool.verify_many([("1", "x" * 1_000_000), ("1", r"\boxed{9^{9^{9}}}")])
    assert [verdict.reason for verdict in verdicts] == ["guard_response_too_long", "guard_power_tower"]
    assert time.perf_counter() - start < 2.0


def test_workers_run_under_the_memory_cap() -> None:
    with VerifierPool(VerifyConfig(n_workers=1, memory_mb=768)) as pool:
        limits = open(f"/proc/{pool._workers[0].process.pid}/limits").read()
        assert pool.compare_many([("x + 1", "1 + x")])[0].is_correct is True
    assert re.search(rf"Max address space\s+{768 * 1024 * 1024}\s+{768 * 1024 * 1024}\s+bytes", limits)


def test_spawn_context() -> None:
    with VerifierPool(VerifyConfig(n_workers=1, mp_context="spawn")) as pool:
        assert pool.verify_many([("6", r"\boxed{6}")])[0].is_correct is True

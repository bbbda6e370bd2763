"""DART sampling logic on the scripted generator: targets, caps, surplus, resume."""

import re

import pytest

from mathforge.generation.scripted import ScriptedGenerator, ScriptedProblem
from mathforge.records import Problem, Verdict
from mathforge.synthesis.dart import DartConfig, QueryState, run_dart, target_for, trials_to_request, wilson_interval


def boxed_verify(pairs):
    """A stand-in verifier for logic tests: last \\boxed{} equals the reference."""
    verdicts = []
    for reference, response in pairs:
        found = re.findall(r"\\boxed\{([^}]*)\}", response)
        if not found:
            verdicts.append(Verdict(is_correct=None, reason="no_answer_found"))
        else:
            verdicts.append(Verdict(is_correct=found[-1] == reference, reason="match" if found[-1] == reference else "mismatch", extracted=found[-1]))
    return verdicts


def _setup(rates):
    problems = [Problem(problem_id=f"q{i}", problem=f"Query {i}: find the total.", answer=str(100 + i), source="t") for i in range(len(rates))]
    generator = ScriptedGenerator(
        [ScriptedProblem(p.problem_id, p.problem, p.answer) for p in problems],
        pass_rate={p.problem_id: r for p, r in zip(problems, rates)},
        seed=11,
    )
    return problems, generator


def _run(problems, generator, config, **kwargs):
    return run_dart(problems, generator, boxed_verify, config, prompt_fn=lambda p: p.problem, **kwargs)


def test_uniform_reaches_k_exactly_and_keeps_surplus():
    problems, generator = _setup([0.9, 0.5, 0.2, 0.0])
    result = _run(problems, generator, DartConfig(strategy="uniform", k_uniform=3, n_max=64))
    info = {q.problem_id: q for q in result.query_info}
    kept = [s for s in result.accepted if not s.is_surplus]
    for pid in ("q0", "q1", "q2"):
        assert sum(s.problem_id == pid for s in kept) == 3
        assert info[pid].status == "solved" and info[pid].n_correct >= 3
        assert sum(s.problem_id == pid for s in result.accepted) == info[pid].n_correct  # surplus kept, not dropped
    assert info["q3"].status == "unsolved" and info["q3"].n_trials == 64
    assert all(s.verdict == "correct" for s in result.accepted)
    assert all(s.n_trials == info[s.problem_id].n_trials for s in result.accepted)


def test_capped_queries_are_reported():
    problems, generator = _setup([0.05])
    result = _run(problems, generator, DartConfig(strategy="uniform", k_uniform=8, n_max=20))
    (info,) = result.query_info
    assert info.n_trials == 20
    assert info.status in {"capped", "unsolved"}
    assert info.status == ("unsolved" if info.n_correct == 0 else "capped")


def test_vanilla_uses_fixed_trials():
    problems, generator = _setup([0.5, 0.5])
    result = _run(problems, generator, DartConfig(strategy="vanilla", n_vanilla=7))
    assert [q.n_trials for q in result.query_info] == [7, 7]
    assert result.n_rounds == 1


def test_prop2diff_targets_grow_with_difficulty():
    config = DartConfig(strategy="prop2diff", k_max=10, n_probe=8)
    easy = QueryState(n_trials=10, n_correct=9)
    hard = QueryState(n_trials=10, n_correct=1)
    assert target_for(easy, config) == 1
    assert target_for(hard, config) == 9
    assert target_for(QueryState(n_trials=10, n_correct=0), config) == 10
    problems, generator = _setup([0.95, 0.6, 0.3, 0.1])
    result = _run(problems, generator, config.model_copy(update={"n_max": 200}))
    targets = [q.target for q in result.query_info]
    assert targets == sorted(targets) and targets[0] < targets[-1]
    assert all(q.n_trials >= 8 for q in result.query_info)


def test_requests_follow_the_posterior_and_are_bounded():
    config = DartConfig(k_uniform=4, n_max=50, max_per_round=16)
    assert trials_to_request(QueryState(), config) == 4
    assert trials_to_request(QueryState(n_trials=4, n_correct=2), config) == 3  # need 2 at p_hat = 0.5: 30% quantile
    assert trials_to_request(QueryState(n_trials=40, n_correct=0), config) == 10  # room left
    assert trials_to_request(QueryState(n_trials=4, n_correct=0), config) == 16  # bounded per round


def test_killed_between_rounds_resumes_to_the_same_result():
    rates = [0.8, 0.4, 0.15, 0.02, 0.6]
    config = DartConfig(strategy="uniform", k_uniform=3, n_max=40)
    problems, generator = _setup(rates)
    uninterrupted = _run(problems, generator, config)

    committed = []

    class Killed(Exception):
        pass

    def commit_then_die(index, samples):
        committed.append(samples)
        if index == 1:
            raise Killed

    problems, generator = _setup(rates)
    with pytest.raises(Killed):
        _run(problems, generator, config, on_round=commit_then_die)
    problems, generator = _setup(rates)  # a new process: fresh generator
    resumed = _run(problems, generator, config, rounds_done=committed)
    assert resumed.query_info == uninterrupted.query_info
    assert [s.sample_id for s in resumed.accepted] == [s.sample_id for s in uninterrupted.accepted]
    assert len({s.sample_id for s in resumed.accepted}) == len(resumed.accepted)


def test_wilson_interval_contains_the_estimate():
    low, high = wilson_interval(3, 10)
    assert 0 < low < 0.3 < high < 1

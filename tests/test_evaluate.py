"""evaluate: pass@k, maj@k and greedy accuracy against hand-computed values from a scripted model."""

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from mathforge.benchmark_sets import load_benchmark_set
from mathforge.evaluate import (
    EvaluateConfig,
    Metric,
    evaluate_items,
    majority_credit,
    pass_at_k,
    run_evaluation,
    summarize,
)
from mathforge.generation import GenerationParams, ScriptedGenerator
from mathforge.generation.cache import CachedGenerator
from mathforge.synthesis.dart import wilson_interval
from mathforge.verify import VerifierPool, VerifyConfig

REPO = Path(__file__).resolve().parents[1]
MINI = REPO / "data" / "benchmarks" / "mini_math.jsonl"

# Greedy answers and four sampled answers per item of mini_math (None: a reply with no answer).
GREEDY = {"mini-01": "56", "mini-02": "4", "mini-03": r"\frac{5}{6}", "mini-04": "8", "mini-05": "3", "mini-06": None}
SAMPLES = {
    "mini-01": ["56", "56", "56", "56"],  # c=4
    "mini-02": ["4", "3", "3", "5"],  # c=1; maj@2 ties 4 vs 3; maj@4 loses to 3
    "mini-03": ["5/6", r"\frac{5}{6}", "1/6", None],  # c=2; the unanswered sample does not vote
    "mini-04": ["8", "8", "9", "6"],  # c=1; 8 wins
    "mini-05": ["3", "2", "3", "2"],  # c=2; maj@2 and maj@4 are 2-way ties
    "mini-06": [None, None, None, None],  # c=0
}


def _reply(answer):
    return "I cannot solve this." if answer is None else f"We compute carefully.\nThe answer is \\boxed{{{answer}}}."


@pytest.fixture(scope="module")
def mini():
    return load_benchmark_set(MINI)


@pytest.fixture(scope="module")
def pool():
    with VerifierPool(VerifyConfig(n_workers=1)) as verifier_pool:
        yield verifier_pool


def _scripted(bench):
    by_text = {item.problem: item.item_id for item in bench.items}

    def script(text, index, params: GenerationParams):
        item_id = next(i for problem, i in by_text.items() if problem in text)
        return _reply(GREEDY[item_id] if params.temperature == 0 else SAMPLES[item_id][index])

    return ScriptedGenerator(script=script, model_id="scripted-mini")


def _config(tmp_path, **overrides):
    data = {
        "benchmarks": [{"source": str(MINI)}],
        "generation": {"backend": "scripted"},
        "sampling": {"n": 4, "k": [1, 2, 4], "temperature": 0.8},
        "verification": {"n_workers": 1},
        "output_dir": str(tmp_path / "eval"),
    }
    return EvaluateConfig.model_validate(data | overrides)


@pytest.mark.parametrize(
    "n,c,k,expected",
    [(4, 1, 1, 0.25), (4, 1, 2, 0.5), (4, 2, 2, 5 / 6), (4, 0, 4, 0.0), (4, 3, 2, 1.0), (10, 3, 5, 1 - 21 / 252)],
    ids=["k1", "c1k2", "c2k2", "none-correct", "n-c<k", "n10"],
)
def test_pass_at_k_matches_the_combinatorial_formula(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected)


def test_pass_at_k_rejects_impossible_counts():
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 5)


def test_majority_ties_and_silent_samples():
    correct, wrong, silent = {"extracted": "5", "verdict": "correct"}, {"extracted": "7", "verdict": "incorrect"}, {"extracted": None, "verdict": "unjudgeable"}
    assert majority_credit([correct, wrong, wrong]) == ("7", 0.0)
    assert majority_credit([correct, wrong, silent, silent]) == ("5", 0.5)
    assert majority_credit([silent]) == (None, 0.0)
    assert majority_credit([wrong, {"extracted": " 7. ", "verdict": "incorrect"}, correct]) == ("7", 0.0)


def test_metrics_match_hand_computed_values(tmp_path, mini, pool):
    config = _config(tmp_path)
    results = evaluate_items(mini.items, _scripted(mini), pool, config)
    assert [r.n_correct for r in results] == [4, 1, 2, 1, 2, 0]
    assert [r.greedy_verdict for r in results] == ["correct"] * 3 + ["incorrect"] * 2 + ["unjudgeable"]
    groups = {g.group: g for g in summarize(results, (1, 2, 4))}
    overall = {name: metric.value for name, metric in groups["all"].metrics.items()}
    assert overall == pytest.approx(
        {
            "greedy": 3 / 6,
            "pass@1": 10 / 24,  # mean of c/n: (4+1+2+1+2+0)/4/6
            "pass@2": (1 + 0.5 + 5 / 6 + 0.5 + 5 / 6 + 0) / 6,  # 1 - C(4-c,2)/C(4,2) per item
            "pass@4": 5 / 6,
            "maj@1": 3 / 6,  # first samples: 56, 4, 5/6 right; 8, 3 wrong; none
            "maj@2": (1 + 0.5 + 1 + 0 + 0.5 + 0) / 6,
            "maj@4": (1 + 0 + 1 + 0 + 0.5 + 0) / 6,
        }
    )
    assert groups["all"].n_unjudgeable == 1
    assert groups["subject=Prealgebra"].metrics["greedy"].value == 1.0
    assert groups["subject=Number Theory"].metrics["greedy"].value == 0.0
    assert groups["level=1"].metrics["pass@2"].value == pytest.approx(0.75)
    assert [g.group for g in summarize(results, (1,))][-3:] == ["level=1", "level=2", "level=3"]
    assert (groups["all"].metrics["greedy"].low, groups["all"].metrics["greedy"].high) == wilson_interval(3, 6)


def test_fractional_scores_get_an_interval_around_the_mean():
    metric = Metric.of([0.5, 0.5, 1.0, 0.0])
    assert metric.value == 0.5 and 0.0 < metric.low < 0.5 < metric.high < 1.0


def test_cache_makes_a_rerun_free(tmp_path, mini, pool):
    config = _config(tmp_path)
    inner = _scripted(mini)
    first = evaluate_items(mini.items, CachedGenerator(inner, tmp_path / "cache.sqlite"), pool, config)
    requests = inner.usage.n_requests
    again = CachedGenerator(inner, tmp_path / "cache.sqlite")
    second = evaluate_items(mini.items, again, pool, config)
    assert inner.usage.n_requests == requests and again.usage.n_cached == 6 * 5
    assert first == second


def test_run_evaluation_writes_results_report_and_summary(tmp_path):
    config = _config(tmp_path, sampling={"n": 2, "k": [1, 2]})
    (evaluation,), _, _ = run_evaluation(config)
    table = pq.read_table(evaluation.results_path)
    assert table.num_rows == 6 and set(table.column("n_samples").to_pylist()) == {2}
    report = (tmp_path / "eval" / "report.md").read_text()
    assert "## mini_math" in report and "maj@2" in report and "subject=Algebra" in report
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["benchmarks"]["mini_math"]["groups"][0]["group"] == "all"


def test_a_cached_rerun_never_builds_the_backend(tmp_path, pool):
    from mathforge.evaluate import load_benchmarks, open_generator

    config = _config(tmp_path, sampling={"n": 2, "k": [1, 2]})
    run_evaluation(config)
    (bench,) = load_benchmarks(config)
    generator = open_generator(config, bench.items)
    again = evaluate_items(bench.items, generator, pool, config)
    assert not generator.inner.is_built and generator.usage.n_cached == 6 * 3
    first = pq.read_table(tmp_path / "eval" / "mini_math" / "results.parquet")
    assert [r.samples_json for r in again] == first.column("samples_json").to_pylist()


def test_config_rejects_k_above_n_and_unknown_keys(tmp_path):
    with pytest.raises(ValueError, match="k must be <= n"):
        _config(tmp_path, sampling={"n": 2, "k": [4]})
    with pytest.raises(ValueError, match="extra"):
        _config(tmp_path, mystery=1)


def test_flow_writes_results_and_publishes_artifacts(prefect_harness, tmp_path):
    import yaml
    from prefect.client.orchestration import get_client

    from flows.evaluate import evaluate

    config = _config(tmp_path, name="mini-eval")
    path = tmp_path / "eval.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    (result,) = evaluate(str(path))
    assert pq.read_table(result.results_path).num_rows == 6
    with get_client(sync_client=True) as client:
        keys = {artifact.key for artifact in client.read_artifacts()}
    assert {"mini-eval-report", "mini-eval-mini-math"} <= keys


@pytest.mark.parametrize(
    "text,message",
    [
        ("benchmarks: [{source: /no/such/bench.jsonl}]\ngeneration: {backend: scripted}\n", "benchmark file not found"),
        ("benchmarks: [{source: x, limt: 3}]\ngeneration: {backend: scripted}\n", "benchmarks.0.limt"),
    ],
    ids=["missing-file", "unknown-key"],
)
def test_cli_refuses_a_bad_config_before_starting_anything(tmp_path, text, message):
    from typer.testing import CliRunner

    from mathforge.cli import app

    path = tmp_path / "bad.yaml"
    path.write_text(text)
    result = CliRunner().invoke(app, ["evaluate", str(path)])
    assert result.exit_code == 2 and message in result.output.replace("\n", "")


def test_with_tools_the_models_code_runs_and_its_output_is_shown_as_a_tool_turn(tmp_path, mini, pool):
    from mathforge.sandbox import SandboxConfig, SandboxPool

    programs = {"mini-01": "print(7 * 8)", "mini-02": "print(2 + 1)"}  # mini-02's reference is 4: a wrong program
    by_text = {item.problem: item.item_id for item in mini.items}
    seen = []

    def script(text, index, params):
        seen.append(text)
        item_id = next(i for problem, i in by_text.items() if problem in text)
        if item_id not in programs:
            return "I cannot solve this."
        if "Let me compute." not in text:  # the model's first turn
            return f"Let me compute.\n```python\n{programs[item_id]}\n```\n"
        return f"The answer is \\boxed{{{text.rstrip().splitlines()[-1]}}}."  # the last line shown: the tool output

    config = _config(tmp_path, sampling={"n": 0}, tools={"max_rounds": 2}, prompt={"name": "solve_with_code"})
    with SandboxPool(SandboxConfig(n_workers=1)) as sandbox:
        results = evaluate_items(mini.items, ScriptedGenerator(script=script), pool, config, sandbox)

    assert [r.greedy_verdict for r in results][:2] == ["correct", "incorrect"]
    assert results[0].greedy_response == "Let me compute.\n```python\nprint(7 * 8)\n```\n```output\n56\n```\nThe answer is \\boxed{56}."
    assert results[1].greedy_extracted == "3" and results[2].greedy_finish_reason == "stop"
    # The continuation shows the output as its own (tool) message, not as fenced text inside the assistant's.
    assert any(text.endswith("print(7 * 8)\n```\n\n56\n") for text in seen) and not any("```output\n56" in text for text in seen)
    with pytest.raises(ValueError, match="sandbox"):
        evaluate_items(mini.items, ScriptedGenerator(script=script), pool, config)


def test_tool_continuations_on_vllm_are_rendered_with_the_chat_template_without_starting_an_engine(tmp_path, mini):
    from mathforge.evaluate import open_generator
    from mathforge.generation.embedded import ModelNotAvailable, load_tokenizer

    try:
        tokenizer = load_tokenizer("embedded:smollm2-135m-instruct")
    except ModelNotAvailable as error:
        pytest.skip(f"embedded model unavailable: {error}")
    config = _config(tmp_path, generation={"backend": "vllm", "model": "embedded:smollm2-135m-instruct"}, tools={})
    generator = open_generator(config, mini.items)
    messages = [{"role": "user", "content": "What is 6 times 7?"}, {"role": "assistant", "content": "```python\nprint(42)\n```\n"}, {"role": "tool", "content": "42"}]
    # Without it the tool loop would fall back to joining message texts: no chat template at all.
    assert generator.render(messages) == tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert generator.render(messages).endswith("<|im_start|>tool\n42<|im_end|>\n<|im_start|>assistant\n")
    assert not generator.inner.is_built

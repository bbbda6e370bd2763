"""The composed selection stage: config parsing and steps applied in sequence."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from mathforge.conversation import row_conversation
from mathforge.generation.scripted import ScriptedGenerator, ScriptedProblem
import pyarrow as pa

from mathforge.records import QUERY_INFO_SCHEMA, REJECTED_SCHEMA
from mathforge.select import Budget, GrapeStep, KMeansStep, S2LStep, SelectConfig, select
from mathforge.select.s2l import write_trajectories

CONVERSATION = functools.partial(row_conversation, prompt_by_strategy={}, default_prompt="solve_cot", system_prompt=None)
TOPICS = ["apples in boxes", "train speed over distance", "area of a rectangle", "probability of dice"]


def test_config_parses_steps_by_method():
    config = SelectConfig.model_validate(
        {
            "steps": [
                {"method": "grape", "per_problem": 2},
                {"method": "kmeans", "budget": {"tokens": 5000}, "within": "quality", "temperature": 0.5},
                {"method": "s2l", "budget": {"rows": 10}, "proxy": {"n_layers": 2, "epochs": 1}},
            ],
            "seed": 3,
        }
    )
    assert [type(step) for step in config.steps] == [GrapeStep, KMeansStep, S2LStep]
    assert config.steps[1].budget == Budget(tokens=5000)
    assert config.steps[2].proxy.n_layers == 2


@pytest.mark.parametrize(
    "steps",
    [
        [],
        [{"method": "dedup", "budget": {"rows": 1}}],
        [{"method": "kmeans"}],
        [{"method": "kmeans", "budget": {"rows": 1, "tokens": 1}}],
        [{"method": "kmeans", "budget": {"rows": 1}, "clusters": 4}],
        [{"method": "s2l", "budget": {"rows": 1}, "proxy": {"epochs": 0}}],
    ],
    ids=["no_steps", "unknown_method", "no_budget", "two_budgets", "unknown_key", "zero_epochs"],
)
def test_config_errors(steps):
    with pytest.raises(ValidationError):
        SelectConfig.model_validate({"steps": steps})


def samples(make_samples):
    """Four topics x three problems x three responses, two of them correct."""
    rows, problems = [], []
    for t, topic in enumerate(TOPICS):
        for p in range(3):
            problem = f"A question about {topic}, number {p}: what is {t} + {p}?"
            problem_id = f"t{t}p{p}"
            problems.append(ScriptedProblem(problem_id, problem, str(t + p)))
            for r in range(3):
                rows.append(
                    {
                        "sample_id": f"{problem_id}r{r}",
                        "problem_id": problem_id,
                        "problem": problem,
                        "response": f"Reasoning {r} about {topic}. \\boxed{{{t + p}}}" + " Again." * r,
                        "verdict": "correct" if r < 2 else "incorrect",
                    }
                )
    return make_samples(rows), problems


def test_grape_then_kmeans(make_samples, tmp_path: Path):
    table, problems = samples(make_samples)
    config = SelectConfig(
        steps=[GrapeStep(per_problem=1), KMeansStep(budget=Budget(rows=4), n_clusters=4)], embedding_cache_dir=tmp_path
    )
    result = select(table, config, scorer=ScriptedGenerator(problems), conversation=CONVERSATION)
    assert result.counts == {"kept": 4, "grape_not_best": 12, "not_correct": 12, "not_selected": 8}
    assert set(result.table.column("selected_by").to_pylist()) == {"grape+kmeans"}
    # GRAPE's score survives the k-means step; selection_score is the last selector's.
    assert result.table.column("loglik_per_token").null_count == 0
    assert result.table.column("selection_score").to_pylist() != result.table.column("loglik_per_token").to_pylist()
    # One problem per topic: the four topics are the four clusters.
    assert sorted(pid[:2] for pid in result.table.column("problem_id").to_pylist()) == ["t0", "t1", "t2", "t3"]
    assert result.rejected.schema == REJECTED_SCHEMA
    assert result.rejected.num_rows == table.num_rows - 4
    assert set(result.rejected.column("stage").to_pylist()) == {"select.grape", "select.kmeans"}
    assert result.stats["1.kmeans.kept"] == 4


def test_kmeans_then_s2l_from_file(make_samples, tmp_path: Path):
    table, _ = samples(make_samples)
    ids = table.column("sample_id").to_pylist()
    trajectories = np.array([[1.0 + (i % 3), 0.5 + (i % 3)] for i in range(len(ids))], dtype=np.float32)
    write_trajectories(tmp_path / "t.parquet", ids, trajectories)
    config = SelectConfig(
        steps=[
            KMeansStep(budget=Budget(rows=24), n_clusters=4, text="response"),
            S2LStep(budget=Budget(rows=6), n_clusters=3, trajectories=tmp_path / "t.parquet"),
        ],
        embedding_cache_dir=tmp_path,
    )
    result = select(table, config)
    assert result.counts == {"kept": 6, "not_selected": 30}
    assert set(result.table.column("selected_by").to_pylist()) == {"kmeans+s2l"}
    assert sorted(int(s[-1]) for s in result.table.column("sample_id").to_pylist()) == [0, 0, 1, 1, 2, 2]


@pytest.mark.parametrize(
    "last_step, error",
    [(GrapeStep(), ValueError), (S2LStep(budget=Budget(rows=1), trajectories=Path("/nonexistent.parquet")), FileNotFoundError)],
    ids=["grape_without_scorer", "missing_trajectories"],
)
def test_unrunnable_steps_fail_before_any_work(make_samples, tmp_path: Path, last_step, error):
    table, _ = samples(make_samples)
    config = SelectConfig(steps=[KMeansStep(budget=Budget(rows=2)), last_step], embedding_cache_dir=tmp_path)
    with pytest.raises(error):
        select(table, config)
    assert not (tmp_path / "embeddings.sqlite").exists()


def test_missing_quality_column_fails_before_embedding(make_samples, tmp_path: Path):
    table, _ = samples(make_samples)
    config = SelectConfig(
        steps=[KMeansStep(budget=Budget(rows=2), within="quality", quality_column="pass_rate")], embedding_cache_dir=tmp_path
    )
    with pytest.raises(ValueError, match="nulls"):
        select(table, config)
    assert not (tmp_path / "embeddings.sqlite").exists()


def test_grape_following_dart_keeps_dart_counts_and_reports_the_difficulty_shift(make_samples):
    table, problems = samples(make_samples)
    # Per problem: pass rate and DART's accepted count (one model); t0p0 is hard and earned 2, the rest 1.
    info = [
        {"problem_id": p.problem_id, "n_trials": 10, "n_correct": 1 if p.problem_id == "t0p0" else 9,
         "pass_rate": 0.1 if p.problem_id == "t0p0" else 0.9, "pass_rate_low": 0.0, "pass_rate_high": 1.0,
         "target": 2 if p.problem_id == "t0p0" else 1, "n_rounds": 1, "status": "solved"}
        for p in problems
    ]
    # A second model's run on t0p0 accepted 2 of 2 more (its counts pool into the pass rate: 3/20).
    info.append({**info[0], "n_correct": 2, "target": 2})
    query_info = pa.Table.from_pylist(info, schema=QUERY_INFO_SCHEMA)
    config = SelectConfig(steps=[GrapeStep()])
    result = select(table, config, scorer=ScriptedGenerator(problems), conversation=CONVERSATION, query_info=query_info)
    kept = result.table.column("problem_id").to_pylist()
    assert kept.count("t0p0") == 2 and all(kept.count(p.problem_id) == 1 for p in problems[1:])
    by_bucket = {row["pass_rate"]: row for row in result.difficulty}
    assert by_bucket["0.1–0.3"] == {"pass_rate": "0.1–0.3", "problems_before": 1, "rows_before": 3, "problems_after": 1, "rows_after": 2}
    assert by_bucket["0.9–1"] == {"pass_rate": "0.9–1", "problems_before": 11, "rows_before": 33, "problems_after": 11, "rows_after": 11}
    with pytest.raises(ValueError, match="query_info"):
        select(table, config, scorer=ScriptedGenerator(problems), conversation=CONVERSATION)


def test_grape_steps_must_share_one_target():
    with pytest.raises(ValidationError, match="target_model"):
        SelectConfig.model_validate(
            {"steps": [{"method": "grape", "target_model": {"backend": "scripted", "model": "a"}}, {"method": "grape"}]}
        )

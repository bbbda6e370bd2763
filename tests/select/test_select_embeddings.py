"""Embeddings with the real packaged all-MiniLM-L6-v2, offline, and the on-disk cache."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from mathforge.select.embeddings import CACHE_FILE, embed_texts, embedding_texts, load_encoder

TEXTS = [
    "What is two plus two?",
    "Compute the sum of 2 and 2.",
    "The capital of France is Paris.",
    "What is two plus two?",
]


def test_packaged_model_embeds_meaningfully(tmp_path: Path):
    vectors = embed_texts(TEXTS, cache_dir=tmp_path)
    assert vectors.shape == (4, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similarity = vectors @ vectors.T
    assert similarity[0, 1] > similarity[0, 2] + 0.2
    assert np.array_equal(vectors[0], vectors[3])


def test_cached_texts_are_not_encoded_again(tmp_path: Path):
    first = embed_texts(TEXTS, cache_dir=tmp_path, batch_size=2)
    with sqlite3.connect(tmp_path / CACHE_FILE) as db:
        assert db.execute("SELECT COUNT(*) FROM embedding").fetchone() == (3,)
    load_encoder.cache_clear()
    again = embed_texts(list(reversed(TEXTS)), cache_dir=tmp_path)
    # Everything came from the cache: the model was not even loaded.
    assert load_encoder.cache_info().currsize == 0
    assert np.array_equal(again, first[::-1])


def test_unknown_models_are_errors(tmp_path: Path):
    with pytest.raises(ValueError, match="unknown embedded"):
        embed_texts(["x"], model="embedded:bge-large", cache_dir=tmp_path)
    with pytest.raises(FileNotFoundError):
        embed_texts(["x"], model=str(tmp_path / "nowhere"), cache_dir=tmp_path)


def test_embedding_texts_per_choice(make_samples):
    table = make_samples([{"sample_id": "s", "problem_id": "p", "problem": "Q?", "response": "A."}])
    assert embedding_texts(table, "problem") == ["Q?"]
    assert embedding_texts(table, "response") == ["A."]
    assert embedding_texts(table, "problem_response") == ["Q?\n\nA."]
    with pytest.raises(ValueError):
        embedding_texts(table, "answer")  # type: ignore[arg-type]

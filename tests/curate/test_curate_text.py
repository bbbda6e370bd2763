"""Normalization, tokenization and n-gram hashing shared by dedup and decontamination."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from mathforge.curate.text import gram_hashes, normalize_texts, shingle_sets, tokenize


def test_normalize_folds_case_width_and_whitespace_but_keeps_operators() -> None:
    texts = ["  What  is\n2+3? ", "ＷＨＡＴ is 2+3?", "what is 2-3?", None]
    assert normalize_texts(texts).to_pylist() == ["what is 2+3?", "what is 2+3?", "what is 2-3?", ""]


def test_tokenize_splits_on_non_letters_and_handles_empty_texts() -> None:
    tokens = tokenize(["What is 3/4 of $20?", "", "Café x²", "数学 题"])
    assert tokens.words.to_pylist() == ["what", "is", "3", "4", "of", "20", "café", "x2", "数学", "题"]
    assert tokens.offsets.tolist() == [0, 6, 6, 8, 10]


def test_ascii_and_unicode_texts_are_tokenized_alike() -> None:
    # ASCII texts take a byte-table path, others a regex: both must split and fold the same way.
    ascii_text, unicode_text = "Tom_has 3,500 APPLES (x+y)!", "Tom_has 3,500 APPLES (x+y)! É"
    assert tokenize([ascii_text]).words.to_pylist() + ["é"] == tokenize([unicode_text]).words.to_pylist()


def test_gram_hashes_are_equal_for_equal_sequences_across_batches_and_never_cross_texts() -> None:
    first = tokenize(["alpha beta gamma delta"])
    second = tokenize(["zeta alpha beta gamma", "beta gamma delta"])
    first_grams = {length: (hashes.copy(), fits.copy()) for length, hashes, fits in gram_hashes(first, 3)}
    second_grams = {length: (hashes.copy(), fits.copy()) for length, hashes, fits in gram_hashes(second, 3)}
    # "alpha beta gamma" starts at token 0 of the first batch and token 1 of the second.
    assert first_grams[3][0][0] == second_grams[3][0][1]
    # Windows that would run from the first text of the batch into the second do not fit.
    assert second_grams[3][1].tolist() == [True, True, False, False, True]
    assert first_grams[2][0][0] != tokenize(["beta alpha"]).hashes[0]  # order matters


def test_shingle_sets_are_sorted_unique_with_one_shingle_for_short_texts() -> None:
    shingles, offsets = shingle_sets(tokenize(["a b a b a b", "a b", ""]), 2)
    assert offsets.tolist() == [0, 2, 3, 3]  # {ab, ba}, {ab}, nothing
    first = shingles[offsets[0] : offsets[1]]
    assert np.all(first[1:] > first[:-1])
    assert shingles[2] in first  # "a b" alone is the shingle "a b"


def test_gram_hashes_rejects_bad_lengths() -> None:
    with pytest.raises(ValueError, match="n must be"):
        next(gram_hashes(tokenize(pa.array(["a"])), 0))

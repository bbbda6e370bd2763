"""Measure near-duplicate detection on a planted set: precision and recall per threshold and shingle size.

The planted set: distinct grade-school problems (GSM8K's questions when
/work/shared/data/gsm8k is there, else generated ones), lightly edited and
paraphrased copies of some of them (typos, case, punctuation, dropped or
added words, synonyms, swapped sentences, renamed people), and variants
that are distinct problems and must be kept: other numbers, or the same setup
with another question. Rows are shuffled; the earliest row of a group of copies is the
one to keep.

A dropped row counts as a true positive when the row it duplicates comes
from the same original, as a false positive otherwise; a planted copy that
is kept is a false negative. The baseline in the same run is datasketch's
own per-row `MinHash.update_batch`: the signatures must be equal and the
speed ratio is printed.

    python benchmarks/dedup_quality.py [--n-distinct 2000] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
from datasketch import MinHash

from mathforge.curate import dedup_exact, dedup_near
from mathforge.curate.dedup import (
    DEFAULT_PROBLEM_THRESHOLD,
    DEFAULT_PROBLEM_SHINGLE_SIZE,
    fold_to_32_bits,
    minhash_signatures,
)
from mathforge.curate.text import shingle_sets, tokenize

GSM8K_DIR = Path("/work/shared/data/gsm8k")
THRESHOLDS = (0.6, 0.7, 0.75, 0.77, 0.8, 0.85, 0.9)
SHINGLE_SIZES = (1, 2, 3)

SYNONYMS = {
    "buys": "purchases",
    "bought": "purchased",
    "has": "owns",
    "have": "possess",
    "how many": "what number of",
    "how much": "what amount",
    "total": "overall",
    "each": "every",
    "gives": "hands",
    "gave": "handed",
    "wants": "would like",
    "makes": "earns",
    "store": "shop",
    "money": "cash",
    "friends": "pals",
    "needs": "requires",
    "left": "remaining",
    "per": "for each",
    "day": "daily period",
    "week": "7-day week",
}
NAMES = ("Janet", "Maria", "Tom", "James", "Sarah", "John", "Emily", "Carlos", "Aisha", "Wei")
FILLERS = ("Please solve: ", "Question: ", "Here is a problem. ", "Solve the following. ")


def generated_problems(n: int, rng: random.Random) -> list[str]:
    """Return n distinct templated word problems (used when GSM8K is not available)."""
    items = ("apples", "pencils", "stickers", "marbles", "books", "cookies", "cards", "shells", "coins", "toys")
    places = ("market", "school", "park", "library", "bakery", "farm", "zoo", "beach")
    templates = (
        "{a} has {x} {i}. {b} gives {a} {y} more {i} at the {p}. How many {i} does {a} have now?",
        "At the {p}, {a} buys {x} bags of {i} with {y} {i} in each bag. How many {i} did {a} buy in total?",
        "{a} had {x} {i} and lost {y} of them on the way to the {p}. Then {b} found {z} {i}. How many {i} are left with {a}?",
        "A box holds {x} {i}. {a} fills {y} boxes and {b} fills {z} boxes for the {p}. How many {i} do they pack together?",
        "{a} reads {x} pages of a book about {i} every day. After {y} days at the {p}, how many pages has {a} read?",
        "Tickets to the {p} cost ${x} for adults and ${y} for children. {a} buys {z} adult tickets and 2 child tickets. What is the total cost?",
        "{a} saves ${x} a week to buy {i}. Each one costs ${y}. After {z} weeks, how many {i} can {a} afford?",
    )
    seen: set[str] = set()
    while len(seen) < n:
        names = rng.sample(NAMES, 2)
        text = rng.choice(templates).format(
            a=names[0],
            b=names[1],
            i=rng.choice(items),
            p=rng.choice(places),
            x=rng.randint(2, 99),
            y=rng.randint(2, 99),
            z=rng.randint(2, 30),
        )
        seen.add(text)
    return sorted(seen)


def load_distinct(n: int, rng: random.Random) -> tuple[list[str], str]:
    """Return n distinct problems and where they came from."""
    if GSM8K_DIR.exists():
        questions = []
        for name in ("test.jsonl", "train.jsonl"):
            with open(GSM8K_DIR / name, encoding="utf-8") as handle:
                questions.extend(json.loads(line)["question"] for line in handle)
        unique = sorted(set(questions))
        return rng.sample(unique, n), "gsm8k questions"
    return generated_problems(n, rng), "generated templates"


def _swap_letters(text: str, rng: random.Random) -> str:
    words = text.split(" ")
    long_words = [i for i, w in enumerate(words) if len(w) > 3 and w.isalpha()]
    if not long_words:
        return text
    i = rng.choice(long_words)
    w = words[i]
    j = rng.randrange(len(w) - 1)
    words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2 :]
    return " ".join(words)


def _drop_word(text: str, rng: random.Random) -> str:
    words = text.split(" ")
    candidates = [i for i, w in enumerate(words) if not re.search(r"\d", w)]
    if len(words) < 6 or not candidates:
        return text
    del words[rng.choice(candidates)]
    return " ".join(words)


def _synonyms(text: str, rng: random.Random) -> str:
    found = [k for k in SYNONYMS if re.search(rf"\b{k}\b", text, flags=re.IGNORECASE)]
    for key in rng.sample(found, min(len(found), 2)):
        text = re.sub(rf"\b{key}\b", SYNONYMS[key], text, count=1, flags=re.IGNORECASE)
    return text


def _swap_sentences(text: str, rng: random.Random) -> str:
    sentences = re.split(r"(?<=[.!])\s+", text)
    if len(sentences) < 3:
        return text
    i = rng.randrange(len(sentences) - 2)
    sentences[i], sentences[i + 1] = sentences[i + 1], sentences[i]
    return " ".join(sentences)


def _rename(text: str, rng: random.Random) -> str:
    capitalized = [
        w
        for w in re.findall(r"\b[A-Z][a-z]+\b", text)
        if w not in {"How", "What", "If", "The", "A", "He", "She", "Each", "In", "On", "At", "After", "Then", "Tickets"}
    ]
    if not capitalized:
        return text
    old = rng.choice(capitalized)
    return re.sub(rf"\b{old}\b", rng.choice([n for n in NAMES if n != old]), text)


EDITS = {
    "lowercase": lambda t, rng: t.lower(),
    "strip_punctuation": lambda t, rng: re.sub(r"[,;:!?]", "", t),
    "whitespace": lambda t, rng: re.sub(r" ", lambda m: "  " if rng.random() < 0.2 else " ", t).replace(". ", ".\n", 1),
    "typo": _swap_letters,
    "drop_word": _drop_word,
    "add_filler": lambda t, rng: rng.choice(FILLERS) + t,
    "synonyms": _synonyms,
    "swap_sentences": _swap_sentences,
    "rename": _rename,
}


def planted_copy(text: str, rng: random.Random) -> str:
    """Apply 2 or 3 random edits (light edits and paraphrases) that keep the problem the same."""
    for name in rng.sample(sorted(EDITS), rng.choice((2, 3))):
        text = EDITS[name](text, rng)
    return text


def number_variant(text: str, rng: random.Random) -> str | None:
    """Change one or two numbers: a different problem that reads almost the same."""
    numbers = list(re.finditer(r"\d+", text))
    if not numbers:
        return None
    chosen = {m.start() for m in rng.sample(numbers, min(2, len(numbers)))}
    return re.sub(r"\d+", lambda m: str(int(m.group()) + rng.randint(1, 9)) if m.start() in chosen else m.group(), text)


def question_variant(text: str, questions: list[str], rng: random.Random) -> str | None:
    """Replace the final question by another one without numbers: same setup and numbers, different problem."""
    sentences = re.split(r"(?<=[.!?])\s+", text.strip())
    if len(sentences) < 2:
        return None
    return " ".join(sentences[:-1] + [rng.choice(questions)])


def planted_set(n_distinct: int, seed: int) -> tuple[pa.Table, np.ndarray, str]:
    """Return a shuffled problem table, each row's group (its original) and the source of the originals."""
    rng = random.Random(seed)
    originals, origin = load_distinct(n_distinct, rng)
    texts, groups = list(originals), list(range(n_distinct))
    for index in rng.sample(range(n_distinct), n_distinct * 3 // 10):
        for _ in range(rng.choice((1, 1, 2))):
            texts.append(planted_copy(originals[index], rng))
            groups.append(index)
    questions = [
        sentence
        for text in originals
        for sentence in re.split(r"(?<=[.!?])\s+", text.strip())[-1:]
        if sentence.endswith("?") and not re.search(r"\d", sentence)
    ]
    for index in rng.sample(range(n_distinct), n_distinct // 5):
        if index % 2:
            variant = number_variant(originals[index], rng)
        else:
            variant = question_variant(originals[index], questions, rng)
        if variant is not None:
            texts.append(variant)
            groups.append(n_distinct + len(texts))  # a distinct problem: its own group
    order = list(range(len(texts)))
    rng.shuffle(order)
    table = pa.table({"problem_id": [f"p{i}" for i in range(len(order))], "problem": [texts[i] for i in order]})
    return table, np.array([groups[i] for i in order]), origin


def score(table: pa.Table, groups: np.ndarray, **dedup_args: object) -> dict[str, float]:
    """Run exact then near dedup and return precision, recall and counts."""
    row_of = {pid: i for i, pid in enumerate(table.column("problem_id").to_pylist())}
    exact = dedup_exact(table)
    near = dedup_near(exact.kept, **dedup_args)
    rejected = pa.concat_tables([exact.rejected, near.rejected]).to_pylist()
    true_positive = false_positive = 0
    for row in rejected:
        kept = json.loads(row["detail"])["duplicate_of_problem"]
        if groups[row_of[row["row_id"]]] == groups[row_of[kept]]:
            true_positive += 1
        else:
            false_positive += 1
    _, first = np.unique(groups, return_index=True)
    positives = len(groups) - len(first)
    dropped = true_positive + false_positive
    return {
        "precision": true_positive / dropped if dropped else 1.0,
        "recall": true_positive / positives,
        "dropped": dropped,
        "false_positives": false_positive,
        "positives": positives,
    }


def compare_with_datasketch(
    texts: list[str], shingle_size: int, num_perm: int = 128, seed: int = 1
) -> tuple[bool, float]:
    """Return whether our signatures equal datasketch's per-row ones, and our speed-up."""
    start = time.perf_counter()
    ours = minhash_signatures(texts, shingle_size=shingle_size, num_perm=num_perm, seed=seed)
    ours_s = time.perf_counter() - start
    shingles, offsets = shingle_sets(tokenize(texts), shingle_size)
    values = fold_to_32_bits(shingles).tolist()
    start = time.perf_counter()
    theirs = []
    for i in range(len(texts)):
        sketch = MinHash(num_perm=num_perm, seed=seed, hashfunc=int)
        sketch.update_batch(values[offsets[i] : offsets[i + 1]])
        theirs.append(sketch.hashvalues)
    theirs_s = time.perf_counter() - start
    return bool(np.array_equal(ours, np.array(theirs))), theirs_s / ours_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-distinct", type=int, default=2000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="planted sets; the grid uses the first")
    args = parser.parse_args()
    table, groups, origin = planted_set(args.n_distinct, args.seeds[0])
    print(
        f"planted set: {table.num_rows} rows from {args.n_distinct} {origin}; "
        f"{len(groups) - len(np.unique(groups))} planted duplicates, "
        f"{args.n_distinct // 5} number or question variants (distinct)"
    )
    print(f"{'shingle':>7} {'threshold':>9} {'precision':>9} {'recall':>7} {'dropped':>7} {'false+':>6}")
    default_point = (DEFAULT_PROBLEM_SHINGLE_SIZE, DEFAULT_PROBLEM_THRESHOLD)
    for shingle_size in SHINGLE_SIZES:
        for threshold in THRESHOLDS:
            result = score(table, groups, problem_threshold=threshold, problem_shingle_size=shingle_size)
            marker = "  <- default" if (shingle_size, threshold) == default_point else ""
            print(
                f"{shingle_size:>7} {threshold:>9.2f} {result['precision']:>9.3f} {result['recall']:>7.3f} "
                f"{result['dropped']:>7} {result['false_positives']:>6}{marker}"
            )
    ablation = score(table, groups, require_same_numbers=False)
    print(
        f"default without the same-numbers rule: precision={ablation['precision']:.3f} recall={ablation['recall']:.3f}"
    )
    is_equal, speedup = compare_with_datasketch(table.column("problem").to_pylist(), DEFAULT_PROBLEM_SHINGLE_SIZE)
    print(
        f"signatures equal to datasketch MinHash.update_batch per row: {is_equal}; vectorized speed-up x{speedup:.1f}"
    )
    scores = []
    for seed in args.seeds:
        table, groups, _ = planted_set(args.n_distinct, seed)
        scores.append(score(table, groups))
        print(
            f"default on planted set {seed}: precision={scores[-1]['precision']:.3f} recall={scores[-1]['recall']:.3f}"
        )
    print(
        f"precision={min(s['precision'] for s in scores):.3f} recall={min(s['recall'] for s in scores):.3f} "
        f"(worst of {len(scores)} planted sets) threshold={DEFAULT_PROBLEM_THRESHOLD} "
        f"shingle_size={DEFAULT_PROBLEM_SHINGLE_SIZE} datasketch_equal={is_equal} speedup={speedup:.1f}"
    )


if __name__ == "__main__":
    main()

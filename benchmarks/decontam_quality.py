"""Measure decontamination on planted benchmark copies: recall per layer and kind, false flags on GSM8K train.

The planted set is built here from real test items (/work/shared/data):
`--per-benchmark` items drawn (seeded) from MATH-500 and from GSM8K test,
each planted four ways with `mathforge.curate.rewrites`:

- ``verbatim``: the item as is;
- ``numbers``: every number changed (`change_numbers`), as template synthesis does;
- ``reworded``: fixed synonym table, swapped names, question moved first (`reword`);
- ``reworded_numbers``: both.

They are mixed into GSM8K train problems (all of them by default), which are
not copies of any test item: a train row that a layer flags is a false flag.
Every layer runs on every row on its own (recall of each layer), and the
stack flags a row when any layer does (what `decontaminate` drops). A planted
row counts as recalled only when the item it matched is the item it was built
from. Also printed: the embedding layer's recall and false-flag rate at other
thresholds (how the default threshold was chosen), and the flagged train rows.

    python benchmarks/decontam_quality.py [--per-benchmark 150] [--n-train 0 (all)] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

from mathforge.benchmark_sets import load_benchmark_set
from mathforge.curate import DecontaminationConfig, Decontaminator
from mathforge.curate.retrieval import EmbeddingIndex
from mathforge.curate.rewrites import change_numbers, reword

DATA = Path("/work/shared/data")
BENCHMARKS = (DATA / "math500" / "test.jsonl", DATA / "gsm8k" / "test.jsonl")
TRAIN = DATA / "gsm8k" / "train.jsonl"
KINDS = {
    "verbatim": lambda text: text,
    "numbers": change_numbers,
    "reworded": reword,
    "reworded_numbers": lambda text: change_numbers(reword(text)),
}
LAYERS = ("exact", "ngram", "ngram_masked", "embedding")
THRESHOLDS = (0.80, 0.83, 0.85, 0.87, 0.88, 0.90, 0.92, 0.95)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-benchmark", type=int, default=150, help="Items planted from each benchmark.")
    parser.add_argument("--n-train", type=int, default=0, help="GSM8K train rows mixed in (0: all).")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    missing = [str(p) for p in (*BENCHMARKS, TRAIN) if not p.exists()]
    if missing:
        sys.exit(f"decontam_quality needs the real data sets, missing: {', '.join(missing)}")

    benchmarks = [load_benchmark_set(path, require_answer=False) for path in BENCHMARKS]
    rng = random.Random(args.seed)
    planted: list[tuple[str, str, str]] = []  # (kind, source item id, text)
    for benchmark in benchmarks:
        for item in rng.sample(list(benchmark.items), min(args.per_benchmark, len(benchmark.items))):
            for kind, rewrite in KINDS.items():
                planted.append((kind, item.item_id, rewrite(item.problem)))
    train = [json.loads(line)["question"] for line in TRAIN.open(encoding="utf-8")]
    if args.n_train:
        train = rng.sample(train, min(args.n_train, len(train)))
    texts = [text for _, _, text in planted] + train
    order = list(range(len(texts)))
    rng.shuffle(order)  # mixed: the layers see planted copies among train rows
    mixed = [texts[i] for i in order]
    print(f"rows: {len(planted)} planted ({len(planted) // len(KINDS)} per kind) + {len(train)} GSM8K train")

    config = DecontaminationConfig()
    flags: dict[str, np.ndarray] = {}
    matched_item: dict[str, list[str | None]] = {}
    cosines = None
    for layer in LAYERS:
        started = time.perf_counter()
        checker = Decontaminator(benchmarks, config.model_copy(update={"layers": (layer,)}))
        if layer == "embedding":
            # The layer's rule (nearest item, cosine >= threshold), with the cosines kept for the sweep below.
            index = EmbeddingIndex.build(checker.texts, config.embedding)
            items, cosines = index.nearest(texts)
            nearest_ids = [checker.item_ids[i] for i in items]
            flags[layer] = cosines >= config.embedding.threshold
            matched_item[layer] = [i if f else None for i, f in zip(nearest_ids, flags[layer])]
        else:
            hits = checker.check(mixed)
            back = [None] * len(mixed)
            for position, hit in zip(order, hits):
                back[position] = hit
            flags[layer] = np.array([hit is not None for hit in back])
            matched_item[layer] = [hit.item_id if hit else None for hit in back]
        print(f"layer {layer}: {time.perf_counter() - started:.1f} s", flush=True)

    n_planted = len(planted)
    kinds = np.array([kind for kind, _, _ in planted])
    sources = [source for _, source, _ in planted]
    header = f"{'kind':18s}" + "".join(f"{layer:>14s}" for layer in LAYERS) + f"{'stack':>10s}"
    print("\nrecall (flagged and matched to the item it was built from)")
    print(header)
    stack_recall = {}
    for kind in KINDS:
        rows = np.flatnonzero(kinds == kind)
        cells = []
        any_correct = np.zeros(len(rows), dtype=bool)
        for layer in LAYERS:
            correct = np.array([matched_item[layer][i] == sources[i] for i in rows])
            any_correct |= correct
            cells.append(correct.mean())
        stack_recall[kind] = any_correct.mean()
        print(f"{kind:18s}" + "".join(f"{c:14.3f}" for c in cells) + f"{stack_recall[kind]:10.3f}")
    train_rows = np.arange(n_planted, len(texts))
    stack_flags = np.zeros(len(texts), dtype=bool)
    for layer in LAYERS:
        stack_flags |= flags[layer]
    false_flags = {layer: flags[layer][train_rows].mean() for layer in LAYERS}
    stack_false = stack_flags[train_rows].mean()
    print(f"{'train false flags':18s}" + "".join(f"{false_flags[l]:14.4f}" for l in LAYERS) + f"{stack_false:10.4f}")

    print("\nembedding threshold sweep (layer alone): recall per kind, false flags on train")
    print(f"{'threshold':>10s}" + "".join(f"{k:>18s}" for k in KINDS) + f"{'false flags':>14s}")
    for threshold in THRESHOLDS:
        cells = []
        for kind in KINDS:
            rows = np.flatnonzero(kinds == kind)
            cells.append(np.mean([cosines[i] >= threshold and nearest_ids[i] == sources[i] for i in rows]))
        print(f"{threshold:10.2f}" + "".join(f"{c:18.3f}" for c in cells) + f"{(cosines[train_rows] >= threshold).mean():14.4f}")

    print("\nflagged GSM8K train rows (first 10):")
    for row in train_rows[stack_flags[train_rows]][:10]:
        layer = next(l for l in LAYERS if flags[l][row])
        print(f"  [{layer}] {texts[row][:110]!r} -> {matched_item[layer][row]}")
    print(
        f"recall_verbatim={stack_recall['verbatim']:.3f} recall_numbers={stack_recall['numbers']:.3f} "
        f"recall_reworded={stack_recall['reworded']:.3f} recall_reworded_numbers={stack_recall['reworded_numbers']:.3f} "
        f"false_flags={stack_false:.4f} threshold={config.embedding.threshold}"
    )


if __name__ == "__main__":
    main()

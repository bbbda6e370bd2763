"""Generation cache: a resumed or repeated run never regenerates a completion it has.

A completion is keyed by (model id, prompt hash, sampling parameters without
`n`, sample index) and stored in an SQLite file in the run directory. SQLite
commits are atomic, so a `kill -9` loses at most the batch in flight; partial
results of a failed batch (`GenerationError.partial`) are stored before the
error propagates.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sqlite3
import threading
from pathlib import Path
from typing import Sequence

from mathforge.generation.base import Completion, GenerationParams, Generator, LogLikelihood, Prompt, prompt_hash
from mathforge.generation.openai_backend import GenerationError


def completion_key(model_id: str, prompt: Prompt, params: GenerationParams, index: int) -> str:
    """Cache key of completion `index` of `prompt` under `params` (whose `n` does not matter)."""
    sampling = dataclasses.replace(params, n=1).to_json()
    payload = json.dumps([model_id, prompt_hash(prompt), sampling, index])
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class CachedGenerator:
    """Wrap a `Generator` so completions are stored in and served from `path` (SQLite)."""

    def __init__(self, inner: Generator, path: Path) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.usage = inner.usage
        if hasattr(inner, "render"):
            # Tool-integrated loops continue an assistant turn from the rendered chat text.
            self.render = inner.render
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # Several processes (Ray workers on one machine) may share the file: wait for locks.
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=120)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS completions (key TEXT PRIMARY KEY, value TEXT NOT NULL)")

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def _lookup(self, keys: list[str]) -> dict[str, Completion]:
        found: dict[str, Completion] = {}
        with self._lock:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for key, value in self._db.execute(f"SELECT key, value FROM completions WHERE key IN ({marks})", chunk):
                    found[key] = Completion(**json.loads(value))
        return found

    def _store(self, items: list[tuple[str, Completion]]) -> None:
        rows = [(key, json.dumps(dataclasses.asdict(c))) for key, c in items]
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO completions VALUES (?, ?)", rows)
            self._db.execute("COMMIT")

    def generate(self, prompts: Sequence[Prompt], params: GenerationParams) -> list[list[Completion]]:
        """Serve cached completions; generate only the missing ones, grouped by how many are missing."""
        keys = [[completion_key(self.model_id, p, params, i) for i in range(params.n)] for p in prompts]
        found = self._lookup([k for row in keys for k in row])
        self.usage.n_cached += len(found)
        missing_by_count: dict[int, list[int]] = {}
        for position, row in enumerate(keys):
            n_missing = sum(k not in found for k in row)
            if n_missing:
                missing_by_count.setdefault(n_missing, []).append(position)
        for n_missing, positions in sorted(missing_by_count.items()):
            batch = [prompts[p] for p in positions]
            try:
                generated = self.inner.generate(batch, dataclasses.replace(params, n=n_missing))
            except GenerationError as error:
                partial = {positions[i]: row for i, row in error.partial.items()}
                self._store(self._assign(keys, found, partial))
                raise
            new = self._assign(keys, found, dict(zip(positions, generated)))
            self._store(new)
            found.update(new)
        return [[found[k] for k in row] for row in keys]

    @staticmethod
    def _assign(
        keys: list[list[str]], found: dict[str, Completion], generated: dict[int, list[Completion]]
    ) -> list[tuple[str, Completion]]:
        """Give freshly generated completions the sample indices still missing, in order."""
        pairs = []
        for position, completions in generated.items():
            free = [k for k in keys[position] if k not in found]
            pairs.extend(zip(free, completions))
        return pairs

    def loglikelihood(self, pairs: Sequence[tuple[Prompt, str]]) -> list[LogLikelihood]:
        """Delegate to the wrapped generator (scores are cheap to recompute and not cached)."""
        return self.inner.loglikelihood(pairs)

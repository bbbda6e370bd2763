"""Progress a person can follow in the terminal: done / total, rows accepted, tok/s, ETA.

Long stages report through `Progress` (one line at most every `every_s`
seconds, plus the last one), and every vLLM batch reports through
`GenerationProgress`, the tqdm stand-in the vLLM adapter hands to
`LLM.generate`, labelled with the stage that runs it (`stage_label`). Lines go
to the `mathforge` logger, so they reach the terminal and Prefect's run logs.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
import time
from typing import Iterable, Iterator

log = logging.getLogger("mathforge")

_label: contextvars.ContextVar[str] = contextvars.ContextVar("mathforge_progress_label", default="generation")
_OUTPUT_SPEED = re.compile(r"output: ([0-9.]+) toks/s")


@contextlib.contextmanager
def stage_label(label: str) -> Iterator[None]:
    """Name the work in progress (e.g. 'dart round 2') in generation progress lines."""
    token = _label.set(label)
    try:
        yield
    finally:
        _label.reset(token)


def set_label(label: str) -> None:
    """Rename the work in progress until the enclosing `stage_label` ends (e.g. the next DART round)."""
    _label.set(label)


def format_duration(seconds: float) -> str:
    """Seconds as a short human duration.

    >>> format_duration(75.2), format_duration(4000)
    ('1m15s', '1h06m')
    """
    seconds = max(0, int(round(seconds)))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


class Progress:
    """Throttled progress lines for one stage: `label: done/total unit, extras, ETA`.

    Args:
        label: what is being done, e.g. 'dart'.
        total: units to do (problems, requests, rows).
        unit: their name.
        every_s: at most one line per this many seconds (the final line always prints).
    """

    def __init__(self, label: str, total: int, *, unit: str = "problems", every_s: float = 10.0) -> None:
        self.label, self.total, self.unit, self.every_s = label, total, unit, every_s
        self.started = time.perf_counter()
        self._last = self.started

    def update(self, done: int, *, force: bool = False, left_s: float | None = None, **extras: object) -> None:
        """Report `done` units so far; `extras` are shown as `name value` (e.g. accepted=12).

        The ETA extrapolates the rate of `done` units unless the caller knows
        better: `left_s` is then shown as an upper bound of the time left.
        """
        now = time.perf_counter()
        if not force and done < self.total and now - self._last < self.every_s:
            return
        self._last = now
        elapsed = now - self.started
        parts = [f"{done}/{self.total} {self.unit}"]
        parts += [f"{name.replace('_', ' ')} {value}" for name, value in extras.items()]
        if left_s is not None and done < self.total:
            parts.append(f"at most {format_duration(left_s)} left")
        elif 0 < done < self.total:
            parts.append(f"ETA {format_duration(elapsed / done * (self.total - done))}")
        parts.append(f"{format_duration(elapsed)} elapsed")
        log.info("%s: %s", self.label, ", ".join(parts))


class GenerationProgress:
    """A tqdm stand-in for `LLM.generate(use_tqdm=GenerationProgress)`: requests done, tok/s, ETA.

    vLLM wraps the prompts it renders in it (`tqdm(prompts, desc=...)`: passed
    through silently), then runs the batch with `tqdm(total=..., desc=...,
    postfix=...)`, calls `update(n)`, reads `n` and `format_dict['elapsed']`,
    sets `postfix` (its token speeds) and calls `refresh()` and `close()`.
    Batches shorter than `every_s` print nothing.
    """

    every_s = 15.0

    def __init__(self, iterable: Iterable[object] | None = None, total: int | None = None, **_: object) -> None:
        self.iterable = iterable
        self.total = total or 0
        self.n = 0
        self.postfix = ""
        self.started = time.perf_counter()
        self._last = self.started
        self._printed = False

    def __iter__(self) -> Iterator[object]:
        return iter(self.iterable or ())

    @property
    def format_dict(self) -> dict[str, float]:
        return {"elapsed": max(time.perf_counter() - self.started, 1e-9)}

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.perf_counter() - self._last >= self.every_s:
            self._report()

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        if self._printed:
            self._report()

    def _report(self) -> None:
        self._last = now = time.perf_counter()
        self._printed = True
        elapsed = now - self.started
        match = _OUTPUT_SPEED.search(str(self.postfix))
        speed = f", {float(match.group(1)):.0f} tok/s" if match else ""
        eta = f", ETA {format_duration(elapsed / self.n * (self.total - self.n))}" if 0 < self.n < self.total else ""
        log.info("%s: %d/%d requests%s%s, %s elapsed", _label.get(), self.n, self.total, speed, eta, format_duration(elapsed))

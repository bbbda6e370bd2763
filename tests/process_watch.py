"""Which processes a command started, and which of them are still running after it stopped.

Used by the SIGTERM tests: a background thread records every descendant of
the watched process (engine, workers, sandbox, verifier, Prefect server) while
it runs, so processes that re-parent themselves after the command dies are
still known. A zombie (exited, not yet reaped by init) is not running.
"""

from __future__ import annotations

import threading
import time

import psutil


class ProcessWatch:
    """Record the descendants of `pid` every `interval_s` seconds until `stop()`."""

    def __init__(self, pid: int, interval_s: float = 0.2) -> None:
        self.root = psutil.Process(pid)
        self.seen: dict[tuple[int, float], str] = {(pid, self.root.create_time()): "root"}
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll()
            self._stop.wait(self.interval_s)

    def poll(self) -> None:
        try:
            children = self.root.children(recursive=True)
        except psutil.Error:
            return
        for child in children:
            try:
                key, command = (child.pid, child.create_time()), " ".join(child.cmdline())[:120]
                # A process renames itself after start (vLLM's "VLLM::EngineCore"); an
                # exiting one has no command line left, only its 15-character name.
                if command or key not in self.seen:
                    self.seen[key] = command or child.name()
            except psutil.Error:
                pass

    def names(self) -> list[str]:
        return list(self.seen.values())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def survivors(self, grace_s: float = 20.0) -> list[str]:
        """Processes seen that still run (not zombies) after up to `grace_s` seconds."""
        deadline = time.monotonic() + grace_s
        while True:
            alive = []
            for (pid, created), name in self.seen.items():
                try:
                    process = psutil.Process(pid)
                    if process.create_time() == created and process.status() != psutil.STATUS_ZOMBIE:
                        alive.append(f"{pid} {name}")
                except psutil.NoSuchProcess:
                    pass
            if not alive or time.monotonic() > deadline:
                return alive
            time.sleep(0.5)

"""`VerifierPool`: verify many pairs in worker processes with hard per-pair timeouts.

SymPy can run for minutes on an innocent-looking answer, and the usual
remedy, `signal.alarm` (Math-Verify's timeout), only works in the main
thread: Prefect runs tasks in worker threads, so TRL and verl had to work
around it. Here each comparison runs in a worker process; a worker that
passes `timeout_s` on a pair is killed (SIGKILL) and replaced, and the pair
gets `Verdict(None, 'timeout')`. Workers start with 'forkserver' (or
'spawn'): safe when the parent has threads or an inference engine, and with
the verifier preloaded in the fork server a replacement costs milliseconds.

Extraction runs in the parent (cheap, linear); only comparisons cross the
process boundary. Verdicts are cached by (policy, reference, extracted
answer), and pairs are routed to workers by reference so each worker's
cache of parsed references keeps hitting. Each worker's address space is
capped (`memory_mb`, RLIMIT_AS).
"""

from __future__ import annotations

import multiprocessing
import threading
import time
import zlib
from collections import OrderedDict, deque
from collections.abc import Sequence
from multiprocessing.connection import Connection, wait
from types import TracebackType

from mathforge.records import Verdict
from mathforge.verify.config import VerifyConfig
from mathforge.verify.extract import extract_answer
from mathforge.verify.guards import check_response
from mathforge.verify.verifier import reference_answer

_STARTUP_TIMEOUT_S = 120.0
_PRELOAD = ["mathforge.verify.warmup"]
# Verdicts caused by the machine rather than the pair are not cached.
_TRANSIENT_REASONS = frozenset({"timeout", "worker_crashed", "memory_limit"})


def _worker_main(connection: Connection, config_json: str) -> None:
    """Worker loop: receive (task_id, reference, candidate, decimal_requested), send back the verdict fields."""
    import resource

    from mathforge.verify.compare import compare_answers
    from mathforge.verify.warmup import warm_parser

    warm_parser()  # instant in a fork-server child (inherited warm tables), ~1 s once with 'spawn'
    config = VerifyConfig.model_validate_json(config_json)
    limit = config.memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    connection.send("ready")
    while True:
        try:
            message = connection.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        task_id, reference, candidate, decimal_requested = message
        try:
            verdict = compare_answers(reference, candidate, config, decimal_requested=decimal_requested)
            reply = (task_id, verdict.is_correct, verdict.reason, verdict.method)
        except MemoryError:
            reply = (task_id, None, "memory_limit", "pool")
        except Exception:  # a verifier bug must cost one pair, not the worker
            reply = (task_id, None, "verifier_error", "pool")
        connection.send(reply)


def _flags(pairs: Sequence[tuple[str, str]], decimal_requested: Sequence[bool | None] | None) -> list[bool | None]:
    if decimal_requested is None:
        return [None] * len(pairs)
    if len(decimal_requested) != len(pairs):
        raise ValueError(f"decimal_requested has {len(decimal_requested)} flags for {len(pairs)} pairs")
    return list(decimal_requested)


class _Worker:
    """One worker process and the pair it is working on."""

    def __init__(self, context: multiprocessing.context.BaseContext, config_json: str) -> None:
        self.connection, child = context.Pipe()
        self.process = context.Process(target=_worker_main, args=(child, config_json), daemon=True)
        self.process.start()
        child.close()
        self.task: int | None = None
        self.deadline = 0.0

    def wait_ready(self) -> None:
        if not self.connection.poll(_STARTUP_TIMEOUT_S) or self.connection.recv() != "ready":
            self.kill()
            raise RuntimeError("verifier worker did not start")

    def kill(self) -> None:
        self.process.kill()
        self.process.join(timeout=10)
        self.connection.close()


class VerifierPool:
    """Verify or compare many (reference, answer) pairs in worker processes.

    Use as a context manager; `verify_many` and `compare_many` return verdicts
    in input order and may be called from any thread (calls are serialized).

    >>> with VerifierPool(VerifyConfig(n_workers=1)) as pool:  # doctest: +SKIP
    ...     pool.verify_many([("42", "The answer is 42.")])[0].is_correct
    True
    """

    def __init__(self, config: VerifyConfig | None = None) -> None:
        self.config = config or VerifyConfig()
        self._config_json = self.config.model_dump_json()
        self._context = multiprocessing.get_context(self.config.mp_context)
        if self.config.mp_context == "forkserver":
            self._context.set_forkserver_preload(_PRELOAD)
        self._workers: list[_Worker] = []
        self._cache: OrderedDict[tuple[str, str, str, bool | None], Verdict] = OrderedDict()
        self._lock = threading.Lock()
        self.n_timeouts = 0
        self.n_cache_hits = 0

    def __enter__(self) -> VerifierPool:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def start(self) -> None:
        """Start the worker processes (done by `with`; idempotent)."""
        with self._lock:
            self._start_workers()

    def _start_workers(self) -> None:
        if self._workers:
            return
        self._workers = [_Worker(self._context, self._config_json) for _ in range(self.config.n_workers)]
        for worker in self._workers:
            worker.wait_ready()

    def close(self) -> None:
        """Stop the workers (done by `with`)."""
        with self._lock:
            for worker in self._workers:
                try:
                    worker.connection.send(None)
                except OSError:
                    pass
            for worker in self._workers:
                worker.process.join(timeout=2)
                if worker.process.is_alive():
                    worker.kill()
                else:
                    worker.connection.close()
            self._workers = []

    def verify_many(
        self, pairs: Sequence[tuple[str, str]], *, decimal_requested: Sequence[bool | None] | None = None
    ) -> list[Verdict]:
        """Judge (reference, full response) pairs; returns verdicts in input order.

        Extraction happens here; `Verdict.extracted` is the extracted answer.
        `decimal_requested` gives, per pair, whether its problem asks for a
        decimal (the `approximate_constants` policy); None: unknown for all.
        """
        flags = _flags(pairs, decimal_requested)
        results: list[Verdict | None] = [None] * len(pairs)
        comparisons: list[tuple[int, str, str]] = []
        for index, (reference, response) in enumerate(pairs):
            guard = check_response(response, self.config)
            if guard is not None:
                results[index] = Verdict(is_correct=None, reason=guard, extracted=None, method="guard")
                continue
            extracted = extract_answer(response, mode=self.config.extraction)
            if extracted is None or not extracted.strip():
                results[index] = Verdict(is_correct=None, reason="no_answer_found", extracted=None, method="extraction")
                continue
            comparisons.append((index, reference_answer(reference), extracted))
        verdicts = self._compare(
            [(reference, answer) for _, reference, answer in comparisons], [flags[index] for index, _, _ in comparisons]
        )
        for (index, _, _), verdict in zip(comparisons, verdicts):
            results[index] = verdict
        return [verdict for verdict in results if verdict is not None]

    def compare_many(
        self, pairs: Sequence[tuple[str, str]], *, decimal_requested: Sequence[bool | None] | None = None
    ) -> list[Verdict]:
        """Compare (reference, already-extracted answer) pairs; returns verdicts in input order."""
        return self._compare(list(pairs), _flags(pairs, decimal_requested))

    def _compare(self, pairs: list[tuple[str, str]], flags: list[bool | None]) -> list[Verdict]:
        with self._lock:
            self._start_workers()
            return self._run(pairs, flags)

    def _run(self, pairs: list[tuple[str, str]], flags: list[bool | None]) -> list[Verdict]:
        keys = [(self._config_json, reference, answer, flag) for (reference, answer), flag in zip(pairs, flags)]
        verdicts: dict[tuple[str, str, str, bool | None], Verdict] = {}
        for key in dict.fromkeys(keys):
            if key in self._cache:
                self._cache.move_to_end(key)
                verdicts[key] = self._cache[key]
                self.n_cache_hits += 1
        tasks = [key for key in dict.fromkeys(keys) if key not in verdicts]
        for key, verdict in zip(tasks, self._dispatch([(key[1], key[2], key[3]) for key in tasks])):
            verdicts[key] = verdict
            if self.config.cache_size and verdict.reason not in _TRANSIENT_REASONS:
                self._cache[key] = verdict
                if len(self._cache) > self.config.cache_size:
                    self._cache.popitem(last=False)
        return [verdicts[key].model_copy(update={"extracted": key[2]}) for key in keys]

    def _dispatch(self, tasks: list[tuple[str, str, bool | None]]) -> list[Verdict]:
        """Run comparisons on the workers, killing and replacing any that overrun."""
        results: list[Verdict | None] = [None] * len(tasks)
        queues: list[deque[int]] = [deque() for _ in self._workers]
        for task_id, (reference, _, _) in enumerate(tasks):
            queues[zlib.crc32(reference.encode("utf-8", "replace")) % len(queues)].append(task_id)
        remaining = len(tasks)
        while remaining:
            for slot, worker in enumerate(self._workers):
                if worker.task is None:
                    task_id = self._next_task(queues, slot)
                    if task_id is not None:
                        worker.connection.send((task_id, *tasks[task_id]))
                        worker.task, worker.deadline = task_id, time.monotonic() + self.config.timeout_s
            busy = [worker for worker in self._workers if worker.task is not None]
            timeout = max(0.0, min(worker.deadline for worker in busy) - time.monotonic())
            ready = wait([worker.connection for worker in busy], timeout=timeout)
            for slot, worker in enumerate(list(self._workers)):
                if worker.task is None:
                    continue
                if worker.connection in ready:
                    try:
                        task_id, is_correct, reason, method = worker.connection.recv()
                    except (EOFError, OSError):
                        results[worker.task] = Verdict(is_correct=None, reason="worker_crashed", method="pool")
                        self._replace(slot)
                    else:
                        results[task_id] = Verdict(is_correct=is_correct, reason=reason, method=method)
                        worker.task = None
                    remaining -= 1
                elif time.monotonic() >= worker.deadline:
                    results[worker.task] = Verdict(is_correct=None, reason="timeout", method="pool")
                    self.n_timeouts += 1
                    self._replace(slot)
                    remaining -= 1
        return [verdict for verdict in results if verdict is not None]

    @staticmethod
    def _next_task(queues: list[deque[int]], slot: int) -> int | None:
        if queues[slot]:
            return queues[slot].popleft()
        longest = max(queues, key=len)
        return longest.pop() if longest else None

    def _replace(self, slot: int) -> None:
        self._workers[slot].kill()
        worker = _Worker(self._context, self._config_json)
        worker.wait_ready()
        self._workers[slot] = worker


"""Throughput of the sandbox pool against starting a fresh interpreter per program.

Runs N small distinct programs (default 1,000) three ways in the same run:
`subprocess.run([sys.executable, "-c", code])` one after another (the
baseline), `SandboxPool.run` one after another, and `SandboxPool.run_many`
(parallel across the pool's workers). The three alternate in rounds of
`--chunk` programs, so a change in the machine's load during the run weighs on
each alike. Every output is checked.

Wall-clock ratios depend on what else the machine runs; the CPU time each
method spends per program (the pool's template, workers and their children,
read from /proc, plus the calling process) does much less, so it is reported
too. The last line is `speedup=<baseline wall time / run_many wall time>
pool_per_s=<run_many programs per second> ...`.

Usage: python benchmarks/sandbox_throughput.py [--n 1000] [--chunk 100] [--workers 0]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from mathforge.sandbox import SandboxConfig, SandboxPool

_TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def programs(n: int) -> list[tuple[str, str]]:
    """Return n small programs with their expected output."""
    return [(f"print(sum(range({k})))", f"{sum(range(k))}\n") for k in range(100, 100 + n)]


def _stats() -> dict[int, list[bytes]]:
    """Fields of /proc/<pid>/stat after the command name, for every process (index 1: parent pid)."""
    stats = {}
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            stats[int(name)] = Path(f"/proc/{name}/stat").read_bytes().rsplit(b")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
    return stats


def pool_cpu_s(pool: SandboxPool) -> float:
    """CPU seconds spent so far by the pool's template and workers, with the children they reaped."""
    stats = _stats()
    template = next(
        pid
        for pid, fields in stats.items()
        if int(fields[1]) == os.getpid() and pool.pool_id.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    )
    tree = [pid for pid, fields in stats.items() if pid == template or int(fields[1]) == template]
    return sum(sum(int(field) for field in stats[pid][11:15]) for pid in tree) * _TICK_S


def measure(run: Callable[[], None], other_cpu_s: Callable[[], float]) -> tuple[float, float]:
    """Wall seconds of `run()` and the CPU seconds it cost (this process plus `other_cpu_s`)."""
    wall, cpu, other = time.perf_counter(), time.process_time(), other_cpu_s()
    run()
    return time.perf_counter() - wall, time.process_time() - cpu + other_cpu_s() - other


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_subprocess(cases: list[tuple[str, str]]) -> None:
    for code, expected in cases:
        completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert completed.stdout == expected, completed


def run_pool_sequential(pool: SandboxPool, cases: list[tuple[str, str]]) -> None:
    for code, expected in cases:
        result = pool.run(code)
        assert result.ok and result.stdout == expected, result


def run_pool_parallel(pool: SandboxPool, cases: list[tuple[str, str]]) -> None:
    results = pool.run_many([code for code, _ in cases])
    for result, (_, expected) in zip(results, cases, strict=True):
        assert result.ok and result.stdout == expected, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="programs per method")
    parser.add_argument("--chunk", type=int, default=100, help="programs per method and round")
    parser.add_argument("--workers", type=int, default=0, help="pool workers (0: one per CPU)")
    args = parser.parse_args()
    cases = programs(args.n)
    chunks = [cases[start : start + args.chunk] for start in range(0, len(cases), args.chunk)]
    totals = {name: [0.0, 0.0] for name in ("subprocess.run", "pool.run (serial)", "pool.run_many")}
    loads = []

    started = time.perf_counter()
    with SandboxPool(SandboxConfig(n_workers=args.workers)) as pool:
        startup_s = time.perf_counter() - started
        pool.run_many([code for code, _ in cases[:20]])  # warm the workers
        methods = {
            "subprocess.run": (run_subprocess, children_cpu_s),
            "pool.run (serial)": (partial(run_pool_sequential, pool), partial(pool_cpu_s, pool)),
            "pool.run_many": (partial(run_pool_parallel, pool), partial(pool_cpu_s, pool)),
        }
        for chunk in chunks:
            loads.append(os.getloadavg()[0])
            for name, (run, other_cpu_s) in methods.items():
                wall, cpu = measure(partial(run, chunk), other_cpu_s)
                totals[name][0] += wall
                totals[name][1] += cpu
        isolation, n_workers = pool.isolation, pool.n_workers

    n = len(cases)
    load = sum(loads) / len(loads)
    print(
        f"cpus={os.cpu_count()} mean_load_1min={load:.1f} workers={n_workers} "
        f"isolation={isolation} startup_s={startup_s:.2f}"
    )
    for name, (wall, cpu) in totals.items():
        print(f"{name:18} {wall:7.2f} s wall  {1000 * wall / n:6.2f} ms/program  {1000 * cpu / n:6.2f} ms CPU/program")
    (baseline_s, baseline_cpu_s), (serial_s, _), (parallel_s, parallel_cpu_s) = totals.values()
    print(
        f"speedup={baseline_s / parallel_s:.2f} pool_per_s={n / parallel_s:.1f} "
        f"serial_speedup={baseline_s / serial_s:.2f} cpu_speedup={baseline_cpu_s / parallel_cpu_s:.2f} "
        f"subprocess_per_s={n / baseline_s:.1f} mean_load_1min={load:.1f}"
    )


if __name__ == "__main__":
    main()

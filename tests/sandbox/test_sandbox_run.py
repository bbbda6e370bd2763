"""SandboxPool.run / run_many / run_python: statuses, output, limits and isolation of well-behaved code."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from mathforge.sandbox import ExecutionResult, SandboxConfig, SandboxError, SandboxPool, run_python, server, shared_pool


@pytest.fixture(scope="module", params=["namespaces", "rlimits"])
def pool(request):
    with SandboxPool(SandboxConfig(timeout_s=5, isolation=request.param, max_output_bytes=1000)) as pool:
        assert pool.isolation == request.param  # root here: namespaces are permitted
        yield pool


@pytest.mark.parametrize(
    ("code", "status", "stdout", "stderr_has"),
    [
        ("print(sum(range(100)))", "ok", "4950\n", ""),
        ("import sys; print('x', file=sys.stderr)", "ok", "", "x\n"),
        ("print('partial'); 1/0", "error", "partial\n", "ZeroDivisionError"),
        ("def f(:", "error", "", "SyntaxError"),
        ("import sys; sys.exit(3)", "error", "", ""),
        ("import sys; sys.exit(0)", "ok", "", ""),
        ("import os; os._exit(4)", "error", "", ""),
        ("import sys; sys.exit('bye')", "error", "", "bye"),
        ("raise MemoryError", "memory", "", "MemoryError"),
        ("import os, signal; os.kill(os.getpid(), signal.SIGTERM)", "killed", "", "SIGTERM"),
        ("import sympy; print(sympy.factorint(360))", "ok", "{2: 3, 3: 2, 5: 1}\n", ""),
        ("import numpy as np; print(int(np.arange(5).sum()))", "ok", "10\n", ""),
    ],
    ids=["ok", "stderr", "exception", "syntax", "exit3", "exit0", "os_exit", "exit_message", "memory_error",
         "signal", "sympy", "numpy"],
)
def test_run_maps_outcome_to_status(pool, code, status, stdout, stderr_has):
    result = pool.run(code)
    assert (result.status, result.stdout) == (status, stdout), result
    assert stderr_has in result.stderr
    assert result.ok == (status == "ok")
    assert result.duration_s > 0


def test_traceback_shows_the_program_line_not_the_runner(pool):
    result = pool.run("x = 1\ny = x / 0\n")
    assert 'File "<sandbox>", line 2' in result.stderr
    assert "y = x / 0" in result.stderr
    assert os.path.dirname(server.__file__) not in result.stderr  # no frame of the sandbox's own files


def test_no_module_of_the_pipeline_reaches_the_sandbox(pool):
    # The template loads the server package by path, under another name, and it imports only the stdlib.
    result = pool.run("import sys; print(sorted(m for m in sys.modules if m.split('.')[0] == 'mathforge'))")
    assert result.stdout == "[]\n", result


def test_stdin_is_given_to_the_program(pool):
    assert pool.run("print(input()[::-1])", stdin="abc\n").stdout == "cba\n"
    assert pool.run("import sys; print(repr(sys.stdin.read()))").stdout == "''\n"


def test_output_keeps_head_and_tail_around_a_marker(pool):
    result = pool.run("print('BEGIN'); print('x' * 100_000); print('END')")
    assert result.ok
    assert result.stdout.startswith("BEGIN\n") and result.stdout.endswith("END\n")
    assert "[... sandbox: " in result.stdout and "bytes of output truncated ...]" in result.stdout
    assert len(result.stdout) < 1000 + 100


def test_entrypoint_is_called_only_when_nothing_was_printed(pool):
    program = "def solve():\n    return 6 * 7\n"
    assert pool.run(program, entrypoints=("solve", "main")).stdout == "42\n"
    assert pool.run(program + "print('own')", entrypoints=("solve",)).stdout == "own\n"
    assert pool.run("def main():\n    return 'm'\n", entrypoints=("solve", "main")).stdout == "m\n"
    assert pool.run(program).stdout == ""


def test_each_run_starts_fresh(pool):
    # Idle workers are used in rotation: each check runs on a worker that just ran a writer.
    writers = [pool.run("import os, math; math.pi = 3; open('left.txt', 'w').write('x'); print(os.listdir('.'))")
               for _ in range(pool.n_workers)]
    checks = [pool.run("import os, math; print(os.listdir('.'), math.pi)") for _ in range(pool.n_workers)]
    assert [r.stdout for r in writers] == ["['left.txt']\n"] * pool.n_workers
    assert [r.stdout for r in checks] == ["[] 3.141592653589793\n"] * pool.n_workers


def test_shared_memory_is_private_and_emptied(pool):
    if pool.isolation != "namespaces":
        pytest.skip("without namespaces /dev/shm is the host's")
    writers = [pool.run("open('/dev/shm/left', 'w').write('x')") for _ in range(pool.n_workers)]
    checks = [pool.run("import os; print(os.listdir('/dev/shm'))") for _ in range(pool.n_workers)]
    assert all(r.ok for r in writers)
    assert [r.stdout for r in checks] == ["[]\n"] * pool.n_workers


def test_random_state_differs_between_runs_like_fresh_interpreters():
    # numpy.random preloaded: its state would otherwise be the template's in every run.
    with SandboxPool(SandboxConfig(n_workers=1, preload_modules=("random", "numpy.random"))) as pool:
        code = "import random, numpy\nprint(random.random(), numpy.random.random())"
        first, second = (pool.run(code).stdout.split() for _ in range(2))
    assert len(first) == 2 and first[0] != second[0] and first[1] != second[1]


def test_environment_is_scrubbed(pool):
    result = pool.run("import os; print(sorted(os.environ))")
    assert result.stdout.strip() == str(sorted(
        ["PATH", "LANG", "LC_ALL", "PYTHONHASHSEED", "PYTHONDONTWRITEBYTECODE", "OPENBLAS_NUM_THREADS",
         "OMP_NUM_THREADS", "MKL_NUM_THREADS", "HOME", "TMPDIR"]
    ))


def test_code_runs_unprivileged_in_its_own_directory(pool):
    result = pool.run(
        "import os, tempfile; print(os.getuid(), os.getcwd() == os.environ['HOME'] == tempfile.gettempdir())"
    )
    uid, same_dir = result.stdout.split()
    assert int(uid) >= pool.config.uid_base and same_dir == "True"


def test_namespace_mode_hides_processes_and_home(pool):
    if pool.isolation != "namespaces":
        pytest.skip("only namespaces give a private /proc and cover /root")
    result = pool.run(
        "import os; print(sorted(p for p in os.listdir('/proc') if p.isdigit())); print(os.listdir('/root'))"
    )
    pids, root = result.stdout.splitlines()
    assert len(eval(pids)) <= 3  # the worker, this program, perhaps its next sibling
    assert ".ssh" not in root and ".bashrc" not in root


def test_multiprocessing_works_in_the_sandbox(pool):
    if pool.run("import multiprocessing").status != "ok":
        # The weaker mode cannot expose a Python installed under a private directory (here /root).
        assert pool.isolation == "rlimits"
        pytest.skip("the stdlib is not readable by the sandbox uid without namespaces")
    result = pool.run("import multiprocessing as mp\nwith mp.Pool(2) as p:\n    print(p.map(abs, [-1, -2]))")
    assert (result.status, result.stdout) == ("ok", "[1, 2]\n"), result


def test_limits_can_be_set_per_run(pool):
    assert pool.run("import time; time.sleep(2)", timeout_s=0.5).status == "timeout"
    assert pool.run("x = bytearray(200 * 2**20)", memory_mb=100).status == "memory"
    assert pool.run("x = bytearray(200 * 2**20); print(len(x) >> 20)", memory_mb=400).stdout == "200\n"


def test_run_many_keeps_input_order(pool):
    codes = [f"import time; time.sleep({0.05 * (i % 3)}); print({i})" for i in range(12)]
    results = pool.run_many(codes)
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(12)]


def test_pool_is_thread_safe(pool):
    results: dict[int, ExecutionResult] = {}

    def work(k: int) -> None:
        for j in range(5):
            results[k * 10 + j] = pool.run(f"print({k} * {j})")

    threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    expected = {k * 10 + j: f"{k * j}\n" for k in range(6) for j in range(5)}
    assert {key: r.stdout for key, r in results.items()} == expected


def test_closed_pool_refuses_work():
    pool = SandboxPool(SandboxConfig(n_workers=1, preload_modules=()))
    pool.close()
    pool.close()
    with pytest.raises(SandboxError):
        pool.run("print(1)")


def test_run_python_uses_the_shared_pool():
    result = run_python("print(2 ** 10)", timeout_s=5)
    assert (result.status, result.stdout) == ("ok", "1024\n")
    assert shared_pool() is shared_pool()


def _processes_of(pool_id: str) -> dict[int, int]:
    """pid -> parent pid of the pool's template and its forks (they carry the pool id in argv)."""
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if pool_id in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                found[int(pid)] = int(Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[1])
        except (OSError, IndexError):
            continue
    return found


def _is_running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False


def test_pool_recovers_when_its_template_and_workers_are_killed():
    with SandboxPool(SandboxConfig(n_workers=2, preload_modules=())) as pool:
        processes = _processes_of(pool.pool_id)
        template = next(pid for pid, parent in processes.items() if parent == os.getpid())
        workers = [pid for pid, parent in processes.items() if parent == template]
        assert len(workers) == 2
        for pid in (template, *workers):
            os.kill(pid, signal.SIGKILL)
        while any(_is_running(pid) for pid in (template, *workers)):
            time.sleep(0.01)
        results = [pool.run(f"print({k})") for k in range(4)]
        assert [(r.status, r.stdout) for r in results] == [("ok", f"{k}\n") for k in range(4)]


def test_a_forked_child_cannot_use_the_parents_pool(pool):
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # e.g. a multiprocessing 'fork' worker of the pipeline
        try:
            pool.run("print(1)")
            os.write(write_end, b"ran")
        except SandboxError:
            os.write(write_end, b"refused")
        os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    with os.fdopen(read_end, "rb") as answer:
        assert answer.read() == b"refused"
    assert pool.run("print(2)").stdout == "2\n"

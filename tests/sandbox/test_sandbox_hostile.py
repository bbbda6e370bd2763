"""Hostile programs: each is contained with the right status and the pool serves the next request.

Runs in both isolation modes (root here, so 'namespaces' is permitted and
'rlimits' is forced). The last test closes the pool and scans /proc: no
process the suite started may survive. Processes are recognised by a marker
in their argv, by the pool id in the template's argv (every fork of the
template inherits it) and by the suite's private uid block.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from mathforge.sandbox import SandboxConfig, SandboxPool

MARKER = f"mfhostile{secrets.token_hex(4)}"
SECRET_NAME = "MATHFORGE_HOSTILE_SECRET"
SECRET = f"s3cret{secrets.token_hex(8)}"
UID_BASE = 2**30 + 2**28  # default pools use [2**30, 2**30 + 2**28): this block is the suite's alone
UID_SPAN = 2**28
OUTSIDE = Path(__file__).with_name(f"escaped-{MARKER}.txt")


@dataclass(frozen=True)
class Case:
    code: str
    status: str  # expected in both modes unless `rlimits_status` says otherwise
    rlimits_status: str | None = None
    timeout_s: float = 20.0


CASES = {
    "infinite_loop": Case("while True:\n    pass", "timeout", timeout_s=1.0),
    "fork_bomb": Case(
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
        "timeout",
        timeout_s=1.5,
    ),
    "allocate_10_gb": Case("data = bytearray(10 * 2**30)", "memory"),
    "allocate_10_gb_numpy": Case("import numpy\nx = numpy.ones(10 * 2**30 // 8)", "memory"),
    "allocate_until_refused": Case("chunks = []\nwhile True:\n    chunks.append(bytearray(2**25))", "memory"),
    "stdout_200_mb": Case("import sys\nchunk = 'x' * 2**20\nfor _ in range(200):\n    sys.stdout.write(chunk)", "ok"),
    "write_outside_tmp": Case(f"open({str(OUTSIDE)!r}, 'w').write('escaped')", "error"),
    "write_tmp_of_host": Case(f"open('/tmp/{MARKER}', 'w').write('escaped')", "error", rlimits_status="ok"),
    "fill_disk": Case(
        "with open('big', 'wb') as f:\n    for _ in range(1024):\n        f.write(b'x' * 2**20)", "error"
    ),
    "connect_localhost": Case("", "error"),  # code set by the test: it needs the listener's port
    "read_parent_environment": Case(
        "import os\n"
        f"found = [k for k, v in os.environ.items() if {SECRET!r} in v]\n"
        "for pid in filter(str.isdigit, os.listdir('/proc')):\n"
        "    try:\n"
        "        with open(f'/proc/{pid}/environ', 'rb') as f:\n"
        f"            found += [pid] if {SECRET!r}.encode() in f.read() else []\n"
        "    except OSError:\n"
        "        pass\n"
        "print(found)",
        "ok",
    ),
    "kill_parent": Case("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nprint('parent killed')", "error"),
    # kill(-1) skips the caller; it reports ESRCH when it sees no other process (a private pid
    # namespace) and success when every process it sees refused (EPERM): nothing is killed either way.
    "kill_every_process": Case("import os, signal\nos.kill(-1, signal.SIGKILL)", "error", rlimits_status="ok"),
    "deep_recursion": Case("def f(n):\n    return f(n + 1)\nf(0)", "error"),
    "c_stack_overflow": Case(
        "import json, sys\nsys.setrecursionlimit(10**8)\nnested = []\nfor _ in range(10**5):\n    nested = [nested]\n"
        "json.dumps(nested)",
        "killed",
    ),
    "ctypes_segfault": Case("import ctypes\nctypes.string_at(0)", "killed"),
    "sabotage_the_runner": Case("import json, os\nos._exit = lambda code: None\njson.dumps = None", "error"),
    "close_the_runner_pipes": Case("import os\nos.close(3)\nos.close(4)", "error"),
    "child_sleeping_after_timeout": Case(
        f"import os, time\nif os.fork() == 0:\n    os.execv('/bin/sleep', ['{MARKER}', '600'])\ntime.sleep(600)",
        "timeout",
        timeout_s=1.0,
    ),
    "daemon_left_behind": Case(
        "import os\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
        f"        os.execv('/bin/sleep', ['{MARKER}', '600'])\n    os._exit(0)\nprint('bye')",
        "ok",
    ),
}


@pytest.fixture(scope="module")
def listener():
    server = socket.create_server(("127.0.0.1", 0))
    server.setblocking(False)
    yield server
    server.close()


def _children() -> set[str]:
    return {pid for pid in filter(str.isdigit, os.listdir("/proc")) if _parent(pid) == os.getpid()}


@pytest.fixture(scope="module")
def children_before_pool() -> set[str]:
    """This process's children before any pool starts (e.g. a vLLM engine of the integration tests)."""
    return _children()


@pytest.fixture(scope="module", params=["namespaces", "rlimits"])
def pool(request, children_before_pool):
    os.environ[SECRET_NAME] = SECRET  # the pipeline's environment holds a secret
    config = SandboxConfig(
        timeout_s=5, memory_mb=256, max_output_bytes=4096, uid_base=UID_BASE, isolation=request.param, n_workers=2
    )
    try:
        with SandboxPool(config) as pool:
            assert pool.isolation == request.param
            yield pool
    finally:
        del os.environ[SECRET_NAME]


def expected_status(pool: SandboxPool, case: Case) -> str:
    return case.rlimits_status if pool.isolation == "rlimits" and case.rlimits_status else case.status


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_program_is_contained(pool, listener, name):
    case = CASES[name]
    code = case.code
    if name == "connect_localhost":
        port = listener.getsockname()[1]
        code = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)\nprint('connected')"
    started = time.monotonic()
    result = pool.run(code, timeout_s=case.timeout_s)
    assert result.status == expected_status(pool, case), result
    assert time.monotonic() - started < case.timeout_s + 5

    if name == "stdout_200_mb":
        assert "bytes of output truncated" in result.stdout and len(result.stdout) < 4096 + 100
    if name == "write_outside_tmp":
        assert not OUTSIDE.exists()
    if name == "write_tmp_of_host" and pool.isolation == "namespaces":
        assert not Path("/tmp", MARKER).exists()
    Path("/tmp", MARKER).unlink(missing_ok=True)  # the weaker mode may write to world-writable places
    if name == "connect_localhost":
        with pytest.raises(BlockingIOError):
            listener.accept()
    if name == "read_parent_environment":
        assert result.stdout == "[]\n"
    if name == "kill_parent":
        assert "parent killed" not in result.stdout

    canary = pool.run("print(6 * 7)")
    assert (canary.status, canary.stdout) == ("ok", "42\n")


def sandbox_processes(pool_id: str) -> list[str]:
    """Processes that carry the suite's marker, the pool's id, or a uid of the suite's block."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            status = Path(f"/proc/{pid}/status").read_text().splitlines()
            uids = next(line for line in status if line.startswith("Uid:"))
        except (OSError, StopIteration):
            continue  # exited meanwhile
        real_uid = int(uids.split()[1])
        if MARKER in cmdline or pool_id in cmdline or UID_BASE <= real_uid < UID_BASE + UID_SPAN:
            found.append(f"{pid} uid={real_uid} {cmdline[:120]}")
    return found


def test_no_process_survives_the_suite(pool, children_before_pool):
    for name in ("fork_bomb", "child_sleeping_after_timeout", "daemon_left_behind"):
        pool.run(CASES[name].code, timeout_s=CASES[name].timeout_s)
    assert sandbox_processes(pool.pool_id), "the scan must see the live pool"
    pool.close()
    deadline = time.monotonic() + 5
    while (survivors := sandbox_processes(pool.pool_id)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert survivors == []
    assert _children() - children_before_pool == set()


def _parent(pid: str) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[1])
    except (OSError, IndexError):
        return None

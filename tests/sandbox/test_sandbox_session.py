"""Sessions: one persistent sandboxed namespace across cells, each with its own timeout."""

from __future__ import annotations

import resource

import pytest

from mathforge.sandbox import SandboxConfig, SandboxError, SandboxPool, run_cells


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(SandboxConfig(timeout_s=5, n_workers=2)) as pool:
        yield pool


def test_state_persists_and_output_is_per_cell(pool):
    with pool.session() as session:
        first = session.run_cell("import math\nx = 6\nprint('set')")
        second = session.run_cell("def double(v):\n    return 2 * v\nprint(double(x) + math.factorial(3))")
        assert (first.status, first.stdout) == ("ok", "set\n")
        assert (second.status, second.stdout) == ("ok", "18\n")
        assert session.is_alive


def test_an_exception_is_reported_and_the_session_goes_on(pool):
    with pool.session() as session:
        session.run_cell("x = 1")
        failed = session.run_cell("y = x + undefined_name")
        assert failed.status == "error" and "NameError" in failed.stderr and '"<cell 2>"' in failed.stderr
        assert session.run_cell("print(x)").stdout == "1\n"
        assert session.run_cell("b = bytearray(10 * 2**30)").status == "memory"
        assert session.run_cell("print(x + 1)").stdout == "2\n"


def test_a_timeout_ends_the_session_and_later_cells_are_not_run(pool):
    with pool.session() as session:
        session.run_cell("x = 1")
        hung = session.run_cell("while True:\n    pass", timeout_s=0.5)
        assert hung.status == "timeout"
        assert not session.is_alive
        later = session.run_cell("print(x)")
        assert later.status == "killed" and later.stdout == ""
        assert "session ended at cell 2 (timeout)" in later.stderr


def test_each_cell_gets_its_own_cpu_limit(pool):
    probe = "import resource\nprint(*resource.getrlimit(resource.RLIMIT_CPU))"
    with pool.session() as session:
        short = session.run_cell(probe, timeout_s=1).stdout.split()
        long = session.run_cell(probe, timeout_s=30).stdout.split()
    # CPU used so far plus the cell's timeout; the hard limit stays open for later cells.
    assert int(long[0]) - int(short[0]) >= 29
    assert short[1] == long[1] == str(resource.RLIM_INFINITY)


def test_exit_and_crash_end_the_session(pool):
    with pool.session() as session:
        assert session.run_cell("import sys; sys.exit(0)").status == "ok"
        assert session.run_cell("print(1)").status == "killed"
    with pool.session() as session:
        crashed = session.run_cell("import ctypes; ctypes.string_at(0)")
        assert crashed.status == "killed" and "SIGSEGV" in crashed.stderr
        assert not session.is_alive


def test_sessions_do_not_share_state(pool):
    with pool.session() as first, pool.session() as second:
        first.run_cell("secret = 41")
        assert second.run_cell("print('secret' in globals())").stdout == "False\n"
        assert first.run_cell("print(secret + 1)").stdout == "42\n"


def test_closed_session_refuses_cells(pool):
    session = pool.session()
    session.close()
    with pytest.raises(SandboxError):
        session.run_cell("print(1)")


def test_pool_still_runs_programs_after_sessions(pool):
    with pool.session() as session:
        session.run_cell("while True:\n    pass", timeout_s=0.3)
    assert pool.run("print('after')").stdout == "after\n"


def test_run_cells_runs_a_whole_trace(pool):
    results = run_cells(
        ["a = 2", "print(a ** 10)", "import time\ntime.sleep(5)", "print(a)"], timeout_s=0.5, pool=pool
    )
    assert [r.status for r in results] == ["ok", "ok", "timeout", "killed"]
    assert results[1].stdout == "1024\n"

"""verify_program: run a program, take its answer, compare it with the reference."""

from __future__ import annotations

import pytest

from mathforge.sandbox import SandboxConfig, SandboxPool, program_answer, verify_program

CONFIG = SandboxConfig(timeout_s=1.0, memory_mb=256, n_workers=2)


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(CONFIG) as pool:
        yield pool


@pytest.mark.parametrize(
    ("program", "reference", "is_correct", "reason"),
    [
        ("print(6 * 7)", "42", True, "string_match"),
        ("print('debug line')\nprint(0.5)", r"\frac{1}{2}", True, "numeric_equal"),
        ("print(41)", "42", False, "numeric_mismatch"),
        ("def solve():\n    return 3 * 14\n", "42", True, "string_match"),
        ("def main():\n    return 42\n", "42", True, "string_match"),
        ("from fractions import Fraction\ndef solve():\n    return Fraction(1, 3)\n", r"\frac{1}{3}", True, None),
        ("x = 1 / 0\nprint(x)", "42", None, "program_crashed"),
        ("import ctypes\nctypes.string_at(0)", "42", None, "program_crashed"),
        ("while True:\n    pass", "42", None, "program_timeout"),
        ("x = bytearray(10 * 2**30)", "42", None, "memory_limit"),
        ("x = 42", "42", None, "no_output"),
        ("print('   ')\nprint()", "42", None, "no_output"),
    ],
    ids=["print", "last_line", "wrong", "solve", "main", "fraction", "crash", "segfault", "timeout", "memory",
         "silent", "blank"],
)
def test_verify_program(pool, program, reference, is_correct, reason):
    verdict = verify_program(program, reference, config=CONFIG, pool=pool)
    assert verdict.is_correct is is_correct, verdict
    if reason is not None:
        assert verdict.reason == reason, verdict


def test_printed_output_wins_over_solve(pool):
    verdict = verify_program("def solve():\n    return 42\nprint('7')", "42", config=CONFIG, pool=pool)
    assert (verdict.is_correct, verdict.extracted) == (False, "7")


def test_answer_is_the_last_non_empty_line():
    assert program_answer("step 1\n  3/4  \n\n") == "3/4"
    assert program_answer("\n \n") is None

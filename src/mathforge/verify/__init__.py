"""Answer verification: extraction, normalization, exact/numeric/SymPy comparison, process pool.

    from mathforge.verify import VerifyConfig, verify_answer, VerifierPool

    verify_answer("42", response)              # pure; reference first
    with VerifierPool(VerifyConfig()) as pool:  # hard timeouts, workers, cache
        verdicts = pool.verify_many([(reference, response), ...])
"""

from mathforge.verify.compare import compare_answers
from mathforge.verify.config import VerifyConfig, verifier_name
from mathforge.verify.extract import extract_answer
from mathforge.verify.pool import VerifierPool
from mathforge.verify.verifier import asks_for_decimal, verify_answer

__all__ = [
    "VerifierPool",
    "VerifyConfig",
    "asks_for_decimal",
    "compare_answers",
    "extract_answer",
    "verifier_name",
    "verify_answer",
]

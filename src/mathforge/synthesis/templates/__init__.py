"""Number-decoupled problem synthesis: InfinityMATH, TemplateGSM/TDG and TeLL.

A *template* is a problem text with named numeric slots (``{price}``), the
slots' domains and constraints, and a number-independent program
``solve(**slots)`` that computes the answer. Re-instantiating it with new slot
values gives effectively unlimited new problems whose answers are computed by
execution, never guessed by a model.

- **Decoupling** (InfinityMATH, Zhang et al., 2024): an LLM turns a seed
  problem into a template plus program (`decouple`). The paper keeps a
  decoupled program when it reproduces the seed's answer; here a template must
  also render back to the seed text, accept the seed's numbers under its own
  constraints, and run deterministically in the sandbox (`validate_template`).
- **Instantiation** (TemplateGSM / TDG, Zhang et al., 2024): slot values are
  drawn uniformly from their domains and rejection-sampled against the
  constraints with a bounded number of draws; the program runs in the sandbox
  and an instance is kept only when its answer is well formed and of the
  template's answer type (`instantiate`). TDG's meta-templates are written by
  GPT-4; the authored templates here are written by hand
  (`template_files.py`). Both carry a chain-of-thought solution template whose
  placeholders are filled from the program's intermediate values.
- **Paraphrase** (TeLL, Kang et al., 2024): an LLM rewrites an instance's
  wording and context. TeLL relies on the template for correctness; here the
  paraphraser is not trusted (`paraphrase_check.py`): the rewording must keep
  the same numbers as values (digits, number words, fractions, percents), and
  programs written by a fresh solver that sees only the rewording must
  reproduce the instance's answer when executed (`paraphrase`). A rewording
  that changes the mathematics while keeping its numbers (roles swapped,
  "gives away" -> "receives") is caught when the solver reads it as written.

Structured output: the `Generator` protocol has no schema-constrained
decoding, so replies are parsed from fenced JSON / Python blocks, and every
failure is a rejection with a snake_case reason.

Where things are (each module imports only those above it):
- `slots`: slot domains (`SlotSpec`) and `TemplateError`.
- `constraints`: the safe, whitelisted evaluator of constraint expressions.
- `rendering`: placeholders filled, answer types read, answers formatted.
- `parsing`: a Template record checked and parsed (`parse_template`).
- `batches`: programs run on many slot assignments in the sandbox.
- `sampling`: slot values rejection-sampled against the constraints.
- `config`: the stage's settings and the rejection bookkeeping of its steps.
- `decoupling`, `instantiation`, `paraphrasing`: the three steps above; how a
  paraphrase is accepted is in `paraphrasing`'s docstring.

This package re-exports the names other modules use, so
`from mathforge.synthesis.templates import instantiate` keeps working.
"""

from mathforge.synthesis.templates.batches import MAX_CASES_PER_RUN, CaseOutcome, batch_code, run_batches
from mathforge.synthesis.templates.config import (
    DECOUPLE_STAGE,
    INSTANTIATE_STAGE,
    PARAPHRASE_STAGE,
    CallConfig,
    DecoupleConfig,
    ParaphraseConfig,
    TemplateSynthesisConfig,
)
from mathforge.synthesis.templates.constraints import Constraint
from mathforge.synthesis.templates.decoupling import DecoupleResult, decouple, parse_decoupling, validate_template
from mathforge.synthesis.templates.instantiation import InstantiateResult, instantiate
from mathforge.synthesis.templates.paraphrasing import (
    ParaphraseResult,
    paraphrase,
    parse_paraphrase,
    parse_solve_program,
)
from mathforge.synthesis.templates.parsing import ParsedTemplate, parse_template
from mathforge.synthesis.templates.rendering import (
    PLACEHOLDER,
    AnswerType,
    answer_type_of,
    format_answer,
    format_value,
    render_text,
)
from mathforge.synthesis.templates.sampling import draw_values
from mathforge.synthesis.templates.slots import Number, SlotSpec, TemplateError

__all__ = [
    "DECOUPLE_STAGE",
    "INSTANTIATE_STAGE",
    "MAX_CASES_PER_RUN",
    "PARAPHRASE_STAGE",
    "PLACEHOLDER",
    "AnswerType",
    "CallConfig",
    "CaseOutcome",
    "Constraint",
    "DecoupleConfig",
    "DecoupleResult",
    "InstantiateResult",
    "Number",
    "ParaphraseConfig",
    "ParaphraseResult",
    "ParsedTemplate",
    "SlotSpec",
    "TemplateError",
    "TemplateSynthesisConfig",
    "answer_type_of",
    "batch_code",
    "decouple",
    "draw_values",
    "format_answer",
    "format_value",
    "instantiate",
    "paraphrase",
    "parse_decoupling",
    "parse_paraphrase",
    "parse_solve_program",
    "parse_template",
    "render_text",
    "run_batches",
    "validate_template",
]

"""Measure the false_arithmetic filter: false flags on correct solutions, recall on planted errors.

Three sets, each printed with the flagged equations so they can be read:

- **authored template solutions** (always): `--per-template` instances of every
  template in configs/templates, their solution text filled from the values
  the program computed. Every equation in them is true, so every flag is a
  false flag.
- **GSM8K train solutions** (when /work/shared/data/gsm8k is there): human
  written and checked, calculator annotations (``<<48/2=24>>``) removed. A
  flag here is either a real slip in GSM8K ("192*100=1920") or a misreading
  by the filter ("Weeks 1-2 = 96 - 70"): the flagged list is printed to tell
  them apart.
- **planted errors**: in each GSM8K solution, one "= N" claim (any of them,
  whether the filter can read its equation or not) is changed to N + d,
  d in 1..9 (seeded); recall is the share of solutions whose flags grow. It
  measures coverage: how many of the claims people actually write the filter
  can check.

    python benchmarks/arithmetic_check.py [--per-template 50] [--n-train 0 (all)] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import time
from pathlib import Path

from mathforge.curate.arithmetic import false_equations

REPO = Path(__file__).resolve().parents[1]
TRAIN = Path("/work/shared/data/gsm8k/train.jsonl")
ANNOTATION = re.compile(r"<<[^>]*>>")
CLAIM = re.compile(r"(=\s*\$?)(\d+(?:\.\d+)?)(?![\d.]\d)")


def template_solutions(per_template: int, seed: int) -> list[str]:
    """Return the solution texts of `per_template` instances of every authored template."""
    from mathforge.sandbox import SandboxConfig, SandboxPool
    from mathforge.synthesis.template_files import load_authored_templates
    from mathforge.synthesis.templates import TemplateSynthesisConfig, instantiate

    templates = load_authored_templates(REPO / "configs" / "templates")
    with SandboxPool(SandboxConfig()) as pool:
        made = instantiate(templates, n_per_template=per_template, seed=seed, pool=pool, config=TemplateSynthesisConfig())
    return [p.solution for p in made.problems if p.solution]


def gsm8k_solutions(n: int) -> list[str]:
    """Return GSM8K train solutions without calculator annotations and the '####' line."""
    rows = [json.loads(line) for line in TRAIN.read_text().splitlines() if line.strip()]
    rows = rows[:n] if n else rows
    return [ANNOTATION.sub("", row["answer"].split("####")[0]) for row in rows]


def plant(text: str, rng: random.Random) -> str | None:
    """Change one "= N" claim of `text` to N + d (d in 1..9); None when it has no claim."""
    claims = list(CLAIM.finditer(text))
    if not claims:
        return None
    claim = rng.choice(claims)
    number = claim.group(2)
    changed = str(int(number) + rng.randint(1, 9)) if "." not in number else f"{float(number) + rng.randint(1, 9):g}"
    return text[: claim.start(2)] + changed + text[claim.end(2) :]


def report_flags(name: str, texts: list[str], show: int) -> int:
    """Print the flag count of `texts` and up to `show` flagged equations; return the count."""
    flagged = [(i, false_equations(text)) for i, text in enumerate(texts)]
    flagged = [(i, equations) for i, equations in flagged if equations]
    print(f"{name}: {len(flagged)} of {len(texts)} flagged ({len(flagged) / max(len(texts), 1):.2%})")
    for i, equations in flagged[:show]:
        print(f"  #{i}: {'; '.join(str(e) for e in equations[:3])}")
    return len(flagged)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-template", type=int, default=50, help="Instances per authored template.")
    parser.add_argument("--n-train", type=int, default=0, help="GSM8K train solutions (0: all).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--show", type=int, default=40, help="Flagged solutions printed per set.")
    args = parser.parse_args()

    templates = template_solutions(args.per_template, args.seed)
    template_flags = report_flags("template solutions", templates, args.show)
    figures = {"template_n": len(templates), "template_false_flags": template_flags}
    if TRAIN.exists():
        solutions = gsm8k_solutions(args.n_train)
        start = time.perf_counter()
        gsm8k_flags = report_flags("gsm8k train solutions", solutions, args.show)
        seconds = time.perf_counter() - start
        rng = random.Random(args.seed)
        pairs = [(text, plant(text, rng)) for text in solutions]
        pairs = [(text, planted) for text, planted in pairs if planted is not None]
        found = sum(len(false_equations(planted)) > len(false_equations(text)) for text, planted in pairs)
        print(f"planted errors: {found} of {len(pairs)} found; {len(solutions) / seconds:,.0f} solutions/s")
        figures |= {
            "gsm8k_n": len(solutions),
            "gsm8k_flagged": gsm8k_flags,
            "gsm8k_flag_rate": round(gsm8k_flags / len(solutions), 4),
            "planted_recall": round(found / len(pairs), 3),
        }
    else:
        print(f"{TRAIN} is absent: GSM8K false flags and planted recall not measured")
    print(" ".join(f"{key}={value}" for key, value in figures.items()))


if __name__ == "__main__":
    main()

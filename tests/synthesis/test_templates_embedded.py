"""Template synthesis with the real embedded model (vLLM on CPU): the stages run and their accounting is honest.

The 135M model rarely writes a valid template or paraphrase; these tests do not
ask for a yield, only that every reply ends as a template or as a rejection
with a reason, and that whatever is accepted passed the same checks.
"""

import json
from pathlib import Path

import pytest

from mathforge.records import Problem
from mathforge.sandbox import SandboxConfig, SandboxPool
from mathforge.synthesis.template_files import load_authored_templates
from mathforge.synthesis.templates import (
    CallConfig,
    DecoupleConfig,
    ParaphraseConfig,
    TemplateSynthesisConfig,
    decouple,
    instantiate,
    paraphrase,
)
from mathforge.verify import VerifyConfig

REPO = Path(__file__).resolve().parents[2]
N_SEEDS = 4


@pytest.mark.integration
def test_decoupling_and_paraphrase_with_the_embedded_model(vllm_generator):
    rows = [json.loads(line) for line in (REPO / "data/seeds/grade_school.jsonl").read_text().splitlines()[:N_SEEDS]]
    seeds = [Problem(problem_id=r["id"], problem=r["problem"], answer=r["answer"], source="grade_school") for r in rows]
    config = TemplateSynthesisConfig(
        decouple=DecoupleConfig(max_seeds=N_SEEDS, params=CallConfig(max_tokens=400, temperature=0.2)),
        paraphrase=ParaphraseConfig(enabled=True, max_problems=4, params=CallConfig(max_tokens=200, temperature=0.7)),
    )
    with SandboxPool(SandboxConfig(n_workers=2)) as pool:
        decoupled = decouple(seeds, vllm_generator, config=config, pool=pool, verify_config=VerifyConfig())
        authored = load_authored_templates(REPO / "configs/templates", ids=["ratio_share"])
        instances = instantiate(authored, n_per_template=4, seed=0, pool=pool, config=config)
        reworded = paraphrase(
            instances.problems, vllm_generator, pool=pool, config=config, verify_config=VerifyConfig()
        )

    assert len(decoupled.templates) + len(decoupled.rejected) == N_SEEDS
    assert all(row.reason and row.stage == "template_decouple" for row in decoupled.rejected)
    assert sum(decoupled.counts.values()) == len(decoupled.rejected)
    assert len(reworded.problems) + len(reworded.rejected) == 4
    assert all(row.reason for row in reworded.rejected)
    print(f"decoupled {len(decoupled.templates)}/{N_SEEDS}: {decoupled.counts}")
    print(f"paraphrased {len(reworded.problems)}/4: {reworded.counts}")

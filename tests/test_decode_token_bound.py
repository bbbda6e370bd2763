"""The build's upper bound of generated tokens, which decides eager vs compiled for a bf16 CPU engine."""

from mathforge.config import load_config
from mathforge.pipeline import decode_token_bound
from tests.conftest import REPO


def test_bound_counts_seeds_templates_trials_and_corrections():
    config = load_config(REPO / "configs" / "demo.yaml")
    seeds = sum(source.limit for source in config.ingest.sources)
    templates = len(config.templates.templates) + config.templates.decouple.max_seeds
    problems = seeds + templates * config.templates.n_instances_per_template
    dart = problems * config.sampling.n_max * config.sampling.max_tokens
    corrections = config.self_correction.max_attempts * config.self_correction.max_total_tokens
    assert decode_token_bound(config) == dart + corrections


def test_bound_is_unknown_when_a_source_has_no_limit(tmp_path):
    config = load_config(REPO / "configs" / "demo.yaml")
    unlimited = config.ingest.model_copy(update={"sources": [config.ingest.sources[0].model_copy(update={"limit": None})]})
    assert decode_token_bound(config.model_copy(update={"ingest": unlimited})) is None

"""Template synthesis alone: ingest (skipped if done) → templates. `python -m flows.template_synthesis CONFIG`."""

import sys

from prefect import flow

from flows import tasks
from mathforge.config import load_config
from mathforge.store import StageResult


@flow(name="template-synthesis")
def template_synthesis(config_path: str) -> StageResult:
    """Instantiate authored and LLM-decoupled templates into new problems with computed answers."""
    config = load_config(config_path)
    return tasks.templates(config, tasks.ingest(config))


if __name__ == "__main__":
    print(template_synthesis(sys.argv[1]).stage_dir)

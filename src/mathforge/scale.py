"""Scale-out on Ray: generation-heavy stages run their parts on a Ray cluster.

A stage splits its input into parts (`Stage.part`); each part is a unit of work
that writes its own Parquet shards into the shared run directory, so a lost
worker costs one part, not the run, and a rerun redoes only unfinished parts.
Workers are Ray actors that each hold one generator (one vLLM replica per GPU,
`num_gpus_per_replica`), fed parts through an `ActorPool`. We use plain actors
rather than `ray[llm]`'s batch processor: that pins an older vLLM and keeps only
the first of `n` completions, while DART needs all of them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import Field

from mathforge.records import Problem
from mathforge.section import Section
from mathforge.store import Stage

log = logging.getLogger("mathforge")


class ScaleConfig(Section):
    """Where generation-heavy stages run."""

    backend: Literal["local", "ray"] = Field(default="local", description="'local': parts run in this process; 'ray': on a Ray cluster.")
    ray_address: str | None = Field(
        default=None, description="Ray cluster address ('auto', 'ray://host:10001'); None starts a local Ray instance."
    )
    num_replicas: int = Field(default=1, ge=1, description="Generator replicas (Ray actors) working in parallel.")
    num_gpus_per_replica: float = Field(default=0.0, ge=0.0, description="GPUs reserved per replica (0 on CPU).")
    num_cpus_per_replica: float = Field(default=1.0, gt=0.0, description="CPUs reserved per replica.")


#: Runs one part: (build config, the part's problems, the part's Stage) -> the part's stats.
RunPart = Callable[[Any, list[Problem], Stage], dict]


def run_parts_on_ray(config, stage: Stage, parts: dict[int, list[Problem]], run_part: RunPart) -> None:
    """Run a stage's parts on Ray actors; raise after all parts settle if any failed.

    Every actor builds its generator once (vLLM replica or scripted) and runs
    `run_part` (e.g. `pipeline.sampling.dart_part`, a module-level function that Ray
    pickles by reference, so this module need not import the pipeline) for
    each part it is handed; parts write straight into the run directory, so
    the driver only learns which ones finished.
    """
    import ray
    from ray.util import ActorPool

    if not parts:
        return
    if not ray.is_initialized():
        ray.init(address=config.scale.ray_address, include_dashboard=False, log_to_driver=False)
    scale = config.scale

    @ray.remote(num_cpus=scale.num_cpus_per_replica, num_gpus=scale.num_gpus_per_replica)
    class PartWorker:
        def run(self, build: Any, stage_key: tuple[str, str, str, str], index: int, problems: list[dict]) -> int:
            run_dir, name, config_fp, input_fp = stage_key
            parent = Stage(Path(run_dir), name, config_fingerprint=config_fp, input_fingerprint=input_fp)
            run_part(build, [Problem(**p) for p in problems], parent.part(index))
            return index

    stage_key = (str(stage.run_dir), stage.name, stage.config_fingerprint, stage.input_fingerprint)
    workers = [PartWorker.remote() for _ in range(min(scale.num_replicas, len(parts)))]
    pool = ActorPool(workers)
    items = [(index, [p.model_dump() for p in problems]) for index, problems in sorted(parts.items())]
    failures = []
    for index, problems in items:
        pool.submit(lambda actor, item: actor.run.remote(config, stage_key, item[0], item[1]), (index, problems))
    while pool.has_next():
        try:
            finished = pool.get_next_unordered()
            log.info("ray: part %d done", finished)
        except Exception as error:  # a lost worker or a failing part: the others keep going
            failures.append(error)
    if failures:
        raise RuntimeError(f"{len(failures)} of {len(items)} parts failed on Ray (rerun resumes them): {failures[0]}")

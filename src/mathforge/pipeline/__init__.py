"""Stage runners: each reads its inputs from the run directory, calls the pure stage
functions, and writes shards and a manifest through `mathforge.store`.

Flows call these as Prefect tasks and pass `StageResult`s (paths and small
summaries) between them; the runners are plain functions, usable without
Prefect in notebooks and tests.

The modules follow the stages: `common` (run directory, readers, the build's
generator and fingerprints, `decode_token_bound`), `problems` (ingest and
template synthesis), `sampling` (DART and self-correction) and `selection`
(curate, select, export). The stage modules import `common` and nothing else
of this package; this module re-exports their public names.
"""

from mathforge.pipeline.common import decode_token_bound, read_problems, read_samples, read_sources, run_dir
from mathforge.pipeline.problems import ingest_stage, template_stage
from mathforge.pipeline.sampling import dart_part, dart_stage, self_correction_stage, with_model
from mathforge.pipeline.selection import curate_stage, export_stage, row_conversations, select_stage

__all__ = [
    "curate_stage",
    "dart_part",
    "dart_stage",
    "decode_token_bound",
    "export_stage",
    "ingest_stage",
    "read_problems",
    "read_samples",
    "read_sources",
    "row_conversations",
    "run_dir",
    "select_stage",
    "self_correction_stage",
    "template_stage",
    "with_model",
]

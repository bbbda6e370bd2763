"""Prefect tasks: thin wrappers around the stage runners in mathforge.pipeline.

Tasks pass `StageResult`s (run-directory paths and small summaries), never
tables. Generation-heavy tasks retry once (a crashed engine resumes from its
last committed round). Prefect's own result caching is off: stages skip
themselves by fingerprint in the run store.
"""

from prefect import task
from prefect.cache_policies import NONE

from mathforge import pipeline

ingest = task(pipeline.ingest_stage, name="ingest", cache_policy=NONE)
templates = task(pipeline.template_stage, name="template-synthesis", cache_policy=NONE, retries=1, retry_delay_seconds=5)
dart = task(pipeline.dart_stage, name="dart-sampling", cache_policy=NONE, retries=1, retry_delay_seconds=5)
self_correction = task(pipeline.self_correction_stage, name="self-correction", cache_policy=NONE, retries=1, retry_delay_seconds=5)
curate = task(pipeline.curate_stage, name="curate", cache_policy=NONE)
select = task(pipeline.select_stage, name="select", cache_policy=NONE, retries=1, retry_delay_seconds=5)
export = task(pipeline.export_stage, name="export", cache_policy=NONE)

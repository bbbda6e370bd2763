"""mathforge: verified math-reasoning SFT datasets.

Which modules may import which
------------------------------
The modules form layers, lowest first. A module may import modules of its own
layer and of the layers below, never of a layer above. An entry names one
module, or with `.*` a package and every module in it; every module of
src/mathforge and flows/ belongs to exactly one entry.
tests/test_import_layers.py reads this list and checks every import, including
imports inside functions, and that no two modules import each other, directly
or around a circle.

1. foundation: mathforge, mathforge.records, mathforge.section, mathforge.config_files, mathforge.store, mathforge.progress
2. engines: mathforge.generation.*, mathforge.verify.*, mathforge.sandbox.*, mathforge.prompts
3. stages: mathforge.ingest, mathforge.conversation, mathforge.benchmark_sets, mathforge.evaluate, mathforge.finetune, mathforge.synthesis.*, mathforge.curate.*, mathforge.select.*, mathforge.scale
4. assembly: mathforge.config, mathforge.export, mathforge.report, mathforge.inspect
5. pipeline: mathforge.pipeline.*, mathforge.incremental
6. flows: flows.*
7. front door: mathforge.cli

Foundation is the schema of every table, the base of every config section and
the run store. Engines talk to a model, judge an answer, run code or render a
prompt. Stages turn tables into tables with them; `mathforge.config` composes
their config sections into one `BuildConfig`. The pipeline chains the stages,
Prefect flows wrap the pipeline, and the CLI starts a flow.
"""

__version__ = "0.1.0"

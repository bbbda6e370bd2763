"""notebooks/inspect_run.ipynb executed by a real kernel against a real scripted-backend run, and the loader on that run."""

import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from mathforge import inspect as mfi
from mathforge import pipeline
from mathforge.config import load_config

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "inspect_run.ipynb"


@pytest.fixture(scope="module")
def built_run(tmp_path_factory):
    """Seeds → ingest → DART → k-means selection → export on the scripted backend; returns (run dir, export dir)."""
    import yaml

    tmp = tmp_path_factory.mktemp("inspect-run")
    seeds = tmp / "seeds.jsonl"
    rows = [
        {"id": f"s{i}", "problem": f"A crate holds {i + 3} boxes of {i + 4} pens. How many pens?", "answer": str((i + 3) * (i + 4))}
        for i in range(8)
    ]
    seeds.write_text("\n".join(json.dumps(r) for r in rows) + '\n{"id": "bad", "problem": \n')
    data = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    data.update(
        run={"name": "nb", "runs_dir": str(tmp / "runs")},
        ingest={"sources": [{"path": str(seeds)}]},
        generation={"backend": "scripted", "scripted": {"pass_rate": 0.5, "seed": 1}},
        templates={"enabled": False},
        self_correction={"enabled": False},
        curation=None,
        selection={
            "steps": [{"method": "kmeans", "budget": {"rows": 10}, "n_clusters": 3}],
            "embedding_cache_dir": str(tmp / "embeddings"),
        },
    )
    data["sampling"].update({"k_uniform": 2, "n_max": 12, "max_per_round": 2})
    data["output"]["export_dir"] = str(tmp / "exports" / "nb")
    config_path = tmp / "nb.yaml"
    config_path.write_text(yaml.safe_dump(data))
    config = load_config(config_path)
    ingested = pipeline.ingest_stage(config)
    dart = pipeline.dart_stage(config, [ingested])
    selected = pipeline.select_stage(config, [(dart, "accepted")])
    export = pipeline.export_stage(config, [(selected, "data")], upstream=[ingested, dart, selected], query_info=dart)
    return pipeline.run_dir(config), Path(export.manifest["export_path"])


def test_loader_reads_every_stage_of_a_real_run(built_run):
    run_dir, export_dir = built_run
    view = mfi.load_run(run_dir)
    assert list(view.stages["stage"]) == ["ingest", "dart", "select", "export"]
    for row in view.stages.itertuples():
        manifest = view.manifest(row.stage)
        expected = (manifest["rows_in"], manifest["rows_out"], sum(manifest["drop_reasons"].values()))
        assert (row.rows_in, row.rows_out, row.dropped) == expected
    assert ("ingest", "quarantined_invalid_json", 1) in set(view.drops.itertuples(index=False, name=None))
    dart = view.manifest("dart")
    # Committed DART shards are readable: what the manifest counted is what the loader reads.
    assert len(view.read("dart/accepted")) == dart["counts"]["accepted"] > 0
    assert len(view.query_info()) == len(view.problems()) == 8
    assert len(view.judged_samples()) == dart["rows_in"]
    kept = view.samples()
    assert len(kept) == 10 and kept["cluster_id"].notna().all()
    exported = mfi.load_run(export_dir)
    assert sorted(exported.samples()["sample_id"]) == sorted(kept["sample_id"])


def test_notebook_executes_and_writes_its_figures(built_run, tmp_path):
    run_dir, _ = built_run
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    (parameters,) = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
    figures_dir = tmp_path / "figures"
    parameters.source = f"run_path = {str(run_dir)!r}\nfigures_dir = {str(figures_dir)!r}"
    # The python3 kernelspec ipykernel ships resolves to the interpreter running the tests (the venv).
    NotebookClient(notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}).execute()

    for name in mfi.FIGURE_NAMES:
        path = figures_dir / f"{name}.png"
        assert path.exists() and path.stat().st_size > 1000, name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    shown = [cell for cell in notebook.cells if cell.cell_type == "code" and any("image/png" in o.get("data", {}) for o in cell.outputs)]
    assert len(shown) == len(mfi.FIGURE_NAMES)

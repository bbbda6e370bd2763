"""store.py: atomic shards, skip by fingerprint, resume from the last committed shard."""

import pyarrow as pa
import pytest

from mathforge.store import Stage, StageSummary, fingerprint, run_stage, shards


def _table(values):
    return pa.table({"x": pa.array(values, pa.int64())})


def test_finished_stage_with_same_fingerprints_is_skipped(tmp_path):
    calls = []

    def work(stage: Stage) -> StageSummary:
        calls.append(1)
        stage.write_shard(0, {"data": _table([1, 2])})
        return StageSummary(rows_in=2, rows_out=2)

    first = run_stage(tmp_path, "s", {"k": 1}, [], work)
    second = run_stage(tmp_path, "s", {"k": 1}, [], work)
    assert (first.skipped, second.skipped) == (False, True)
    assert len(calls) == 1
    assert second.manifest["outputs"] == {"data": 2}


def test_changed_config_reruns_and_wipes_stale_shards(tmp_path):
    def work_factory(values):
        def work(stage):
            for i, v in enumerate(values):
                if not stage.shard_done(i):
                    stage.write_shard(i, {"data": _table([v])})
            return StageSummary(rows_out=len(values))

        return work

    run_stage(tmp_path, "s", {"k": 1}, [], work_factory([1, 2, 3]))
    result = run_stage(tmp_path, "s", {"k": 2}, [], work_factory([7]))
    assert not result.skipped
    assert Stage(tmp_path, "s", config_fingerprint=fingerprint({"k": 2}), input_fingerprint=fingerprint([])).read().column("x").to_pylist() == [7]


def test_crashed_stage_resumes_from_last_committed_shard(tmp_path):
    done = []
    crashed = []

    def crashing(stage):
        for i in range(4):
            if stage.shard_done(i):
                continue
            if i == 2 and not crashed:
                crashed.append(True)
                done.append("crash")
                # Parquet written but no marker: this shard must be redone, not half-counted.
                (stage.dir / "data").mkdir(exist_ok=True)
                (stage.dir / "data" / "part-00002.parquet").write_bytes(b"garbage")
                raise RuntimeError("killed")
            stage.write_shard(i, {"data": _table([i])}, {"rows_out": 1})
            done.append(i)
        return StageSummary(rows_out=4)

    with pytest.raises(RuntimeError):
        run_stage(tmp_path, "s", {}, [], crashing)
    result = run_stage(tmp_path, "s", {}, [], crashing)
    assert done == [0, 1, "crash", 2, 3]
    assert result.manifest["outputs"] == {"data": 4}
    stage = Stage(tmp_path, "s", config_fingerprint=fingerprint({}), input_fingerprint=fingerprint([]))
    assert sorted(stage.read().column("x").to_pylist()) == [0, 1, 2, 3]


def test_upstream_change_changes_fingerprint(tmp_path):
    def work(stage):
        stage.write_shard(0, {"data": _table([1])})
        return StageSummary()

    up1 = run_stage(tmp_path, "a", {"v": 1}, [], work)
    down1 = run_stage(tmp_path, "b", {}, [up1], work)
    up2 = run_stage(tmp_path, "a", {"v": 2}, [], work)
    down2 = run_stage(tmp_path, "b", {}, [up2], work)
    assert down1.fingerprint != down2.fingerprint and not down2.skipped


def test_shards_split_without_losing_rows():
    parts = shards(_table(list(range(10))), 4)
    assert [p.num_rows for p in parts] == [4, 4, 2]
    with pytest.raises(ValueError):
        shards(_table([1]), 0)

"""Progress lines: throttled, with done/total, extras and a time estimate."""

import logging

from mathforge.progress import GenerationProgress, Progress, stage_label


def test_progress_throttles_and_always_prints_the_last_line(caplog):
    caplog.set_level(logging.INFO, logger="mathforge")
    progress = Progress("dart", 4, every_s=3600)
    progress.update(1, accepted=2)  # within every_s of the start: quiet
    progress.update(2, force=True, accepted=3, left_s=90)
    progress.update(4, accepted=5)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert lines[0].startswith("dart: 2/4 problems, accepted 3, at most 1m30s left")
    assert lines[1].startswith("dart: 4/4 problems, accepted 5, ") and "left" not in lines[1] and "ETA" not in lines[1]


def test_generation_progress_speaks_vllm_tqdm_protocol(caplog):
    caplog.set_level(logging.INFO, logger="mathforge")
    assert list(GenerationProgress(["a", "b"], desc="Rendering prompts")) == ["a", "b"]
    GenerationProgress.every_s = 0.0
    try:
        with stage_label("dart round 1"):
            bar = GenerationProgress(total=4, desc="Processed prompts", dynamic_ncols=True, postfix="")
            assert bar.format_dict["elapsed"] > 0
            bar.postfix = "est. speed input: 10.00 toks/s, output: 123.40 toks/s"
            bar.update(2)
            bar.refresh()
            bar.close()
    finally:
        GenerationProgress.every_s = 15.0
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("dart round 1: 2/4 requests, 123 tok/s, ETA ")
    assert lines[-1].startswith("dart round 1: 2/4 requests")

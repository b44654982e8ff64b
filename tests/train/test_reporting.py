"""summary.json: written and read back through one schema."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from deepcam_hvd.errors import DataError
from deepcam_hvd.train.reporting import RunSummary


def summary() -> RunSummary:
    return RunSummary(ranks=2, nodes=1, local_batch_size=2, gradient_accumulation_frequency=1,
                      global_batch_size=4, target_iou=0.82)


def test_round_trip_and_derived_figures(tmp_path: Path) -> None:
    s = summary()
    for seconds, iou in ((10.0, 0.5), (12.0, 0.83)):
        s.epoch_times_s.append(seconds)
        s.record_epoch(1.0, 8.0, 0.01, 0.02, iou, 0.9)
    s.finish()
    assert (s.epochs_run, s.time_to_16_epochs_s, s.time_to_16_epochs_estimated) == \
        (2, 16 * 11.0, True)
    s.finish(estimate_16_epochs=False)  # a fixed-epoch run reports no estimate
    assert s.time_to_16_epochs_s is None
    s.write(tmp_path / "summary.json")
    assert RunSummary.from_json(tmp_path / "summary.json") == s


@pytest.mark.parametrize(("target", "ious", "status", "mlperf"), [
    (0.80, [0.5, 0.81], "success", "aborted"),  # NERSC-10's target is no MLPerf success
    (0.80, [0.5, 0.82], "success", "success"),  # MLPerf's 0.82 (>=) reached
    (0.90, [0.85], "aborted", "success"),  # a stricter target missed, MLPerf's reached
    (0.82, [], "aborted", "aborted"),  # stopped before any evaluation
])
def test_mlperf_status_follows_mlperf_target_not_the_runs(
        target: float, ious: list[float], status: str, mlperf: str) -> None:
    s = summary()
    s.target_iou, s.eval_iou = target, ious
    s.converged = bool(ious) and max(ious) >= target
    s.epochs_to_target, s.time_to_target_s = (len(ious), 9.0) if s.converged else (None, None)
    s.settle_status()
    assert (s.status, s.mlperf_status) == (status, mlperf)
    assert ("MLPerf run_stop" in s.line()) == (status != mlperf)


def test_unknown_keys_ignored_missing_ones_default(tmp_path: Path) -> None:
    data = {**summary().as_dict(), "from_a_newer_version": 1}
    del data["allocator"]
    (tmp_path / "summary.json").write_text(json.dumps(data))
    got = RunSummary.from_json(tmp_path / "summary.json")
    assert got.allocator == "" and got.ranks == 2


def test_unreadable_or_foreign_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=rf"^{tmp_path / 'none.json'}: no readable summary"):
        RunSummary.from_json(tmp_path / "none.json")
    (tmp_path / "other.json").write_text('{"ranks": 2}')
    with pytest.raises(DataError, match=rf"^{tmp_path / 'other.json'}: not a deepcam-hvd summ"):
        RunSummary.from_json(tmp_path / "other.json")


def test_tensorboard_writer_does_not_import_tensorflow(tmp_path: Path) -> None:
    script = ("import sys; from pathlib import Path\n"
              "from deepcam_hvd.train.reporting import summary_writer\n"
              f"w = summary_writer(Path({str(tmp_path)!r}))\n"
              "w.add_scalar('loss', 1.5, 3); w.close()\n"
              "print('tensorflow' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False" and proc.stderr == ""
    (events,) = tmp_path.glob("events.out.tfevents.*")
    assert events.stat().st_size > 0

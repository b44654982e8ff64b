"""``benchmarks/gpu_check.sh`` and its helper ``benchmarks/gpu_check.py``, on the CPU.

The check itself is meant for a GPU node; here its plumbing runs in ``--smoke`` mode (the same
stages on the CPU, tiny sizes, the already installed Horovod instead of a build) and the
helper's bookkeeping is checked on made-up stage outputs.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def helper() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_missing_lists_only_absent_modules(helper: ModuleType,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(helper, "REQUIREMENTS", [("json", "json-req"),
                                                 ("no_such_module_xyz", "xyz>=1")])
    assert helper.missing() == ["xyz>=1"]


def test_record_and_summary(helper: ModuleType, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "build.log").write_text("compiling\nCMake Error: NCCL not found\nmake: *** failed\n")
    (logs / "env.log").write_text("{}\n")
    helper.record(tmp_path, "env", 0, 3.04, logs / "env.log")
    helper.record(tmp_path, "build", 2, 40, logs / "build.log")
    helper.record(tmp_path, "bench_fp32_b8", 124, 90, logs / "none.log")
    helper.record(tmp_path, "train", 0, 0, logs / "train.log", "skipped", "out of time")
    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "fp32_b8.json").write_text(json.dumps({
        "batch": 8, "precision": "fp32", "channels_last": False, "samples_per_s": 20.5,
        "median_step_s": 0.39, "max_memory_allocated_bytes": 60 * 2**30,
        "max_memory_reserved_bytes": 64 * 2**30, "backend": "local",
        "per_rank": [{"forward_s": 0.1, "backward_s": 0.25, "comm_wait_s": 0.0,
                      "optimizer_s": 0.04}]}))
    (tmp_path / "run.json").write_text(json.dumps({"mode": "gpu", "host": "h200",
                                                   "budget_s": 450, "elapsed_s": 400}))
    doc = helper.summary(tmp_path)
    by_stage = {s["stage"]: s for s in doc["stages"]}
    assert by_stage["env"]["status"] == "ok" and by_stage["env"]["error"] is None
    assert by_stage["build"]["status"] == "failed"
    assert by_stage["build"]["error"] == "CMake Error: NCCL not found"
    assert by_stage["bench_fp32_b8"]["status"] == "timeout"
    assert by_stage["train"] == {"stage": "train", "status": "skipped", "rc": 0, "seconds": 0,
                                 "log": None, "error": "out of time"}
    assert doc["stages_ok"] == 1 and doc["stages_failed"] == ["build", "bench_fp32_b8"]
    assert doc["stages_skipped"] == ["train"] and doc["mode"] == "gpu"
    (row,) = doc["bench"]
    assert row["config"] == "fp32_b8" and row["samples_per_s"] == 20.5
    assert row["backward_s"] == 0.25 and row["max_memory_allocated_bytes"] == 60 * 2**30
    text = (tmp_path / "summary.md").read_text()
    assert "| fp32_b8 | 8 | 20.5 | 0.39 |" in text and "| 60.0 | 64.0 |" in text
    assert json.loads((tmp_path / "summary.json").read_text())["stages_ok"] == 1


def test_gpu_option_gains_pair_stages_one_change_apart(helper: ModuleType,
                                                      tmp_path: Path) -> None:
    bench = tmp_path / "bench"
    bench.mkdir()
    rates = {"feed_pageable_b8": 40.0, "feed_pinned_b8": 44.0, "feed_prefetch_b8": 46.2,
             "feed_prefetch_cudnn_b8": 45.0, "bf16_b8": 50.0}
    for name, rate in rates.items():
        (bench / f"{name}.json").write_text(json.dumps({
            "batch": 8, "precision": "bf16", "samples_per_s": rate, "median_step_s": 8 / rate,
            "per_rank": [{"input_s": 0.01}]}))
    doc = helper.summary(tmp_path)
    gains = doc["gpu_options"]
    assert list(gains) == ["pin_memory", "device_prefetch", "cudnn_benchmark"]
    assert gains["pin_memory"]["ratio"] == pytest.approx(44 / 40)
    assert (gains["device_prefetch"]["with"], gains["device_prefetch"]["without"]) == \
        ("feed_prefetch", "feed_pinned")
    assert gains["device_prefetch"]["ratio"] == pytest.approx(46.2 / 44)
    assert gains["cudnn_benchmark"]["ratio"] == pytest.approx(45 / 46.2)  # a loss shows too
    assert "| cudnn_benchmark | feed_prefetch_cudnn | feed_prefetch | 8 | 45 | 46.2 | 0.974 |" \
        in (tmp_path / "summary.md").read_text()
    (bench / "feed_pinned_b8.json").unlink()  # a stage that did not run: no pair with it
    assert list(helper.summary(tmp_path)["gpu_options"]) == ["cudnn_benchmark"]


def test_test_counts_read_a_junit_report(helper: ModuleType, tmp_path: Path) -> None:
    report = tmp_path / "r.xml"
    report.write_text(
        '<testsuites><testsuite name="pytest" tests="4">'
        '<testcase classname="tests.a" name="ok"/>'
        '<testcase classname="tests.a" name="bad"><failure message="x"/></testcase>'
        '<testcase classname="tests.b" name="broken"><error message="y"/></testcase>'
        '<testcase classname="tests.b" name="nogpu"><skipped message="needs a GPU"/></testcase>'
        '</testsuite></testsuites>')
    assert helper.test_counts(report) == {"tests": 4, "passed": 1, "skipped": 1,
                                          "failed": ["tests.a::bad", "tests.b::broken"]}
    assert helper.test_counts(tmp_path / "absent.xml") is None
    report.write_text("<testsuites><testsuite")
    assert helper.test_counts(report) is None


def test_error_line_prefers_the_cause(helper: ModuleType, tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("[0]<stderr>:AttributeError: no _cuda_setDevice\n"
                   "RuntimeError: Horovod detected that one or more processes exited with ...\n")
    assert helper._last_error(log) == "[0]<stderr>:AttributeError: no _cuda_setDevice"
    log.write_text("deepcam-hvd: error: --device cuda but torch sees no GPU\nTraceback\n"
                   "ValueError: later error\n")
    assert helper._last_error(log) == "deepcam-hvd: error: --device cuda but torch sees no GPU"
    log.write_text("just the end\n")
    assert helper._last_error(log) == "just the end"
    assert helper._last_error(tmp_path / "absent.log") is None


@pytest.mark.slow
@pytest.mark.multirank  # its Horovod stages run under horovodrun --gloo
def test_smoke_run_of_every_stage(tmp_path: Path) -> None:
    """Every stage of the GPU check, on the CPU: the script's plumbing end to end (~1.5 min)."""
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable, "GPU_CHECK_WORK": str(tmp_path / "work"),
           "GPU_CHECK_BATCHES": "1", "GPU_CHECK_MODES": "bf16-cl", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--smoke",
                           "--no-build", str(out)], capture_output=True, text=True, env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads((out / "summary.json").read_text())
    assert [s["stage"] for s in doc["stages"]] == [
        "env", "deps", "bench_bf16-cl_b1", "data_synth", "train", "feed_pageable_b2",
        "lamb_step", "info", "collectives", "bench_horovod_bf16_b2", "gpu_tests"]
    assert doc["stages_failed"] == [] and doc["stages_skipped"] == [], doc["stages"]
    assert doc["mode"] == "smoke" and doc["elapsed_s"] > 0
    assert doc["environment"]["torch"] and doc["horovod_build"]["installed"]
    assert doc["horovod_collectives"]["allreduce_ok"]
    rows = {r["config"]: r for r in doc["bench"]}
    assert rows["bf16-cl_b1"]["channels_last"] and rows["bf16-cl_b1"]["precision"] == "bf16"
    assert rows["horovod_bf16_b2"]["backend"] == "horovod" and rows["horovod_bf16_b2"]["batch"] == 2
    assert rows["bf16-cl_b1"]["max_rss_bytes"] > 0
    feed = rows["feed_pageable_b2"]
    assert (feed["input"], feed["batch"], feed["precision"]) == ("pageable", 2, "bf16")
    assert feed["input_s"] >= 0
    assert doc["gpu_options"] == {}  # no pinned or prefetched copies without a GPU
    lamb = doc["lamb_step"]
    assert lamb["device"] == "cpu" and lamb["median_one_at_a_time_s"] > 0
    assert lamb["speedup"] == lamb["median_one_at_a_time_s"] / lamb["median_all_at_once_s"]
    assert "lamb_step: one tensor at a time" in (out / "summary.md").read_text()
    tests = doc["gpu_tests"]  # without a GPU the CUDA tests skip; the CPU ones of those files pass
    assert tests["failed"] == [] and tests["skipped"] >= 10 and tests["passed"] >= 5
    assert doc["train"]["epochs_run"] == 2
    assert (out / "train" / "mlperf.log").exists() and (out / "summary.md").exists()
    assert "[gpu-check] done" in proc.stdout

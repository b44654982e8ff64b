"""CUDA-only paths of ``bench step`` and of the GPU check: run on a GPU, skipped without one.

On the GPU node they run with the rest of the suite, or alone:
``python -m pytest tests/test_gpu_bench.py`` (``benchmarks/gpu_check.sh`` covers the full-size
matrix and the Horovod build).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from deepcam_hvd.bench.memory import peak_memory, reset_peak
from deepcam_hvd.cli import main
from deepcam_hvd.distributed.horovod_backend import horovod_build

ROOT = Path(__file__).resolve().parents[1]

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(),
                               reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
pytestmark = needs_gpu


def _bench(*extra: str) -> dict:
    args = ["bench", "step", "--device", "cuda", "--model", "deeplab-xception-small",
            "--height", "64", "--width", "96", "--steps", "2", "--warmup", "1", "--json", *extra]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.output.strip().splitlines()[-1])


def test_peak_memory_counts_a_known_allocation() -> None:
    device = torch.device("cuda", torch.cuda.current_device())
    reset_peak(device)
    block = torch.empty(64 * 2**20, dtype=torch.uint8, device=device)
    figures = peak_memory(device)
    del block
    assert figures["max_memory_allocated_bytes"] >= 64 * 2**20
    assert figures["max_memory_reserved_bytes"] >= figures["max_memory_allocated_bytes"]
    assert figures["device_total_memory_bytes"] > figures["max_memory_reserved_bytes"]


@pytest.mark.parametrize("extra", [(), ("--precision", "bf16", "--channels-last")],
                         ids=["fp32", "bf16-channels-last"])
def test_bench_step_on_gpu_reports_memory(extra: tuple[str, ...]) -> None:
    doc = _bench(*extra)
    assert doc["device"].startswith("cuda")
    assert doc["device_name"] and doc["compute_capability"]
    assert doc["cuda"] == torch.version.cuda
    allocated, reserved = doc["max_memory_allocated_bytes"], doc["max_memory_reserved_bytes"]
    assert 0 < allocated <= reserved < doc["device_total_memory_bytes"]
    assert doc["per_rank"][0]["max_memory_allocated_bytes"] == allocated
    losses = doc["per_rank"][0]["losses"]
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]
    assert doc["median_step_s"] > 0 and doc["per_rank"][0]["forward_s"] > 0


@pytest.mark.parametrize("source", ["pageable", "pinned", "prefetch"])
def test_host_inputs_train_on_the_device_batch(source: str) -> None:
    on_device = _bench()
    host = _bench("--input", source)
    assert host["input"] == source
    assert host["per_rank"][0]["losses"][0] == pytest.approx(
        on_device["per_rank"][0]["losses"][0], rel=1e-5)
    assert 0 <= host["per_rank"][0]["input_s"] < host["median_step_s"]


def test_cudnn_benchmark_is_set_and_reported() -> None:
    doc = _bench("--cudnn-benchmark")
    assert doc["cudnn_benchmark"] is True
    assert _bench()["cudnn_benchmark"] is False


def test_bigger_batch_needs_more_memory() -> None:
    one = _bench("--batch", "1")["max_memory_allocated_bytes"]
    four = _bench("--batch", "4")["max_memory_allocated_bytes"]
    assert four > one


@pytest.mark.multirank
@pytest.mark.skipif(not horovod_build().get("nccl"), reason="Horovod built without NCCL")
@needs_gpu  # listed last so that, without a GPU, this is the reason given
def test_horovod_nccl_collectives_on_gpu(tmp_path: Path) -> None:
    horovodrun = shutil.which("horovodrun") or str(Path(sys.executable).parent / "horovodrun")
    out = tmp_path / "collectives.json"
    proc = subprocess.run(
        [horovodrun, "-np", "1", "-H", "localhost:1", "--gloo", sys.executable,
         str(ROOT / "benchmarks" / "gpu_check.py"), "allreduce", str(out), "cuda"],
        capture_output=True, text=True, timeout=240, env={**os.environ, "NCCL_DEBUG": "INFO"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(out.read_text())
    assert doc["nccl_built"] and doc["device"].startswith("cuda")
    assert doc["allreduce_ok"] and doc["allgather_ok"] and doc["broadcast_ok"]
    assert "NCCL INFO" in proc.stdout + proc.stderr

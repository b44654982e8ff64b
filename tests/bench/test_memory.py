"""Peak-memory helpers of ``bench step`` (``deepcam_hvd.bench.memory``) and the report's use of
them; the GPU side is in ``tests/test_gpu_bench.py``."""

from __future__ import annotations

import pytest
import torch

from deepcam_hvd.bench.memory import device_facts, gib, is_out_of_memory, peak_memory, reset_peak
from deepcam_hvd.bench.report import combine, format_text, rank_figures
from deepcam_hvd.bench.step import StepSettings, StepTimes


def test_cpu_peak_memory_is_the_resident_set() -> None:
    cpu = torch.device("cpu")
    reset_peak(cpu)  # nothing to reset, must not fail
    figures = peak_memory(cpu)
    assert figures["max_memory_allocated_bytes"] is None
    assert figures["max_rss_bytes"] is not None and figures["max_rss_bytes"] > 0
    assert device_facts(cpu)["device_name"] is None


def test_out_of_memory_recognised() -> None:
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory"))
    assert is_out_of_memory(RuntimeError("CUDA error: out of memory"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(ValueError("out of memory"))


def test_gib() -> None:
    assert gib(None) == "n/a" and gib(3 * 2**30) == "3.00 GiB"


def _times() -> StepTimes:
    times = StepTimes()
    for loss in (1.0, 0.9):
        times.add({"input": 0.0, "forward": 0.1, "backward": 0.2, "comm_wait": 0.0,
                   "optimizer": 0.05}, loss)
    return times


@pytest.mark.parametrize("memory", [None, {"max_memory_allocated_bytes": 5 * 2**30,
                                           "max_memory_reserved_bytes": 6 * 2**30,
                                           "device_total_memory_bytes": 140 * 2**30,
                                           "max_rss_bytes": 2**30}])
def test_job_memory_is_the_largest_rank(memory: dict | None) -> None:
    settings = StepSettings(model="deeplab-xception-small", height=32, width=48)
    ranks = [rank_figures(_times(), settings, 1e9, r, 1, memory) for r in range(2)]
    if memory is not None:
        ranks[1] = {**ranks[1], "max_memory_allocated_bytes": 7 * 2**30}
    doc = combine(ranks, settings, 1e9, "horovod", "openmpi", 1)
    text = format_text({**doc, "device": "cuda:0"})
    if memory is None:
        assert doc["max_memory_allocated_bytes"] is None and doc["max_rss_bytes"] is None
        assert "peak" not in text
    else:
        assert doc["max_memory_allocated_bytes"] == 7 * 2**30
        assert doc["device_total_memory_bytes"] == 140 * 2**30
        assert "peak device memory 7.00 GiB allocated, 6.00 GiB reserved, of 140.00 GiB" in text

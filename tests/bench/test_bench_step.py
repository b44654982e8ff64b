"""`deepcam-hvd bench step` on the reduced model at a small size (fast; no full-size timing)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from click.testing import CliRunner

from deepcam_hvd.bench.flops import train_step_flops
from deepcam_hvd.cli import main

ARGS = ["bench", "step", "--model", "deeplab-xception-small", "--height", "32", "--width", "48",
        "--steps", "2", "--warmup", "1", "--json"]


@pytest.fixture(scope="module")
def doc() -> dict:
    result = CliRunner().invoke(main, ARGS, env={"OMP_NUM_THREADS": "1"})
    assert result.exit_code == 0, result.output
    return json.loads(result.output.strip().splitlines()[-1])


def test_json_has_sane_timings(doc: dict) -> None:
    assert doc["ranks"] == 1 and doc["backend"] == "local"
    assert (doc["model"], doc["height"], doc["width"], doc["batch"]) == \
        ("deeplab-xception-small", 32, 48, 1)
    assert doc["steps"] == 2 and doc["warmup"] == 1
    assert 0 < doc["median_step_s"] < 60
    assert doc["samples_per_s"] == pytest.approx(1 / doc["median_step_s"])
    assert doc["gflop_per_s"] == pytest.approx(doc["step_tflop"] * 1e3 / doc["median_step_s"])
    (rank,) = doc["per_rank"]
    assert len(rank["step_s"]) == 2 and all(s > 0 for s in rank["step_s"])
    assert len(rank["cpu_s"]) == 2 and rank["median_cpu_s"] > 0
    phases = [rank[f"{p}_s"] for p in ("forward", "backward", "comm_wait", "optimizer")]
    assert all(p >= 0 for p in phases) and rank["comm_wait_s"] == 0.0  # nothing to reduce
    assert rank["forward_s"] > 0 and rank["backward_s"] > 0
    assert sum(phases) <= 3 * doc["median_step_s"]


def test_json_losses_finite_and_training(doc: dict) -> None:
    losses = doc["per_rank"][0]["losses"]
    assert len(losses) == 3  # warm-up + 2 timed steps, all on the same batch
    assert all(math.isfinite(v) and v > 0 for v in losses)
    assert doc["loss_first_step"] == losses[0] and doc["loss_after_one_step"] == losses[1]
    assert losses[2] < losses[0]  # AdamW on one fixed batch lowers its loss


def test_json_has_memory_and_device_facts_on_cpu(doc: dict) -> None:
    assert doc["device"] == "cpu"
    # no caching allocator on the CPU: the peak resident set size stands in
    assert doc["max_memory_allocated_bytes"] is None and doc["max_memory_reserved_bytes"] is None
    assert doc["device_total_memory_bytes"] is None
    assert doc["max_rss_bytes"] > 50 * 2**20  # the interpreter and torch alone exceed this
    assert doc["per_rank"][0]["max_rss_bytes"] == doc["max_rss_bytes"]
    assert doc["device_name"] is None and doc["compute_capability"] is None
    assert {"cuda", "cudnn_benchmark", "cudnn_allow_tf32", "matmul_allow_tf32"} <= set(doc)


def test_out_of_memory_is_one_error_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import deepcam_hvd.commands.bench as bench_cmd

    def no_memory(*args: object, **kwargs: object) -> None:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB")

    monkeypatch.setattr(bench_cmd, "TrainStep", no_memory)
    args = [a for a in ARGS if a != "--json"] + ["--batch", "8"]
    result = CliRunner().invoke(main, args, env={"OMP_NUM_THREADS": "1"})
    assert result.exit_code == 2, result.output
    assert "ran out of memory at local batch 8" in result.output
    assert "use a smaller --batch" in result.output and "Traceback" not in result.output


def test_text_output() -> None:
    args = [a for a in ARGS if a != "--json"]
    args[args.index("--steps") + 1] = "1"
    result = CliRunner().invoke(main, args, env={"OMP_NUM_THREADS": "1"})
    assert result.exit_code == 0, result.output
    assert "median step" in result.output and "samples/s" in result.output


def test_size_not_multiple_of_16_is_a_clean_error() -> None:
    result = CliRunner().invoke(main, ["bench", "step", "--model", "deeplab-xception-small",
                                       "--height", "40", "--width", "48", "--steps", "1"])
    assert result.exit_code == 2
    assert "multiples of 16" in result.output


def test_full_model_step_flop_matches_the_issue() -> None:
    flop = train_step_flops("deeplab-xception", 16, 3, 1, 768, 1152)
    assert flop == pytest.approx(1.97e12, rel=0.02)  # 3 x 0.655 TFLOP forward
    assert train_step_flops("deeplab-xception", 16, 3, 2, 768, 1152) == pytest.approx(2 * flop)


def test_host_input_on_the_cpu_trains_on_the_same_batch(doc: dict) -> None:
    result = CliRunner().invoke(main, [*ARGS, "--input", "pageable"], env={"OMP_NUM_THREADS": "1"})
    assert result.exit_code == 0, result.output
    host = json.loads(result.output.strip().splitlines()[-1])
    assert (doc["input"], host["input"]) == ("device", "pageable")
    assert host["per_rank"][0]["losses"] == doc["per_rank"][0]["losses"]
    assert 0 <= host["per_rank"][0]["input_s"] < host["median_step_s"]


@pytest.mark.parametrize("extra", [("--input", "pinned"), ("--input", "prefetch"),
                                   ("--cudnn-benchmark",)])
def test_gpu_only_inputs_on_the_cpu_are_one_line(extra: tuple[str, ...]) -> None:
    result = CliRunner().invoke(main, [*ARGS, "--device", "cpu", *extra])
    assert result.exit_code == 2
    assert result.output.startswith("deepcam-hvd: error: bench step --")
    assert "needs a GPU (this rank computes on cpu)" in result.output
    assert len(result.output.strip().splitlines()) == 1

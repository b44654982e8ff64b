"""``deepcam-hvd bench``: timing of the training path (``bench step``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import get_args

import click

from deepcam_hvd.bench.flops import train_step_flops
from deepcam_hvd.bench.memory import (
    device_facts,
    gib,
    is_out_of_memory,
    peak_memory,
    reset_peak,
)
from deepcam_hvd.bench.report import combine, format_text, rank_figures
from deepcam_hvd.bench.step import INPUTS, NUM_CLASSES, StepSettings, TrainStep, time_steps
from deepcam_hvd.commands.options import runtime_options
from deepcam_hvd.config import OptimizerName
from deepcam_hvd.errors import ConfigError, DeepcamError
from deepcam_hvd.horovod_tuning import Workload
from deepcam_hvd.model import MODEL_NAMES, check_input_size
from deepcam_hvd.runtime import start_runtime


@click.group()
def bench() -> None:
    """Benchmarks of the training path."""


@bench.command()
@click.option("--model", type=click.Choice(MODEL_NAMES), default="deeplab-xception",
              show_default=True)
@click.option("--height", type=click.IntRange(min=16), default=768, show_default=True)
@click.option("--width", type=click.IntRange(min=16), default=1152, show_default=True)
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True,
              help="Local batch size per rank.")
@click.option("--steps", type=click.IntRange(min=1), default=5, show_default=True,
              help="Timed steps (after the warm-up).")
@click.option("--warmup", type=click.IntRange(min=0), default=1, show_default=True,
              help="Untimed steps first.")
@click.option("--optimizer", type=click.Choice(get_args(OptimizerName)), default="AdamW",
              show_default=True)
@click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]), default="fp32",
              show_default=True)
@click.option("--channels-last/--no-channels-last", "channels_last", default=False,
              show_default=True, help="The trainer's --channels_last.")
@click.option("--compile/--no-compile", "compile_", default=False, show_default=True,
              help="The trainer's --compile (torch.compile).")
@click.option("--input", "input_", type=click.Choice(INPUTS), default="device",
              show_default=True,
              help="Where each step's batch comes from: one batch kept on the device (the step "
                   "alone), or, on a GPU, a host batch copied every step as the trainer does: "
                   "pageable (--pin_memory off), pinned (--pin_memory on), prefetch (--pin_memory "
                   "on --device_prefetch on). Timed as the input phase.")
@click.option("--cudnn-benchmark/--no-cudnn-benchmark", "cudnn_benchmark", default=False,
              show_default=True, help="The trainer's --cudnn_benchmark on/off (GPU).")
@click.option("--seed", type=int, default=333, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (rank 0).")
@click.option("--output", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Also write the JSON object to this file (rank 0).")
@runtime_options
def step(model: str, height: int, width: int, batch: int, steps: int, warmup: int,
         optimizer: str, precision: str, channels_last: bool, compile_: bool, input_: str,
         cudnn_benchmark: bool, seed: int, as_json: bool, output: str | None, launcher: str,
         backend: str, device: str) -> None:
    """Time full training steps (forward, loss, backward, allreduce, optimizer step).

    Runs under any launcher; prints the median seconds per step, samples/s and GFLOP/s of
    every rank and of the whole job (a step lasts as long as its slowest rank), and the peak
    memory (on a GPU ``torch.cuda.max_memory_allocated`` from the model build to the last
    step; on the CPU the peak resident set size). A batch that does not fit on the GPU is one
    error line naming the batch and the device's memory (exit 2).
    """
    try:
        check_input_size(height, width)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    settings = StepSettings(model=model, height=height, width=width, batch=batch,
                            optimizer=optimizer, precision=precision,
                            channels_last=channels_last, compile=compile_, seed=seed,
                            input=input_, cudnn_benchmark=cudnn_benchmark)
    runtime = start_runtime(launcher, backend, device, workload=Workload(
        model, height, width, batch, settings.in_channels))
    b = runtime.backend
    try:
        flop = batch * train_step_flops(model, settings.in_channels, NUM_CLASSES, 1, height,
                                        width)
        reset_peak(runtime.device)
        try:
            train_step = TrainStep(settings, b, runtime.device)
            times = time_steps(train_step, steps, warmup, barrier=b.barrier)
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            total = peak_memory(runtime.device)["device_total_memory_bytes"]
            raise DeepcamError(
                f"bench step: {runtime.device} ran out of memory at local batch {batch} "
                f"({model} {height}x{width} {precision}"
                f"{' channels-last' if channels_last else ''}; the device has {gib(total)}); "
                "use a smaller --batch") from None
        mine = rank_figures(times, settings, flop, b.rank, runtime.threads.threads,
                            peak_memory(runtime.device))
        ranks = b.allgather_object(mine)
        if b.is_root:
            doc = combine(ranks, settings, flop, b.name, runtime.launch.launcher, warmup)
            doc["device"] = str(runtime.device)
            doc.update(device_facts(runtime.device))
            text = json.dumps(doc, indent=2)
            click.echo(json.dumps(doc) if as_json else format_text(doc))
            if output:
                Path(output).write_text(text + "\n")
    finally:
        b.shutdown()

"""Our training step against the MLCommons reference's, side by side in one process.

Times full training steps (forward, weighted cross-entropy, backward, AdamW step, zero_grad) of

* ``ref``: the reference implementation (``architecture/deeplab_xception.py`` and
  ``utils/losses.py`` imported from ``--reference-src``; nothing of it is in this repository);
* ours, through ``deepcam_hvd.bench.TrainStep`` (the trainer's modules), in cumulative
  variants so each optimisation's gain is measured on its own:
  ``base`` (unoptimised: NCHW, out-of-place ReLUs, i.e. ``REFERENCE_EXECUTION``),
  ``cl`` (+ channels-last encoder/ASPP), ``cl_split`` (+ NHWC-forward / NCHW-backward decoder
  convolutions), ``all`` (+ in-place ReLUs and residual sums; all off by default),
  ``all_fused`` (+ ``torch.optim.AdamW(fused=True)``, which the trainer does not use yet),
  ``base_fused`` (the unoptimised model with the fused AdamW alone).

Variants run in rounds (one step of each per round, order rotated every round), so a change in
machine load hits every variant alike; wall seconds and the process's CPU seconds are both
recorded (on a shared machine CPU seconds are the steadier measure of work). Every variant
starts from the same seed, hence the same weights as the reference (the reference initialises
identically), and trains on the same synthetic batch, so the losses of the first step and after
one update are compared too.

    .venv/bin/python benchmarks/step_vs_reference.py \
        --reference-src /tmp/mlc_ref/deepcam/src/deepCam [--rounds 3] [--warmup 1] \
        [--height 768 --width 1152] [--threads 2] [--variants ref,base,all]

Writes ``benchmarks/results/step_vs_reference.json`` (or ``--output``) and prints a table.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from deepcam_hvd.bench.flops import train_step_flops
from deepcam_hvd.bench.step import StepSettings, TrainStep, synthetic_batch
from deepcam_hvd.distributed.local import LocalBackend
from deepcam_hvd.model.execution import (
    OPTIMISED_EXECUTION,
    REFERENCE_EXECUTION,
    Execution,
    execution,
)
from deepcam_hvd.train.loss import CLASS_FREQUENCIES

RESULTS = Path(__file__).resolve().parent / "results" / "step_vs_reference.json"
VARIANTS: dict[str, Execution | None] = {
    "ref": None,
    "base": REFERENCE_EXECUTION,
    "cl": Execution(channels_last=True, split_backward=False, inplace=False),
    "cl_split": Execution(channels_last=True, split_backward=True, inplace=False),
    "all": OPTIMISED_EXECUTION,
    "all_fused": OPTIMISED_EXECUTION,
    "base_fused": REFERENCE_EXECUTION,
}
StepFn = Callable[[], tuple[float, float]]


def reference_step(src: Path, settings: StepSettings) -> StepFn:
    """A step of the reference network, loss and AdamW (settings as the issue's measurement)."""
    if not (src / "architecture" / "deeplab_xception.py").is_file():
        raise SystemExit(f"--reference-src {src} has no architecture/deeplab_xception.py")
    sys.path.insert(0, str(src))
    try:
        net_module = importlib.import_module("architecture.deeplab_xception")
        loss_module = importlib.import_module("utils.losses")
    finally:
        sys.path.remove(str(src))
    torch.manual_seed(settings.seed)
    net = net_module.DeepLabv3_plus(n_input=settings.in_channels, n_classes=3, os=16,
                                    pretrained=False, _print=False)
    net.train()
    weights = [f ** -0.125 for f in CLASS_FREQUENCIES]
    criterion = loss_module.CELoss(weights)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-6,
                            weight_decay=1e-6)
    data, label = synthetic_batch(settings, 0, torch.device("cpu"))

    def run() -> tuple[float, float]:
        start = time.perf_counter()
        loss = criterion(net(data), label)
        value = float(loss.detach())
        loss.backward()
        opt.step()
        opt.zero_grad()
        return time.perf_counter() - start, value

    return run


def our_step(settings: StepSettings, options: Execution, fused: bool) -> StepFn:
    """A step of our training path under the given execution options."""
    step = TrainStep(settings, LocalBackend(), torch.device("cpu"))
    if fused:
        step.optimizer = torch.optim.AdamW(step.model.parameters(), lr=1e-3, betas=(0.9, 0.999),
                                           eps=1e-6, weight_decay=1e-6, fused=True)

    def run() -> tuple[float, float]:
        with execution(options):
            phases, loss = step.run()
        return sum(phases.values()), loss

    return run


def main() -> None:
    """Parse arguments, run the rounds, write the JSON and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference-src", type=Path,
                        default=os.environ.get("DEEPCAM_REFERENCE_SRC"),
                        help="the reference's deepcam/src/deepCam directory")
    parser.add_argument("--height", type=int, default=768)
    parser.add_argument("--width", type=int, default=1152)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    names = [v for v in args.variants.split(",") if v]
    unknown = set(names) - set(VARIANTS)
    if unknown:
        raise SystemExit(f"unknown variants {sorted(unknown)}; known: {', '.join(VARIANTS)}")
    if "ref" in names and args.reference_src is None:
        raise SystemExit("--reference-src (or DEEPCAM_REFERENCE_SRC) is needed for 'ref'")
    torch.set_num_threads(args.threads)
    settings = StepSettings(height=args.height, width=args.width)

    steps: dict[str, StepFn] = {}
    for name in names:
        options = VARIANTS[name]
        steps[name] = (reference_step(args.reference_src, settings) if options is None
                       else our_step(settings, options, fused=name.endswith("_fused")))
    times: dict[str, list[float]] = {n: [] for n in names}
    cpu_times: dict[str, list[float]] = {n: [] for n in names}  # process CPU seconds
    losses: dict[str, list[float]] = {n: [] for n in names}
    loads: list[list[float]] = []
    for name in names:  # warm-up: allocations, oneDNN primitive creation
        for _ in range(args.warmup):
            seconds, loss = steps[name]()
            losses[name].append(loss)
            print(f"warm-up: {name:10s} {seconds:7.2f} s  loss {loss:.6f}", flush=True)
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            cpu = time.process_time()
            seconds, loss = steps[name]()
            cpu_times[name].append(time.process_time() - cpu)
            times[name].append(seconds)
            losses[name].append(loss)
            print(f"round {r}: {name:10s} {seconds:7.2f} s (cpu {cpu_times[name][-1]:.1f} s)"
                  f"  loss {loss:.6f}  load {os.getloadavg()[0]:.1f}", flush=True)
        loads.append(list(os.getloadavg()))

    flop = train_step_flops(settings.model, settings.in_channels, 3, 1, args.height, args.width)
    base = "base" if "base" in names else names[0]
    rows: dict[str, Any] = {}
    for name in names:
        median = statistics.median(times[name])
        rows[name] = {
            "step_s": times[name], "median_step_s": median, "samples_per_s": 1 / median,
            "cpu_s": cpu_times[name], "median_cpu_s": statistics.median(cpu_times[name]),
            "gflop_per_s": flop / median / 1e9, "losses": losses[name],
            "loss_rel_diff_vs_" + base: [abs(a - b) / abs(b) for a, b in
                                         zip(losses[name], losses[base], strict=False)],
        }
    doc: dict[str, Any] = {
        "height": args.height, "width": args.width, "batch": 1, "threads": args.threads,
        "precision": "fp32", "optimizer": "AdamW", "rounds": args.rounds, "warmup": args.warmup,
        "step_tflop": flop / 1e12, "variants": rows, "load_average_per_round": loads,
        "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
    }
    if "ref" in rows:
        for name in names:
            rows[name]["cpu_speedup_vs_ref"] = (rows["ref"]["median_cpu_s"]
                                                / rows[name]["median_cpu_s"])
            rows[name]["speedup_vs_ref"] = (rows["ref"]["median_step_s"]
                                            / rows[name]["median_step_s"])
    if "base" in rows:
        for name in names:
            rows[name]["speedup_vs_base"] = (rows["base"]["median_step_s"]
                                             / rows[name]["median_step_s"])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\n{args.height}x{args.width}, batch 1, fp32, {args.threads} threads, "
          f"{args.rounds} rounds; load averages {loads}")
    print("| variant | median s/step | samples/s | GFLOP/s | vs ref | vs base | loss 1st | "
          "loss after 1 step |")
    print("|---|---|---|---|---|---|---|---|")
    for name, row in rows.items():
        after = row["losses"][1] if len(row["losses"]) > 1 else float("nan")
        print(f"| {name} | {row['median_step_s']:.2f} | {row['samples_per_s']:.4f} | "
              f"{row['gflop_per_s']:.1f} | {row.get('speedup_vs_ref', float('nan')):.2f}x | "
              f"{row.get('speedup_vs_base', float('nan')):.2f}x | {row['losses'][0]:.6f} | "
              f"{after:.6f} |")


if __name__ == "__main__":
    main()

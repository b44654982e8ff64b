"""Our training step against the MLCommons reference's, side by side in one run.

Times full training steps (forward, weighted cross-entropy, backward, AdamW step, zero_grad) of

* ``ref``: the reference implementation (``architecture/deeplab_xception.py`` and
  ``utils/losses.py`` imported from ``--reference-src``; nothing of it is in this repository)
  run as its users run it, on the system malloc; ``ref_jemalloc``: the same on jemalloc, to show
  how much of the gain is the allocator alone;
* ``ours``: our training path as ``deepcam-hvd train`` runs it by default (the allocator chosen
  by :mod:`deepcam_hvd.allocator`), through ``deepcam_hvd.bench.TrainStep`` (the trainer's
  modules); ``ours_system``: the same on the system malloc (bit-identical arithmetic to ``ref``);
  ``ours_cl``: ``ours`` with the trainer's ``--channels_last`` (the whole model and its input
  in the channels-last memory format);
* ``fused``: ``ours`` with ``torch.optim.AdamW(fused=True)``.

The layout experiments once measured here (``cl``, ``cl_split``, ``all``: see
``benchmarks/RESULTS.md``, "Measured and left off") were removed with their code.

Each variant runs in its own fresh process (the allocator is fixed when a process starts), with
``--warmup`` untimed then ``--steps`` timed steps, once per round; the order of the variants
rotates every round so a drift in machine speed hits all of them alike. Wall seconds and the
process's CPU seconds are recorded. Every variant starts from the same seed, hence the same
weights as the reference, and trains on the same synthetic batch, so the losses of the first
step and after one update are compared too.

    .venv/bin/python benchmarks/step_vs_reference.py \
        --reference-src /tmp/mlc_ref/deepcam/src/deepCam [--rounds 2] [--steps 2] [--warmup 1] \
        [--height 768 --width 1152] [--threads 2] [--variants ref,ref_jemalloc,ours]

Writes ``benchmarks/results/step_vs_reference.json`` (or ``--output``) and prints a table.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepcam_hvd.allocator import plan_allocator, preload_environment

RESULTS = Path(__file__).resolve().parent / "results" / "step_vs_reference.json"
StepFn = Callable[[], tuple[float, float]]


@dataclass(frozen=True)
class Variant:
    """What one variant runs: the reference or ours, on which allocator, with which options."""

    code: str  # "ref" or "ours"
    allocator: str  # a DEEPCAM_ALLOCATOR value: "system", "jemalloc" or "auto" (our default)
    channels_last: bool = False  # the trainer's --channels_last
    fused: bool = False


VARIANTS: dict[str, Variant] = {
    "ref": Variant("ref", "system"),
    "ref_jemalloc": Variant("ref", "jemalloc"),
    "ours": Variant("ours", "auto"),
    "ours_system": Variant("ours", "system"),
    "ours_cl": Variant("ours", "auto", channels_last=True),
    "fused": Variant("ours", "auto", fused=True),
}


def reference_step(src: Path, settings: Any) -> StepFn:
    """A step of the reference network, loss and AdamW (settings as the issue's measurement)."""
    import torch

    from deepcam_hvd.bench.step import synthetic_batch
    from deepcam_hvd.train.loss import CLASS_FREQUENCIES

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


def our_step(settings: Any, variant: Variant) -> StepFn:
    """A step of our training path with the variant's options."""
    import dataclasses

    import torch

    from deepcam_hvd.bench.step import TrainStep
    from deepcam_hvd.distributed.local import LocalBackend

    settings = dataclasses.replace(settings, channels_last=variant.channels_last)
    step = TrainStep(settings, LocalBackend(), torch.device("cpu"))
    if variant.fused:
        step.optimizer = torch.optim.AdamW(step.model.parameters(), lr=1e-3, betas=(0.9, 0.999),
                                           eps=1e-6, weight_decay=1e-6, fused=True)

    def run() -> tuple[float, float]:
        phases, loss = step.run()
        return sum(phases.values()), loss

    return run


def worker(args: argparse.Namespace) -> None:
    """In a fresh process: build one variant, run its steps, print one JSON line."""
    import torch

    from deepcam_hvd.allocator import active_allocator
    from deepcam_hvd.bench.step import StepSettings

    torch.set_num_threads(args.threads)
    settings = StepSettings(height=args.height, width=args.width)
    variant = VARIANTS[args.worker]
    run = (reference_step(args.reference_src, settings) if variant.code == "ref"
           else our_step(settings, variant))
    losses, times, cpu = [], [], []
    for _ in range(args.warmup):
        losses.append(run()[1])
    for _ in range(args.steps):
        start_cpu = time.process_time()
        seconds, loss = run()
        cpu.append(time.process_time() - start_cpu)
        times.append(seconds)
        losses.append(loss)
    print(json.dumps({"step_s": times, "cpu_s": cpu, "losses": losses,
                      "allocator": active_allocator(), "load": os.getloadavg()[0]}))


def variant_environment(variant: Variant) -> dict[str, str]:
    """The environment a variant's process starts with (its allocator preloaded or not)."""
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "MALLOC_CONF")}
    env["DEEPCAM_ALLOCATOR"] = variant.allocator
    plan = plan_allocator(env)
    if plan.library is None:
        env.update(plan.env)
        return env
    return preload_environment(plan, env) or env


def run_variant(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run one variant's process and return what it printed."""
    command = [sys.executable, __file__, "--worker", name, "--steps", str(args.steps),
               "--warmup", str(args.warmup), "--threads", str(args.threads),
               "--height", str(args.height), "--width", str(args.width)]
    if args.reference_src is not None:
        command += ["--reference-src", str(args.reference_src)]
    proc = subprocess.run(command, env=variant_environment(VARIANTS[name]), text=True,
                          capture_output=True, timeout=args.timeout)
    if proc.returncode != 0:
        raise SystemExit(f"variant {name} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def summarise(names: list[str], runs: dict[str, list[dict[str, Any]]],
              flop: float) -> dict[str, Any]:
    """Medians over every timed step of each variant, and the ratios to ref and ours."""
    rows: dict[str, Any] = {}
    for name in names:
        times = [t for r in runs[name] for t in r["step_s"]]
        cpu = [t for r in runs[name] for t in r["cpu_s"]]
        median = statistics.median(times)
        rows[name] = {
            "step_s": times, "median_step_s": median, "samples_per_s": 1 / median,
            "cpu_s": cpu, "median_cpu_s": statistics.median(cpu),
            "gflop_per_s": flop / median / 1e9, "losses": runs[name][0]["losses"],
            "allocator": runs[name][0]["allocator"],
            "load_per_process": [r["load"] for r in runs[name]],
        }
    for base in ("ref", "ours_system"):
        if base in rows:
            for name in names:
                rows[name][f"speedup_vs_{base}"] = (rows[base]["median_step_s"]
                                                    / rows[name]["median_step_s"])
                rows[name][f"loss_rel_diff_vs_{base}"] = [
                    abs(a - b) / abs(b) for a, b in
                    zip(rows[name]["losses"], rows[base]["losses"], strict=False)]
    return rows


def main() -> None:
    """Parse arguments, run the rounds, write the JSON and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference-src", type=Path,
                        default=os.environ.get("DEEPCAM_REFERENCE_SRC"),
                        help="the reference's deepcam/src/deepCam directory")
    parser.add_argument("--height", type=int, default=768)
    parser.add_argument("--width", type=int, default=1152)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="processes per variant")
    parser.add_argument("--steps", type=int, default=2, help="timed steps per process")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--variants", default="ref,ref_jemalloc,ours")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per process")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--worker", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    names = [v for v in args.variants.split(",") if v]
    unknown = set(names) - set(VARIANTS)
    if unknown:
        raise SystemExit(f"unknown variants {sorted(unknown)}; known: {', '.join(VARIANTS)}")
    if any(VARIANTS[n].code == "ref" for n in names) and args.reference_src is None:
        raise SystemExit("--reference-src (or DEEPCAM_REFERENCE_SRC) is needed for 'ref'")
    if args.warmup < 1:
        raise SystemExit("--warmup must be at least 1 (the losses after one update are compared)")

    from deepcam_hvd.bench.flops import train_step_flops

    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            result = run_variant(name, args)
            runs[name].append(result)
            steps = ", ".join(f"{t:.2f}" for t in result["step_s"])
            print(f"round {r}: {name:13s} {steps} s ({result['allocator']}, "
                  f"load {result['load']:.1f})", flush=True)
    flop = train_step_flops("deeplab-xception", 16, 3, 1, args.height, args.width)
    rows = summarise(names, runs, flop)
    import torch

    doc: dict[str, Any] = {
        "height": args.height, "width": args.width, "batch": 1, "threads": args.threads,
        "precision": "fp32", "optimizer": "AdamW", "rounds": args.rounds, "steps": args.steps,
        "warmup": args.warmup, "step_tflop": flop / 1e12, "variants": rows,
        "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\n{args.height}x{args.width}, batch 1, fp32, {args.threads} threads, "
          f"{args.rounds} process(es) x {args.steps} step(s) per variant")
    print("| variant | allocator | median s/step | samples/s | GFLOP/s | vs ref | loss 1st | "
          "loss after 1 update |")
    print("|---|---|---|---|---|---|---|---|")
    for name, row in rows.items():
        print(f"| {name} | {row['allocator']} | {row['median_step_s']:.2f} | "
              f"{row['samples_per_s']:.4f} | {row['gflop_per_s']:.1f} | "
              f"{row.get('speedup_vs_ref', float('nan')):.2f}x | {row['losses'][0]:.6f} | "
              f"{row['losses'][1]:.6f} |")


if __name__ == "__main__":
    main()

"""Where a training step's time goes: torch.profiler's operator table for one step.

Builds our training step (``deepcam_hvd.bench.TrainStep``: the trainer's model, loss, optimizer
and step sequence), runs ``--warmup`` untimed steps, profiles one step, and writes the operators
sorted by self CPU time, grouped by input shapes (which layer they belong to) and then by name.
The process runs on whichever allocator it was started with: compare

    .venv/bin/python benchmarks/profile_step.py --output benchmarks/results/profile_step_system.txt
    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 \\
      MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1 \\
      .venv/bin/python benchmarks/profile_step.py \
      --output benchmarks/results/profile_step_jemalloc.txt
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from deepcam_hvd.allocator import active_allocator
from deepcam_hvd.bench.step import StepSettings, TrainStep
from deepcam_hvd.distributed.local import LocalBackend


def main() -> None:
    """Profile one step and write the operator tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--height", type=int, default=768)
    parser.add_argument("--width", type=int, default=1152)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rows", type=int, default=40)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    step = TrainStep(StepSettings(height=args.height, width=args.width), LocalBackend(),
                     torch.device("cpu"))
    for _ in range(args.warmup):
        step.run()
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        phases, loss = step.run()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    lines = [
        f"{args.height}x{args.width}, batch 1, fp32, {args.threads} threads, allocator "
        f"{active_allocator()}; profiled step {wall:.2f} s "
        f"(user {after.ru_utime - before.ru_utime:.1f} s, "
        f"system {after.ru_stime - before.ru_stime:.1f} s, "
        f"{after.ru_minflt - before.ru_minflt} page faults); loss {loss:.6f}",
        "phases: " + ", ".join(f"{k} {v:.2f} s" for k, v in phases.items()), "",
    ]
    total = sum(e.self_cpu_time_total for e in prof.key_averages())
    for title, table in (("by operator and input shapes", prof.key_averages(True)),
                         ("by operator", prof.key_averages())):
        lines.append(f"## {title} (self CPU ms, share, calls)")
        for e in sorted(table, key=lambda e: -e.self_cpu_time_total)[:args.rows]:
            shapes = f"  {e.input_shapes}"[:100] if title.endswith("shapes") else ""
            share = 100 * e.self_cpu_time_total / total
            lines.append(f"{e.self_cpu_time_total / 1e3:9.1f} {share:5.1f}% {e.count:5d}  "
                         f"{e.key}{shapes}")
        lines.append("")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines))
    print("\n".join(lines[:3]))


if __name__ == "__main__":
    main()

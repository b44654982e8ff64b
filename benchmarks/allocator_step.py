"""The same training step on each allocator: wall, user and system seconds, page faults, memory.

Runs our full training step (``deepcam_hvd.bench.TrainStep``) for ``--steps`` consecutive steps
(the first one included, to show the start-up cost) in a fresh process per allocator:

* ``glibc``: the system malloc, as the reference runs;
* ``glibc_thp``: the system malloc with torch's transparent-huge-page allocation for tensors
  (``THP_MEM_ALLOC_ENABLE=1``, deepcam-hvd's fallback when jemalloc is missing);
* ``jemalloc``: what deepcam-hvd chooses (``deepcam_hvd.allocator``: freed pages kept);
* ``jemalloc_thp``: the same with jemalloc's ``thp:always``.

    .venv/bin/python benchmarks/allocator_step.py [--steps 3] [--height 768 --width 1152]

Writes ``benchmarks/results/allocator_step.json`` (or ``--output``) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from deepcam_hvd.allocator import JEMALLOC_CONF, plan_allocator, preload_environment

RESULTS = Path(__file__).resolve().parent / "results" / "allocator_step.json"
CONFIGS: dict[str, tuple[str, dict[str, str]]] = {
    # name: (DEEPCAM_ALLOCATOR, extra environment)
    "glibc": ("system", {}),
    "glibc_thp": ("system", {"THP_MEM_ALLOC_ENABLE": "1"}),
    "jemalloc": ("jemalloc", {}),
    "jemalloc_thp": ("jemalloc", {"MALLOC_CONF": JEMALLOC_CONF + ",thp:always"}),
}


def worker(args: argparse.Namespace) -> None:
    """In the configured process: time each step and print one JSON line."""
    import torch

    from deepcam_hvd.allocator import active_allocator
    from deepcam_hvd.bench.step import StepSettings, TrainStep
    from deepcam_hvd.distributed.local import LocalBackend

    torch.set_num_threads(args.threads)
    step = TrainStep(StepSettings(height=args.height, width=args.width), LocalBackend(),
                     torch.device("cpu"))
    rows = []
    for _ in range(args.steps):
        before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        _, loss = step.run()
        after = resource.getrusage(resource.RUSAGE_SELF)
        rss = int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGESIZE")
        rows.append({"wall_s": time.perf_counter() - start,
                     "user_s": after.ru_utime - before.ru_utime,
                     "system_s": after.ru_stime - before.ru_stime,
                     "page_faults": after.ru_minflt - before.ru_minflt,
                     "rss_gib": rss / 2**30, "loss": loss})
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(json.dumps({"allocator": active_allocator(), "steps": rows, "peak_rss_gib": peak}))


def environment(name: str) -> dict[str, str]:
    """The environment a configuration's process starts with."""
    choice, extra = CONFIGS[name]
    env = {k: v for k, v in os.environ.items()
           if k not in ("LD_PRELOAD", "MALLOC_CONF", "THP_MEM_ALLOC_ENABLE")}
    env.update({"DEEPCAM_ALLOCATOR": choice, **extra})
    return preload_environment(plan_allocator(env), env) or env


def main() -> None:
    """Run every configuration, write the JSON and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--height", type=int, default=768)
    parser.add_argument("--width", type=int, default=1152)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    results: dict[str, Any] = {}
    for name in args.configs.split(","):
        command = [sys.executable, __file__, "--worker", "--steps", str(args.steps),
                   "--threads", str(args.threads), "--height", str(args.height),
                   "--width", str(args.width)]
        proc = subprocess.run(command, env=environment(name), text=True, capture_output=True,
                              timeout=3600)
        if proc.returncode != 0:
            raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
        results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
        results[name]["load_average"] = os.getloadavg()[0]
        print(f"{name}: " + ", ".join(f"{s['wall_s']:.1f}" for s in results[name]["steps"])
              + " s", flush=True)
    doc = {"height": args.height, "width": args.width, "threads": args.threads,
           "steps": args.steps, "configs": results}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(doc, indent=2) + "\n")
    print("| config | allocator | step wall s | user s | system s | page faults | peak RSS GiB |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        cols = [", ".join(f"{s[key]:.{digits}f}" for s in r["steps"])
                for key, digits in (("wall_s", 1), ("user_s", 1), ("system_s", 1))]
        faults = ", ".join(f"{s['page_faults'] / 1e3:.0f} k" for s in r["steps"])
        print(f"| {name} | {r['allocator']} | {' | '.join(cols)} | {faults} | "
              f"{r['peak_rss_gib']:.2f} |")


if __name__ == "__main__":
    main()

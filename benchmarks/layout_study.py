"""Ranks x threads on the same cores, and Horovod against torch.distributed (gloo).

Runs ``deepcam-hvd bench step`` (our real training step, see ``deepcam_hvd/bench``) under
each layout one after the other and collects their JSON:

* ``1x2-local``: one process, 2 intra-op threads, no communication;
* ``2x1-horovod``: ``mpirun -np 2``, 1 thread per rank, Horovod (MPI controller): gradient
  allreduces start from backward hooks and overlap with the rest of backward;
* ``2x1-torch``: ``mpirun -np 2``, 1 thread per rank, torch.distributed gloo: gradients are
  averaged after backward (no overlap), as the reference does;
* ``2x1-solo``: two independent single-thread processes, one per core, that never communicate:
  the compute-only time of the 2x1 layout, so that the whole cost of communication (exposed
  wait plus CPU taken from compute by the communication threads) is the difference.

With 2 ranks each rank trains its own sample, so the job's samples/s is 2 / step time. The
Horovod cost is reported as ``comm_wait_fraction``: the part of a step spent waiting in
``synchronize()`` for allreduces that backward did not hide.

    .venv/bin/python benchmarks/layout_study.py [--height 768 --width 1152] [--steps 2]
        [--warmup 1] [--layouts 1x2-local,2x1-horovod,2x1-torch]

Writes ``benchmarks/results/layout_study.json`` (or ``--output``) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "layout_study.json"
DEEPCAM = str(Path(sys.executable).parent / "deepcam-hvd")
LAYOUTS: dict[str, tuple[list[str], list[str], int]] = {
    # name: (launcher prefix, bench options, threads per rank)
    "1x2-local": ([], ["--backend", "local"], 2),
    "2x1-horovod": (["mpirun", "-np", "2"], ["--backend", "horovod"], 1),
    "2x1-torch": (["mpirun", "-np", "2"], ["--backend", "torch"], 1),
    "2x1-solo": ([], ["--backend", "local"], 1),
}
SOLO_COPIES = 2


def run_solo(command: list[str], env: dict[str, str], outs: list[Path],
             timeout: float) -> dict[str, Any]:
    """Run ``SOLO_COPIES`` copies of a single-process bench at once, copy i on core i; the
    job's figures are the slowest copy's step and every copy's samples."""
    procs = [subprocess.Popen([*command[:-1], str(out)], cwd=ROOT, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              preexec_fn=lambda i=i: os.sched_setaffinity(0, {i}))
             for i, out in enumerate(outs)]
    for p in procs:
        _, err = p.communicate(timeout=timeout)
        if p.returncode != 0:
            raise SystemExit(f"2x1-solo failed ({p.returncode}):\n{err}")
    docs = [json.loads(out.read_text()) for out in outs]
    slowest = max(docs, key=lambda d: d["median_step_s"])
    slowest["per_rank"] = [r for d in docs for r in d["per_rank"]]
    slowest["ranks"] = len(docs)
    slowest["samples_per_s"] = len(docs) * slowest["batch"] / slowest["median_step_s"]
    return slowest


def run_layout(name: str, bench_args: list[str], timeout: float) -> dict[str, Any]:
    """Run the bench under one layout; return its JSON document (with the command)."""
    prefix, options, threads = LAYOUTS[name]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.json"
        command = [*prefix, DEEPCAM, "bench", "step", *options, *bench_args,
                   "--output", str(out)]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
        if "torch" in name:  # rendezvous for torch.distributed under mpirun
            env.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29517"})
        if name.endswith("solo"):
            doc = run_solo(command, env, [Path(tmp) / f"solo{i}.json"
                                          for i in range(SOLO_COPIES)], timeout)
        else:
            proc = subprocess.run(command, cwd=ROOT, env=env, text=True, capture_output=True,
                                  timeout=timeout, check=False)
            if proc.returncode != 0 or not out.is_file():
                raise SystemExit(f"{name} failed ({proc.returncode}):\n{proc.stdout}\n"
                                 f"{proc.stderr}")
            doc = json.loads(out.read_text())
    doc["layout"] = name
    doc["horovod_cycle_time_ms"] = os.environ.get(
        "HOROVOD_CYCLE_TIME", "unset: deepcam-hvd's CPU default, 50")
    doc["command"] = " ".join(["OMP_NUM_THREADS=" + str(threads), *command[:-2]])
    return doc


def main() -> None:
    """Parse arguments, run every layout, write the JSON and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--height", type=int, default=768)
    parser.add_argument("--width", type=int, default=1152)
    parser.add_argument("--model", default="deeplab-xception")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--layouts", default=",".join(LAYOUTS))
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    if shutil.which("mpirun") is None:
        raise SystemExit("mpirun is not on PATH")
    bench_args = ["--model", args.model, "--height", str(args.height), "--width",
                  str(args.width), "--steps", str(args.steps), "--warmup", str(args.warmup)]
    docs = []
    for name in args.layouts.split(","):
        doc = run_layout(name, bench_args, args.timeout)
        docs.append(doc)
        print(f"{name}: {doc['median_step_s']:.2f} s/step, {doc['samples_per_s']:.4f} "
              f"samples/s, {doc['median_cpu_s_per_rank']:.1f} CPU s/step per rank, "
              f"allreduce wait {100 * doc['comm_wait_fraction']:.1f}% "
              f"(load {doc['load_average']})", flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"layouts": docs}, indent=2) + "\n")
    base = docs[0]["samples_per_s"]
    print(f"\n{args.model} {args.height}x{args.width}, batch 1 per rank, fp32")
    print("| layout | median s/step | samples/s (job) | vs first | CPU s/step/rank | "
          "allreduce wait | load |")
    print("|---|---|---|---|---|---|---|")
    for d in docs:
        print(f"| {d['layout']} | {d['median_step_s']:.2f} | {d['samples_per_s']:.4f} | "
              f"{d['samples_per_s'] / base:.2f}x | {d['median_cpu_s_per_rank']:.1f} | "
              f"{100 * d['comm_wait_fraction']:.1f}% | {d['load_average'][0]:.1f} |")


if __name__ == "__main__":
    main()

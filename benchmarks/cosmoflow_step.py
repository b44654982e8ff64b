"""CosmoFlow's training step on 2 cores: 1 rank x 2 threads against 2 ranks x 1 thread (Horovod
under its MPI and its Gloo controller), ours against the MLCommons reference's network.

Runs ``deepcam-hvd cosmoflow bench step`` (Keras ``fit`` steps on one in-memory batch, SGD with
momentum, ``hvd.DistributedOptimizer`` on 2 ranks; a step is the slowest rank's, the figure its
median over ``--steps`` timed steps after ``--warmup``) at the same global batch under each
variant:

* ``1x2``: one process, 2 threads (``OMP_NUM_THREADS=2``: TF's intra-op pool 2, inter-op 2),
  local batch = global batch;
* ``2x1-mpi``: ``mpirun -np 2`` (MPICH's, from the venv or PATH), 1 thread per rank (intra-op
  and inter-op 1), local batch = global / 2: Horovod's MPI controller;
* ``2x1-gloo``: ``horovodrun -np 2 --gloo``, 1 thread per rank, local batch = global / 2;
* ``NAME-reference``: each of these with ``--reference DIR`` (the reference's network, imported
  at run time from its ``cosmoflow/`` directory; nothing of it is in this repository). Without
  ``--reference`` the reference variants are skipped with a note.

Every variant runs in fresh processes, once per round, in an order rotated every round, so that
ratios can be taken within a round on a machine shared with other work: ours / reference for
each layout, and each 2x1 layout / 1x2 (samples/s, both terms from the same round). Before each
run the script waits for a quiet machine (``--quiet-tasks``, ``--quiet-wait``); the load
average is recorded at the start and end of each run, with the share of the machine's CPU that
other work took meanwhile.

    .venv/bin/python benchmarks/cosmoflow_step.py --reference /tmp/cosmo-ref/cosmoflow
    .venv/bin/python benchmarks/cosmoflow_step.py --reference /tmp/cosmo-ref/cosmoflow \\
        --rounds 1 --steps 2 --warmup 1 --output /tmp/cosmoflow_step.json   # smoke run

Defaults: 32^3 cubes, global batch 4, 10 timed steps after 3 warm-up steps, 3 rounds. The real
CosmoFlow sample is 128^3 (``--cube 128``); a step then takes tens of seconds on 2 cores, so
take a smaller batch and fewer steps:

    .venv/bin/python benchmarks/cosmoflow_step.py --reference /tmp/cosmo-ref/cosmoflow \\
        --cube 128 --global-batch 2 --steps 3 --warmup 1 --rounds 2

Writes ``benchmarks/results/cosmoflow_step.json`` (``--cube`` other than 32:
``cosmoflow_step_cube<N>.json``; or ``--output``) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

# This directory is on sys.path when the script runs: the helpers of the DeepCAM benchmark.
from small_step_scaling import (
    DEEPCAM,
    RESULTS,
    ROOT,
    add_quiet_options,
    cpu_meter,
    environment,
    ratios,
    run_rounds,
    save,
    spread,
    summary_table,
)
from small_step_scaling import Variant as ScalingVariant

REFERENCE_SUFFIX = "-reference"


@dataclass(frozen=True)
class Layout:
    """How the step's processes are started: processes, threads each, launcher."""

    ranks: int
    threads: int  # OMP_NUM_THREADS: TF's intra-op pool (inter-op: min(2, this))
    launcher: str  # local | mpirun | horovodrun (Gloo)


LAYOUTS = {
    "1x2": Layout(1, 2, "local"),
    "2x1-mpi": Layout(2, 1, "mpirun"),
    "2x1-gloo": Layout(2, 1, "horovodrun"),
}


@dataclass(frozen=True)
class Variant:
    """A layout, with our network or the reference's."""

    name: str
    layout: Layout
    reference: bool

    @property
    def backend(self) -> str:
        """``bench step``'s --backend: Horovod across ranks, none in one process."""
        return "horovod" if self.layout.ranks > 1 else "local"

    def local_batch(self, global_batch: int) -> int:
        """Samples per rank and step at ``global_batch``; SystemExit if it does not divide."""
        if global_batch % self.layout.ranks:
            raise SystemExit(f"--global-batch {global_batch} does not divide over the "
                             f"{self.layout.ranks} ranks of {self.name}")
        return global_batch // self.layout.ranks


def parse_variant(name: str) -> Variant:
    """``LAYOUT`` (our network) or ``LAYOUT-reference`` -> the variant; SystemExit if unknown."""
    reference = name.endswith(REFERENCE_SUFFIX)
    layout = name[:-len(REFERENCE_SUFFIX)] if reference else name
    if layout not in LAYOUTS:
        raise SystemExit(f"unknown variant {name!r}: one of {', '.join(LAYOUTS)}, each "
                         f"optionally with {REFERENCE_SUFFIX}")
    return Variant(name, LAYOUTS[layout], reference)


def select_variants(listed: list[str], have_reference: bool) -> tuple[list[Variant], list[str]]:
    """The variants to run, and a note on those skipped. A listed reference variant runs as
    listed; with none listed, each listed layout also runs on the reference's network. Without
    the reference's directory the reference variants are skipped."""
    chosen = [parse_variant(n) for n in listed]
    if not any(v.reference for v in chosen):
        chosen += [parse_variant(v.name + REFERENCE_SUFFIX) for v in chosen]
    if have_reference:
        return chosen, []
    skipped = [v.name for v in chosen if v.reference]
    return ([v for v in chosen if not v.reference],
            [f"no --reference DIR: skipped {', '.join(skipped)}"])


def tool(name: str) -> str:
    """A launcher's executable: the venv's (beside this Python) if there, else from PATH."""
    local = Path(sys.executable).parent / name
    if local.is_file():
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise SystemExit(f"{name} is neither in {local.parent} nor on PATH")
    return found


def command(v: Variant, cube: int, global_batch: int, steps: int, warmup: int,
            reference: Path | None, json_out: Path) -> list[str]:
    """The command line of one run of ``v`` (its launcher's, then bench step's)."""
    ranks = str(v.layout.ranks)
    prefix = {"local": [], "mpirun": [tool("mpirun"), "-np", ranks],
              "horovodrun": [tool("horovodrun"), "-np", ranks, "--gloo"]}[v.layout.launcher]
    bench = ["cosmoflow", "bench", "step", "--cube", str(cube), "--local_batch_size",
             str(v.local_batch(global_batch)), "--steps", str(steps), "--warmup", str(warmup),
             "--backend", v.backend, "--device", "cpu", "--json", str(json_out)]
    if v.reference:
        if reference is None:
            raise SystemExit(f"{v.name} needs --reference DIR")
        bench += ["--reference", str(reference)]
    return [*prefix, DEEPCAM, *bench]


def run_variant(v: Variant, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """One run of ``v``: bench step's figures, the wall seconds of the launch and the share of
    the machine's CPU that other work took meanwhile (``others_cpu_share``)."""
    out = work / f"{v.name}.json"
    out.unlink(missing_ok=True)
    argv = command(v, args.cube, args.global_batch, args.steps, args.warmup, args.reference, out)
    env = environment(ScalingVariant(v.name, v.layout.ranks, v.layout.threads, v.backend))
    meter = cpu_meter()
    proc = subprocess.run(argv, cwd=ROOT, env=env, text=True, capture_output=True,
                          timeout=args.timeout, check=False)
    timing = meter()
    if proc.returncode != 0 or not out.is_file():
        raise SystemExit(f"{v.name} failed ({proc.returncode}): {' '.join(argv)}\n"
                         f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return {**json.loads(out.read_text()), **timing}


def ratio_pairs(names: list[str]) -> dict[str, tuple[str, str]]:
    """The ratios worth taking among ``names``: ours / reference on each layout, each 2x1
    layout / 1x2 (ours, and the reference's), and the MPI / Gloo controller."""
    pairs: dict[str, tuple[str, str]] = {}
    for layout in LAYOUTS:
        pairs[f"{layout}: ours / reference"] = (layout, layout + REFERENCE_SUFFIX)
    for suffix in ("", REFERENCE_SUFFIX):
        for layout in ("2x1-mpi", "2x1-gloo"):
            pairs[f"{layout}{suffix} / 1x2{suffix}"] = (layout + suffix, "1x2" + suffix)
        pairs[f"2x1-mpi{suffix} / 2x1-gloo{suffix}"] = ("2x1-mpi" + suffix,
                                                        "2x1-gloo" + suffix)
    return {k: (a, b) for k, (a, b) in pairs.items() if a in names and b in names}


def table(doc: dict[str, Any]) -> str:
    """The Markdown summary: per variant step seconds and samples/s, then the ratios."""
    return summary_table(doc, {
        "ranks x threads": lambda runs: f"{runs[0]['ranks']} x {runs[0]['threads_per_rank']}",
        "local batch": lambda runs: str(runs[0]["local_batch_size"]),
        "median s/step": lambda runs: spread([r["step_s_median"] for r in runs], 3),
        "samples/s": lambda runs: spread([r["samples_per_s"] for r in runs]),
    }, "ratio of samples/s (same round)")


def describe(result: dict[str, Any]) -> str:
    """One run in a line (printed as it ends)."""
    return (f"{result['step_s_median']:.3f} s/step, {result['samples_per_s']:.2f} samples/s, "
            f"load {result['load_start']:.1f}-{result['load_end']:.1f}, others' CPU "
            f"{100 * result['others_cpu_share']:.0f} %")


def versions() -> dict[str, str]:
    """Installed versions of what the step runs on (read without importing them)."""
    found = {}
    for package in ("tensorflow", "tensorflow-cpu", "keras", "horovod"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[package] = metadata.version(package)
    return found


def main() -> None:
    """Parse arguments, run the rounds, write the JSON and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default=",".join(LAYOUTS),
                        help="layouts (with --reference each also on the reference's "
                             "network), or explicit NAME-reference variants")
    parser.add_argument("--reference", type=Path, default=None, metavar="DIR",
                        help="the MLCommons reference's cosmoflow/ directory "
                             "(e.g. /tmp/cosmo-ref/cosmoflow); none: no reference variants")
    parser.add_argument("--cube", type=int, default=32, help="voxels per side (real: 128)")
    parser.add_argument("--global-batch", type=int, default=4,
                        help="samples per step over all ranks")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per run")
    add_quiet_options(parser)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    chosen, notes = select_variants([n for n in args.variants.split(",") if n],
                                    args.reference is not None)
    for note in notes:
        print(f"note: {note}", flush=True)
    if not chosen:
        raise SystemExit("no variant left to run")
    for v in chosen:
        v.local_batch(args.global_batch)  # fail before any run
    known = {v.name: v for v in chosen}
    names = list(known)
    output = args.output or RESULTS / ("cosmoflow_step.json" if args.cube == 32
                                       else f"cosmoflow_step_cube{args.cube}.json")
    with tempfile.TemporaryDirectory(prefix="cosmoflow-step-") as tmp:
        rounds = run_rounds(names, args.rounds,
                            lambda name: run_variant(known[name], args, Path(tmp)),
                            describe, args.quiet_tasks, args.quiet_wait)
    doc = {
        "mode": f"cosmoflow bench step, {args.cube}^3, global batch {args.global_batch}, "
                f"{args.steps} timed steps after {args.warmup}",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "variants": names,
        "notes": notes,
        "cpus": os.cpu_count(),
        "versions": versions(),
        "rounds": rounds,
        "ratios": ratios(rounds, ratio_pairs(names)),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    save(doc, output, table(doc))


if __name__ == "__main__":
    main()

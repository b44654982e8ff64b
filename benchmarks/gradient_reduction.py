"""How long the main-thread path takes to average one step's gradients (issue 14).

Times :class:`deepcam_hvd.distributed.mpi_averaging.MpiGradientAverager` on the gradients of a
model (default: the demo's ``deeplab-xception-small``, 130 tensors, 4.2 MB), with its sum
through ``MPI_Allreduce`` (``mpi``) and through the node's shared-memory window
(``shared-memory``, ``distributed/shared_memory_sum.py``), one after the other in each
repetition, ranks lined up by a barrier before each call. Caches are either left as the
previous call left them (``warm``) or flushed by writing a buffer larger than the last-level
cache and running some matrix products first (``cold``: as after a backward pass). Also checks
that both give the same values on every rank. Runs under the trainer's allocator
(``deepcam_hvd.allocator``: jemalloc keeping freed pages where installed), as a training rank does;
under glibc's malloc each flatten maps and faults in a fresh 4.2 MB buffer.

    mpirun -np 2 .venv/bin/python benchmarks/gradient_reduction.py \\
        --output benchmarks/results/gradient_reduction.json

Writes JSON (median and range of each rank's milliseconds, per reduction and cache state) and
prints a Markdown table on rank 0.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import date
from pathlib import Path

from deepcam_hvd.allocator import active_allocator, exec_with_allocator

exec_with_allocator()  # before torch and MPI start, as the deepcam-hvd entry point does

import torch  # noqa: E402
from mpi4py import MPI  # noqa: E402

from deepcam_hvd.distributed.mpi_averaging import mpi_gradient_averager  # noqa: E402
from deepcam_hvd.model.registry import build_model  # noqa: E402

REDUCTIONS = ("mpi", "shared-memory")


def flush_caches(scratch: torch.Tensor, matrix: torch.Tensor) -> None:
    """Write a buffer larger than the last-level cache and compute a little, as backward does."""
    scratch.fill_(1.0)
    for _ in range(4):
        matrix @ matrix


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="deeplab-xception-small")
    parser.add_argument("--repetitions", type=int, default=60)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    torch.manual_seed(rank)
    params = list(build_model(args.model, 16, 3).parameters())
    grads = [torch.randn_like(p) for p in params]
    averagers = {name: mpi_gradient_averager(shared_memory=name == "shared-memory")
                 for name in REDUCTIONS}

    averaged = {}
    for name, averager in averagers.items():
        work = [g.clone() for g in grads]
        averager(work)
        averaged[name] = work
    same = all(torch.equal(a, b) for a, b in zip(averaged["mpi"], averaged["shared-memory"],
                                                   strict=True))
    same_everywhere = all(comm.allgather(same))

    scratch = torch.empty(64 * 2**20 // 4)
    matrix = torch.randn(400, 400)
    times: dict[str, dict[str, list[float]]] = {c: {n: [] for n in REDUCTIONS}
                                                 for c in ("warm", "cold")}
    for caches in ("warm", "cold"):
        for _ in range(args.repetitions):
            for name, averager in averagers.items():
                work = [g.clone() for g in grads]
                if caches == "cold":
                    flush_caches(scratch, matrix)
                comm.Barrier()
                start = time.perf_counter()
                averager(work)
                times[caches][name].append(time.perf_counter() - start)
    skip = min(5, args.repetitions // 4)  # the first calls open the window and warm up
    per_rank = comm.gather({c: {n: [1e3 * t for t in v[skip:]] for n, v in d.items()}
                            for c, d in times.items()})
    if rank != 0:
        return
    rows = {}
    for caches in ("warm", "cold"):
        for name in REDUCTIONS:
            values = [statistics.median(r[caches][name]) for r in per_rank]
            rows[f"{caches} {name}"] = {"median_ms_per_rank": values,
                                        "slowest_rank_median_ms": max(values),
                                        "range_ms": [min(min(r[caches][name]) for r in per_rank),
                                                     max(max(r[caches][name]) for r in per_rank)]}
    doc = {"command": f"mpirun -np {comm.Get_size()} python benchmarks/gradient_reduction.py",
           "model": args.model, "tensors": len(grads),
           "bytes": 4 * sum(g.numel() for g in grads), "ranks": comm.Get_size(),
           "repetitions": args.repetitions, "allocator": active_allocator(),
           "mpi_library": MPI.Get_library_version().split("\n")[0],
           "same_values": same_everywhere,
           "reductions": averagers["shared-memory"].reduction, "results": rows,
           "date": date.today().isoformat()}
    print(f"{doc['tensors']} gradients, {doc['bytes'] / 1e6:.1f} MB, {doc['ranks']} ranks, "
          f"allocator {doc['allocator']}; "
          f"shared-memory and mpi give the same values: {same_everywhere}")
    print("| caches | reduction | ms per call, median per rank | range |")
    print("|---|---|---|---|")
    for key, row in rows.items():
        caches, name = key.split(" ")
        medians = " / ".join(f"{v:.2f}" for v in row["median_ms_per_rank"])
        print(f"| {caches} | {name} | {medians} | {row['range_ms'][0]:.2f}-"
              f"{row['range_ms'][1]:.2f} |")
    if args.output:
        args.output.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()

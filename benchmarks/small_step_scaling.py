"""Two ranks must be faster than one (issue 14): the demo's small step on 2 ranks x 1 thread.

Trains the README demo (``jobs/demo.toml``: ``deeplab-xception-small``, 96x144x16 samples,
AdamW, local batch 2 per rank, ``logging_frequency`` 8) for a few epochs under each variant and
reads the run's own figures from ``summary.json`` (training samples/s of the whole job and the
share of the step spent waiting for gradient averaging, median over the epochs after the
first):

* ``1x1``: one process, 1 thread, the demo's global batch (local batch 4);
* ``1x2``: one process, 2 threads, local batch 4 (the 1 x 2 path, which must not change);
* ``2x1-solo``: two single-thread processes (local batch 2 each) started together that never
  communicate: what 2 x 1 could reach if communication cost nothing; its samples/s is the sum
  of the two. Like the mpirun ranks (Hydra binds nothing by default) they are not pinned, so
  that the scheduler treats both alike when other work shares the machine;
* ``2x1-horovod``: ``mpirun -np 2``, 1 thread per rank, the default settings
  (``deepcam_hvd.horovod_tuning``): gradients averaged by one MPI allreduce from the training
  thread, Horovod's own thread on Gloo over loopback with a 200 ms cycle;
* ``2x1-horovod-mpi``: the same with Horovod's thread left on MPI (``HOROVOD_CONTROLLER=mpi``,
  ``DEEPCAM_GRADIENT_AVERAGING=main-thread``): the setting measured before the Gloo controller,
  two threads in MPI (which Debian's MPICH/UCX once aborted on);
* ``2x1-horovod-bg``: the same with the gradients on Horovod's background thread
  (``DEEPCAM_GRADIENT_AVERAGING=horovod``: hvd.DistributedOptimizer), its cycle 1/10 of the
  step;
* ``2x1-horovod-c50``: the settings before issue 14: Horovod's background thread, 50 ms cycle;
* ``2x1-torch``: ``mpirun -np 2 --backend torch`` (torch.distributed gloo).

``--variant NAME=BASE:VAR=VALUE,...`` adds a variant: BASE's launch with extra environment
(e.g. ``2x1-c5=2x1-horovod:HOROVOD_CYCLE_TIME=5``). Variants run one after the other in each
round, in an order rotated every round, so that ratios can be taken within a round on a
machine shared with other work; the load average is recorded at the start and end of each run.

``--full-size`` times the full model at 768x1152 with ``deepcam-hvd bench step`` instead (batch
1 per rank, ``--steps`` timed steps after ``--warmup``; a step takes 20-40 s on 2 cores).

    .venv/bin/python benchmarks/small_step_scaling.py --rounds 3 --epochs 4
    .venv/bin/python benchmarks/small_step_scaling.py --full-size --rounds 1 \\
        --variants 2x1-horovod,2x1-horovod-c50 --steps 2 --warmup 1

Writes ``benchmarks/results/small_step_scaling.json`` (``--full-size``:
``small_step_scaling_full.json``; or ``--output``) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DEEPCAM = str(Path(sys.executable).parent / "deepcam-hvd")
DEMO = ROOT / "jobs" / "demo.toml"
GLOBAL_BATCH = 4  # the demo's: 2 ranks x local batch 2


@dataclass(frozen=True)
class Variant:
    """One way to run the job: processes, threads each, backend and extra environment."""

    name: str
    ranks: int  # processes of the job
    threads: int  # intra-op threads per process
    backend: str  # local | horovod | torch
    solo: bool = False  # the processes run side by side and never communicate
    env: dict[str, str] = field(default_factory=dict)

    @property
    def local_batch(self) -> int:
        """Samples per process and step: the demo's global batch over the job's ranks."""
        return GLOBAL_BATCH // self.ranks


VARIANTS = {
    "1x1": Variant("1x1", 1, 1, "local"),
    "1x2": Variant("1x2", 1, 2, "local"),
    "2x1-solo": Variant("2x1-solo", 2, 1, "local", solo=True),
    "2x1-horovod": Variant("2x1-horovod", 2, 1, "horovod"),
    "2x1-horovod-mpi": Variant("2x1-horovod-mpi", 2, 1, "horovod",
                               env={"DEEPCAM_GRADIENT_AVERAGING": "main-thread",
                                    "HOROVOD_CONTROLLER": "mpi"}),
    "2x1-horovod-bg": Variant("2x1-horovod-bg", 2, 1, "horovod",
                              env={"DEEPCAM_GRADIENT_AVERAGING": "horovod"}),
    "2x1-horovod-c50": Variant("2x1-horovod-c50", 2, 1, "horovod",
                               env={"HOROVOD_CYCLE_TIME": "50",
                                    "DEEPCAM_GRADIENT_AVERAGING": "horovod"}),
    "2x1-torch": Variant("2x1-torch", 2, 1, "torch"),
}


def parse_variant(text: str) -> Variant:
    """``NAME=BASE:VAR=VALUE,VAR=VALUE`` -> BASE's variant renamed, with the extra environment."""
    name, _, rest = text.partition("=")
    base, _, assignments = rest.partition(":")
    if not name or base not in VARIANTS:
        raise SystemExit(f"--variant {text!r}: expected NAME=BASE:VAR=VALUE,... with BASE one "
                         f"of {', '.join(VARIANTS)}")
    env = dict(VARIANTS[base].env)
    for item in filter(None, assignments.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--variant {text!r}: {item!r} is not VAR=VALUE")
        env[key] = value
    v = VARIANTS[base]
    return Variant(name, v.ranks, v.threads, v.backend, v.solo, env)


def free_port() -> int:
    """A TCP port nobody listens on now (torch.distributed's rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def environment(v: Variant) -> dict[str, str]:
    """The processes' environment: threads, the variant's variables, torch's rendezvous."""
    env = {k: val for k, val in os.environ.items()
           if not k.startswith(("HOROVOD_", "DEEPCAM_GRADIENT")) or k in v.env}
    env.update({"OMP_NUM_THREADS": str(v.threads), "PYTHONUNBUFFERED": "1", **v.env})
    env.pop("SLURM_CPUS_PER_TASK", None)
    if v.backend == "torch":
        env.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())})
    return env


def cpu_busy_s() -> float:
    """CPU seconds the whole machine has been busy (all cores, /proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def children_cpu_s() -> float:
    """CPU seconds of this script's finished child processes (and theirs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def runnable_tasks(seconds: float = 3.0) -> float:
    """Mean number of runnable tasks on the machine over ``seconds`` (this sampler included)."""
    samples = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        with open("/proc/stat") as f:
            samples.extend(int(line.split()[1]) for line in f
                           if line.startswith("procs_running"))
        time.sleep(0.1)
    return statistics.fmean(samples)


def cpu_meter() -> Callable[[], dict[str, float]]:
    """Start timing; the function returned gives the wall seconds since and the share of the
    machine's CPU that other work took meanwhile (``others_cpu_share``: busy CPU seconds less
    this script's finished children's, over wall x cores)."""
    busy0, ours0 = cpu_busy_s(), children_cpu_s()
    started = time.perf_counter()

    def stop() -> dict[str, float]:
        wall = time.perf_counter() - started
        others = (cpu_busy_s() - busy0) - (children_cpu_s() - ours0)
        return {"wall_s": wall,
                "others_cpu_share": max(0.0, others) / (wall * (os.cpu_count() or 1))}

    return stop


def wait_for_quiet(limit: float, max_wait: float) -> tuple[float, float]:
    """Wait until other work leaves the cores (at most ``limit`` runnable tasks on average,
    the sampler being one) or ``max_wait`` seconds pass; returns (seconds waited, tasks)."""
    started = time.monotonic()
    while True:
        tasks = runnable_tasks()
        waited = time.monotonic() - started
        if tasks <= limit or waited >= max_wait:
            return waited, tasks
        time.sleep(5)


def launch(v: Variant, args_for: list[list[str]], timeout: float) -> dict[str, float]:
    """Start the variant's processes (``args_for[i]``: process i's deepcam-hvd arguments; one
    list under mpirun) and wait for them; returns the wall seconds and the share of the
    machine's CPU that other work took meanwhile (``others_cpu_share``)."""
    env = environment(v)
    meter = cpu_meter()
    if v.solo:
        procs = [subprocess.Popen([DEEPCAM, *args], cwd=ROOT, env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for args in args_for]
    else:
        prefix = ["mpirun", "-np", str(v.ranks)] if v.ranks > 1 else []
        procs = [subprocess.Popen([*prefix, DEEPCAM, *args_for[0], "--backend", v.backend],
                                  cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)]
    for p in procs:
        out, err = p.communicate(timeout=timeout)
        if p.returncode != 0:
            raise SystemExit(f"{v.name} failed ({p.returncode}): {' '.join(p.args)}\n"
                             f"{out[-2000:]}\n{err[-3000:]}")
    return meter()


def train_args(v: Variant, data: Path, out: Path, epochs: int, seed: int) -> list[str]:
    """The demo's training command for one process of the variant."""
    return ["train", "--config", str(DEMO), "--data_dir", str(data), "--output_dir", str(out),
            "--local_batch_size", str(v.local_batch), "--max_epochs", str(epochs),
            "--no-stop_at_target", "--seed", str(seed)]


def epoch_figures(summary: dict[str, Any]) -> dict[str, float]:
    """Median samples/s and waits over the epochs after the first (the first one warms up)."""
    rates = summary["train_samples_per_s"]
    later = slice(1, None) if len(rates) > 1 else slice(None)
    return {
        "samples_per_s": statistics.median(rates[later]),
        "comm_wait_fraction": statistics.median(summary["comm_wait_fraction"][later]),
        "data_wait_fraction": statistics.median(summary["data_wait_fraction"][later]),
        "epoch_samples_per_s": rates,
    }


def measure_small(v: Variant, data: Path, work: Path, epochs: int, seed: int,
                  timeout: float) -> dict[str, Any]:
    """Train the demo for ``epochs`` epochs under ``v``; the job's figures."""
    copies = v.ranks if v.solo else 1
    outs = [work / f"{v.name}-{i}" for i in range(copies)]
    for out in outs:
        shutil.rmtree(out, ignore_errors=True)
    timing = launch(v, [train_args(v, data, out, epochs, seed) for out in outs], timeout)
    figures = [epoch_figures(json.loads((out / "summary.json").read_text())) for out in outs]
    return {
        "samples_per_s": sum(f["samples_per_s"] for f in figures),
        "comm_wait_fraction": max(f["comm_wait_fraction"] for f in figures),
        "data_wait_fraction": max(f["data_wait_fraction"] for f in figures),
        "per_process": figures,
        **timing,
    }


def measure_full(v: Variant, work: Path, steps: int, warmup: int,
                 timeout: float) -> dict[str, Any]:
    """Time full-size steps (``bench step``) under ``v``; the job's figures."""
    copies = v.ranks if v.solo else 1
    outs = [work / f"{v.name}-{i}.json" for i in range(copies)]
    bench = ["bench", "step", "--model", "deeplab-xception", "--height", "768", "--width",
             "1152", "--batch", "1", "--steps", str(steps), "--warmup", str(warmup)]
    if v.solo:
        bench += ["--backend", "local"]
    timing = launch(v, [[*bench, "--output", str(out)] for out in outs], timeout)
    docs = [json.loads(out.read_text()) for out in outs]
    slowest = max(d["median_step_s"] for d in docs)
    return {
        "samples_per_s": sum(d["samples_per_s"] for d in docs),
        "median_step_s": slowest,
        "comm_wait_fraction": max(d["comm_wait_fraction"] for d in docs),
        "step_s": [d["per_rank"][0]["step_s"] for d in docs],
        "cpu_s_per_rank": max(d["median_cpu_s_per_rank"] for d in docs),
        **timing,
    }


def make_data(root: Path, timeout: float) -> Path:
    """The demo's synthetic data set (128 + 32 samples of 96x144x16, seed 333)."""
    data = root / "data"
    proc = subprocess.run([DEEPCAM, "data", "synth", "--out", str(data), "--train", "128",
                           "--val", "32", "--height", "96", "--width", "144", "--seed", "333"],
                          cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, text=True,
                          capture_output=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"data synth failed:\n{proc.stderr}")
    return data


def horovod_choice(full_size: bool) -> dict[str, Any]:
    """What ``deepcam_hvd.horovod_tuning`` chooses for a 2 x 1 rank of this workload here (the
    ranks compute the same from the same inputs)."""
    from deepcam_hvd.horovod_tuning import Workload, tune

    workload = (Workload("deeplab-xception", 768, 1152, 1) if full_size else
                Workload("deeplab-xception-small", 96, 144, GLOBAL_BATCH // 2))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOROVOD_")}
    env["OMP_NUM_THREADS"] = "1"
    return tune("cpu", "mpi", 2, workload, env).as_dict()


# The ratios: label -> (numerator variant, denominator variant).
RATIO_PAIRS = {"2x1-horovod / 2x1-solo": ("2x1-horovod", "2x1-solo"),
               "2x1-horovod / 1x1": ("2x1-horovod", "1x1"),
               "2x1-horovod / 2x1-torch": ("2x1-horovod", "2x1-torch"),
               "2x1-horovod / 2x1-horovod-c50": ("2x1-horovod", "2x1-horovod-c50"),
               "2x1-horovod-bg / 2x1-horovod-c50": ("2x1-horovod-bg", "2x1-horovod-c50"),
               "2x1-horovod / 1x2": ("2x1-horovod", "1x2"),
               "2x1-horovod / 2x1-horovod-mpi": ("2x1-horovod", "2x1-horovod-mpi"),
               "2x1-torch / 2x1-solo": ("2x1-torch", "2x1-solo")}


def ratios(rounds: list[dict[str, dict[str, Any]]],
           pairs: dict[str, tuple[str, str]] = RATIO_PAIRS) -> dict[str, list[float]]:
    """Per round, the ratios of samples/s of ``pairs`` (both terms from the same round; a pair
    missing from a round is left out)."""
    out: dict[str, list[float]] = {}
    for label, (a, b) in pairs.items():
        values = [r[a]["samples_per_s"] / r[b]["samples_per_s"] for r in rounds
                  if a in r and b in r]
        if values:
            out[label] = values
    return out


def add_quiet_options(parser: argparse.ArgumentParser) -> None:
    """--quiet-tasks and --quiet-wait: how quiet the machine must be before each run."""
    parser.add_argument("--quiet-tasks", type=float, default=1.5,
                        help="before each run, wait until at most this many tasks are "
                             "runnable on average (the sampler is one)")
    parser.add_argument("--quiet-wait", type=float, default=180,
                        help="longest wait for a quiet machine before each run (s)")


def run_rounds(names: list[str], rounds: int, measure: Callable[[str], dict[str, Any]],
               describe: Callable[[dict[str, Any]], str], quiet_tasks: float,
               quiet_wait: float) -> list[dict[str, dict[str, Any]]]:
    """Every variant once per round, in an order rotated every round (ratios are then taken
    within a round), each after waiting for a quiet machine; ``measure(name)``'s result gains
    the load average at its start and end and the wait, and ``describe(result)`` is printed."""
    out: list[dict[str, dict[str, Any]]] = []
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        results: dict[str, dict[str, Any]] = {}
        for name in order:
            waited, tasks = wait_for_quiet(quiet_tasks, quiet_wait)
            load_start = os.getloadavg()[0]
            result = measure(name)
            result.update(load_start=load_start, load_end=os.getloadavg()[0],
                          quiet_wait_s=waited, runnable_before=tasks)
            results[name] = result
            print(f"round {r + 1} {name}: {describe(result)}", flush=True)
        out.append(results)
    return out


def save(doc: dict[str, Any], output: Path, summary: str) -> None:
    """Write the results JSON and print the Markdown summary."""
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(doc, indent=2) + "\n")
    print()
    print(summary)


def spread(values: list[float], digits: int = 2) -> str:
    """'median (min-max)' of a list."""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return (f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-"
            f"{max(values):.{digits}f})")


def summary_table(doc: dict[str, Any], columns: dict[str, Callable[[list[dict[str, Any]]], str]],
                  ratio_header: str = "ratio (same round)") -> str:
    """A Markdown summary: a row per variant (``columns``: header -> the cell made from the
    variant's runs, one per round), with the share of the CPU other work took and the load,
    then a table of the ratios."""
    headers = ["variant", *columns, "others' CPU share", "load at start-end"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for name in doc["variants"]:
        runs = [r[name] for r in doc["rounds"] if name in r]
        loads = ", ".join(f"{r['load_start']:.1f}-{r['load_end']:.1f}" for r in runs)
        cells = [name, *(cell(runs) for cell in columns.values()),
                 f"{spread([100 * r['others_cpu_share'] for r in runs], 0)} %", loads]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"| {ratio_header} | median (range) |", "|---|---|"]
    lines += [f"| {k} | {spread(v)} |" for k, v in doc["ratios"].items()]
    return "\n".join(lines)


def table(doc: dict[str, Any]) -> str:
    """The Markdown summary: per variant samples/s and exposed wait, then the ratios."""
    return summary_table(doc, {
        "samples/s (job), median (range)":
            lambda runs: spread([r["samples_per_s"] for r in runs]),
        "exposed allreduce wait":
            lambda runs: f"{spread([100 * r['comm_wait_fraction'] for r in runs], 1)} %",
    })


def main() -> None:
    """Parse arguments, run the rounds, write the JSON and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default="1x1,2x1-solo,2x1-horovod,2x1-horovod-bg,"
                                              "2x1-horovod-c50,2x1-torch,1x2")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=BASE:ENV",
                        help="extra variant, e.g. 2x1-c5=2x1-horovod:HOROVOD_CYCLE_TIME=5")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=4, help="epochs per training run")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--data", type=Path, default=None, help="demo data (default: made)")
    parser.add_argument("--full-size", action="store_true",
                        help="full model at 768x1152 with bench step instead of the demo")
    parser.add_argument("--steps", type=int, default=2, help="--full-size: timed steps")
    parser.add_argument("--warmup", type=int, default=1, help="--full-size: warm-up steps")
    parser.add_argument("--timeout", type=float, default=3600)
    add_quiet_options(parser)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    if shutil.which("mpirun") is None:
        raise SystemExit("mpirun is not on PATH")
    extra = {v.name: v for v in map(parse_variant, args.variant)}
    known = {**VARIANTS, **extra}
    listed = [n for n in args.variants.split(",") if n]
    names = listed + [n for n in extra if n not in listed]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; known: {', '.join(known)}")
    output = args.output or RESULTS / ("small_step_scaling_full.json" if args.full_size
                                       else "small_step_scaling.json")

    def describe(result: dict[str, Any]) -> str:
        return (f"{result['samples_per_s']:.3f} samples/s, allreduce wait "
                f"{100 * result['comm_wait_fraction']:.1f} %, load "
                f"{result['load_start']:.1f}-{result['load_end']:.1f}, others' CPU "
                f"{100 * result['others_cpu_share']:.0f} %")

    with tempfile.TemporaryDirectory(prefix="small-step-") as tmp:
        work = Path(tmp)
        data = None if args.full_size else (args.data or make_data(work, args.timeout))

        def measure(name: str) -> dict[str, Any]:
            if args.full_size:
                return measure_full(known[name], work, args.steps, args.warmup, args.timeout)
            assert data is not None
            return measure_small(known[name], data, work, args.epochs, args.seed,
                                 args.timeout)

        rounds = run_rounds(names, args.rounds, measure, describe, args.quiet_tasks,
                            args.quiet_wait)
    doc = {
        "mode": "full-size bench step 768x1152 deeplab-xception, batch 1 per rank"
        if args.full_size else "demo training (jobs/demo.toml), global batch 4",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "variants": names,
        "variant_env": {n: known[n].env for n in names},
        "cpus": os.cpu_count(),
        "horovod_choice": horovod_choice(args.full_size),
        "rounds": rounds,
        "ratios": ratios(rounds),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    save(doc, output, table(doc))


if __name__ == "__main__":
    main()

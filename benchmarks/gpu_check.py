"""Helpers of ``benchmarks/gpu_check.sh`` (standard library only, plus torch/horovod where said).

    python benchmarks/gpu_check.py missing                 # pip requirements the Python lacks
    python benchmarks/gpu_check.py env OUT.json            # python/torch/CUDA/GPU facts
    python benchmarks/gpu_check.py allreduce OUT.json DEVICE   # Horovod collectives (horovodrun)
    python benchmarks/gpu_check.py record OUTDIR NAME RC SECONDS LOG [STATUS [REASON]]
    python benchmarks/gpu_check.py summary OUTDIR          # summary.json + summary.md

Every stage of the check leaves one line in ``OUTDIR/stages.jsonl``; ``summary`` gathers those
lines and the stages' JSON outputs into ``OUTDIR/summary.json`` and a Markdown table.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

#: (module that must be importable, pip requirement that provides it): what deepcam-hvd's
#: info, bench, data synth and train and Horovod's torch module import, without torch. They are
#: installed with --no-deps into a target folder, so this list is the whole closure (mlperf-logging
#: and tensorboard need none of their heavier dependencies for mllog and the summary writer).
#: backends/fetch_gpu_wheels.sh downloads the same packages.
REQUIREMENTS: list[tuple[str, str]] = [
    ("numpy", "numpy"),
    ("h5py", "h5py"),
    ("click", "click>=8"),
    ("tqdm", "tqdm"),
    ("yaml", "pyyaml"),
    ("cloudpickle", "cloudpickle"),
    ("psutil", "psutil"),
    ("packaging", "packaging"),
    ("absl", "absl-py"),
    ("google.protobuf", "protobuf>=6.31.1,<8"),
    ("mlperf_logging", "mlperf-logging"),
    ("tensorboard", "tensorboard"),
    ("setuptools", "setuptools<82"),  # Horovod's build (pip wheel --no-build-isolation)
    ("wheel", "wheel"),  # the same, with a setuptools older than 70.1
    ("pytest", "pytest"),  # the gpu_tests stage: the suite's CUDA-only tests
    ("pluggy", "pluggy"),
    ("iniconfig", "iniconfig"),
    ("pygments", "pygments"),  # pytest 8.4 and later
]

STATUS_BY_RC = {0: "ok", 124: "timeout", 137: "timeout"}


def _importable(module: str) -> bool:
    """Whether ``module`` can be found (its parent packages are imported to look)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing() -> list[str]:
    """The pip requirements of ``REQUIREMENTS`` whose module is absent."""
    return [req for module, req in REQUIREMENTS if not _importable(module)]


def _run(cmd: list[str]) -> str | None:
    """A command's stdout, or None if it cannot run."""
    if shutil.which(cmd[0]) is None:
        return None
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30,
                              check=False).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None


def environment() -> dict[str, Any]:
    """Python, torch, CUDA and GPU facts of this node."""
    import torch

    facts: dict[str, Any] = {
        "host": platform.node(),
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "gpus": [],
        "nvidia_smi": _run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version,"
                            "compute_cap", "--format=csv,noheader"]),
        "nvcc": _run(["nvcc", "--version"]),
        "cmake": (_run(["cmake", "--version"]) or "").split("\n")[0] or None,
    }
    if torch.cuda.is_available():
        facts["nccl"] = ".".join(map(str, torch.cuda.nccl.version()))
        facts["cudnn"] = torch.backends.cudnn.version()
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            facts["gpus"].append({"name": p.name, "capability": f"{p.major}.{p.minor}",
                                  "memory_bytes": p.total_memory,
                                  "multiprocessors": p.multi_processor_count})
    return facts


def allreduce(out: Path, device: str) -> dict[str, Any]:
    """Horovod allreduce, allgather and broadcast of tensors on ``device`` (run under
    horovodrun); rank 0 writes what it saw to ``out``. With CUDA tensors and an NCCL build,
    these go through NCCL (NCCL_DEBUG=INFO in the log shows it)."""
    import horovod.torch as hvd
    import torch

    hvd.init()
    dev = torch.device("cuda", hvd.local_rank()) if device == "cuda" else torch.device("cpu")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    start = time.perf_counter()
    x = torch.full((1 << 20,), float(hvd.rank() + 1), device=dev)
    summed = hvd.allreduce(x, op=hvd.Sum, name="check.sum")
    gathered = hvd.allgather(torch.tensor([hvd.rank()], device=dev), name="check.gather")
    root = hvd.broadcast(torch.arange(4.0, device=dev) * (hvd.rank() + 1), root_rank=0,
                         name="check.bcast")
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    n = hvd.size()
    doc = {
        "size": n, "device": str(dev), "nccl_built": bool(hvd.nccl_built()),
        "cuda_built": bool(hvd.cuda_built()), "gloo_enabled": bool(hvd.gloo_enabled()),
        "mpi_enabled": bool(hvd.mpi_enabled()),
        "allreduce_ok": bool(torch.all(summed == n * (n + 1) / 2).item()),
        "allgather_ok": gathered.cpu().tolist() == list(range(n)),
        "broadcast_ok": root.cpu().tolist() == [0.0, 1.0, 2.0, 3.0],
        "seconds": time.perf_counter() - start,
    }
    if hvd.rank() == 0:
        out.write_text(json.dumps(doc, indent=2) + "\n")
    hvd.shutdown()
    if not (doc["allreduce_ok"] and doc["allgather_ok"] and doc["broadcast_ok"]):
        raise SystemExit(f"gpu_check: wrong collective results: {doc}")
    return doc


#: Lines that name the cause in our own words (deepcam-hvd, this check, the CUDA toolchain).
OWN_ERRORS = ("deepcam-hvd: error", "gpu_check: error", "[gpu-check] error", "[cuda] error")
#: horovodrun's closing line, which only says that a worker failed.
GENERIC = "Horovod detected that one or more processes exited"


def _last_error(log: Path) -> str | None:
    """The line of ``log`` that best says why a stage failed: our own last error line, else
    the last line that mentions an error (horovodrun's generic closing line last), else the last
    line."""
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return None
    own = [ln for ln in lines if any(tag in ln for tag in OWN_ERRORS)]
    if own:
        return own[-1][:500]
    errors = [ln for ln in lines if ("error" in ln.lower() or ln.startswith("Traceback"))
              and GENERIC not in ln]
    if errors:
        return errors[-1][:500]
    return lines[-1][:500] if lines else None


def record(outdir: Path, name: str, rc: int, seconds: float, log: Path,
           status: str | None = None, reason: str | None = None) -> dict[str, Any]:
    """Append one stage's outcome to ``outdir/stages.jsonl``: its status (from the exit code
    unless given: 0 ok, 124/137 timeout, else failed), and for a failure the log line that
    says why (``reason`` instead, e.g. why it was skipped)."""
    status = status or STATUS_BY_RC.get(rc, "failed")
    entry = {"stage": name, "status": status, "rc": rc, "seconds": round(seconds, 1),
             "log": os.path.relpath(log, outdir) if log.exists() else None,
             "error": reason or (None if status == "ok" else _last_error(log))}
    with (outdir / "stages.jsonl").open("a") as f:
        f.write(json.dumps(entry) + "\n")
    return entry


def _load(path: Path) -> Any:
    """JSON at ``path``, or None."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


BENCH_FIELDS = ("batch", "precision", "channels_last", "input", "cudnn_benchmark",
                "samples_per_s", "median_step_s",
                "gflop_per_s", "max_memory_allocated_bytes", "max_memory_reserved_bytes",
                "device_total_memory_bytes", "max_rss_bytes", "device_name")
PHASES = ("input_s", "forward_s", "backward_s", "comm_wait_s", "optimizer_s")


def _bench_rows(outdir: Path, stages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per bench JSON in ``outdir/bench``, in the order the stages ran: the figures and
    the rank-0 phase medians."""
    order = {s["stage"].removeprefix("bench_"): i for i, s in enumerate(stages)}
    rows = []
    paths = sorted((outdir / "bench").glob("*.json"), key=lambda p: (order.get(p.stem, 1e9), p))
    for path in paths:
        doc = _load(path)
        if not isinstance(doc, dict):
            continue
        row = {"config": path.stem, "backend": doc.get("backend"),
               **{k: doc.get(k) for k in BENCH_FIELDS}}
        rank0 = (doc.get("per_rank") or [{}])[0]
        row.update({k: rank0.get(k) for k in PHASES})
        rows.append(row)
    return rows


#: Each GPU speed option of the trainer (deepcam_hvd/train/gpu_options.py) as the feed stages
#: time it: (option, config with it, config without it), one change apart.
OPTION_PAIRS = (("pin_memory", "feed_pinned", "feed_pageable"),
                ("device_prefetch", "feed_prefetch", "feed_pinned"),
                ("cudnn_benchmark", "feed_prefetch_cudnn", "feed_prefetch"))


def gpu_option_gains(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """For each GPU speed option whose two feed stages both ran: samples/s with and without
    it, and their ratio (above 1: the option wins). The stages run in one job, one after the
    other, so the ratio is taken on the same GPU within minutes."""
    by_config = {r["config"].rsplit("_b", 1)[0]: r for r in rows if r.get("samples_per_s")}
    gains = {}
    for option, with_it, without in OPTION_PAIRS:
        if with_it in by_config and without in by_config:
            on, off = by_config[with_it], by_config[without]
            gains[option] = {"with": with_it, "without": without, "batch": on["batch"],
                             "samples_per_s_on": on["samples_per_s"],
                             "samples_per_s_off": off["samples_per_s"],
                             "ratio": on["samples_per_s"] / off["samples_per_s"]}
    return gains


def test_counts(junit: Path) -> dict[str, Any] | None:
    """Tests run, failed (failures + errors) and skipped in a JUnit XML report, and the names
    of the failed ones; None without a readable report."""
    try:
        root = ElementTree.parse(junit).getroot()
    except (OSError, ElementTree.ParseError):
        return None
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    cases = [case for suite in suites for case in suite.iter("testcase")]
    failed = [f"{c.get('classname')}::{c.get('name')}" for c in cases
              if c.find("failure") is not None or c.find("error") is not None]
    skipped = sum(c.find("skipped") is not None for c in cases)
    return {"tests": len(cases), "passed": len(cases) - len(failed) - skipped,
            "failed": failed, "skipped": skipped}


def summary(outdir: Path) -> dict[str, Any]:
    """Write ``summary.json`` and ``summary.md`` from what the stages left in ``outdir``."""
    stages = []
    if (outdir / "stages.jsonl").exists():
        stages = [json.loads(line) for line in (outdir / "stages.jsonl").read_text().splitlines()
                  if line.strip()]
    meta = _load(outdir / "run.json") or {}
    doc = {
        **meta,
        "stages_ok": sum(s["status"] == "ok" for s in stages),
        "stages_failed": [s["stage"] for s in stages if s["status"] in ("failed", "timeout")],
        "stages_skipped": [s["stage"] for s in stages if s["status"] == "skipped"],
        "stages": stages,
        "environment": _load(outdir / "env.json"),
        "horovod_build": (_load(outdir / "info.json") or {}).get("ranks", [{}])[0].get(
            "horovod_build"),
        "horovod_collectives": _load(outdir / "horovod_collectives.json"),
        "bench": _bench_rows(outdir, stages),
        "train": _load(outdir / "train" / "summary.json"),
        "train_fast": _load(outdir / "train_fast" / "summary.json"),
        "gpu_tests": test_counts(outdir / "gpu_tests.xml"),
        "lamb_step": _load(outdir / "lamb_step.json"),
    }
    doc["gpu_options"] = gpu_option_gains(doc["bench"])
    for name, text in (("summary.json", json.dumps(doc, indent=2) + "\n"),
                       ("summary.md", markdown(doc))):
        tmp = outdir / f".{name}.{os.getpid()}"
        tmp.write_text(text)
        os.replace(tmp, outdir / name)  # a build stage in the background may write it too
    return doc


def _gib(value: Any) -> str:
    return "" if value is None else f"{value / 2**30:.1f}"


def _num(value: Any, fmt: str = ".3g") -> str:
    return "" if value is None else format(value, fmt)


def markdown(doc: dict[str, Any]) -> str:
    """The summary as Markdown: stages, then the step benchmark table."""
    lines = [f"# GPU check ({doc.get('mode', '?')}) on {doc.get('host', '?')}", "",
             f"{doc['stages_ok']} stage(s) ok; failed: {', '.join(doc['stages_failed']) or '-'};"
             f" skipped: {', '.join(doc['stages_skipped']) or '-'}; "
             f"{doc.get('elapsed_s', '?')} s of a {doc.get('budget_s', '?')} s budget", "",
             "| stage | status | s | error |", "|---|---|---|---|"]
    for s in doc["stages"]:
        lines.append(f"| {s['stage']} | {s['status']} | {s['seconds']} | "
                     f"{(s.get('error') or '').replace('|', '/')} |")
    if doc["bench"]:
        lines += ["", "| config | batch | samples/s | step s | input s | forward s | "
                  "backward s | optimizer s | peak alloc GiB | reserved GiB |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in doc["bench"]:
            lines.append(
                f"| {r['config']} | {r['batch']} | {_num(r['samples_per_s'])} | "
                f"{_num(r['median_step_s'])} | {_num(r.get('input_s'))} | "
                f"{_num(r['forward_s'])} | "
                f"{_num(r['backward_s'])} | {_num(r['optimizer_s'])} | "
                f"{_gib(r['max_memory_allocated_bytes'])} | "
                f"{_gib(r['max_memory_reserved_bytes'])} |")
    if doc.get("gpu_options"):
        lines += ["", "| GPU option | with | without | batch | samples/s on | off | ratio |",
                  "|---|---|---|---|---|---|---|"]
        for option, g in doc["gpu_options"].items():
            lines.append(f"| {option} | {g['with']} | {g['without']} | {g['batch']} | "
                         f"{_num(g['samples_per_s_on'])} | {_num(g['samples_per_s_off'])} | "
                         f"{g['ratio']:.3f} |")
    lamb = doc.get("lamb_step")
    if isinstance(lamb, dict):
        lines += ["", f"lamb_step: one tensor at a time {lamb['median_one_at_a_time_s'] * 1e3:.2f}"
                  f" ms, all at once {lamb['median_all_at_once_s'] * 1e3:.2f} ms a step "
                  f"(x{lamb['speedup']:.2f})"]
    tests = doc.get("gpu_tests")
    if tests:
        lines += ["", f"gpu_tests: {tests['passed']} passed, {len(tests['failed'])} failed, "
                  f"{tests['skipped']} skipped" + (f" ({', '.join(tests['failed'])})"
                                                   if tests["failed"] else "")]
    for name in ("train", "train_fast"):
        train = doc.get(name)
        if isinstance(train, dict):
            lines += ["", f"{name}: " + json.dumps({k: train.get(k) for k in (
                "status", "epochs_run", "steps", "epoch_times_s", "eval_iou", "train_loss",
                "train_samples_per_s", "run_time_s") if k in train})]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    """Dispatch the subcommands of the module docstring."""
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, args = argv[0], argv[1:]
    if cmd == "missing":
        print("\n".join(missing()))
    elif cmd == "env":
        Path(args[0]).write_text(json.dumps(environment(), indent=2) + "\n")
    elif cmd == "allreduce":
        allreduce(Path(args[0]), args[1])
    elif cmd == "record":
        entry = record(Path(args[0]), args[1], int(args[2]), float(args[3]), Path(args[4]),
                       args[5] if len(args) > 5 else None, args[6] if len(args) > 6 else None)
        print(entry["status"].upper() if entry["status"] != "ok" else "ok",
              f"({entry['seconds']:g} s)" + (f": {entry['error']}" if entry["error"] else ""))
    elif cmd == "summary":
        doc = summary(Path(args[0]))
        print(f"gpu_check: {doc['stages_ok']} stage(s) ok, failed: "
              f"{', '.join(doc['stages_failed']) or 'none'}, skipped: "
              f"{', '.join(doc['stages_skipped']) or 'none'}")
    else:
        print(f"gpu_check.py: unknown command {cmd!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

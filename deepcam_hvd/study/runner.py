"""Run a scaling series on this machine: for each (ranks, threads, local batch) configuration,
profile the step (compute / allreduce / data) and train to the target, then tabulate.

Series:
* weak:   the local batch is fixed, ranks grow (global batch grows with them);
* strong: the global batch is fixed, ranks grow (local batch shrinks);
* layout: the global batch is fixed, the node's cores are split as R ranks x T threads.
A configuration that belongs to several series (2 ranks x 1 thread, local batch 2 is in all
three with the defaults) is measured once.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from deepcam_hvd.errors import ConfigError
from deepcam_hvd.report.tables import Rated, scaling_efficiencies
from deepcam_hvd.study.launch import Finished, run_ranks
from deepcam_hvd.train.reporting import RunSummary

SERIES = ("weak", "strong", "layout")

#: Training settings of the study runs: the reduced model and the README demo's optimizer,
#: which reach IoU 0.82 on the synthetic data in about 9 epochs at global batch 4.
TRAIN_DEFAULTS: dict[str, str] = {
    "model": "deeplab-xception-small",
    "local_batch_size_validation": "4",
    "max_inter_threads": "1",
    "optimizer": "AdamW",
    "start_lr": "0.002",
    "weight_decay": "0.01",
    "lr_warmup_steps": "0",
    "lr_schedule": "type=cosine_annealing,t_max=1500,eta_min=0.0001",
    "save_frequency": "0",
    "logging_frequency": "0",
    "target_iou": "0.82",
    "division": "open",
}


@dataclass(frozen=True)
class StudyConfig:
    """One measured configuration."""

    ranks: int
    threads: int
    local_batch_size: int
    series: tuple[str, ...]

    @property
    def name(self) -> str:
        """Directory and table name, e.g. ``r2xt1-lb2``."""
        return f"r{self.ranks}xt{self.threads}-lb{self.local_batch_size}"

    @property
    def global_batch_size(self) -> int:
        """Samples per optimizer step over all ranks."""
        return self.ranks * self.local_batch_size


@dataclass
class StudyOptions:
    """What ``deepcam-hvd study run`` measures."""

    out: Path
    kinds: tuple[str, ...] = SERIES
    ranks: tuple[int, ...] = (1, 2)
    layouts: tuple[tuple[int, int], ...] = ((1, 2), (2, 1))
    local_batch_size: int = 2
    global_batch_size: int = 4
    data: Path | None = None
    train_samples: int = 128
    val_samples: int = 32
    height: int = 96
    width: int = 144
    max_epochs: int = 20
    profile_steps: int = 5
    train: bool = True
    launch: str = "mpirun"
    timeout_s: float = 1800
    extra_train_args: list[str] = field(default_factory=list)


def plan(opts: StudyOptions) -> list[StudyConfig]:
    """The configurations of the requested series, each once, in a stable order."""
    bad = [k for k in opts.kinds if k not in SERIES]
    if bad:
        raise ConfigError(f"--kind {', '.join(bad)} is not one of {', '.join(SERIES)}")
    wanted: dict[tuple[int, int, int], list[str]] = {}

    def add(ranks: int, threads: int, lb: int, kind: str) -> None:
        if ranks < 1 or threads < 1 or lb < 1:
            raise ConfigError(f"{kind}: ranks, threads and local batch must be >= 1")
        wanted.setdefault((ranks, threads, lb), []).append(kind)

    for kind in opts.kinds:
        if kind == "weak":
            for r in opts.ranks:
                add(r, 1, opts.local_batch_size, kind)
        elif kind == "strong":
            for r in opts.ranks:
                if opts.global_batch_size % r:
                    raise ConfigError(f"strong scaling: global batch {opts.global_batch_size} "
                                      f"does not split over {r} ranks")
                add(r, 1, opts.global_batch_size // r, kind)
        else:
            for r, t in opts.layouts:
                if opts.global_batch_size % r:
                    raise ConfigError(f"layout {r}x{t}: global batch {opts.global_batch_size} "
                                      f"does not split over {r} ranks")
                add(r, t, opts.global_batch_size // r, kind)
    return [StudyConfig(r, t, lb, tuple(kinds))
            for (r, t, lb), kinds in sorted(wanted.items())]


def ensure_data(opts: StudyOptions) -> tuple[Path, Finished | None]:
    """The data root: the given one, or synthetic data made once under ``out/data``."""
    if opts.data is not None:
        return opts.data, None
    root = opts.out / "data"
    marker = root / "synth.json"
    spec = {"train": opts.train_samples, "val": opts.val_samples, "height": opts.height,
            "width": opts.width, "seed": 333}
    if marker.exists() and json.loads(marker.read_text()) == spec:
        return root, None
    done = run_ranks(opts.launch, min(2, os.cpu_count() or 1), 1, [
        "data", "synth", "--out", str(root), "--train", str(opts.train_samples),
        "--val", str(opts.val_samples), "--height", str(opts.height),
        "--width", str(opts.width), "--seed", "333", "--overwrite"], opts.timeout_s)
    marker.write_text(json.dumps(spec))
    return root, done


def profile(cfg: StudyConfig, data: Path, opts: StudyOptions) -> tuple[dict[str, Any], str]:
    """Profile ``cfg``'s step on its ranks; the profile and the command that measured it."""
    path = opts.out / "profiles" / f"{cfg.name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    done = run_ranks(opts.launch, cfg.ranks, cfg.threads, [
        "study", "profile", "--model", TRAIN_DEFAULTS["model"],
        "--local-batch-size", str(cfg.local_batch_size), "--height", str(opts.height),
        "--width", str(opts.width), "--steps", str(opts.profile_steps),
        "--data", str(data), "--out", str(path)], opts.timeout_s)
    return json.loads(path.read_text()), done.command_line


def train(cfg: StudyConfig, data: Path, opts: StudyOptions) -> tuple[Path, str]:
    """Train ``cfg`` to the target (or max epochs); its run directory and command line."""
    run_dir = opts.out / "runs" / cfg.name
    args = ["train", "--data_dir", str(data), "--output_dir", str(run_dir),
            "--run_tag", cfg.name, "--local_batch_size", str(cfg.local_batch_size),
            "--max_epochs", str(opts.max_epochs)]
    for key, value in TRAIN_DEFAULTS.items():
        args += [f"--{key}", value]
    args += opts.extra_train_args
    if (run_dir / "summary.json").exists():
        (run_dir / "summary.json").unlink()
    done = run_ranks(opts.launch, cfg.ranks, cfg.threads, args, opts.timeout_s)
    (run_dir / "study_meta.json").write_text(json.dumps({
        "name": cfg.name, "threads_per_rank": cfg.threads, "series": list(cfg.series),
        "command": done.command_line}, indent=2) + "\n")
    return run_dir, done.command_line


def row(cfg: StudyConfig, prof: dict[str, Any], run_dir: Path | None) -> dict[str, Any]:
    """One configuration's measured figures: step split, epoch, throughput, time to target."""
    out: dict[str, Any] = {
        "name": cfg.name, "series": list(cfg.series), "ranks": cfg.ranks,
        "threads_per_rank": cfg.threads, "local_batch_size": cfg.local_batch_size,
        "global_batch_size": cfg.global_batch_size,
        "compute_s": prof["compute_s"], "allreduce_s": prof["allreduce_s"],
        "exposed_allreduce_s": prof["exposed_allreduce_s"], "overlap": prof["overlap"],
        "read_s": prof["read_s"], "profile_step_s": prof["distributed_step_s"],
        "profile_samples_per_s": prof["step_samples_per_s"],
        "load_average": prof["load_average"],
    }
    if run_dir is None:
        return out
    s = RunSummary.from_json(run_dir / "summary.json").as_dict()
    epochs = max(1, int(s["epochs_run"]))
    steps_per_epoch = max(1, int(s["steps"]) // epochs)
    # medians: an epoch slowed by other load on a shared machine does not move them
    epoch_s = statistics.median(s["epoch_times_s"]) if s["epoch_times_s"] else 0.0
    step_s = epoch_s / steps_per_epoch
    wait = statistics.median(s["data_wait_fraction"]) if s["data_wait_fraction"] else 0.0
    comm = s.get("comm_wait_fraction") or []  # the trainer's own measure of exposed allreduce
    rates = s["train_samples_per_s"]
    out.update({
        "run_dir": str(run_dir), "epochs_run": s["epochs_run"], "epoch_s": epoch_s,
        "step_s": step_s, "data_wait_s": wait * step_s, "data_wait_fraction": wait,
        "train_comm_wait_fraction": statistics.median(comm) if comm else None,
        "other_s": step_s - prof["compute_s"] - prof["exposed_allreduce_s"] - wait * step_s,
        "samples_per_s": statistics.median(rates[1:] if len(rates) > 2 else rates)
        if rates else 0.0,
        "converged": s["converged"], "epochs_to_target": s["epochs_to_target"],
        "time_to_target_s": s["time_to_target_s"],
        "time_to_16_epochs_s": s["time_to_16_epochs_s"],
    })
    return out


def efficiencies(rows: list[dict[str, Any]]) -> None:
    """Add each row's per-series efficiency and the baseline it is measured against
    (``efficiency``, ``efficiency_baseline``: series -> value / name), by the one definition
    ``deepcam-hvd report`` uses (:func:`deepcam_hvd.report.tables.scaling_efficiencies`):
    samples/s per core over the series' baseline's, the baseline being the series' run on
    the fewest cores (weak, strong: 1 rank x 1 thread; layout: the best layout)."""
    table = scaling_efficiencies([
        Rated(r["name"], r["ranks"], r["threads_per_rank"], r.get("samples_per_s"),
              tuple(r["series"])) for r in rows])
    for r in rows:
        mine = table[r["name"]]
        if mine:
            r["efficiency"] = {k: e.value for k, e in mine.items()}
            r["efficiency_baseline"] = {k: e.baseline for k, e in mine.items()}


def run_study(opts: StudyOptions, progress: Any = print) -> dict[str, Any]:
    """Measure every planned configuration; write study.json and return it."""
    configs = plan(opts)
    opts.out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    data, synth = ensure_data(opts)
    rows, commands = [], {"synth": synth.command_line if synth else None}
    for cfg in configs:
        progress(f"study: {cfg.name} ({', '.join(cfg.series)}): profiling")
        prof, prof_cmd = profile(cfg, data, opts)
        run_dir, train_cmd = None, None
        if opts.train:
            progress(f"study: {cfg.name}: training to IoU {TRAIN_DEFAULTS['target_iou']} "
                     f"(max {opts.max_epochs} epochs)")
            run_dir, train_cmd = train(cfg, data, opts)
        rows.append(row(cfg, prof, run_dir))
        commands[cfg.name] = {"profile": prof_cmd, "train": train_cmd}
    efficiencies(rows)
    study = {
        "label": "MEASURED on this machine (see commands)",
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()},
        "configs": rows, "commands": commands,
        "machine": {"cpus": os.cpu_count(), "host": os.uname().nodename,
                    "load_average_end": os.getloadavg()[0]},
        "wall_s": time.time() - started,
    }
    (opts.out / "study.json").write_text(json.dumps(study, indent=2) + "\n")
    return study

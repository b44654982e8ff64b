"""Run a scaling series on this machine: for each (ranks, threads, local batch) configuration,
profile the step (DeepCAM: compute / allreduce / data; CosmoFlow: the whole step) and train to
the target, then tabulate. What differs between the workloads (training command and settings,
data, profile) is asked of ``study/workloads.py``.

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
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from deepcam_hvd.errors import ConfigError
from deepcam_hvd.report.runs import read_summary
from deepcam_hvd.report.tables import Rated, scaling_efficiencies
from deepcam_hvd.study.launch import Finished, run_ranks
from deepcam_hvd.study.workloads import SIZE_OPTIONS, StudyWorkload, study_workload

SERIES = ("weak", "strong", "layout")


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
    workload: str = "deepcam"
    kinds: tuple[str, ...] = SERIES
    ranks: tuple[int, ...] = (1, 2)
    layouts: tuple[tuple[int, int], ...] = ((1, 2), (2, 1))
    local_batch_size: int = 2
    global_batch_size: int = 4
    data: Path | None = None
    # None: the workload's default (study/workloads.py); resolve() fills them in
    train_samples: int | None = None
    val_samples: int | None = None
    height: int | None = None  # DeepCAM only
    width: int | None = None  # DeepCAM only
    cube: int | None = None  # CosmoFlow only
    max_epochs: int | None = None
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


def resolve(opts: StudyOptions) -> StudyOptions:
    """``opts`` with the sizes left None set to its workload's defaults; ConfigError naming the
    option if one is set that the workload does not take (``--cube`` for DeepCAM)."""
    workload = study_workload(opts.workload)
    values = {}
    for key in SIZE_OPTIONS:
        value = getattr(opts, key)
        if key not in workload.defaults:
            if value is not None:
                takes = ", ".join(f"--{k.replace('_', '-')}" for k in workload.defaults)
                raise ConfigError(f"--{key.replace('_', '-')} {value}: not an option of "
                                  f"--workload {workload.name} (it takes {takes})")
            continue
        values[key] = workload.defaults[key] if value is None else value
        if values[key] < 1:
            raise ConfigError(f"--{key.replace('_', '-')} {values[key]}: must be >= 1")
    return replace(opts, **values)


def ensure_data(opts: StudyOptions) -> tuple[Path, Finished | None]:
    """The data root: the given one, or synthetic data made once under ``out/data``."""
    if opts.data is not None:
        return opts.data, None
    root = opts.out / "data"
    marker = root / "synth.json"
    spec, args = study_workload(opts.workload).synth(opts, root)
    if marker.exists() and json.loads(marker.read_text()) == spec:
        return root, None
    done = run_ranks(opts.launch, min(2, os.cpu_count() or 1), 1, args, opts.timeout_s)
    marker.write_text(json.dumps(spec))
    return root, done


def profile(cfg: StudyConfig, data: Path, opts: StudyOptions) -> tuple[dict[str, Any], str]:
    """Profile ``cfg``'s step on its ranks; the profile figures (``PROFILE_KEYS``) and the
    command that measured them."""
    workload = study_workload(opts.workload)
    path = opts.out / "profiles" / f"{cfg.name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    done = run_ranks(opts.launch, cfg.ranks, cfg.threads,
                     workload.profile_args(cfg, data, opts, path), opts.timeout_s)
    return workload.read_profile(path), done.command_line


def train(cfg: StudyConfig, data: Path, opts: StudyOptions) -> tuple[Path, str]:
    """Train ``cfg`` to the target (or max epochs); its run directory and command line."""
    run_dir = opts.out / "runs" / cfg.name
    args = study_workload(opts.workload).train_args(cfg, data, run_dir, opts)
    if (run_dir / "summary.json").exists():
        (run_dir / "summary.json").unlink()
    done = run_ranks(opts.launch, cfg.ranks, cfg.threads, args, opts.timeout_s)
    (run_dir / "study_meta.json").write_text(json.dumps({
        "name": cfg.name, "threads_per_rank": cfg.threads, "series": list(cfg.series),
        "command": done.command_line}, indent=2) + "\n")
    return run_dir, done.command_line


def _median(values: list[float] | None, empty: float | None) -> float | None:
    """Median of ``values``: an epoch slowed by other load on a shared machine does not move
    it; ``empty`` when there are none, None when the summary has no such figure."""
    if values is None:
        return None
    return statistics.median(values) if values else empty


def row(cfg: StudyConfig, prof: dict[str, Any], run_dir: Path | None,
        workload: str = "deepcam") -> dict[str, Any]:
    """One configuration's measured figures: step split, epoch, throughput, time to target.
    Figures a workload does not measure are None (CosmoFlow: compute, allreduce, data wait)."""
    out: dict[str, Any] = {
        "name": cfg.name, "workload": workload, "series": list(cfg.series),
        "ranks": cfg.ranks, "threads_per_rank": cfg.threads,
        "local_batch_size": cfg.local_batch_size, "global_batch_size": cfg.global_batch_size,
        **prof,
    }
    if run_dir is None:
        return out
    spec, summary = read_summary(run_dir)
    s = asdict(summary)
    epochs = max(1, int(s["epochs_run"]))
    steps_per_epoch = max(1, int(s["steps"]) // epochs)
    epoch_s = _median(s["epoch_times_s"], 0.0) or 0.0
    step_s = epoch_s / steps_per_epoch
    wait = _median(s.get("data_wait_fraction"), 0.0)  # measured by DeepCAM's trainer only
    comm = s.get("comm_wait_fraction")  # the trainer's own measure of exposed allreduce
    rates = s["train_samples_per_s"]
    parts = [prof.get("compute_s"), prof.get("exposed_allreduce_s"), wait]
    out.update({
        "run_dir": str(run_dir), "epochs_run": s["epochs_run"], "epoch_s": epoch_s,
        "step_s": step_s, "data_wait_s": None if wait is None else wait * step_s,
        "data_wait_fraction": wait,
        "train_comm_wait_fraction": _median(comm, None),
        "other_s": None if None in parts else
        step_s - prof["compute_s"] - prof["exposed_allreduce_s"] - wait * step_s,
        "samples_per_s": statistics.median(rates[1:] if len(rates) > 2 else rates)
        if rates else 0.0,
        f"best_{spec.short}": spec.best(s[spec.curve_field]),
        "converged": s["converged"], "epochs_to_target": s["epochs_to_target"],
        "time_to_target_s": s["time_to_target_s"],
        "time_to_16_epochs_s": s.get("time_to_16_epochs_s"),
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
    """Measure every planned configuration of ``opts``' workload; write study.json and
    return it."""
    workload: StudyWorkload = study_workload(opts.workload)
    opts = resolve(opts)
    configs = plan(opts)
    opts.out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    data, synth = ensure_data(opts)
    rows, commands = [], {"synth": synth.command_line if synth else None}
    spec, target = workload.report, workload.target(opts.extra_train_args)
    progress(f"study: {spec.title}, {len(configs)} configuration(s), data in {data}")
    for cfg in configs:
        progress(f"study: {cfg.name} ({', '.join(cfg.series)}): profiling")
        prof, prof_cmd = profile(cfg, data, opts)
        run_dir, train_cmd = None, None
        if opts.train:
            progress(f"study: {cfg.name}: training to {spec.metric} {target:g} "
                     f"(max {opts.max_epochs} epochs)")
            run_dir, train_cmd = train(cfg, data, opts)
        rows.append(row(cfg, prof, run_dir, workload.name))
        commands[cfg.name] = {"profile": prof_cmd, "train": train_cmd}
    efficiencies(rows)
    study = {
        "label": "MEASURED on this machine (see commands)",
        "workload": workload.name,
        "metric": {"name": spec.metric, "higher_is_better": spec.higher_is_better,
                   "target": target},
        "efficiency_definition": "samples/s per core (ranks x threads) over the series "
                                 "baseline's: its run on the fewest cores (the fastest of "
                                 "them on a tie)",
        "baselines": baselines(rows),
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()},
        "configs": rows, "commands": commands,
        "machine": {"cpus": os.cpu_count(), "host": os.uname().nodename,
                    "load_average_end": os.getloadavg()[0]},
        "wall_s": time.time() - started,
    }
    (opts.out / "study.json").write_text(json.dumps(study, indent=2) + "\n")
    return study


def baselines(rows: list[dict[str, Any]]) -> dict[str, str]:
    """Each series' baseline run (series -> configuration name), from the rows' efficiencies."""
    found: dict[str, str] = {}
    for r in rows:
        for series, name in (r.get("efficiency_baseline") or {}).items():
            found.setdefault(series, name)
    return found

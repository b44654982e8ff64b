"""The runs table in the form users keep (Markdown and CSV) and the scaling efficiency."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass

from deepcam_hvd.report.runs import RunRecord

#: The series of runs that belong to no study series (``deepcam-hvd report`` over any runs).
ALL_RUNS = "all"

CSV_COLUMNS = (
    "run", "ranks", "nodes", "threads_per_rank", "local_batch_size",
    "gradient_accumulation_frequency", "global_batch_size", "epochs_run", "mean_epoch_s",
    "time_to_16_epochs_s", "time_to_16_epochs_estimated", "target_iou", "epochs_to_target",
    "time_to_target_s", "converged", "samples_per_s", "data_wait_fraction",
    "efficiency", "efficiency_baseline", "status",
)


def duration(seconds: float | None) -> str:
    """Seconds as users write them: '48.2 s', '17.53 min', '4.60 h'; '-' when unknown."""
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 3 * 3600:
        return f"{seconds / 60:.2f} min"
    return f"{seconds / 3600:.2f} h"


@dataclass(frozen=True)
class Rated:
    """What an efficiency is computed from: a run's name, size, throughput and series."""

    name: str
    ranks: int
    threads_per_rank: int | None  # None: not recorded (counted as 1 thread per rank)
    samples_per_s: float | None
    series: tuple[str, ...] = ()  # the study series it belongs to; () -> ALL_RUNS

    @property
    def cores(self) -> int:
        """Cores the run computed on: ranks x threads per rank."""
        return self.ranks * (self.threads_per_rank or 1)


@dataclass(frozen=True)
class Efficiency:
    """A run's efficiency in one series, and the run of that series it is measured against."""

    value: float
    baseline: str


def scaling_efficiencies(runs: Sequence[Rated]) -> dict[str, dict[str, Efficiency]]:
    """Per run and series: samples/s per core over the series baseline's samples/s per core.

    The one definition ``study run`` and ``report`` both use. Efficiency =
    (throughput / cores) / (baseline throughput / baseline cores), cores = ranks x threads
    per rank. A series' baseline is its run on the fewest cores (ties: the fastest of them).
    So in a weak or strong series (1 thread per rank) it is the usual
    throughput(P) / (P / P0 x throughput(P0)) against the fewest ranks, and in a layout series
    (the same cores split as ranks x threads) it is the throughput over the best layout's.
    Runs outside any study series form one series, ``ALL_RUNS``.
    """
    out: dict[str, dict[str, Efficiency]] = {r.name: {} for r in runs}
    names = list(dict.fromkeys(s for r in runs for s in (r.series or (ALL_RUNS,))))
    for series in names:
        members = [r for r in runs if series in (r.series or (ALL_RUNS,)) and r.samples_per_s]
        if not members:
            continue
        base = min(members, key=lambda r: (r.cores, -(r.samples_per_s or 0.0)))
        per_core = (base.samples_per_s or 0.0) / base.cores
        for r in members:
            out[r.name][series] = Efficiency((r.samples_per_s or 0.0) / r.cores / per_core,
                                             base.name)
    return {r.name: {s: out[r.name][s] for s in (r.series or (ALL_RUNS,)) if s in out[r.name]}
            for r in runs}  # each run's series in its own order


def rated(run: RunRecord) -> Rated:
    """The efficiency inputs of a run directory (series from its study_meta.json, if any)."""
    return Rated(run.name, run.ranks, run.threads_per_rank, run.samples_per_s,
                 tuple(run.extra.get("series") or ()))


def efficiencies(runs: list[RunRecord]) -> dict[str, dict[str, Efficiency]]:
    """:func:`scaling_efficiencies` of run directories."""
    return scaling_efficiencies([rated(r) for r in runs])


def efficiency_cells(eff: dict[str, Efficiency]) -> tuple[str, str]:
    """The CSV cells ``study.csv`` and ``report.csv`` share: 'weak=0.551 strong=0.424' and
    'weak=r1xt1-lb2 strong=r1xt1-lb4' (values, then baselines)."""
    return (" ".join(f"{k}={e.value:.3f}" for k, e in eff.items()),
            " ".join(f"{k}={e.baseline}" for k, e in eff.items()))


def _efficiency_text(eff: dict[str, Efficiency]) -> str:
    """The Markdown cell: '0.90' for plain runs, 'weak 0.55, strong 0.42' in a study."""
    if not eff:
        return "-"
    if list(eff) == [ALL_RUNS]:
        return f"{eff[ALL_RUNS].value:.2f}"
    return ", ".join(f"{k} {e.value:.2f}" for k, e in eff.items())


def _baselines_note(eff: dict[str, dict[str, Efficiency]]) -> str:
    """'Baselines: weak r1xt1-lb2, strong r1xt1-lb4.' from the table's efficiencies."""
    bases: dict[str, str] = {}
    for per_run in eff.values():
        for series, e in per_run.items():
            bases.setdefault(series, e.baseline)
    if not bases:
        return "No run has a throughput, so there is no efficiency."
    if list(bases) == [ALL_RUNS]:
        return f"Baseline: {bases[ALL_RUNS]}."
    return "Baselines: " + ", ".join(f"{k} {v}" for k, v in bases.items()) + "."


def _row(r: RunRecord, eff: dict[str, Efficiency]) -> dict[str, object]:
    values, baselines = efficiency_cells(eff)
    return {
        "run": r.name, "ranks": r.ranks, "nodes": r.nodes,
        "threads_per_rank": r.threads_per_rank if r.threads_per_rank is not None else "",
        "local_batch_size": r.local_batch_size,
        "gradient_accumulation_frequency": r.gradient_accumulation_frequency,
        "global_batch_size": r.global_batch_size, "epochs_run": r.epochs_run,
        "mean_epoch_s": _num(r.mean_epoch_s), "time_to_16_epochs_s": _num(r.time_to_16_epochs_s),
        "time_to_16_epochs_estimated": r.time_to_16_epochs_estimated,
        "target_iou": r.target_iou,
        "epochs_to_target": r.epochs_to_target if r.epochs_to_target is not None else "",
        "time_to_target_s": _num(r.time_to_target_s), "converged": r.converged,
        "samples_per_s": _num(r.samples_per_s), "data_wait_fraction": _num(r.data_wait_fraction),
        "efficiency": values, "efficiency_baseline": baselines, "status": r.status,
    }


def _num(value: float | None) -> object:
    return "" if value is None else round(value, 4)


def to_csv(runs: list[RunRecord]) -> str:
    """One row per run with the raw numbers (seconds, fractions)."""
    eff = efficiencies(runs)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in runs:
        writer.writerow(_row(r, eff[r.name]))
    return out.getvalue()


def to_markdown(runs: list[RunRecord], title: str = "DeepCAM runs") -> str:
    """The table of the NERSC-10/NREL reports: one row per run, then notes."""
    eff = efficiencies(runs)
    targets = {r.target_iou for r in runs}
    goal = f"{targets.pop():g} IoU" if len(targets) == 1 else "target IoU"
    head = ("| run | ranks | nodes | threads/rank | local batch size | gradient accumulation | "
            f"~ epoch time | time to 16 epochs | epochs to {goal} | time to {goal} | "
            "converged? | samples/s | efficiency per core (vs baseline) |")
    lines = [f"# {title}", "", head, "|" + "---|" * 13]
    for r in runs:
        t16 = duration(r.time_to_16_epochs_s)
        if r.time_to_16_epochs_s is not None and r.time_to_16_epochs_estimated:
            t16 += f" (est. from {r.epochs_run})"
        epochs = str(r.epochs_to_target) if r.converged else f"- (not in {r.epochs_run})"
        converged = "yes" if r.converged else ("no" if r.status != "running" else "running")
        rate = f"{r.samples_per_s:.2f}" if r.samples_per_s else "-"
        lines.append(
            f"| {r.name} | {r.ranks} | {r.nodes} | "
            f"{r.threads_per_rank if r.threads_per_rank is not None else '-'} | "
            f"{r.local_batch_size} | {r.gradient_accumulation_frequency} | "
            f"{duration(r.mean_epoch_s)} | {t16} | {epochs} | "
            f"{duration(r.time_to_target_s) if r.converged else '-'} | {converged} | {rate} | "
            f"{_efficiency_text(eff[r.name])} |")
    lines += [
        "",
        "Epoch time is training only (evaluation excluded), the mean over the run's epochs. "
        "Time to 16 epochs is the NERSC-10 figure: the sum of the first 16 epoch times, or the "
        "mean epoch x 16 when fewer ran (marked est.). Time to the target is wall time from "
        "run_start to the evaluation that reached it (evaluations included). samples/s is the "
        "median epoch's training throughput over all ranks. Efficiency is samples/s per core "
        "(cores = ranks x threads per rank) over the baseline's: the run of the series on the "
        "fewest cores, the fastest of them on a tie (weak and strong: throughput(P) / "
        "(P / P0 x throughput(P0)); layout: throughput over the best layout's). "
        + _baselines_note(eff),
        "",
    ]
    return "\n".join(lines)

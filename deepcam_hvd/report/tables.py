"""The runs table in the form users keep (Markdown and CSV) and the scaling efficiency.

The columns are defined once here (:data:`COLUMNS`); which of them a workload's table shows,
and in what order, its :class:`~deepcam_hvd.report.workloads.WorkloadSpec` says.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from deepcam_hvd.report.runs import RunRecord, workload_of

#: The series of runs that belong to no study series (``deepcam-hvd report`` over any runs).
ALL_RUNS = "all"


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
    """Every CSV figure of a run (its workload's ``csv_columns`` pick from them)."""
    values, baselines = efficiency_cells(eff)
    short = r.workload.short
    return {
        "run": r.name, "ranks": r.ranks, "nodes": r.nodes,
        "threads_per_rank": r.threads_per_rank if r.threads_per_rank is not None else "",
        "local_batch_size": r.local_batch_size,
        "gradient_accumulation_frequency": r.gradient_accumulation_frequency,
        "global_batch_size": r.global_batch_size, "epochs_run": r.epochs_run,
        "mean_epoch_s": _num(r.mean_epoch_s), "time_to_16_epochs_s": _num(r.time_to_16_epochs_s),
        "time_to_16_epochs_estimated": r.time_to_16_epochs_estimated,
        f"target_{short}": r.target, f"best_{short}": _num(r.best),
        "epochs_to_target": r.epochs_to_target if r.epochs_to_target is not None else "",
        "time_to_target_s": _num(r.time_to_target_s), "converged": r.converged,
        "samples_per_s": _num(r.samples_per_s), "data_wait_fraction": _num(r.data_wait_fraction),
        "efficiency": values, "efficiency_baseline": baselines, "status": r.status,
        "mlperf_status": r.mlperf_status,
    }


def _num(value: float | None) -> object:
    return "" if value is None else round(value, 4)


def to_csv(runs: list[RunRecord]) -> str:
    """One row per run with the raw numbers (seconds, fractions), in the columns of the runs'
    workload; DataError if the runs mix workloads."""
    spec = workload_of(runs)
    eff = efficiencies(runs)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=spec.csv_columns, extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    for r in runs:
        writer.writerow(_row(r, eff[r.name]))
    return out.getvalue()


@dataclass(frozen=True)
class Column:
    """A Markdown column: its header (``{goal}``: '0.82 IoU', ``{metric}``: 'IoU'), its cell
    and the sentence of the notes under the table that explains it ('' for none)."""

    header: str
    cell: Callable[[RunRecord, dict[str, Efficiency]], str]
    note: str = ""


def _t16(r: RunRecord, eff: dict[str, Efficiency]) -> str:
    text = duration(r.time_to_16_epochs_s)
    if r.time_to_16_epochs_s is not None and r.time_to_16_epochs_estimated:
        text += f" (est. from {r.epochs_run})"
    return text


def _converged(r: RunRecord, eff: dict[str, Efficiency]) -> str:
    return "yes" if r.converged else ("no" if r.status != "running" else "running")


#: Every column a workload's table may show, by name (``WorkloadSpec.table_columns``).
COLUMNS: dict[str, Column] = {
    "run": Column("run", lambda r, e: r.name),
    "ranks": Column("ranks", lambda r, e: str(r.ranks)),
    "nodes": Column("nodes", lambda r, e: str(r.nodes)),
    "threads": Column("threads/rank", lambda r, e: str(r.threads_per_rank)
                      if r.threads_per_rank is not None else "-"),
    "local_batch": Column("local batch size", lambda r, e: str(r.local_batch_size)),
    "accumulation": Column("gradient accumulation",
                           lambda r, e: str(r.gradient_accumulation_frequency)),
    "epoch_time": Column(
        "~ epoch time", lambda r, e: duration(r.mean_epoch_s),
        "Epoch time is training only (evaluation excluded), the mean over the run's epochs."),
    "time_to_16": Column(
        "time to 16 epochs", _t16,
        "Time to 16 epochs is the NERSC-10 figure: the sum of the first 16 epoch times, or the "
        "mean epoch x 16 when fewer ran (marked est.)."),
    "best": Column(
        "best {metric}", lambda r, e: f"{r.best:.4f}" if r.best is not None else "-",
        "Best {metric} is the run's best validation {metric} ({direction} is better); a run "
        "converged when it reached the target ({metric} {compare} target)."),
    "epochs_to_target": Column(
        "epochs to {goal}", lambda r, e: str(r.epochs_to_target) if r.converged
        else f"- (not in {r.epochs_run})"),
    "time_to_target": Column(
        "time to {goal}", lambda r, e: duration(r.time_to_target_s) if r.converged else "-",
        "Time to the target is wall time from run_start to the evaluation that reached it "
        "(evaluations included)."),
    "converged": Column("converged?", _converged),
    "mlperf_status": Column(
        "MLPerf status", lambda r, e: r.mlperf_status or "-",
        "MLPerf status is the MLPerf log's run_stop: success only at MLPerf's target "
        "({metric} {compare} {mlperf_target:g})."),
    "samples_per_s": Column(
        "samples/s", lambda r, e: f"{r.samples_per_s:.2f}" if r.samples_per_s else "-",
        "samples/s is the median epoch's training throughput over all ranks."),
    "efficiency": Column(
        "efficiency per core (vs baseline)", lambda r, e: _efficiency_text(e),
        "Efficiency is samples/s per core (cores = ranks x threads per rank) over the "
        "baseline's: the run of the series on the fewest cores, the fastest of them on a tie "
        "(weak and strong: throughput(P) / (P / P0 x throughput(P0)); layout: throughput over "
        "the best layout's)."),
}


def to_markdown(runs: list[RunRecord], title: str | None = None) -> str:
    """The table of the NERSC-10/NREL reports: one row per run, then notes; the columns and
    the metric (IoU, MAE) are the runs' workload's. DataError if the runs mix workloads."""
    spec = workload_of(runs)
    eff = efficiencies(runs)
    targets = {r.target for r in runs}
    words = {
        "metric": spec.metric,
        "goal": f"{targets.pop():g} {spec.metric}" if len(targets) == 1
        else f"target {spec.metric}",
        "direction": "higher" if spec.higher_is_better else "lower",
        "compare": ">=" if spec.higher_is_better else "<=",
        "mlperf_target": spec.mlperf_target,
    }
    columns = [COLUMNS[name] for name in spec.table_columns]
    head = "| " + " | ".join(c.header.format(**words) for c in columns) + " |"
    lines = [f"# {title or spec.title + ' runs'}", "", head, "|" + "---|" * len(columns)]
    for r in runs:
        lines.append("| " + " | ".join(c.cell(r, eff[r.name]) for c in columns) + " |")
    notes = [c.note.format(**words) for c in columns if c.note]
    lines += ["", " ".join(notes) + " " + _baselines_note(eff), ""]
    return "\n".join(lines)

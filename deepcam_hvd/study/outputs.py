"""Files a study leaves behind: study.csv, the step-split plot and the runs report."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

COLUMNS = (
    "name", "series", "ranks", "threads_per_rank", "local_batch_size", "global_batch_size",
    "step_s", "compute_s", "exposed_allreduce_s", "allreduce_s", "data_wait_s", "other_s",
    "read_s", "epoch_s", "samples_per_s", "efficiency", "efficiency_baseline",
    "epochs_to_target", "time_to_target_s", "converged", "load_average", "workload",
)


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, list):
        return " ".join(map(str, value))
    if isinstance(value, dict):  # per series, as report.csv writes them (report/tables.py)
        return " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in value.items())
    return "" if value is None else value


def study_csv(study: dict[str, Any]) -> str:
    """One row per measured configuration; ``efficiency`` is per series ('weak=0.551
    strong=0.424'), ``efficiency_baseline`` names each series' baseline run, ``workload`` says
    whose runs they are; figures a workload's profile does not measure are empty."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    for row in study["configs"]:
        writer.writerow({k: _cell(row.get(k)) for k in COLUMNS})
    return out.getvalue()


def plot_step_split(study: dict[str, Any], path: Path) -> Path:
    """Per configuration, the training step (measured in the training run) split into data
    wait (measured there), exposed allreduce (profiled) and the rest (compute and overheads);
    a marker shows the profiled compute time of a step, or, where the profile timed whole
    steps only (CosmoFlow's ``bench step``), the profiled step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = study["configs"]
    names = [r["name"] for r in rows]
    step = [float(r.get("step_s") or r.get("profile_step_s") or 0.0) for r in rows]
    wait = [float(r.get("data_wait_s") or 0.0) for r in rows]
    exposed = [min(float(r.get("exposed_allreduce_s") or 0.0), s) for r, s in zip(rows, step,
                                                                                strict=True)]
    rest = [max(0.0, s - w - e) for s, w, e in zip(step, wait, exposed, strict=True)]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    bottom = [0.0] * len(rows)
    for values, label in ((rest, "compute + other"), (exposed, "allreduce (exposed)"),
                          (wait, "data wait")):
        ax.bar(names, values, bottom=bottom, label=label)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    marked = "compute_s" if any(r.get("compute_s") is not None for r in rows) \
        else "profile_step_s"
    ax.scatter(names, [float(r.get(marked) or 0.0) for r in rows], marker="x",
               color="black", zorder=3,
               label="profiled compute" if marked == "compute_s" else "profiled step")
    ax.set_ylabel("seconds per optimizer step")
    ax.set_title("Training step split (measured)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_outputs(study: dict[str, Any], out: Path) -> list[Path]:
    """study.csv, step_split.png and (with training runs) report/ over the run directories,
    titled with the study's workload."""
    from deepcam_hvd.report import write_report
    from deepcam_hvd.report.workloads import WORKLOADS

    files = [out / "study.csv"]
    files[0].write_text(study_csv(study))
    files.append(plot_step_split(study, out / "step_split.png"))
    run_dirs = [r["run_dir"] for r in study["configs"] if r.get("run_dir")]
    if run_dirs:
        title = WORKLOADS[study.get("workload", "deepcam")].title
        files += list(write_report(run_dirs, out / "report", f"{title} scaling study "
                                   "(measured on this machine)").values())
    return files

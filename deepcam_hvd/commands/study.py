"""``deepcam-hvd study``: measured scaling series here, and the calibrated scaling model."""

from __future__ import annotations

import json
from pathlib import Path

import click

from deepcam_hvd.commands.options import runtime_options
from deepcam_hvd.errors import ConfigError
from deepcam_hvd.resources import resource
from deepcam_hvd.study.model import Calibration
from deepcam_hvd.study.workloads import STUDY_WORKLOADS

#: The calibration shipped with the package (a copy of benchmarks/scaling/calibration.json).
DEFAULT_CALIBRATION = resource("scaling", "calibration.json")
DEFAULT_CALIBRATION_NAME = "the packaged calibration (deepcam_hvd/resources/scaling)"


def _ints(text: str, option: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.replace(",", " ").split())
    except ValueError:
        raise ConfigError(f"{option} {text!r}: expected whole numbers like 1,2,4") from None
    if not values or min(values) < 1:
        raise ConfigError(f"{option} {text!r}: expected positive whole numbers")
    return values


def _layouts(text: str) -> tuple[tuple[int, int], ...]:
    layouts = []
    for item in text.replace(",", " ").split():
        ranks, sep, threads = item.partition("x")
        if not sep or not ranks.isdigit() or not threads.isdigit():
            raise ConfigError(f"--layouts {item!r}: expected RANKSxTHREADS, e.g. 1x2,2x1")
        layouts.append((int(ranks), int(threads)))
    return tuple(layouts)


@click.group()
def study() -> None:
    """Scaling studies: measure a series here, calibrate and run the scaling model."""


def _per_workload(key: str) -> str:
    """'[default: deepcam 128, cosmoflow 1024]' from each workload's study defaults."""
    values = [f"{name} {w.defaults[key]}" for name, w in STUDY_WORKLOADS.items()
              if key in w.defaults]
    return f"[default: {', '.join(values)}]"


@study.command("run", context_settings={"show_default": True})
@click.option("--workload", type=click.Choice(list(STUDY_WORKLOADS)), default="deepcam",
              help="What to train: DeepCAM (PyTorch; profiled by `study profile`) or "
                   "CosmoFlow (TensorFlow; `cosmoflow train`, profiled by `cosmoflow bench "
                   "step`), each with its settings in deepcam_hvd/study/workloads.py.")
@click.option("--out", type=click.Path(file_okay=False), default="runs/study",
              help="Output directory (data, profiles, runs, study.json/csv, report).")
@click.option("--kind", default="weak,strong,layout", help="Series: weak, strong, layout.")
@click.option("--ranks", default="1,2", help="Rank counts of the weak and strong series.")
@click.option("--layouts", default="1x2,2x1", help="RANKSxTHREADS of the layout series.")
@click.option("--local-batch-size", type=int, default=2, help="Weak series' local batch.")
@click.option("--global-batch-size", type=int, default=4,
              help="Strong and layout series' global batch.")
@click.option("--data", type=click.Path(file_okay=False), default=None,
              help="Data root; default: synthetic data made under OUT/data.")
@click.option("--train-samples", type=int, default=None,
              help=f"Synthetic training samples.  {_per_workload('train_samples')}")
@click.option("--val-samples", type=int, default=None,
              help=f"Synthetic validation samples.  {_per_workload('val_samples')}")
@click.option("--height", type=int, default=None,
              help=f"Sample height (DeepCAM).  {_per_workload('height')}")
@click.option("--width", type=int, default=None,
              help=f"Sample width (DeepCAM).  {_per_workload('width')}")
@click.option("--cube", type=int, default=None,
              help=f"Voxels per side of a universe (CosmoFlow).  {_per_workload('cube')}")
@click.option("--max-epochs", type=int, default=None,
              help=f"Epoch limit of each training run.  {_per_workload('max_epochs')}")
@click.option("--profile-steps", type=int, default=5, help="Timed steps per profile phase.")
@click.option("--train/--no-train", default=True, help="Train each configuration to target.")
@click.option("--launch", type=click.Choice(["mpirun", "srun"]), default="mpirun",
              help="How ranks are started (srun: inside a Slurm allocation).")
@click.option("--timeout", "timeout_s", type=float, default=1800,
              help="Seconds any one launch may take.")
@click.argument("train_args", nargs=-1, type=click.UNPROCESSED)
def run(workload: str, out: str, kind: str, ranks: str, layouts: str, local_batch_size: int,
        global_batch_size: int, data: str | None, train_samples: int | None,
        val_samples: int | None, height: int | None, width: int | None, cube: int | None,
        max_epochs: int | None, profile_steps: int, train: bool, launch: str,
        timeout_s: float, train_args: tuple[str, ...]) -> None:
    """Measure weak/strong/layout series: step split, throughput, epoch and target times.

    DeepCAM trains to IoU 0.82, CosmoFlow to MAE 0.25 (jobs/cosmoflow_demo.sh's open-division
    settings on 32^3 universes); options after `--` go to every training run. study.json,
    study.csv and report/ name the workload and each series' efficiency baseline."""
    from deepcam_hvd.study.outputs import write_outputs
    from deepcam_hvd.study.runner import StudyOptions, run_study

    opts = StudyOptions(
        out=Path(out), workload=workload,
        kinds=tuple(k.strip() for k in kind.split(",") if k.strip()),
        ranks=_ints(ranks, "--ranks"), layouts=_layouts(layouts),
        local_batch_size=local_batch_size, global_batch_size=global_batch_size,
        data=Path(data) if data else None, train_samples=train_samples,
        val_samples=val_samples, height=height, width=width, cube=cube,
        max_epochs=max_epochs, profile_steps=profile_steps, train=train, launch=launch,
        timeout_s=timeout_s, extra_train_args=list(train_args))
    result = run_study(opts, progress=lambda text: click.echo(text, err=True))
    files = write_outputs(result, opts.out)
    click.echo((opts.out / "study.csv").read_text(), nl=False)
    click.echo("wrote " + ", ".join(str(f) for f in [opts.out / "study.json", *files]),
               err=True)


@study.command("profile", context_settings={"show_default": True})
@click.option("--model", default="deeplab-xception-small", help="Model to time.")
@click.option("--local-batch-size", type=int, default=2, help="Samples per rank and step.")
@click.option("--height", type=int, default=96, help="Sample height.")
@click.option("--width", type=int, default=144, help="Sample width.")
@click.option("--steps", type=int, default=5, help="Timed steps per phase.")
@click.option("--warmup", type=int, default=1, help="Untimed steps per phase.")
@click.option("--data", type=click.Path(file_okay=False), default="",
              help="Data root to time reads from (none: skip the data phase).")
@click.option("--readers", type=int, default=1, help="Loader readers for the data phase.")
@click.option("--out", "out_file", type=click.Path(dir_okay=False), default=None,
              help="Write the JSON here (rank 0).")
@runtime_options
def profile(model: str, local_batch_size: int, height: int, width: int, steps: int,
            warmup: int, data: str, readers: int, out_file: str | None, launcher: str,
            backend: str, device: str) -> None:
    """Time a step's compute, allreduce and data parts on every rank (run under a launcher)."""
    from deepcam_hvd.runtime import start_runtime
    from deepcam_hvd.study.profile import ProfileSettings, profile_rank, summarize

    if min(local_batch_size, steps, height, width) < 1 or warmup < 0:
        raise ConfigError("--local-batch-size, --steps, --height and --width must be >= 1")
    settings = ProfileSettings(model=model, local_batch_size=local_batch_size, height=height,
                               width=width, steps=steps, warmup=warmup, data_dir=data,
                               readers=readers)
    runtime = start_runtime(launcher, backend, device)
    try:
        per_rank = runtime.backend.allgather_object(profile_rank(runtime, settings))
        if runtime.backend.is_root:
            result = summarize(per_rank, settings, runtime)
            if out_file:
                Path(out_file).write_text(json.dumps(result, indent=2) + "\n")
            click.echo(f"profile: {result['ranks']} rank(s) x {result['threads_per_rank']} "
                       f"thread(s), {model}, batch {local_batch_size} of {height}x{width}: "
                       f"compute {result['compute_s']:.3f} s, allreduce "
                       f"{result['allreduce_s']:.3f} s (exposed "
                       f"{result['exposed_allreduce_s']:.3f} s), read "
                       f"{result['read_s'] or 0:.3f} s per step")
    finally:
        runtime.backend.shutdown()


@study.command("calibrate", context_settings={"show_default": True})
@click.option("--out", type=click.Path(file_okay=False), default="benchmarks/scaling",
              help="Where calibration.json (and its profiles) go.")
@click.option("--steps", type=int, default=3, help="Timed steps per phase.")
@click.option("--launch", type=click.Choice(["mpirun", "srun"]), default="mpirun",
              help="How ranks are started.")
def calibrate_cmd(out: str, steps: int, launch: str) -> None:
    """Measure the full model's CPU cost and the allreduce overlap here for the model."""
    from deepcam_hvd.study.calibrate import calibrate

    cal = calibrate(Path(out), launch=launch, steps=steps)
    click.echo(f"calibration (measured): full model {cal.cpu_s_per_sample:.1f} s per 768x1152 "
               f"sample on one thread of this machine; allreduce overlap {cal.cpu_overlap:.2f}"
               f"; wrote {Path(out) / 'calibration.json'}")


def _calibration(path: str | None, required: bool) -> Calibration | None:
    """The calibration file named, else the packaged one (None if absent and optional)."""
    from deepcam_hvd.study.calibrate import load_calibration

    if path:
        return load_calibration(Path(path))
    if not DEFAULT_CALIBRATION.is_file() and not required:
        return None
    return load_calibration(DEFAULT_CALIBRATION)


@study.command("predict", context_settings={"show_default": True})
@click.argument("system")
@click.option("--nodes", default="1,2,4", help="Node counts (ESIF: N, 2N, 4N).")
@click.option("--local-batch-size", type=int, default=1, help="Samples per rank and step.")
@click.option("--ranks-per-node", type=int, default=None, help="Default: the system's.")
@click.option("--calibration", default=None, metavar="FILE",
              help=f"Calibration for CPU systems [default: {DEFAULT_CALIBRATION_NAME}].")
@click.option("--cores-per-rank", type=int, default=None,
              help="CPU systems: cores a rank computes on (what-if; default: the system's).")
@click.option("--thread-efficiency", type=float, default=None,
              help="CPU systems: how well torch uses those cores (what-if).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def predict_cmd(system: str, nodes: str, local_batch_size: int, ranks_per_node: int | None,
                calibration: str | None, cores_per_rank: int | None,
                thread_efficiency: float | None, as_json: bool) -> None:
    """PREDICT step and epoch time, throughput and efficiency of SYSTEM at several sizes."""
    from dataclasses import replace

    from deepcam_hvd.jobs import get_system
    from deepcam_hvd.study.model import PREDICTION_LABEL, Workload, predict

    target = get_system(system)
    what_if = {k: v for k, v in (("cores_per_rank", cores_per_rank),
                                 ("thread_efficiency", thread_efficiency)) if v is not None}
    if what_if:
        if min(what_if.values()) <= 0:
            raise ConfigError("--cores-per-rank and --thread-efficiency must be positive")
        target = replace(target, hardware=replace(target.hardware, **what_if))
    if local_batch_size < 1:
        raise ConfigError("--local-batch-size must be at least 1")
    cal = _calibration(calibration, required=target.hardware.is_cpu)
    preds = []
    for n in _ints(nodes, "--nodes"):
        try:
            preds.append(predict(target, n, Workload(local_batch_size=local_batch_size), cal,
                                 ranks_per_node))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    if as_json:
        click.echo(json.dumps([p.as_dict() for p in preds], indent=2))
        return
    click.echo(f"{PREDICTION_LABEL}: {target.name}, local batch {local_batch_size}, full "
               "DeepCAM (121,266 training samples)")
    click.echo(f"{'nodes':>6} {'ranks':>6} {'step s':>8} {'compute':>8} {'data':>7} "
               f"{'allred.':>8} {'exposed':>8} {'epoch':>10} {'samples/s':>10} {'eff.':>5} "
               f"{'eff/rank':>8}")
    for p in preds:
        click.echo(f"{p.nodes:>6} {p.ranks:>6} {p.step_s:>8.3f} {p.compute_s:>8.3f} "
                   f"{p.data_s:>7.3f} {p.allreduce_s:>8.3f} {p.exposed_allreduce_s:>8.3f} "
                   f"{p.epoch_s / 60:>7.2f} min {p.samples_per_s:>10.1f} {p.efficiency:>5.2f} "
                   f"{p.rank_efficiency:>8.2f}")
    click.echo("eff.: t_step(1 node) / t_step; eff/rank: t_step(1 rank alone) / t_step; epoch "
               "includes evaluation")


@study.command("compare")
@click.option("--calibration", default=None, metavar="FILE",
              help=f"Calibration for CPU systems [default: {DEFAULT_CALIBRATION_NAME}].")
@click.option("--out", "out_file", type=click.Path(dir_okay=False), default=None,
              help="Also write the Markdown table here (and FILE.json beside it).")
def compare_cmd(calibration: str | None, out_file: str | None) -> None:
    """PREDICT the published DeepCAM results (docs/REFERENCE.md) and compare."""
    from deepcam_hvd.jobs import load_systems
    from deepcam_hvd.study.published import compare, to_markdown

    rows = compare(load_systems(), _calibration(calibration, required=True))
    text = to_markdown(rows)
    click.echo(text, nl=False)
    if out_file:
        Path(out_file).write_text(text)
        Path(out_file).with_suffix(".json").write_text(json.dumps(rows, indent=2) + "\n")

"""``submission run``: N independent training runs, each in a fresh directory."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from deepcam_hvd.errors import ConfigError, DataError, LaunchError
from deepcam_hvd.study.launch import deepcam_command
from deepcam_hvd.submission.logs import read_run_log
from deepcam_hvd.submission.record import LaunchRecord

# Without --seed the trainer draws a fresh seed from the clock. With a trainer whose default
# seed is fixed, set this to True and each run is given its own.
PASS_SEEDS = False
# Options this command sets itself (or forbids) in every run.
OWN_OPTIONS = {
    "--output_dir": "each run gets RUNS_DIR/run_<i>",
    "--output-dir": "each run gets RUNS_DIR/run_<i>",
    "--resume": "submission runs start fresh",
    "--checkpoint": "submission runs start fresh",
    "--seed": "every run needs its own seed",
}


@dataclass(frozen=True)
class RunPlan:
    """What ``submission run`` was asked for."""

    out: Path
    runs: int
    launcher: list[str]
    train_options: list[str]
    timeout_s: float

    @property
    def run_dirs(self) -> list[Path]:
        """RUNS_DIR/run_0 .. run_<N-1>."""
        return [self.out / f"run_{i}" for i in range(self.runs)]


@dataclass(frozen=True)
class RunOutcome:
    """One finished run."""

    run_dir: Path
    seed: int | None
    status: str | None
    epochs: float | None
    best_accuracy: float | None
    wall_s: float

    def line(self) -> str:
        """One human line."""
        acc = f"{self.best_accuracy:.4f}" if self.best_accuracy is not None else "none"
        seed = f"seed {self.seed}, " if self.seed is not None else ""
        return (f"{self.run_dir.name}: {self.status}, {seed}{self.epochs or 0:g} epochs, best "
                f"eval_accuracy {acc}, {self.wall_s:.1f} s (log: {self.run_dir / 'mlperf.log'})")


def make_plan(out: Path, runs: int, launcher_cmd: str, train_options: list[str],
              timeout_s: float) -> RunPlan:
    """Validate the request; ConfigError naming the option or directory at fault."""
    if runs < 1:
        raise ConfigError(f"--runs {runs}: expected at least 1")
    if timeout_s <= 0:
        raise ConfigError(f"--timeout {timeout_s}: expected a positive number of seconds")
    for opt in train_options:
        name = opt.split("=", 1)[0]
        if name in OWN_OPTIONS:
            raise ConfigError(f"{name} in the train options: not allowed here "
                              f"({OWN_OPTIONS[name]})")
    try:
        launcher = shlex.split(launcher_cmd)
    except ValueError as exc:
        raise ConfigError(f"--launcher-cmd {launcher_cmd!r}: {exc}") from None
    plan = RunPlan(out, runs, launcher, list(train_options), timeout_s)
    for run_dir in plan.run_dirs:
        if run_dir.exists():
            raise ConfigError(f"{run_dir} already exists: refusing to overwrite a run "
                              "(choose another --out)")
    return plan


def fresh_seed(used: set[int]) -> int:
    """A seed in [1, 2**31 - 1] from the clock, distinct from ``used``."""
    seed = time.time_ns() // 1000 % (2**31 - 1) + 1
    while seed in used:
        seed = seed % (2**31 - 1) + 1
    return seed


def _launch(command: list[str], run_dir: Path, timeout_s: float) -> int:
    """Run ``command`` with its output in run_dir/train.log; kill its process group on timeout."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with (run_dir / "train.log").open("w") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
        try:
            return proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise LaunchError(f"{run_dir.name} ran past --timeout {timeout_s:.0f} s and was "
                              f"stopped (output: {run_dir / 'train.log'})") from None


def run_one(plan: RunPlan, index: int, seed: int | None) -> RunOutcome:
    """Train run ``index`` in its own fresh directory; LaunchError if it fails to finish."""
    run_dir = plan.run_dirs[index]
    run_dir.mkdir(parents=True)
    command = [*plan.launcher, deepcam_command(), "train", *plan.train_options,
               "--output_dir", str(run_dir)]
    if seed is not None:
        command += ["--seed", str(seed)]
    record = LaunchRecord(launcher=plan.launcher, train_options=plan.train_options, seed=seed,
                          output_dir=str(run_dir), cwd=os.getcwd(), command=command)
    record.write(run_dir)
    start = time.perf_counter()
    try:
        code = _launch(command, run_dir, plan.timeout_s)
    except FileNotFoundError as exc:
        raise LaunchError(f"--launcher-cmd: cannot start {exc.filename!r}") from None
    record.returncode, record.wall_s = code, round(time.perf_counter() - start, 2)
    record.write(run_dir)
    if code != 0:
        raise LaunchError(f"{run_dir.name}: training exited {code} (output: "
                          f"{run_dir / 'train.log'})")
    try:
        log = read_run_log(run_dir / "mlperf.log")
    except DataError as exc:
        raise LaunchError(f"{run_dir.name}: finished without a usable MLPerf log: {exc}") \
            from None
    logged = log.seeds[0] if log.seeds else seed
    return RunOutcome(run_dir, logged, log.status, log.epochs_to_stop, log.best_accuracy,
                      record.wall_s)


def run_all(plan: RunPlan, progress: Callable[[str], None]) -> list[RunOutcome]:
    """Run every training in turn, reporting each as it ends; stop at the first failure or
    at a seed an earlier run already logged."""
    plan.out.mkdir(parents=True, exist_ok=True)
    outcomes: list[RunOutcome] = []
    seeds: set[int] = set()
    for i in range(plan.runs):
        progress(f"{plan.run_dirs[i].name}: training ({i + 1}/{plan.runs})")
        outcome = run_one(plan, i, fresh_seed(seeds) if PASS_SEEDS else None)
        outcomes.append(outcome)
        progress(outcome.line())
        if outcome.seed in seeds:
            raise ConfigError(f"{outcome.run_dir.name} logged seed {outcome.seed} as an "
                              "earlier run did (a --config file fixing the seed?): runs of a "
                              "submission need fresh seeds")
        if outcome.seed is not None:
            seeds.add(outcome.seed)
    return outcomes

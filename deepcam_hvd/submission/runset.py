"""Check that a set of runs forms one submission: count, division, seeds, completeness."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepcam_hvd.errors import ConfigError, DataError
from deepcam_hvd.submission import BENCHMARK, REQUIRED_RUNS
from deepcam_hvd.submission.logs import RunLog, read_run_log

DIVISIONS = ("open", "closed")
# Keys that describe the system and batch: every run of one package must agree on them.
SAME_IN_EVERY_RUN = ("submission_org", "submission_status", "global_batch_size",
                     "number_of_nodes", "accelerators_per_node")


@dataclass(frozen=True)
class RunSet:
    """Runs that passed :func:`check_runs`, with the facts they agree on."""

    runs: tuple[RunLog, ...]
    division: str
    org: str
    status: str
    global_batch_size: int
    number_of_nodes: int
    accelerators_per_node: int

    @property
    def complete(self) -> bool:
        """True when the count is what a valid DeepCAM submission needs."""
        return len(self.runs) == REQUIRED_RUNS


def log_of(run: Path) -> Path:
    """The MLPerf log of a run directory (or the log file itself).

    A directory holding ``mlperf.1.log`` was restarted (the trainer keeps an earlier
    attempt's log under a numbered name): it is not one independent run.
    """
    if run.is_file():
        return run
    if not run.is_dir():
        raise DataError(f"{run}: no such run directory")
    log = run / "mlperf.log"
    if not log.is_file():
        raise DataError(f"{run}: no mlperf.log (not a training run's output directory?)")
    if (run / "mlperf.1.log").exists():
        raise DataError(f"{run}: holds mlperf.1.log, so the run was restarted or resumed; a "
                        "submission run must be one uninterrupted run")
    return log


def _agreed(runs: list[RunLog], key: str) -> Any:
    """The one value of ``key`` that every run logs; ConfigError naming two that differ."""
    first = runs[0]
    for run in runs:
        if run.first(key) is None:
            raise DataError(f"{run.path}: no {key} logged")
        if run.first(key) != first.first(key):
            raise ConfigError(f"runs differ in {key}: {first.first(key)!r} in {first.path}, "
                              f"{run.first(key)!r} in {run.path}")
    return first.first(key)


def _check_seeds(runs: list[RunLog], division: str) -> None:
    seen: dict[int, Path] = {}
    for run in runs:
        if not run.seeds and division == "closed":
            raise DataError(f"{run.path}: no seed logged (the closed-division seed checker "
                            "needs one per run)")
        for seed in set(run.seeds):
            if seed in seen:
                raise ConfigError(f"seed {seed} repeats in {seen[seed]} and {run.path}: runs "
                                  "of a submission must be independent (fresh seeds)")
            seen[seed] = run.path


def check_runs(logs: list[Path], division: str = "auto", allow_fewer: bool = False) -> RunSet:
    """Read every log and refuse, naming the file, anything that is not one valid run set."""
    if division not in ("auto", *DIVISIONS):
        raise ConfigError(f"--division {division!r}: expected auto, open or closed")
    if len(set(p.resolve() for p in logs)) != len(logs):
        raise ConfigError("the same run is given twice")
    if len(logs) > REQUIRED_RUNS or (len(logs) < REQUIRED_RUNS and not allow_fewer):
        raise ConfigError(f"{len(logs)} run(s) given; a DeepCAM time-to-solution submission "
                          f"has exactly {REQUIRED_RUNS} (--allow-fewer packages fewer, for "
                          "testing only: not a valid submission)")
    if not logs:
        raise ConfigError("no runs given")
    runs = [read_run_log(p) for p in logs]
    for run in runs:
        if run.first("submission_benchmark") != BENCHMARK:
            raise DataError(f"{run.path}: submission_benchmark is "
                            f"{run.first('submission_benchmark')!r}, not {BENCHMARK!r}")
        if run.status is None:
            raise DataError(f"{run.path}: no run_stop: the run did not finish")
        if run.division not in DIVISIONS:
            raise DataError(f"{run.path}: submission_division {run.division!r} is not open "
                            "or closed")
    logged = _agreed_division(runs)
    if division not in ("auto", logged):
        raise ConfigError(f"--division {division} but the runs logged submission_division "
                          f"{logged} ({runs[0].path}); train with --division {division}")
    _check_seeds(runs, logged)
    agreed = {key: _agreed(runs, key) for key in SAME_IN_EVERY_RUN}
    return RunSet(runs=tuple(runs), division=logged, org=str(agreed["submission_org"]),
                  status=str(agreed["submission_status"]),
                  global_batch_size=int(agreed["global_batch_size"]),
                  number_of_nodes=int(agreed["number_of_nodes"]),
                  accelerators_per_node=int(agreed["accelerators_per_node"]))


def _agreed_division(runs: list[RunLog]) -> str:
    first = runs[0]
    for run in runs:
        if run.division != first.division:
            raise ConfigError(f"runs mix divisions: {first.division} in {first.path}, "
                              f"{run.division} in {run.path}")
    return str(first.division)

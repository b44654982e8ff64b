"""Run the official mlperf_logging checkers on a package and read their verdicts.

Each checker runs as its own process with its working directory in the package's checks/
folder, so the logs they drop in the current directory never land in the caller's.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from deepcam_hvd.submission import RULESET, USAGE
from deepcam_hvd.submission.layout import Layout

PACKAGE_OK = "PACKAGE CHECKER FOUND NO ERRORS"


@dataclass(frozen=True)
class Verdict:
    """One checker's outcome."""

    name: str
    passed: bool
    log: Path
    detail: str = ""

    def line(self) -> str:
        """``<name>: PASSED|FAILED (log: PATH)``, then the detail if any."""
        text = f"{self.name}: {'PASSED' if self.passed else 'FAILED'} (log: {self.log})"
        return f"{text}: {self.detail}" if self.detail else text


def _run(name: str, args: list[str], log: Path, cwd: Path,
         timeout: float) -> tuple[int | None, str]:
    """Run ``python -m args`` with its own output in ``<log>.out``; (exit code, log text)."""
    cwd.mkdir(parents=True, exist_ok=True)
    log.unlink(missing_ok=True)  # the checkers append to an existing log
    out = log.with_suffix(".out")
    try:
        proc = subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True,
                              text=True, timeout=timeout, check=False)
        code: int | None = proc.returncode
        out.write_text(proc.stdout + proc.stderr)
    except subprocess.TimeoutExpired:
        code = None
        out.write_text(f"{name} ran past {timeout:.0f} s and was stopped\n")
    return code, log.read_text(errors="replace") if log.exists() else ""


def _errors(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.startswith("ERROR")]


def package_checker(layout: Layout, timeout: float = 900) -> Verdict:
    """``python -m mlperf_logging.package_checker <org> hpc 3.0.0``.

    It exits 0 whatever it finds, so the verdict is its closing line in the log.
    """
    log = layout.checks_dir / "package_checker.log"
    code, text = _run("package checker", ["mlperf_logging.package_checker",
                                          str(layout.org_dir.resolve()), USAGE, RULESET,
                                          "--log_output", str(log.resolve())],
                      log, layout.checks_dir, timeout)
    passed = code == 0 and PACKAGE_OK in text
    if code is None:
        detail = f"timed out after {timeout:.0f} s"
    elif code != 0:
        detail = f"exited {code} (output: {log.with_suffix('.out')})"
    else:
        errors = _errors(text)
        detail = "" if passed else (errors[0] if errors else "no verdict in the log")
    return Verdict("package checker", passed, log, detail)


def rcp_checker(layout: Layout, timeout: float = 600) -> Verdict:
    """``python -m mlperf_logging.rcp_checker <results> --rcp_usage hpc --rcp_version 3.0.0``:
    the olympic mean of epochs to target against the reference convergence points."""
    log = layout.checks_dir / "rcp_checker.log"
    code, text = _run("RCP checker", ["mlperf_logging.rcp_checker",
                                      str(layout.results_dir.resolve()), "--rcp_usage", USAGE,
                                      "--rcp_version", RULESET,
                                      "--log_output", str(log.resolve())],
                      log, layout.checks_dir, timeout)
    verdict = re.findall(r"^(?:INFO|ERROR) - (.*RCP test (?:PASSED|FAILED).*)$", text,
                         re.MULTILINE)
    mean = re.findall(r"Submission mean epochs: ([0-9.]+)", text)
    detail = verdict[-1] if verdict else ("timed out" if code is None else
                                          f"exited {code} (output: {log.with_suffix('.out')})")
    if mean:
        detail += f"; olympic mean epochs {mean[-1]}"
    return Verdict("RCP checker", code == 0, log, detail)


def run_checkers(layout: Layout, division: str, timeout: float = 900) -> list[Verdict]:
    """The package checker, and for the closed division the RCP checker."""
    verdicts = [package_checker(layout, timeout)]
    if division == "closed":
        verdicts.append(rcp_checker(layout, timeout))
    return verdicts

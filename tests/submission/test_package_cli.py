"""`deepcam-hvd submission package` on hand-made logs: refusals, layout, checker verdicts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from deepcam_hvd.cli import main
from deepcam_hvd.submission.system_desc import REQUIRED_FIELDS
from tests.submission.mllogs import write_log, write_runs

RESULTS = Path("deepcam-hvd/results/box/strong/deepcam")


def package(*args: str) -> Result:
    """Run ``deepcam-hvd submission package ARGS`` in this process."""
    return CliRunner().invoke(main, ["submission", "package", *args])


def error_lines(result: Result) -> list[str]:
    return [line for line in result.output.splitlines() if line.startswith("deepcam-hvd: error")]


def test_open_package_layout_and_package_checker_pass(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    runs = write_runs(tmp_path / "runs", seeds=[5, 6, 7, 8, 9])
    out = tmp_path / "pkg"
    caller = tmp_path / "caller"
    caller.mkdir()
    monkeypatch.chdir(caller)
    result = package(*map(str, runs), "--system", "box", "--out", str(out),
                     "--system-field", "cooling=air")
    assert result.exit_code == 0, result.output
    log = out / "checks" / "package_checker.log"
    assert f"package checker: PASSED (log: {log})" in result.output.splitlines()
    assert "RCP checker" not in result.output  # open division: no RCP check
    results = out / RESULTS
    assert sorted(p.name for p in results.iterdir()) == [f"result_{i}.txt" for i in range(5)]
    assert (results / "result_3.txt").read_text() == (runs[3] / "mlperf.log").read_text()
    desc = json.loads((out / "deepcam-hvd/systems/box.json").read_text())
    assert set(REQUIRED_FIELDS) <= set(desc)
    assert (desc["submitter"], desc["division"], desc["status"], desc["system_name"]) == \
        ("deepcam-hvd", "open", "research", "box")
    assert (desc["number_of_nodes"], desc["accelerators_per_node"]) == ("1", "0")
    assert desc["cooling"] == "air" and desc["accelerator_model_name"] == "N/A"
    assert desc["framework"].startswith("PyTorch ")
    impl = out / "deepcam-hvd/benchmarks/deepcam/implementations"
    assert (impl / "pytorch-horovod/deepcam_hvd/submission/assemble.py").is_file()
    assert not list(impl.rglob("__pycache__"))
    meta = json.loads((impl / "box/box_pytorch-horovod.json").read_text())
    assert [r["seeds"] for r in meta["runs"]] == [[5], [6], [7], [8], [9]]
    assert (impl / "box/run_and_time.sh").stat().st_mode & 0o111
    assert list(caller.iterdir()) == []  # no checker wrote into the caller's directory


def test_check_reruns_the_checkers_on_a_package(tmp_path: Path) -> None:
    runs = write_runs(tmp_path / "runs")
    out = tmp_path / "pkg"
    assert package(*map(str, runs), "--system", "box", "--out", str(out),
                   "--no-check").exit_code == 0
    assert not (out / "checks").exists()
    check = ["submission", "check", str(out), "--org", "deepcam-hvd", "--system", "box"]
    result = CliRunner().invoke(main, check)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("package checker: PASSED")
    (out / RESULTS / "result_4.txt").unlink()
    result = CliRunner().invoke(main, check)
    assert result.exit_code == 1
    assert result.output.startswith("package checker: FAILED")
    assert "Incorrect number of files" in result.output  # the checker's first ERROR line


def test_existing_result_0_is_refused_and_untouched(tmp_path: Path) -> None:
    runs = write_runs(tmp_path / "runs")
    out = tmp_path / "pkg"
    existing = out / RESULTS / "result_0.txt"
    existing.parent.mkdir(parents=True)
    existing.write_text("an earlier package\n")
    result = package(*map(str, runs), "--system", "box", "--out", str(out), "--no-check")
    assert result.exit_code == 2
    assert error_lines(result) == [f"deepcam-hvd: error: {existing} already exists: refusing "
                                   "to overwrite a package (choose another --out, --org or "
                                   "--system)"]
    assert existing.read_text() == "an earlier package\n"
    assert [p.name for p in existing.parent.iterdir()] == ["result_0.txt"]
    assert not (out / "deepcam-hvd/systems").exists()


def test_repeated_seed_is_refused(tmp_path: Path) -> None:
    runs = write_runs(tmp_path / "runs", seeds=[1, 2, 3, 2, 5])
    result = package(*map(str, runs), "--system", "box", "--out", str(tmp_path / "pkg"))
    assert result.exit_code == 2
    assert error_lines(result) == [
        f"deepcam-hvd: error: seed 2 repeats in {runs[1] / 'mlperf.log'} and "
        f"{runs[3] / 'mlperf.log'}: runs of a submission must be independent (fresh seeds)"]
    assert not (tmp_path / "pkg").exists()


def test_mixed_divisions_are_refused(tmp_path: Path) -> None:
    runs = write_runs(tmp_path / "runs")
    write_log(runs[2] / "mlperf.log", division="closed", seed=13, global_batch_size=4)
    result = package(*map(str, runs), "--system", "box", "--out", str(tmp_path / "pkg"))
    assert result.exit_code == 2
    assert error_lines(result) == [
        f"deepcam-hvd: error: runs mix divisions: open in {runs[0] / 'mlperf.log'}, closed in "
        f"{runs[2] / 'mlperf.log'}"]


def test_division_option_must_match_the_logs(tmp_path: Path) -> None:
    runs = write_runs(tmp_path / "runs")
    result = package(*map(str, runs), "--system", "box", "--out", str(tmp_path / "pkg"),
                     "--division", "closed")
    assert result.exit_code == 2
    assert "--division closed but the runs logged submission_division open" in result.output


@pytest.mark.parametrize(("count", "extra", "code", "expect"), [
    (4, [], 2, "4 run(s) given; a DeepCAM time-to-solution submission has exactly 5"),
    (6, ["--allow-fewer"], 2, "6 run(s) given"),
    (4, ["--allow-fewer"], 1, "package checker: FAILED"),
])
def test_run_count(tmp_path: Path, count: int, extra: list[str], code: int,
                   expect: str) -> None:
    runs = write_runs(tmp_path / "runs", count=count)
    result = package(*map(str, runs), "--system", "box", "--out", str(tmp_path / "pkg"), *extra)
    assert result.exit_code == code, result.output
    assert expect in result.output
    if code == 1:  # packaged for testing, and the real checker rejects the count
        assert "NOT a valid submission" in result.output
        text = (tmp_path / "pkg/checks/package_checker.log").read_text()
        assert "found 4, expected 5" in text


@pytest.mark.parametrize(("field", "expect"), [
    ("division=closed", "--system-field division: set by --division"),
    ("colling=air", "--system-field colling: not a field of the MLPerf system description"),
    ("cooling", "--system-field 'cooling': expected key=value"),
])
def test_bad_system_field(tmp_path: Path, field: str, expect: str) -> None:
    runs = write_runs(tmp_path / "runs")
    result = package(*map(str, runs), "--system", "box", "--out", str(tmp_path / "pkg"),
                     "--system-field", field)
    assert result.exit_code == 2
    assert len(error_lines(result)) == 1 and expect in error_lines(result)[0]


@pytest.mark.parametrize(("setup", "expect"), [
    ("missing", "no such run directory"),
    ("restarted", "holds mlperf.1.log, so the run was restarted or resumed"),
    ("unfinished", "no run_stop: the run did not finish"),
    ("garbage", ":2: not a valid MLLOG record"),
    ("other-org", "runs differ in submission_org"),
])
def test_bad_runs(tmp_path: Path, setup: str, expect: str) -> None:
    runs = write_runs(tmp_path / "runs")
    bad = runs[1]
    if setup == "missing":
        (bad / "mlperf.log").unlink()
        bad.rmdir()
    elif setup == "restarted":
        (bad / "mlperf.1.log").write_text("")
    elif setup == "unfinished":
        write_log(bad / "mlperf.log", seed=12, status=None)
    elif setup == "garbage":
        log = bad / "mlperf.log"
        lines = log.read_text().splitlines()
        log.write_text("\n".join([lines[0], ":::MLLOG {not json", *lines[2:]]) + "\n")
    else:
        write_log(bad / "mlperf.log", seed=12, org="other")
    result = package(*map(str, runs), "--system", "box", "--out", str(tmp_path / "pkg"))
    assert result.exit_code == 2, result.output
    assert len(error_lines(result)) == 1 and expect in error_lines(result)[0]
    assert str(bad) in error_lines(result)[0]


def test_bad_names_and_org_mismatch(tmp_path: Path) -> None:
    runs = write_runs(tmp_path / "runs")
    result = package(*map(str, runs), "--system", "my box", "--out", str(tmp_path / "pkg"))
    assert result.exit_code == 2 and "--system 'my box': use letters" in result.output
    result = package(*map(str, runs), "--system", "box", "--org", "ACME",
                     "--out", str(tmp_path / "pkg"))
    assert result.exit_code == 2
    assert "--org 'ACME' but the runs logged submission_org 'deepcam-hvd'" in result.output

"""Closed division: seed and RCP checks of mlperf_logging on packages of hand-made logs."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from mlperf_logging.rcp_checker import rcp_checker

from deepcam_hvd.cli import main
from tests.submission.mllogs import write_runs

RESULTS = "ACME/results/box/strong/deepcam"
# Reference epochs for global batch 2048 (rcps_deepcam.json, hpc_3.0.0): sorted
# 22 x5, 23 x3, 24, 26; the olympic mean drops one at each end: 182 / 8 = 22.625.
RCP_2048_MEAN = 22.625


def closed_package(tmp_path: Path, epochs: list[int], batch: int = 2048,
                   seeds: list[int] | None = None) -> tuple[Path, str, int]:
    """Package five closed runs; (results dir, CLI output, exit code)."""
    runs = write_runs(tmp_path / "runs", division="closed", org="ACME", epoch_list=epochs,
                      global_batch_size=batch, seeds=seeds or [101, 102, 103, 104, 105])
    out = tmp_path / "pkg"
    result = CliRunner().invoke(main, ["submission", "package", *map(str, runs), "--system",
                                       "box", "--out", str(out)])
    return out / RESULTS, result.output, result.exit_code


def test_rcp_lookup_for_batch_2048_finds_the_reference(tmp_path: Path) -> None:
    results, output, code = closed_package(tmp_path, [23, 23, 24, 23, 25])
    assert code == 0, output
    assert "package checker: PASSED" in output
    assert "RCP checker: PASSED" in output and "RCP found, RCP test PASSED" in output
    files = sorted(str(p) for p in results.glob("result_*.txt"))
    bs, epochs, benchmark = rcp_checker.get_submission_epochs(files, "3.0.0", False)
    assert (bs, sorted(epochs), benchmark) == (2048, [23, 23, 23, 24, 25], "deepcam")
    checker = rcp_checker.RCP_Checker("hpc", "3.0.0", "deepcam", False)
    record = checker._find_rcp(2048, "pruned_rcps")
    assert record["BS"] == 2048 and record["RCP Mean"] == RCP_2048_MEAN
    # The fastest olympic mean the t-test still accepts at p = 0.05, 5 runs against 10.
    assert round(record["Min Epochs"], 2) == 21.11
    # Pruning keeps 128, 1024 and 2048: batches 256 and 512 are interpolated, not looked up.
    assert sorted(r["BS"] for r in checker.pruned_rcp_data.values()) == [128, 1024, 2048]
    passed, message, norm = rcp_checker.check_directory(str(results), "hpc", "3.0.0", False,
                                                        False, rcp_pass="pruned_rcps")
    # olympic mean 70 / 3 = 23.33 epochs: slower than the reference, so no normalisation
    assert (passed, message, norm) == (True, "RCP found", 1.0)


def test_too_fast_convergence_fails_the_rcp_check(tmp_path: Path) -> None:
    results, output, code = closed_package(tmp_path, [10, 11, 10, 12, 10])
    assert code == 1
    assert "package checker: FAILED" in output and "RCP checker: FAILED" in output
    assert "RCP found, RCP test FAILED" in output and "olympic mean epochs 10.3333" in output
    log = (tmp_path / "pkg/checks/package_checker.log").read_text()
    assert "RCP Test Failed: RCP found" in log


def test_batch_between_references_is_interpolated(tmp_path: Path) -> None:
    results, output, code = closed_package(tmp_path, [18, 18, 19, 18, 18], batch=1536)
    files = sorted(str(p) for p in results.glob("result_*.txt"))
    passed, message, _ = rcp_checker.check_directory(str(results), "hpc", "3.0.0", False,
                                                     False, rcp_pass="pruned_rcps")
    assert message == "RCP Interpolation" and len(files) == 5
    assert (code == 0) == passed, output


def test_seed_checker_agrees_with_the_refusal(tmp_path: Path) -> None:
    from mlperf_logging.package_checker.seed_checker import SeedChecker

    distinct = write_runs(tmp_path / "a", division="closed", seeds=[1, 2, 3, 4, 5])
    repeated = write_runs(tmp_path / "b", division="closed", seeds=[1, 2, 3, 4, 1])
    checker = SeedChecker("3.0.0")
    assert checker.check_seeds([str(d / "mlperf.log") for d in distinct]) is True
    assert checker.check_seeds([str(d / "mlperf.log") for d in repeated]) is False

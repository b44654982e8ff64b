"""The package works when installed from a wheel, away from the repository: job templates,
systems and the scaling calibration come from package data, and training runs.

The wheel goes into a fresh virtual environment outside the repository; that environment sees
the dependencies (torch, Horovod, ...) of the test's own environment through a ``.pth`` file
written after the install, which adds only plain path entries: the editable install of the
repository's copy there is never loaded, and every command runs from a directory outside it.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.launch import ROOT

pytestmark = pytest.mark.slow

SOURCES = ("deepcam_hvd", "setup.cfg", "pyproject.toml", "README.md")


def sh(command: list[str], cwd: Path, timeout: float = 300,
       env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``command`` and fail with its output unless it exits 0."""
    proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=env)
    assert proc.returncode == 0, f"{command}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def build_wheel(work: Path) -> Path:
    """A wheel of a clean copy of the package sources (no build/ debris from the repository)."""
    src = work / "src"
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(ROOT / name, src / name)
    dist = work / "dist"
    sh([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
        "-w", str(dist), str(src)], cwd=work)
    wheels = list(dist.glob("deepcam_hvd-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def install(wheel: Path, work: Path) -> Path:
    """A fresh venv holding the wheel; the dependencies come from this test's environment."""
    venv = work / "venv"
    sh([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=work)
    python = venv / "bin" / "python"
    sh([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
        "--no-index", "--ignore-installed", str(wheel)], cwd=work)
    purelib = Path(sh([str(python), "-c", "import sysconfig; print(sysconfig.get_path("
                       "'purelib'))"], cwd=work).stdout.strip())
    deps = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib"), *site.getsitepackages()}
    (purelib / "zz_test_dependencies.pth").write_text("".join(f"{p}\n" for p in sorted(deps)))
    return venv


def test_wheel_renders_predicts_and_trains(tmp_path_factory: pytest.TempPathFactory) -> None:
    work = tmp_path_factory.mktemp("wheel")
    assert not work.resolve().is_relative_to(ROOT)
    wheel = build_wheel(work)
    venv = install(wheel, work)
    cli = str(venv / "bin" / "deepcam-hvd")
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "DEEPCAM_HVD_JOBS_DIR", "VIRTUAL_ENV")}
    env["OMP_NUM_THREADS"] = "1"

    # the installed copy is the one that runs, not the repository's
    where = sh([str(venv / "bin" / "python"), "-c",
                "import deepcam_hvd, deepcam_hvd.resources as r; print(deepcam_hvd.__file__); "
                "print(r.resource('jobs', 'systems.toml'))"], cwd=work, env=env).stdout.split()
    for path in map(Path, where):
        assert path.resolve().is_relative_to(venv.resolve()), path
        assert not path.resolve().is_relative_to(ROOT), path
    assert Path(where[1]).is_file()

    # job templates and systems from package data
    listed = sh([cli, "jobs", "list"], cwd=work, env=env).stdout
    assert listed.startswith("archer2-cpu ") and "\ngeneric-cpu " in listed
    script = sh([cli, "jobs", "render", "generic-cpu", "--nodes", "1", "--data", "/d",
                 "--time", "00:10:00", "--tasks-per-node", "2", "--cpus-per-task", "1"],
                cwd=work, env=env).stdout
    for line in ("#SBATCH --nodes=1", "#SBATCH --ntasks-per-node=2", "#SBATCH --time=00:10:00",
                 f"source {venv}/bin/activate", f"OUTPUT_ROOT={work.resolve()}/runs",
                 "OUTPUT_DIR=${DEEPCAM_RUN_DIR:-$OUTPUT_ROOT/$SLURM_JOB_NAME-$SLURM_JOB_ID}",
                 "    --resume auto --run_tag generic-cpu-1n"):
        assert f"\n{line}\n" in script, line

    # the scaling model with the packaged calibration (a CPU system needs it)
    predicted = json.loads(sh([cli, "study", "predict", "archer2-cpu", "--nodes", "1,2",
                               "--json"], cwd=work, env=env).stdout)
    assert [p["nodes"] for p in predicted] == [1, 2]
    assert [p["ranks"] for p in predicted] == [8, 16]
    assert all(p["step_s"] > 0 and p["samples_per_s"] > 0 for p in predicted)
    table = sh([cli, "study", "predict", "archer2-cpu", "--nodes", "1"], cwd=work,
               env=env).stdout.splitlines()
    assert table[2].split()[:2] == ["1", "8"]
    assert float(table[2].split()[2]) == pytest.approx(predicted[0]["step_s"], abs=1e-3)

    # tiny synthetic data and one epoch of training
    data, out = work / "data", work / "run"
    sh([cli, "data", "synth", "--out", str(data), "--train", "4", "--val", "2",
        "--height", "32", "--width", "48", "--seed", "3"], cwd=work, env=env)
    assert len(list((data / "train").glob("*.h5"))) == 4
    sh([cli, "train", "--data_dir", str(data), "--output_dir", str(out),
        "--model", "deeplab-xception-small", "--max_epochs", "1", "--local_batch_size", "2",
        "--max_inter_threads", "0"], cwd=work, env=env, timeout=600)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs_run"] == 1 and summary["ranks"] == 1
    assert summary["steps"] == 2  # 4 samples, local batch 2
    assert (out / "mlperf.log").is_file()

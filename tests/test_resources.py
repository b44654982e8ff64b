"""Package data: what deepcam-hvd reads at run time is inside the package and declared for the
build (the wheel test, tests/test_installed_wheel.py, proves it from an installed copy)."""

from __future__ import annotations

import configparser
import fnmatch
import json
from pathlib import Path

from deepcam_hvd.commands.study import DEFAULT_CALIBRATION
from deepcam_hvd.jobs import jobs_dir, load_systems
from deepcam_hvd.resources import resource
from deepcam_hvd.study.calibrate import load_calibration
from tests.launch import ROOT

PACKAGE = ROOT / "deepcam_hvd" / "resources"


def test_every_resource_file_is_declared_as_package_data() -> None:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    patterns = cfg["options.package_data"]["deepcam_hvd.resources"].split()
    files = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*")
                   if p.is_file() and p.suffix not in (".py", ".pyc", ".md")
                   and "__pycache__" not in p.parts)
    assert "jobs/systems.toml" in files and "scaling/calibration.json" in files
    missing = [f for f in files if not any(fnmatch.fnmatch(f, pat) for pat in patterns)]
    assert missing == []


def test_systems_and_templates_come_from_the_package(monkeypatch) -> None:
    monkeypatch.delenv("DEEPCAM_HVD_JOBS_DIR", raising=False)
    assert Path(str(jobs_dir())) == PACKAGE / "jobs"
    systems = load_systems()
    assert "archer2-cpu" in systems and "generic-cpu" in systems
    for system in systems.values():
        if system.renderable:
            assert resource("jobs", "templates", system.template).is_file(), system.template


def test_jobs_dir_can_be_pointed_elsewhere(monkeypatch, tmp_path: Path) -> None:
    (tmp_path / "systems.toml").write_text(
        '[tiny]\ndescription = "x"\ntemplate = ""\nlauncher = "none"\n'
        'tasks_per_node = 1\ncpus_per_task = 1\n')
    monkeypatch.setenv("DEEPCAM_HVD_JOBS_DIR", str(tmp_path))
    assert list(load_systems()) == ["tiny"]


def test_packaged_calibration_is_the_measured_one() -> None:
    """The package's copy matches benchmarks/scaling/calibration.json: after
    ``deepcam-hvd study calibrate --out benchmarks/scaling``, copy the file into
    deepcam_hvd/resources/scaling/."""
    packaged = json.loads(DEFAULT_CALIBRATION.read_text())
    measured = json.loads((ROOT / "benchmarks" / "scaling" / "calibration.json").read_text())
    assert packaged == measured
    cal = load_calibration(DEFAULT_CALIBRATION)
    assert cal.cpu_s_per_sample == measured["cpu_s_per_sample"] > 0

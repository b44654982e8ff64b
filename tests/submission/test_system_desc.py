"""The system description against mlperf_logging's own system_desc_checker."""

from __future__ import annotations

import ast
import inspect
import json
from pathlib import Path

from mlperf_logging.system_desc_checker import system_desc_checker

from deepcam_hvd.submission.machine import Machine, memory_total, parse_cpuinfo
from deepcam_hvd.submission.runset import check_runs
from deepcam_hvd.submission.system_desc import (
    REQUIRED_FIELDS,
    build_system_desc,
    empty_fields,
)
from tests.submission.mllogs import write_runs


def checker_required_fields() -> list[str]:
    """The list literal check_system_desc assigns to ``required_fields`` (a local there)."""
    tree = ast.parse(inspect.getsource(system_desc_checker.check_system_desc))
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "required_fields" for t in node.targets):
            return list(ast.literal_eval(node.value))
    raise AssertionError("required_fields not found in system_desc_checker")


def test_required_fields_are_the_checkers() -> None:
    theirs = checker_required_fields()
    assert len(theirs) == 33
    assert list(REQUIRED_FIELDS) == theirs


def test_desc_of_an_empty_machine_has_every_field_and_passes(tmp_path: Path) -> None:
    runs = check_runs([d / "mlperf.log" for d in write_runs(tmp_path / "runs", nodes=2,
                                                            accelerators=4)])
    desc = build_system_desc(runs, Machine(), "ACME", "box", {"cooling": "liquid"})
    assert set(desc) == set(REQUIRED_FIELDS)
    assert (desc["number_of_nodes"], desc["accelerators_per_node"]) == ("2", "4")
    assert desc["host_networking"] == "" and desc["cooling"] == "liquid"
    assert "host_processor_model_name" in empty_fields(desc)
    assert "cooling" not in empty_fields(desc)
    path = tmp_path / "box.json"
    path.write_text(json.dumps(desc))
    valid, name, _, _ = system_desc_checker.check_system_desc(str(path), "hpc", "3.0.0")
    assert (valid, name) == (True, "box")
    del desc["cooling"]
    path.write_text(json.dumps(desc))
    assert system_desc_checker.check_system_desc(str(path), "hpc", "3.0.0")[0] is False


def test_machine_parsers() -> None:
    cpuinfo = "\n\n".join(
        f"processor\t: {i}\nmodel name\t: AMD EPYC 7742\nphysical id\t: {i // 4}\n"
        f"siblings\t: 4\ncpu cores\t: 2\ncpu MHz\t\t: 2250.000" for i in range(8))
    assert parse_cpuinfo(cpuinfo) == {"model": "AMD EPYC 7742", "sockets": "2", "cores": "2",
                                      "threads": "4", "mhz": "2250.000"}
    assert memory_total("MemTotal:       24684084 kB\nMemFree: 1 kB\n") == "24 GB"

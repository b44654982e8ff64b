"""backends/patch_horovod.py: the C++ standard follows torch, every anchor is replaced once."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "backends" / "patch_horovod.py"


@pytest.fixture(scope="module")
def patch() -> ModuleType:
    spec = importlib.util.spec_from_file_location("patch_horovod", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tree(root: Path) -> Path:
    """The lines of Horovod 0.28.1's sdist that the patches replace, each in its file."""
    files = {
        "CMakeLists.txt": "project(horovod)\nset(CMAKE_CXX_STANDARD 14)\n",
        "horovod/torch/CMakeLists.txt": "if(X)\n    set(CMAKE_CXX_STANDARD 14)\nendif()\n",
        "third_party/gloo/CMakeLists.txt":
            'set(CMAKE_CXX_FLAGS "${CMAKE_CXX_FLAGS} -std=c++11 -fPIC")\n',
        "horovod/runner/mpi_run.py": "    elif 'MPICH' in output:\n        return MPICH\n",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


@pytest.mark.parametrize(("torch", "standard"), [
    ("2.11.0+cu130", 17), ("2.13.0+cpu", 17), ("2.13.9", 17), ("2.14.0", 20),
    ("2.14.1+cu130", 20), ("3.0.0", 20), (None, 17)])
def test_the_standard_follows_torch(patch: ModuleType, torch: str | None, standard: int) -> None:
    assert patch.standard_for_torch(torch) == standard


@pytest.mark.parametrize("standard", [17, 20])
def test_one_standard_in_all_three_places(patch: ModuleType, tmp_path: Path,
                                          standard: int) -> None:
    root = _tree(tmp_path)
    patch.apply(root, standard)
    assert f"set(CMAKE_CXX_STANDARD {standard})" in (root / "CMakeLists.txt").read_text()
    assert f"    set(CMAKE_CXX_STANDARD {standard})" in \
        (root / "horovod/torch/CMakeLists.txt").read_text()
    assert f"-std=c++{standard} -fPIC" in (root / "third_party/gloo/CMakeLists.txt").read_text()
    assert "'MPICH' in output or 'HYDRA' in output" in \
        (root / "horovod/runner/mpi_run.py").read_text()
    patch.apply(root, standard)  # idempotent


def test_the_command_line_reads_this_pythons_torch_and_names_a_missing_anchor(
        tmp_path: Path) -> None:
    root = _tree(tmp_path / "src")
    proc = subprocess.run([sys.executable, str(SCRIPT), str(root)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    from importlib.metadata import version

    major, minor = (int(p) for p in version("torch").split(".")[:2])
    expected = 20 if (major, minor) >= (2, 14) else 17
    assert proc.stdout.startswith(f"patch_horovod: C++{expected} (torch {version('torch')})")
    forced = _tree(tmp_path / "forced")
    proc = subprocess.run([sys.executable, str(SCRIPT), str(forced), "--cxx-standard", "20"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "-std=c++20" in \
        (forced / "third_party/gloo/CMakeLists.txt").read_text()
    (root / "CMakeLists.txt").write_text("nothing to patch\n")
    (root / "third_party/gloo/CMakeLists.txt").write_text("nothing\n")
    proc = subprocess.run([sys.executable, str(SCRIPT), str(root), "--cxx-standard", "20"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip().endswith("found 0 (is this Horovod 0.28.1?)")
    assert "CMakeLists.txt: expected exactly one 'set(CMAKE_CXX_STANDARD 14)'" in proc.stderr

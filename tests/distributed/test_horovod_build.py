"""What deepcam-hvd reads of the installed Horovod: which framework extensions it has, and the
PyTorch extension's build (a TensorFlow-only build, profile nvidia-nccl-tf, has none)."""

from __future__ import annotations

import importlib.machinery
from pathlib import Path

import pytest

from deepcam_hvd.commands.info import format_table
from deepcam_hvd.distributed import horovod_backend
from deepcam_hvd.distributed.horovod_backend import horovod_build, horovod_frameworks


def fake_horovod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, built: set[str]) -> None:
    """``horovod.torch`` and ``horovod.tensorflow`` packages, only those in ``built`` with a
    compiled extension (an ``mpi_lib*.so``) inside."""
    specs = {}
    for framework, module in (("torch", "horovod.torch"), ("tensorflow", "horovod.tensorflow")):
        folder = tmp_path / framework
        folder.mkdir()
        (folder / "__init__.py").write_text("")
        if framework in built:
            (folder / "mpi_lib_v2.cpython-311-x86_64-linux-gnu.so").write_bytes(b"")
        spec = importlib.machinery.ModuleSpec(module, None, is_package=True)
        spec.submodule_search_locations = [str(folder)]
        specs[module] = spec
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: specs.get(name))


@pytest.mark.parametrize("built", [{"torch"}, {"tensorflow"}, {"torch", "tensorflow"}, set()])
def test_frameworks_are_the_extensions_that_exist(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  built: set[str]) -> None:
    fake_horovod(tmp_path, monkeypatch, built)
    assert horovod_frameworks() == [f for f in ("torch", "tensorflow") if f in built]


def test_tensorflow_only_build_is_named_not_crashed_on(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("horovod")
    monkeypatch.setattr(horovod_backend, "horovod_frameworks", lambda: ["tensorflow"])
    build = horovod_build()
    assert build["installed"] is False and build["frameworks"] == ["tensorflow"]
    assert "was built for tensorflow only; DeepCAM needs the venv of a torch profile" \
        in build["error"]
    rank = {"launcher": "single", "backend": "local", "torch": "2.13.0+cpu",
            "tensorflow": "2.15.1", "allocator": "jemalloc", "horovod_build": build, "rank": 0,
            "local_rank": 0, "local_size": 1, "host": "h", "device": "cpu", "threads": 2,
            "bound_cores": [0, 1], "thread_source": "cores/local_ranks"}
    assert (f"horovod {build['version']} without its PyTorch extension (built for tensorflow)"
            in format_table([rank]))

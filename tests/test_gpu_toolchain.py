"""``backends/cuda_toolchain.sh`` against a fake torch and fake PyPI CUDA/NCCL packages.

The NVIDIA build's toolchain step (used by ``backends/install.sh`` for the nvidia-nccl profile,
``backends/check_gpu_build.sh`` and ``benchmarks/gpu_check.sh``) is plain file layout and
environment work, so it is checked here without a GPU or a CUDA download: a fake ``torch``
reports CUDA 13.0, and ``site-packages/nvidia/{cu13,nccl}`` look like the pip packages (no
lib64/, no unversioned ``.so`` names). The real build is ``backends/check_gpu_build.sh``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "backends" / "cuda_toolchain.sh"

NVCC = """#!/bin/sh
case "$*" in
  *--dryrun*) echo "#\\$ _HERE_=$(dirname "$0")"; echo "#\\$ TOP=$(dirname "$0")/.." ;;
  *--version*) echo "Cuda compilation tools, release {release}, V{release}.88" ;;
  *) {compile} ;;
esac
"""
BROKEN = 'echo "ptxas fatal : Unsupported .version 9.5; current version is 9.0"; exit 255'



def _fake_site(tmp: Path, torch_cuda: str | None = "13.0", nvcc_release: str = "13.0",
               toolkit_dirs: tuple[str, ...] = (), compiles: bool = True) -> Path:
    """A fake site-packages and a ``python`` wrapper whose sys.path has it and the standard
    library only."""
    site = tmp / "site"
    (site / "torch").mkdir(parents=True)
    (site / "torch" / "__init__.py").write_text(
        "import types\n__version__ = '2.13.0+cu130'\n"
        f"version = types.SimpleNamespace(cuda={torch_cuda!r})\n")
    cu = site / "nvidia" / "cu13"
    for sub in ("bin", "include", "lib", "nvvm/bin", *toolkit_dirs):
        (cu / sub).mkdir(parents=True, exist_ok=True)
    nvcc = cu / "bin" / "nvcc"
    nvcc.write_text(NVCC.replace("{release}", nvcc_release)
                    .replace("{compile}", "true" if compiles else BROKEN))
    nvcc.chmod(0o755)
    (cu / "bin" / "ptxas").write_text("")
    (cu / "include" / "cuda_runtime.h").write_text("")
    for lib in ("libcudart.so.13", "libcudart_static.a", "libnvvm.so.4"):
        (cu / "lib" / lib).write_text("")
    nccl = site / "nvidia" / "nccl"
    (nccl / "include").mkdir(parents=True)
    (nccl / "lib").mkdir()
    (nccl / "include" / "nccl.h").write_text(
        "#define NCCL_MAJOR 2\n#define NCCL_MINOR 29\n#define NCCL_PATCH 7\n")
    (nccl / "lib" / "libnccl.so.2").write_text("")
    python = tmp / "python"
    # -S: no site-packages, so a real CUDA torch's nvidia/ packages (a GPU venv) stay out of it
    python.write_text(f'#!/bin/sh\nPYTHONPATH="{site}" exec "{sys.executable}" -S "$@"\n')
    python.chmod(0o755)
    return site


def _toolchain(tmp: Path, source: str = "auto", mode: str = "",
               extra_env: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    """Source the script, call ``cuda_toolchain`` (``mode``: "" or "install") with
    ``extra_env`` set; return (status, exported env, stderr)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HOROVOD_", "CUDA_")) and k not in ("PYTHONPATH", "LDFLAGS")}
    env["CUDA_TOOLCHAIN_SOURCE"] = source
    env.update(extra_env or {})
    proc = subprocess.run(
        ["bash", "-c", f'set -euo pipefail; . "{SCRIPT}"; '
         f'cuda_toolchain "{tmp / "python"}" "{tmp / "layout"}" {mode}; env'],
        capture_output=True, text=True, env=env, timeout=60)
    exported = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
    return proc.returncode, exported, proc.stderr


def test_pip_packages_get_a_toolkit_layout(tmp_path: Path) -> None:
    site = _fake_site(tmp_path)
    rc, env, err = _toolchain(tmp_path, "pip")
    assert rc == 0, err
    cuda, nccl = tmp_path / "layout" / "cuda", tmp_path / "layout" / "nccl"
    assert env["HOROVOD_CUDA_HOME"] == env["CUDA_HOME"] == str(cuda)
    assert env["PATH"].startswith(f"{cuda}/bin:")
    # bin/ is a real directory (nvcc's "<dir>/.." must be the layout), files are links
    assert cuda.joinpath("bin").is_dir() and not cuda.joinpath("bin").is_symlink()
    assert cuda.joinpath("bin", "nvcc").resolve() == site / "nvidia/cu13/bin/nvcc"
    assert cuda.joinpath("include").resolve() == site / "nvidia/cu13/include"
    assert cuda.joinpath("nvvm").resolve() == site / "nvidia/cu13/nvvm"
    # what nvcc (lib64/) and FindCUDAToolkit (libcudart.so) look for
    assert cuda.joinpath("lib64", "libcudart.so").resolve() == \
        site / "nvidia/cu13/lib/libcudart.so.13"
    assert cuda.joinpath("lib64", "libcudart_static.a").exists()
    assert os.readlink(cuda / "lib") == "lib64"
    # NCCL: the package torch loads, with the libnccl.so name Horovod's FindNCCL wants
    assert env["HOROVOD_NCCL_HOME"] == str(nccl) and env["HOROVOD_NCCL_LINK"] == "SHARED"
    assert env["HOROVOD_NCCL_INCLUDE"] == f"{nccl}/include"
    assert env["HOROVOD_NCCL_LIB"] == f"{nccl}/lib"
    assert nccl.joinpath("lib", "libnccl.so").resolve() == site / "nvidia/nccl/lib/libnccl.so.2"
    assert env["CUDA_TOOLCHAIN_ID"] == "cuda13.0.88-nccl2.29.7"
    assert "NCCL 2.29.7" in env["CUDA_TOOLCHAIN_DESC"]
    # idempotent: a second call rebuilds the same layout
    rc2, env2, err2 = _toolchain(tmp_path, "pip")
    assert rc2 == 0, err2
    assert env2["CUDA_TOOLCHAIN_ID"] == env["CUDA_TOOLCHAIN_ID"]
    assert cuda.joinpath("lib64", "libcudart.so").exists()


def test_a_real_toolkit_is_used_as_it_is(tmp_path: Path) -> None:
    site = _fake_site(tmp_path, toolkit_dirs=("lib64",))
    rc, env, err = _toolchain(tmp_path, "pip")
    assert rc == 0, err
    assert env["HOROVOD_CUDA_HOME"] == str(site / "nvidia" / "cu13")
    assert not (tmp_path / "layout" / "cuda").exists()


def test_cpu_torch_is_refused(tmp_path: Path) -> None:
    _fake_site(tmp_path, torch_cuda=None)
    rc, _, err = _toolchain(tmp_path)
    assert rc != 0
    assert "CPU-only torch" in err


@pytest.mark.parametrize("source", ["pip", "system"])
def test_wrong_cuda_major_or_source_is_refused(tmp_path: Path, source: str) -> None:
    site = _fake_site(tmp_path, nvcc_release="12.8")
    rc, env, err = _toolchain(tmp_path, source)
    if source == "pip":  # only PyPI's packages: the CUDA 12 nvcc there does not match torch
        assert rc != 0
        assert "nvcc is CUDA 12.8, torch is CUDA 13.x" in err
        assert "no CUDA 13.x nvcc found" in err
    else:  # only the machine's toolkit (if it has one): the pip packages are never looked at
        assert str(site) not in err and str(site) not in env.get("HOROVOD_CUDA_HOME", "")


def test_an_nvcc_that_cannot_compile_is_skipped(tmp_path: Path) -> None:
    _fake_site(tmp_path, compiles=False)  # e.g. nvidia-nvvm newer than nvidia-cuda-nvcc
    rc, _, err = _toolchain(tmp_path, "pip")
    assert rc != 0
    assert "cannot compile a test kernel (ptxas fatal : Unsupported .version 9.5" in err
    assert "cuda-toolkit[nvcc,crt,nvvm,cudart,cccl]" in err

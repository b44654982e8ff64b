"""``backends/cuda_toolchain.sh`` for the nvidia-nccl-tf profile: TensorFlow's CUDA decides.

A fake ``tensorflow`` reports CUDA 12.2 (``tf.sysconfig.get_build_info()``, as
``tensorflow[and-cuda]==2.15.1`` does) beside a fake CUDA 13 ``torch``, with PyPI's CUDA 12
layout: ``nvidia/cuda_nvcc`` (ptxas only, no nvcc: as in every nvidia-cuda-nvcc-cu12 wheel),
``nvidia/cuda_runtime``, ``nvidia/nccl`` (2.16.5). The CUDA 13 path is
``tests/test_gpu_toolchain.py``; the real build is ``backends/check_gpu_build.sh``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.test_gpu_toolchain import _toolchain as toolchain

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "backends" / "cuda_toolchain.sh"

NVCC = """#!/bin/sh
case "$*" in
  *--dryrun*) echo "#\\$ TOP=$(dirname "$0")/.." ;;
  *--version*) echo "Cuda compilation tools, release {release}, V{release}.140" ;;
  *) true ;;
esac
"""


def _nvcc(path: Path, release: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(NVCC.replace("{release}", release))
    path.chmod(0o755)


def _fake_site(tmp: Path, tf_cuda: str | None = "12.2") -> Path:
    site = tmp / "site"
    tf = site / "tensorflow"
    tf.mkdir(parents=True)
    info = {"is_cuda_build": tf_cuda is not None, "cudnn_version": "8"}
    if tf_cuda:
        info["cuda_version"] = tf_cuda
    tf.joinpath("__init__.py").write_text(
        "import types\n__version__ = '2.15.1'\n"
        f"sysconfig = types.SimpleNamespace(get_build_info=lambda: {info!r})\n")
    dist = site / "tensorflow-2.15.1.dist-info"
    dist.mkdir()
    dist.joinpath("METADATA").write_text(
        "Metadata-Version: 2.1\nName: tensorflow\nVersion: 2.15.1\n"
        'Requires-Dist: nvidia-cuda-nvcc-cu12==12.2.140; extra == "and-cuda"\n'
        'Requires-Dist: nvidia-nccl-cu12==2.16.5; extra == "and-cuda"\n')
    torch = site / "torch"
    torch.mkdir()
    torch.joinpath("__init__.py").write_text(
        "import types\n__version__ = '2.13.0+cu130'\n"
        "version = types.SimpleNamespace(cuda='13.0')\n")
    nvidia = site / "nvidia"
    (nvidia / "cuda_nvcc" / "bin").mkdir(parents=True)
    (nvidia / "cuda_nvcc" / "bin" / "ptxas").write_text("")
    (nvidia / "cuda_nvcc" / "nvvm" / "libdevice").mkdir(parents=True)
    (nvidia / "cuda_runtime" / "include").mkdir(parents=True)
    (nvidia / "cuda_runtime" / "include" / "cuda_runtime.h").write_text("")
    (nvidia / "cuda_runtime" / "lib").mkdir()
    (nvidia / "cuda_runtime" / "lib" / "libcudart.so.12").write_text("")
    (nvidia / "nccl" / "include").mkdir(parents=True)
    (nvidia / "nccl" / "lib").mkdir()
    (nvidia / "nccl" / "include" / "nccl.h").write_text(
        "#define NCCL_MAJOR 2\n#define NCCL_MINOR 16\n#define NCCL_PATCH 5\n")
    (nvidia / "nccl" / "lib" / "libnccl.so.2").write_text("")
    python = tmp / "python"
    # -S: only the fake site-packages and the standard library
    python.write_text(f'#!/bin/sh\nPYTHONPATH="{site}" exec "{sys.executable}" -S "$@"\n')
    python.chmod(0o755)
    return site


def _site_toolkit(tmp: Path, release: str) -> Path:
    """A toolkit as NVIDIA installs it (lib64/), e.g. a site's cudatoolkit module."""
    home = tmp / f"cuda-{release}"
    _nvcc(home / "bin" / "nvcc", release)
    (home / "include").mkdir(parents=True)
    (home / "include" / "cuda_runtime.h").write_text("")
    (home / "lib64").mkdir()
    return home


def _toolchain(tmp: Path, framework: str | None, source: str = "pip", mode: str = "",
               cuda_home: Path | None = None, nvcc_major: str | None = None,
               ) -> tuple[int, dict[str, str], str]:
    extra = {"CUDA_TOOLCHAIN_NVCC_MAJOR": nvcc_major, "CUDA_TOOLCHAIN_FRAMEWORK": framework,
             "HOROVOD_CUDA_HOME": str(cuda_home) if cuda_home else None}
    return toolchain(tmp, source, mode, {k: v for k, v in extra.items() if v})


def test_tensorflow_decides_the_cuda_version(tmp_path: Path) -> None:
    _fake_site(tmp_path)
    # torch is CUDA 13 here, TF CUDA 12.2: a CUDA 13 toolkit is skipped when TF decides (the
    # machine's own toolkits are candidates too: a CUDA 12 one there may still be taken)
    cu13 = _site_toolkit(tmp_path, "13.0")
    rc, env, err = _toolchain(tmp_path, "tensorflow", source="system", cuda_home=cu13)
    assert f"skipping {cu13}: nvcc is CUDA 13.0, tensorflow is CUDA 12.x" in err
    assert env.get("HOROVOD_CUDA_HOME") != str(cu13)
    if rc != 0:
        assert "no CUDA 12.x nvcc found" in err
    # ... and taken when torch decides (the nvidia-nccl profile; the default)
    rc, env, err = _toolchain(tmp_path, None, source="system", cuda_home=cu13)
    assert rc == 0, err
    assert env["HOROVOD_CUDA_HOME"] == str(cu13)
    assert env["CUDA_TOOLCHAIN_DESC"].startswith("torch CUDA 13.0; nvcc 13.0.140 in ")
    assert "LDFLAGS" not in env  # torch loads libnccl.so.2 itself


def test_a_cuda_12_site_toolkit_with_tensorflows_nccl(tmp_path: Path) -> None:
    site = _fake_site(tmp_path)
    cu12 = _site_toolkit(tmp_path, "12.2")
    rc, env, err = _toolchain(tmp_path, "tensorflow", source="auto", cuda_home=cu12)
    assert rc == 0, err
    assert env["HOROVOD_CUDA_HOME"] == env["CUDA_HOME"] == str(cu12)  # used as it is
    assert env["PATH"].startswith(f"{cu12}/bin:")
    # NCCL: nvidia-nccl-cu12, the libnccl.so.2 TensorFlow loads, given the name FindNCCL wants
    nccl = tmp_path / "layout" / "nccl"
    assert env["HOROVOD_NCCL_HOME"] == str(nccl) and env["HOROVOD_NCCL_LIB"] == f"{nccl}/lib"
    assert nccl.joinpath("lib", "libnccl.so").resolve() == site / "nvidia/nccl/lib/libnccl.so.2"
    assert env["CUDA_TOOLCHAIN_ID"] == "cuda12.2.140-nccl2.16.5"
    assert env["CUDA_TOOLCHAIN_DESC"].startswith("tensorflow CUDA 12.2; nvcc 12.2.140 in ")
    # TF opens libnccl.so.2 only when it uses NCCL: the extension finds it relative to itself
    assert env["LDFLAGS"] == "-Wl,-rpath,$ORIGIN/../../nvidia/nccl/lib"


def test_a_cuda_13_nvcc_for_tensorflow_when_asked(tmp_path: Path) -> None:
    _fake_site(tmp_path)
    cu13 = _site_toolkit(tmp_path, "13.0")
    rc, env, err = _toolchain(tmp_path, "tensorflow", source="system", cuda_home=cu13,
                              nvcc_major="13")
    assert rc == 0, err
    assert "CUDA_TOOLCHAIN_NVCC_MAJOR=13: an nvcc of CUDA 13.x for tensorflow's CUDA 12.2" in err
    assert env["HOROVOD_CUDA_HOME"] == str(cu13)
    assert env["CUDA_TOOLCHAIN_ID"] == "cuda13.0.140-nccl2.16.5"
    assert env["CUDA_TOOLCHAIN_DESC"].startswith("tensorflow CUDA 12.2; nvcc 13.0.140 in ")
    # a CUDA 12 toolkit is now the wrong one
    cu12 = _site_toolkit(tmp_path, "12.2")
    rc, env, err = _toolchain(tmp_path, "tensorflow", source="system", cuda_home=cu12,
                              nvcc_major="13")
    assert f"skipping {cu12}: nvcc is CUDA 12.2, CUDA_TOOLCHAIN_NVCC_MAJOR is 13" in err
    assert env.get("HOROVOD_CUDA_HOME") != str(cu12)


def test_torch_takes_no_other_cuda(tmp_path: Path) -> None:
    _fake_site(tmp_path)
    rc, _, err = _toolchain(tmp_path, "torch", source="system",
                            cuda_home=_site_toolkit(tmp_path, "12.2"), nvcc_major="12")
    assert rc != 0
    assert "CUDA_TOOLCHAIN_NVCC_MAJOR=12: only for tensorflow" in err


def test_pypi_has_no_cuda_12_nvcc(tmp_path: Path) -> None:
    _fake_site(tmp_path)
    # PyPI's packages only, install mode: nvidia/cuda_nvcc has ptxas but no nvcc, and no
    # cuda-toolkit to install; one line says what to do (no pip run: it would reach PyPI)
    rc, _, err = _toolchain(tmp_path, "tensorflow", source="pip", mode="install")
    assert rc != 0
    last = err.strip().splitlines()[-1]
    assert last.startswith("[cuda] error: tensorflow is CUDA 12.2 and PyPI has no CUDA 12 nvcc")
    assert "set HOROVOD_CUDA_HOME to a CUDA 12.x toolkit" in last
    assert "installing" not in err
    assert not (tmp_path / "layout").exists()


def test_a_cpu_tensorflow_is_refused(tmp_path: Path) -> None:
    _fake_site(tmp_path, tf_cuda=None)  # tensorflow-cpu: get_build_info() has no cuda_version
    rc, _, err = _toolchain(tmp_path, "tensorflow", cuda_home=_site_toolkit(tmp_path, "12.2"))
    assert rc != 0
    assert "has a CPU-only tensorflow (2.15.1)" in err


def test_an_unknown_framework_is_refused(tmp_path: Path) -> None:
    _fake_site(tmp_path)
    rc, _, err = _toolchain(tmp_path, "jax")
    assert rc != 0
    assert "CUDA_TOOLCHAIN_FRAMEWORK=jax: use torch or tensorflow" in err

"""The backend profiles (``backends/profiles/*.env``) against ``setup.cfg``'s extras.

Each profile names the extras ``backends/install.sh`` installs (``PIP_EXTRAS``); TensorFlow is
``tensorflow-cpu`` (extra ``cosmoflow``) everywhere except the CUDA TensorFlow profile
(``cosmoflow-cuda``), which cannot share a venv with torch's CUDA build (backends/README.md).
The profiles are read by bash, as install.sh reads them, with install.sh's defaults.
"""

from __future__ import annotations

import configparser
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROFILES = sorted(p.stem for p in (ROOT / "backends" / "profiles").glob("*.env"))
KEYS = ("PIP_EXTRAS", "TORCH_SPEC", "TORCH_PIP_ARGS", "TORCH_BUILD", "GPU_TOOLCHAIN",
        "CUDA_TOOLCHAIN_FRAMEWORK", "HOROVOD_BUILD_ENV", "EXPECT_BUILD")
MARKERS = 'python_version < "3.12" and platform_machine == "x86_64"'


def _profile(name: str) -> dict[str, str]:
    """The profile's variables after sourcing it with install.sh's defaults."""
    script = ('SKIP_MPI4PY=0 GPU_TOOLCHAIN="" TORCH_BUILD="" CUDA_TOOLCHAIN_FRAMEWORK=torch '
              f'PIP_EXTRAS=""; . "{ROOT}/backends/profiles/{name}.env"; '
              'PIP_EXTRAS=${PIP_EXTRAS:-test,cosmoflow}; '
              + "; ".join(f'printf "%s=%s\\n" {k} "${{{k}:-}}"' for k in KEYS))
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True,
                         timeout=30).stdout
    return dict(line.split("=", 1) for line in out.splitlines())


def _extras() -> dict[str, list[str]]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return {name: [line.strip() for line in value.splitlines() if line.strip()]
            for name, value in cfg["options.extras_require"].items()}


def test_profiles_are_there() -> None:
    assert PROFILES == ["amd-rccl", "cpu-gloo", "cpu-mpi", "nvidia-nccl", "nvidia-nccl-tf"]


@pytest.mark.parametrize("name", PROFILES)
def test_every_extra_of_a_profile_is_in_setup_cfg(name: str) -> None:
    extras = _profile(name)["PIP_EXTRAS"].split(",")
    assert "test" in extras
    missing = [e for e in extras if e not in _extras()]
    assert not missing, f"{name}: PIP_EXTRAS names {missing}, which setup.cfg does not define"


def test_tensorflow_comes_from_the_extras_only() -> None:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    install_requires = cfg["options"]["install_requires"]
    assert "tensorflow" not in install_requires
    assert "numpy<2" in install_requires.split()
    extras = _extras()
    assert extras["cosmoflow"] == [f"tensorflow-cpu==2.15.1; {MARKERS}"]
    assert extras["cosmoflow-cuda"] == [f"tensorflow[and-cuda]==2.15.1; {MARKERS}"]


def test_only_the_tensorflow_profile_takes_the_cuda_build() -> None:
    takes = {name: _profile(name)["PIP_EXTRAS"].split(",") for name in PROFILES}
    cuda = sorted(name for name, extras in takes.items() if "cosmoflow-cuda" in extras)
    assert cuda == ["nvidia-nccl-tf"]
    for name, extras in takes.items():
        # one TensorFlow build per venv: tensorflow-cpu and tensorflow are the same files
        assert ("cosmoflow" in extras) != ("cosmoflow-cuda" in extras), name


def test_the_tensorflow_profile() -> None:
    p = _profile("nvidia-nccl-tf")
    # a CPU torch: a CUDA one brings nvidia-nccl-cu13 and its libnccl.so.2
    assert p["TORCH_SPEC"] == "torch==2.13.0+cpu" and p["TORCH_BUILD"] == "cpu"
    assert "download.pytorch.org/whl/cpu" in p["TORCH_PIP_ARGS"]
    assert p["GPU_TOOLCHAIN"] == "cuda" and p["CUDA_TOOLCHAIN_FRAMEWORK"] == "tensorflow"
    flags = set(p["HOROVOD_BUILD_ENV"].split())
    assert {"HOROVOD_WITH_TENSORFLOW=1", "HOROVOD_WITHOUT_PYTORCH=1", "HOROVOD_WITH_MPI=1",
            "HOROVOD_WITH_GLOO=1", "HOROVOD_GPU_OPERATIONS=NCCL"} <= flags
    assert p["EXPECT_BUILD"].split() == ["tensorflow", "mpi", "gloo", "nccl"]


def test_the_torch_gpu_profile_keeps_its_cuda_torch() -> None:
    p = _profile("nvidia-nccl")
    assert p["TORCH_BUILD"] == "cuda" and p["CUDA_TOOLCHAIN_FRAMEWORK"] == "torch"
    assert p["PIP_EXTRAS"] == "test,cosmoflow"
    assert "HOROVOD_WITHOUT_TENSORFLOW=1" in p["HOROVOD_BUILD_ENV"].split()


@pytest.mark.parametrize("name", PROFILES)
def test_expect_build_names_the_frameworks_built(name: str) -> None:
    p = _profile(name)
    flags, expect = p["HOROVOD_BUILD_ENV"].split(), p["EXPECT_BUILD"].split()
    assert ("torch" in expect) == ("HOROVOD_WITHOUT_PYTORCH=1" not in flags)
    assert ("tensorflow" in expect) == ("HOROVOD_WITH_TENSORFLOW=1" in flags)
    assert ("nccl" in expect) == ("HOROVOD_GPU_OPERATIONS=NCCL" in flags)

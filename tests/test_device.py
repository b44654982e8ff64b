"""Device choice."""

from __future__ import annotations

import pytest
import torch

from deepcam_hvd import device as device_mod
from deepcam_hvd.device import choose_device
from deepcam_hvd.errors import ConfigError


def test_cpu_when_asked_or_no_gpu() -> None:
    assert choose_device("cpu", 3, 4) == torch.device("cpu")
    if not torch.cuda.is_available():
        assert choose_device("auto", 0, 1) == torch.device("cpu")


def test_cuda_without_gpu_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device_mod, "gpu_kind", lambda: None)
    with pytest.raises(ConfigError, match="no GPU"):
        choose_device("cuda", 0, 1)


def test_gpu_by_local_rank_never_modulo(monkeypatch: pytest.MonkeyPatch) -> None:
    chosen: list[int] = []
    monkeypatch.setattr(device_mod, "gpu_kind", lambda: "cuda")
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert choose_device("auto", 2, 4) == torch.device("cuda", 2)
    with pytest.raises(ConfigError, match="8 ranks on this node but 4 GPUs"):
        choose_device("cuda", 5, 8)  # rank % count would silently share GPU 1
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # srun --gpus-per-task=1
    assert choose_device("cuda", 3, 4) == torch.device("cuda", 0)
    assert chosen == [2, 0]


def test_unknown_device_request() -> None:
    with pytest.raises(ConfigError, match="--device 'tpu'"):
        choose_device("tpu", 0, 1)

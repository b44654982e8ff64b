"""What each GPU speed option resolves to on which device, and the errors for impossible asks."""

from __future__ import annotations

import pytest
import torch

from deepcam_hvd.config import TrainConfig, resolve_config
from deepcam_hvd.errors import ConfigError
from deepcam_hvd.train.gpu_options import GPU_DEFAULTS, GpuOptions, resolve_gpu_options

CPU, GPU = torch.device("cpu"), torch.device("cuda", 0)  # a GPU device object needs no GPU
NAMES = ("pin_memory", "device_prefetch", "cudnn_benchmark", "lamb_foreach")


def test_the_table_lists_every_option_and_each_auto_on_has_its_measurement() -> None:
    assert tuple(GPU_DEFAULTS) == NAMES
    for name, (on, source) in GPU_DEFAULTS.items():
        assert not on or source, f"{name}: auto is on without the measurement that chose it"


def test_defaults_are_auto_and_everything_is_off_on_the_cpu() -> None:
    cfg = TrainConfig()
    assert [getattr(cfg, n) for n in NAMES] == ["auto"] * len(NAMES)
    assert resolve_gpu_options(cfg, CPU) == GpuOptions(False, False, False, False)
    off = resolve_config({n: "off" for n in NAMES})
    assert resolve_gpu_options(off, CPU) == GpuOptions(False, False, False, False)


@pytest.mark.parametrize("name", NAMES)
def test_on_without_a_gpu_is_one_error_naming_the_option(name: str) -> None:
    with pytest.raises(ConfigError, match=f"--{name} on needs a GPU"):
        resolve_gpu_options(resolve_config({name: "on"}), CPU)


def test_on_a_gpu_auto_takes_the_table_and_on_off_win() -> None:
    auto = resolve_gpu_options(TrainConfig(), GPU)
    assert auto == GpuOptions(**{n: GPU_DEFAULTS[n][0] for n in NAMES})
    for name in NAMES:
        for asked, value in (("on", True), ("off", False)):
            got = resolve_gpu_options(resolve_config({name: asked}), GPU)
            assert getattr(got, name) is value
            others = [getattr(got, n) for n in NAMES if n != name]
            assert others == [GPU_DEFAULTS[n][0] for n in NAMES if n != name]


def test_a_bad_value_names_the_option() -> None:
    with pytest.raises(ConfigError, match="--device_prefetch 'yes' is not one of auto, on, off"):
        resolve_config({"device_prefetch": "yes"})


def test_describe_says_value_and_why() -> None:
    cfg = resolve_config({"pin_memory": "on", "device_prefetch": "off"})
    line = resolve_gpu_options(cfg, GPU).describe(cfg)
    parts = dict(part.split(" ", 1) for part in line.split(", "))
    assert parts["pin_memory"] == "on (asked)"
    assert parts["device_prefetch"] == "off (asked)"
    on, source = GPU_DEFAULTS["cudnn_benchmark"]
    assert parts["cudnn_benchmark"] == (f"on (auto: measured, {source})" if on else
                                        "off (auto: not measured on a GPU yet)")


def test_apply_leaves_the_cpu_alone_and_sets_cudnn_on_a_gpu(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    GpuOptions(cudnn_benchmark=True).apply(CPU)
    assert torch.backends.cudnn.benchmark is False
    GpuOptions(cudnn_benchmark=True).apply(GPU)  # a flag only: no GPU is touched
    assert torch.backends.cudnn.benchmark is True
    GpuOptions(cudnn_benchmark=False).apply(GPU)
    assert torch.backends.cudnn.benchmark is False

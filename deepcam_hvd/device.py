"""Which device a rank computes on: the one place that decides it (torch is imported only
when a torch rank asks; ``gpu_index`` serves TensorFlow too)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from deepcam_hvd.errors import ConfigError

if TYPE_CHECKING:
    import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def gpu_kind() -> str | None:
    """'cuda' or 'rocm' when torch sees a GPU, else None."""
    import torch

    if not torch.cuda.is_available():
        return None
    return "rocm" if getattr(torch.version, "hip", None) else "cuda"


def choose_device(request: str, local_rank: int, local_size: int) -> torch.device:
    """Pick this rank's device from the request ('auto', 'cpu', 'cuda') and its local rank.

    GPUs go by local rank from the communicator. When the launcher already gave each rank
    its own GPU (one visible device), that device is used; a node with fewer visible GPUs
    than local ranks is an error rather than silently sharing a GPU.
    """
    import torch

    if request not in DEVICE_CHOICES:
        raise ConfigError(f"--device {request!r} is not one of {', '.join(DEVICE_CHOICES)}")
    if request == "cpu" or (request == "auto" and gpu_kind() is None):
        return torch.device("cpu")
    if gpu_kind() is None:
        raise ConfigError("--device cuda but torch sees no GPU (CPU-only torch build, or "
                          "CUDA_VISIBLE_DEVICES/HIP_VISIBLE_DEVICES hides them)")
    index = gpu_index(torch.cuda.device_count(), local_rank, local_size)
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def gpu_index(count: int, local_rank: int, local_size: int) -> int:
    """The GPU a rank takes among ``count`` visible, for any framework: the only one (the
    launcher gave each rank its own), or its local rank; never two ranks on one GPU."""
    if count == 1:
        return 0
    if local_rank < count and local_size <= count:
        return local_rank
    raise ConfigError(f"{local_size} ranks on this node but {count} GPUs visible: "
                      "launch at most one rank per GPU")

"""One training step of the real training path, split into timed phases.

:class:`TrainStep` builds what :class:`deepcam_hvd.train.trainer.Trainer` builds (model from the
registry, :class:`~deepcam_hvd.train.loss.WeightedCrossEntropy`, the optimizer from
:func:`~deepcam_hvd.train.optim.build_optimizer` wrapped by the backend's
``distributed_optimizer``, autocast for the precision, channels-last and ``torch.compile`` as the
config flags say) and runs the trainer's step (:mod:`deepcam_hvd.train.step`) on a fixed
synthetic batch, timing forward (with the loss), backward, the wait for outstanding gradient
averaging (the distributed optimizer's ``synchronize``) and the optimizer step separately.

``input`` says where each step's batch comes from: ``device`` keeps one batch on the device (the
step alone); on a GPU, ``pageable``, ``pinned`` and ``prefetch`` copy a host batch every step as
the trainer does with ``--pin_memory off``, ``--pin_memory on``, and ``--pin_memory on
--device_prefetch on`` (through the trainer's :class:`~deepcam_hvd.train.device_feed.DeviceFeed`),
timed as the ``input`` phase: until the batch is on the device, ready for the forward pass.
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from deepcam_hvd.config import TrainConfig
from deepcam_hvd.data.batches import Batch
from deepcam_hvd.distributed.base import Backend
from deepcam_hvd.errors import ConfigError
from deepcam_hvd.model import build_model
from deepcam_hvd.train.device_feed import DeviceFeed
from deepcam_hvd.train.gpu_options import resolve_gpu_options
from deepcam_hvd.train.loss import WeightedCrossEntropy
from deepcam_hvd.train.optim import build_optimizer
from deepcam_hvd.train.step import backward, forward_loss, optimizer_step
from deepcam_hvd.workloads.deepcam import NUM_CLASSES

#: Share of each class among the synthetic label pixels (background, TC, AR), as in real data.
LABEL_SHARES = (0.986, 0.001, 0.013)
PHASES = ("input", "forward", "backward", "comm_wait", "optimizer")
#: Where each step's batch comes from (see the module docstring); the last three need a GPU.
INPUTS = ("device", "pageable", "pinned", "prefetch")


@dataclass(frozen=True)
class StepSettings:
    """What to time: model, input size, batch and the training path's speed options."""

    model: str = "deeplab-xception"
    height: int = 768
    width: int = 1152
    batch: int = 1
    in_channels: int = 16
    optimizer: str = "AdamW"
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    seed: int = 333
    input: str = "device"
    cudnn_benchmark: bool = False

    def train_config(self) -> TrainConfig:
        """The :class:`TrainConfig` the trainer would run with these settings."""
        pinned = self.input in ("pinned", "prefetch")
        return TrainConfig(model=self.model, optimizer=self.optimizer,  # type: ignore[arg-type]
                           precision=self.precision,  # type: ignore[arg-type]
                           channels_last=self.channels_last, compile=self.compile,
                           local_batch_size=self.batch, seed=self.seed,
                           channels=list(range(self.in_channels)),
                           pin_memory="on" if pinned else "off",
                           device_prefetch="on" if self.input == "prefetch" else "off",
                           cudnn_benchmark="on" if self.cudnn_benchmark else "off")


@dataclass
class StepTimes:
    """Seconds per phase for each timed step, and the loss each step computed."""

    phases: dict[str, list[float]] = field(default_factory=lambda: {p: [] for p in PHASES})
    totals: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)  # process CPU seconds per step
    losses: list[float] = field(default_factory=list)

    def add(self, phases: dict[str, float], loss: float, cpu: float = 0.0) -> None:
        """Record one step (``cpu``: the process's CPU seconds during it)."""
        for name in PHASES:
            self.phases[name].append(phases[name])
        self.totals.append(sum(phases.values()))
        self.cpu.append(cpu)
        self.losses.append(loss)

    @property
    def median_step_s(self) -> float:
        """Median seconds per full step."""
        return statistics.median(self.totals)

    def median_phases(self) -> dict[str, float]:
        """Median seconds of each phase (these need not add up to the median step)."""
        return {f"{name}_s": statistics.median(values) for name, values in self.phases.items()}


def synthetic_batch(settings: StepSettings, rank: int,
                    device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A normalised-looking input in [0, 1) and labels with the real data's class shares."""
    gen = torch.Generator().manual_seed(settings.seed + 1000 * rank)
    shape = (settings.batch, settings.height, settings.width)
    data = torch.rand((settings.batch, settings.in_channels, settings.height, settings.width),
                      generator=gen)
    label = torch.multinomial(torch.tensor(LABEL_SHARES), shape[0] * shape[1] * shape[2],
                              replacement=True, generator=gen).view(shape)
    return data.to(device), label.to(device)


class TrainStep:
    """The trainer's step (forward, weighted loss, backward, allreduce, optimizer) on one batch.

    Construction seeds torch with ``settings.seed`` before building the model, as the trainer
    does, so the first loss is reproducible and comparable between code versions.
    """

    def __init__(self, settings: StepSettings, backend: Backend, device: torch.device) -> None:
        if settings.input not in INPUTS:
            raise ConfigError(f"bench step --input {settings.input!r} is not one of "
                              f"{', '.join(INPUTS)}")
        if settings.input in ("pinned", "prefetch") and device.type != "cuda":
            raise ConfigError(f"bench step --input {settings.input} needs a GPU (this rank "
                              f"computes on {device.type}); use device or pageable")
        if settings.cudnn_benchmark and device.type != "cuda":
            raise ConfigError(f"bench step --cudnn-benchmark needs a GPU (this rank computes "
                              f"on {device.type})")
        self.settings = settings
        self.device = device
        cfg = settings.train_config()
        self.cfg = cfg
        gpu = resolve_gpu_options(cfg, device)
        gpu.apply(device)  # the trainer's cuDNN switch
        torch.manual_seed(settings.seed)
        model = build_model(settings.model, settings.in_channels, NUM_CLASSES).to(device)
        if settings.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.forward: Callable[[torch.Tensor], torch.Tensor] = (
            torch.compile(model) if settings.compile else model)  # type: ignore[assignment]
        self.criterion = WeightedCrossEntropy().to(device)
        self.optimizer = backend.distributed_optimizer(
            build_optimizer(cfg, model, gpu.lamb_foreach), model, 1)
        backend.broadcast_state(model, self.optimizer, root=0)
        on_host = settings.input != "device"
        self.data, self.label = synthetic_batch(settings, backend.rank,
                                                torch.device("cpu") if on_host else device)
        if settings.input in ("pinned", "prefetch"):
            self.data, self.label = self.data.pin_memory(), self.label.pin_memory()
        if settings.channels_last and not on_host:
            self.data = self.data.contiguous(memory_format=torch.channels_last)
        # the same host batch every step, through the trainer's feed
        self.batches = iter(DeviceFeed(device, settings.input == "prefetch")(
            itertools.repeat(Batch(self.data, self.label, []))))
        self.model.train()

    def _sync(self) -> float:
        """Wait for the compute stream's queued work, then read the clock (a copy queued on
        the prefetch stream goes on, as it does in training)."""
        if self.device.type == "cuda":
            torch.cuda.current_stream(self.device).synchronize()
        return time.perf_counter()

    def run(self) -> tuple[dict[str, float], float]:
        """One step; returns (seconds per phase, loss before the update)."""
        t_in = self._sync()
        batch = next(self.batches)
        data = batch.data.to(self.device, non_blocking=True)
        label = batch.label.to(self.device, non_blocking=True)
        if self.settings.channels_last:
            data = data.contiguous(memory_format=torch.channels_last)
        t0 = self._sync()
        loss = forward_loss(self.forward, self.criterion, data, label, self.device,
                            self.settings.precision)
        value = float(loss.detach())  # the trainer reads it too (finite check, logging)
        t1 = self._sync()
        backward(loss)
        t2 = self._sync()
        del loss, data, label, batch
        waited = optimizer_step(self.optimizer)
        t3 = self._sync()
        phases = {"input": t0 - t_in, "forward": t1 - t0, "backward": t2 - t1,
                  "comm_wait": waited, "optimizer": t3 - t2 - waited}
        return phases, value


def time_steps(step: TrainStep, steps: int, warmup: int = 1,
               barrier: Callable[[], None] | None = None,
               progress: Callable[[int, float], None] | None = None) -> StepTimes:
    """Run ``warmup`` untimed steps, then ``steps`` timed ones.

    ``barrier`` (every rank's) is called before each timed step so that ranks start together;
    ``progress(i, seconds)`` is called after each timed step. ``StepTimes.losses`` holds every
    step's loss, warm-up ones first: ``losses[0]`` is the loss before any update, ``losses[1]``
    the loss after one optimizer step.
    """
    if steps < 1 or warmup < 0:
        raise ValueError(f"need steps >= 1 and warmup >= 0, got {steps}, {warmup}")
    times = StepTimes()
    warm_losses: list[float] = []
    for _ in range(warmup):
        _, loss = step.run()
        warm_losses.append(loss)
    for i in range(steps):
        if barrier is not None:
            barrier()
        cpu = time.process_time()
        phases, loss = step.run()
        times.add(phases, loss, time.process_time() - cpu)
        if progress is not None:
            progress(i, sum(phases.values()))
    times.losses = warm_losses + times.losses
    return times

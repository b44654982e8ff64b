"""Checkpoints as the training loop sees them: find one to resume, restore it, save the run.

The file format (atomic write, checksum, rotation) is ``checkpoint.py``; this module decides
what goes in: model, optimizer, schedule, position, and every rank's mid-epoch totals and
batch-norm buffers, which differ per rank until the next validation averages them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from deepcam_hvd.config import TrainConfig
from deepcam_hvd.distributed.agreement import run_on_root
from deepcam_hvd.distributed.base import Backend
from deepcam_hvd.errors import ConfigError
from deepcam_hvd.train.checkpoint import (
    check_compatible,
    checkpoint_path,
    latest_valid_checkpoint,
    load_checkpoint,
    plain_state,
    save_checkpoint,
)
from deepcam_hvd.train.metric import NUM_CLASSES
from deepcam_hvd.train.progress import EpochProgress, Position


def model_identity(cfg: TrainConfig) -> dict[str, Any]:
    """What a checkpoint must match to be loaded into this run's model."""
    return {"model": cfg.model, "in_channels": len(cfg.channels), "num_classes": NUM_CLASSES,
            "channels": list(cfg.channels)}


@dataclass
class Restored:
    """What a checkpoint gives back to the loop besides the module states."""

    position: Position
    progress: EpochProgress
    summary: dict[str, Any]
    rank_buffers: dict[str, torch.Tensor] | None  # this rank's own, if the world is unchanged


class Checkpointer:
    """Finds, restores and writes this run's checkpoints in ``output_dir/checkpoints``."""

    def __init__(self, cfg: TrainConfig, backend: Backend, output_dir: Path) -> None:
        self.cfg = cfg
        self.backend = backend
        self.directory = output_dir / "checkpoints"

    def find(self) -> tuple[Path | None, dict[str, Any] | None]:
        """The checkpoint named by --checkpoint ('auto': newest valid one here), loaded.

        A run that finished (target reached, or max_epochs done and not raised) is never
        continued: a new run needs a fresh output directory and a fresh seed.
        """
        cfg = self.cfg
        if not cfg.checkpoint:
            return None, None
        if cfg.checkpoint == "auto":
            path = latest_valid_checkpoint(self.directory, cfg.model_prefix)
            if path is None:
                return None, None
        else:
            path = Path(cfg.checkpoint)
        state = load_checkpoint(path)
        check_compatible(state.get("identity", {}), model_identity(cfg), path)
        finished = state.get("summary", {}).get("stopped_by", "")
        if finished == "target" or (finished == "max_epochs"
                                    and int(state.get("epoch", 0)) >= cfg.max_epochs):
            raise ConfigError(f"{path}: that run already finished ({finished.replace('_', ' ')} "
                              "reached); a finished run is never continued into a new log: "
                              "start a new run in a fresh --output_dir without --resume")
        return path, state

    def restore(self, state: dict[str, Any], model: torch.nn.Module,
                optimizer: torch.optim.Optimizer, scheduler: Any) -> Restored:
        """Load the module states; return position, this rank's totals and the summary."""
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        saved = state.get("progress", [])
        same_world = len(saved) == self.backend.size
        mine = saved[self.backend.rank] if same_world else saved[0] if saved else {}
        buffers = state.get("rank_buffers", [])
        return Restored(
            position=Position(step=int(state["step"]), epoch=int(state["epoch"])),
            progress=EpochProgress(**mine),
            summary={**state.get("summary", {}), "stopped_by": ""},
            rank_buffers=buffers[self.backend.rank] if same_world and buffers else None)

    def save(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
             position: Position, progress: EpochProgress, summary: dict[str, Any]) -> None:
        """Collective: gather every rank's totals and buffers; rank 0 writes the file. A
        failure there (disk full) stops every rank with one line naming the file."""
        progresses = self.backend.allgather_object(asdict(progress))
        buffers = self.backend.allgather_object(
            {name: buf.detach().cpu() for name, buf in model.named_buffers()})

        def write() -> None:
            state = {
                "identity": model_identity(self.cfg),
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "step": position.step,
                "epoch": position.epoch,
                "progress": progresses,
                "rank_buffers": buffers,
                "config": plain_state(self.cfg.to_dict()),
                "summary": plain_state(summary),
                "world_size": self.backend.size,
            }
            save_checkpoint(state, checkpoint_path(self.directory, self.cfg.model_prefix,
                                                   position.step), keep=self.cfg.keep_checkpoints)

        run_on_root(self.backend, write, str(self.directory))


def checkpoint_seed(state: dict[str, Any] | None) -> int | None:
    """The seed a checkpointed run used (so a resumed run keeps its data order)."""
    if state is None:
        return None
    seed = state.get("config", {}).get("seed")
    return int(seed) if seed else None


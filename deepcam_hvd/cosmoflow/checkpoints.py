"""CosmoFlow checkpoints: what a Keras run must save to continue exactly, in the project's file
format (``deepcam_hvd.train.checkpoint``: atomic write, SHA-256 checksum, newest K kept), with
its numpy payload: arrays in an .npz, the rest as JSON, no torch and no pickle.

A run continues bit for bit when it gets back: the model's weights, the optimizer's variables
(step count and momenta), the dropout layers' random-generator states (TF's stateful
``tf.random.Generator``, enabled by the trainer so that it has a state to save), the position
(completed epochs, batches done in the current one) and the seed, which fixes the data order
of every epoch (``inputs.epoch_plan``). The LR is a function of the epoch alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from deepcam_hvd.distributed.agreement import run_on_root
from deepcam_hvd.distributed.communicator import Communicator
from deepcam_hvd.errors import ConfigError
from deepcam_hvd.train.checkpoint import (
    check_compatible,
    checkpoint_path,
    latest_valid_checkpoint,
    load_checkpoint,
    plain_state,
    save_checkpoint,
)

if TYPE_CHECKING:
    import tensorflow as tf

PREFIX = "cosmoflow"


@dataclass
class Position:
    """Where training stands: epochs completed and batches done in the next one."""

    epoch: int = 0
    batch: int = 0


def random_generators(model: tf.keras.Model) -> list[tf.random.Generator]:
    """The stateful generators of the model's dropout layers, in layer order."""
    found = []
    for layer in model.layers:
        wrapper = getattr(layer, "_random_generator", None)
        generator = getattr(wrapper, "_generator", None)
        if generator is not None:
            found.append(generator)
    return found


def optimizer_variables(optimizer: Any) -> list[tf.Variable]:
    """The optimizer's variables (Horovod's wrapper makes ``variables`` callable)."""
    variables = optimizer.variables
    return list(variables() if callable(variables) else variables)


class CosmoCheckpointer:
    """Finds, restores and writes ``output_dir/checkpoints/cosmoflow_step*.ckpt``."""

    def __init__(self, backend: Communicator, output_dir: Path, identity: dict[str, Any],
                 keep: int = 2) -> None:
        self.backend = backend
        self.directory = output_dir / "checkpoints"
        self.identity = identity
        self.keep = keep

    def find(self, resume: str, max_epochs: int) -> tuple[Path | None, dict[str, Any] | None]:
        """The checkpoint ``resume`` names ('auto': the newest valid one here, if any), loaded
        and checked against this model; a finished run is never continued."""
        if not resume:
            return None, None
        if resume == "auto":
            path = latest_valid_checkpoint(self.directory, PREFIX)
            if path is None:
                return None, None
        else:
            path = Path(resume)
            if not path.is_file():
                raise ConfigError(f"--resume {resume}: no such checkpoint file")
        state = load_checkpoint(path)
        check_compatible(state.get("identity", {}), self.identity, path)
        stopped = state.get("summary", {}).get("stopped_by", "")
        if stopped == "target" or (stopped == "max_epochs" and
                                   int(state["epoch"]) >= max_epochs):
            raise ConfigError(f"{path}: that run already finished ({stopped.replace('_', ' ')} "
                              "reached); start a new run in a fresh --output_dir without "
                              "--resume")
        return path, state

    def restore(self, state: dict[str, Any], model: tf.keras.Model, optimizer: Any) -> Position:
        """Load weights, optimizer variables and dropout generator states; return the position.

        The optimizer's variables are created first (they appear at its first step)."""
        model.set_weights([np.asarray(w) for w in state["weights"]])
        optimizer.build(model.trainable_variables)
        for variable, value in zip(optimizer_variables(optimizer), state["optimizer"],
                                   strict=True):
            variable.assign(np.asarray(value))
        for generator, value in zip(random_generators(model), state["rng"], strict=True):
            generator.state.assign(np.asarray(value))
        return Position(int(state["epoch"]), int(state["batch"]))

    def save(self, model: tf.keras.Model, optimizer: Any, position: Position, seed: int,
             progress: dict[str, Any], summary: dict[str, Any], config: dict[str, Any]
             ) -> Path:
        """Collective: rank 0 writes the checkpoint (every rank holds the same weights after
        the averaged step); a failure there stops every rank with one line naming the file."""
        variables = optimizer_variables(optimizer)
        step = int(variables[0].numpy()) if variables else 0
        path = checkpoint_path(self.directory, PREFIX, step)

        def write() -> None:
            state = {
                "identity": self.identity,
                "weights": [np.array(w) for w in model.get_weights()],
                "optimizer": [np.array(v.numpy()) for v in variables],
                "rng": [np.array(g.state.numpy()) for g in random_generators(model)],
                "epoch": position.epoch, "batch": position.batch, "step": step, "seed": seed,
                "progress": plain_state(progress), "summary": plain_state(summary),
                "config": plain_state(config), "world_size": self.backend.size,
            }
            save_checkpoint(state, path, keep=self.keep, payload_format="numpy")

        run_on_root(self.backend, write, str(self.directory))
        return path


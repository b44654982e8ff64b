"""What differs between a plain run and an elastic one, as hooks the one training loop calls.

A plain run runs the loop once and adds nothing. Horovod elastic (``train/elastic.py``)
runs the same loop under ``hvd.elastic.run``, restores the last commit before it, and commits
after steps and epochs, so a lost worker costs the work since the last commit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deepcam_hvd.train.trainer import Trainer


class RunHooks:
    """The plain run's hooks: the loop runs once, nothing is committed."""

    def attach(self, trainer: Trainer) -> None:
        """Called once after set-up, before the run starts."""

    def run(self, loop: Callable[[], None]) -> None:
        """Run the training loop."""
        loop()

    def before_epochs(self, trainer: Trainer) -> None:
        """Called where the loop (re)starts."""

    def after_step(self, trainer: Trainer, steps_per_epoch: int) -> None:
        """Called on every rank after each optimizer step."""

    def after_epoch(self, trainer: Trainer) -> None:
        """Called on every rank after each epoch's validation and checkpoint."""

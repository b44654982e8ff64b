"""Files deepcam-hvd reads at run time, shipped inside the package (package data).

- ``jobs/systems.toml``: the systems of ``deepcam-hvd jobs`` and the hardware figures of the
  scaling model (``deepcam-hvd study predict/compare``).
- ``jobs/templates/``: the job script templates ``deepcam-hvd jobs render`` fills in.
- ``scaling/calibration.json``: the scaling model's default CPU calibration. It is a copy of
  the measured ``benchmarks/scaling/calibration.json``; refresh both with
  ``deepcam-hvd study calibrate --out benchmarks/scaling`` followed by
  ``cp benchmarks/scaling/calibration.json deepcam_hvd/resources/scaling/``.

They are read through :mod:`importlib.resources`, so an installed wheel finds them as well as
a source checkout does; ``setup.cfg`` (``[options.package_data]``) lists them for the build.
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable

__all__ = ["Traversable", "resource"]


def resource(*parts: str) -> Traversable:
    """The packaged file or folder ``deepcam_hvd/resources/<parts...>``."""
    node = files(__name__)
    for part in parts:
        node = node.joinpath(part)
    return node

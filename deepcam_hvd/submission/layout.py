"""Where each part of a submission package goes (MLPerf submission rules, HPC variant).

    <out>/<org>/systems/<system>.json
    <out>/<org>/results/<system>/strong/deepcam/result_<i>.txt
    <out>/<org>/benchmarks/deepcam/implementations/<impl>/       the implementation's source
    <out>/<org>/benchmarks/deepcam/implementations/<system>/     how it ran on <system>
    <out>/checks/                                                checker logs (outside <org>)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from deepcam_hvd.errors import ConfigError
from deepcam_hvd.submission import BENCHMARK

# Folder names the repo checker accepts: no spaces, no leading dot.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def check_name(option: str, value: str) -> str:
    """``value`` if it is usable as a folder name; ConfigError naming ``option`` otherwise."""
    if not _NAME.match(value):
        raise ConfigError(f"{option} {value!r}: use letters, digits and . _ + - only (it "
                          "names a folder of the package), starting with a letter or digit")
    return value


@dataclass(frozen=True)
class Layout:
    """The paths of one system's DeepCAM results in a package rooted at ``root``."""

    root: Path
    org: str
    system: str
    impl: str = "pytorch-horovod"

    def __post_init__(self) -> None:
        check_name("--org", self.org)
        check_name("--system", self.system)
        check_name("--impl", self.impl)
        if self.impl == self.system:
            raise ConfigError(f"--impl {self.impl!r} equals --system: both name a folder under "
                              "implementations/; choose another --impl")

    @property
    def org_dir(self) -> Path:
        """The folder the package checker is given."""
        return self.root / self.org

    @property
    def results_dir(self) -> Path:
        """Where result_<i>.txt go."""
        return self.org_dir / "results" / self.system / "strong" / BENCHMARK

    @property
    def system_file(self) -> Path:
        """The system description."""
        return self.org_dir / "systems" / f"{self.system}.json"

    @property
    def implementations_dir(self) -> Path:
        """benchmarks/deepcam/implementations/."""
        return self.org_dir / "benchmarks" / BENCHMARK / "implementations"

    @property
    def impl_dir(self) -> Path:
        """The implementation's source."""
        return self.implementations_dir / self.impl

    @property
    def system_impl_dir(self) -> Path:
        """README, scripts and settings of this implementation on this system."""
        return self.implementations_dir / self.system

    @property
    def checks_dir(self) -> Path:
        """Checker logs; also the checkers' working directory."""
        return self.root / "checks"

    def result_file(self, index: int) -> Path:
        """result_<index>.txt."""
        return self.results_dir / f"result_{index}.txt"

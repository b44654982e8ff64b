"""MLPerf HPC submission packages: N independent runs, packaged and checked.

One module per job: ``logs`` reads a run's MLPerf log, ``runset`` checks that a set of runs
forms one submission, ``machine`` and ``system_desc`` describe the system, ``layout`` names
the package's paths, ``implementation`` copies the source, ``assemble`` writes the package,
``checkers`` runs the official checkers and ``runner`` launches the runs.
"""

from __future__ import annotations

from deepcam_hvd.train.mlperf_log import RULESET
from deepcam_hvd.workloads.deepcam import BENCHMARK

__all__ = ["BENCHMARK", "REQUIRED_RUNS", "RULESET", "USAGE"]

USAGE = "hpc"
REQUIRED_RUNS = 5  # time-to-solution runs for DeepCAM (mlperf_logging benchmark_meta)

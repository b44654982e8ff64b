"""Job scripts for real systems: system descriptions and template rendering."""

from deepcam_hvd.jobs.render import (
    DEFAULT_WORKLOAD,
    WORKLOADS,
    RenderRequest,
    parse_time,
    render,
    venv_warning,
)
from deepcam_hvd.jobs.systems import Hardware, System, get_system, jobs_dir, load_systems

__all__ = ["DEFAULT_WORKLOAD", "WORKLOADS", "Hardware", "RenderRequest", "System", "get_system",
           "jobs_dir", "load_systems", "parse_time", "render", "venv_warning"]

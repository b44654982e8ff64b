"""The system description (``systems/<system>.json``) of an MLPerf HPC 3.0.0 package."""

from __future__ import annotations

import re

from deepcam_hvd.errors import ConfigError
from deepcam_hvd.submission.machine import Machine
from deepcam_hvd.submission.runset import RunSet

# The fields mlperf_logging's system_desc_checker.check_system_desc requires (every usage and
# ruleset >= 1.0.0 shares the list); tests compare this with the checker's own source.
REQUIRED_FIELDS = (
    "submitter", "division", "status", "system_name", "number_of_nodes",
    "host_processors_per_node", "host_processor_model_name", "host_processor_core_count",
    "host_processor_vcpu_count", "host_processor_frequency", "host_processor_caches",
    "host_processor_interconnect", "host_memory_capacity", "host_storage_type",
    "host_storage_capacity", "host_networking", "host_networking_topology",
    "host_memory_configuration", "accelerators_per_node", "accelerator_model_name",
    "accelerator_host_interconnect", "accelerator_frequency", "accelerator_on-chip_memories",
    "accelerator_memory_configuration", "accelerator_memory_capacity",
    "accelerator_interconnect", "accelerator_interconnect_topology", "cooling", "hw_notes",
    "framework", "other_software_stack", "operating_system", "sw_notes",
)
# Further fields the submission rules' table names (not checked by the checker).
OPTIONAL_FIELDS = ("system_type", "system_type_detail", "host_network_card_count")
# Fields the runs' logs or other options decide; overriding them would contradict the logs.
DECIDED_ELSEWHERE = {
    "submitter": "--org (the logs' submission_org)",
    "division": "--division (the logs' submission_division)",
    "status": "the logs' submission_status",
    "number_of_nodes": "the logs' number_of_nodes",
    "accelerators_per_node": "the logs' accelerators_per_node",
}
_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def parse_overrides(items: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``key=value`` pairs of --system-field; ConfigError naming a bad one."""
    known = set(REQUIRED_FIELDS) | set(OPTIONAL_FIELDS)
    found: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not _KEY.match(key):
            raise ConfigError(f"--system-field {item!r}: expected key=value")
        if key in DECIDED_ELSEWHERE:
            raise ConfigError(f"--system-field {key}: set by {DECIDED_ELSEWHERE[key]}, "
                              "not overridable")
        if key not in known:
            raise ConfigError(f"--system-field {key}: not a field of the MLPerf system "
                              f"description (fields: {', '.join(sorted(known))})")
        found[key] = value.strip()
    return found


def _accelerator_fields(count: int, machine: Machine) -> dict[str, str]:
    if count == 0:
        return {k: "N/A" for k in REQUIRED_FIELDS
                if k.startswith("accelerator_") and k != "accelerators_per_node"}
    model, memory = machine.gpus[0] if machine.gpus else ("", "")
    return {"accelerator_model_name": model, "accelerator_memory_capacity": memory}


def build_system_desc(runs: RunSet, machine: Machine, org: str, system: str,
                      overrides: dict[str, str] | None = None) -> dict[str, str]:
    """Every required field, from the runs' logs and this machine, then ``overrides``."""
    sw = machine.software
    single_node = "N/A (single node)" if runs.number_of_nodes == 1 else ""
    stack = [f"Horovod {sw['horovod']}" if "horovod" in sw else "",
             sw.get("mpi", ""), f"Python {sw.get('python', '')}"]
    stack += [f"{name} {sw[name]}" for name in ("numpy", "h5py", "mpi4py", "mlperf-logging")
              if name in sw]
    desc = dict.fromkeys(REQUIRED_FIELDS, "")
    desc.update({
        "submitter": org,
        "division": runs.division,
        "status": runs.status,
        "system_name": system,
        "number_of_nodes": str(runs.number_of_nodes),
        "host_processors_per_node": machine.sockets,
        "host_processor_model_name": machine.cpu_model,
        "host_processor_core_count": machine.cores_per_socket,
        "host_processor_vcpu_count": machine.vcpus_per_socket,
        "host_processor_frequency": machine.cpu_frequency,
        "host_processor_caches": machine.cpu_caches,
        "host_memory_capacity": machine.memory,
        "host_storage_capacity": machine.storage_capacity,
        "host_networking": single_node,
        "host_networking_topology": single_node,
        "accelerators_per_node": str(runs.accelerators_per_node),
        **_accelerator_fields(runs.accelerators_per_node, machine),
        "hw_notes": f"host fields probed on {machine.hostname}" if machine.hostname else "",
        "framework": f"PyTorch {sw['torch']}" if "torch" in sw else "",
        "other_software_stack": ", ".join(s for s in stack if s),
        "operating_system": machine.operating_system,
        "sw_notes": (f"deepcam-hvd {sw['deepcam-hvd']}" if "deepcam-hvd" in sw else
                     "deepcam-hvd") + ": Horovod data-parallel DeepCAM",
    })
    desc.update(overrides or {})
    return desc


def empty_fields(desc: dict[str, str]) -> list[str]:
    """Required fields whose value is still empty (the user should fill them)."""
    return [k for k in REQUIRED_FIELDS if not str(desc.get(k, "")).strip()]

"""``deepcam-hvd info``: what each rank sees (launcher, backend, layout, device, threads).

The table and ``show_ranks`` serve ``deepcam-hvd cosmoflow info`` too (the TensorFlow runtime's
facts have the same keys), so this module imports no framework at load time."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from deepcam_hvd.commands.options import runtime_options
from deepcam_hvd.config import read_config_file, resolve_config
from deepcam_hvd.distributed.communicator import Communicator
from deepcam_hvd.horovod_tuning import workload_for_config


def format_table(ranks: list[dict[str, Any]]) -> str:
    """Human-readable per-rank layout."""
    build = ranks[0]["horovod_build"]
    built = "not installed" if not build.get("installed") else (
        f"{build['version']} for {' + '.join(build.get('frameworks') or ['nothing'])} with "
        + ", ".join(k.upper() for k in ("mpi", "gloo", "nccl", "rccl") if build.get(k))
        or "nothing")
    if not build.get("installed") and build.get("version"):
        built = (f"{build['version']} without its PyTorch extension (built for "
                 f"{' + '.join(build.get('frameworks') or ['nothing'])})")
    tf = ranks[0].get("tensorflow")
    lines = [
        f"launcher {ranks[0]['launcher']}, backend {ranks[0]['backend']}"
        + (f" ({ranks[0]['controller']})" if ranks[0].get("controller") else "")
        + f", {len(ranks)} rank(s); torch {ranks[0]['torch'] or 'not installed'}; "
        f"tensorflow {tf or 'not installed'}; horovod {built}; "
        f"allocator {ranks[0]['allocator']}",
        f"{'rank':>4} {'local':>7} {'host':<16} {'device':<8} {'threads':>7}  cores  (source)",
    ]
    for r in ranks:
        cores = r["bound_cores"]
        span = f"{cores[0]}-{cores[-1]}" if cores and len(cores) > 1 else ",".join(map(str, cores))
        lines.append(f"{r['rank']:>4} {r['local_rank']:>3}/{r['local_size']:<3} "
                     f"{r['host'][:16]:<16} {r['device']:<8} {r['threads']:>7}  {span:<6} "
                     f"({r['thread_source']})")
    return "\n".join(lines + horovod_lines(ranks))


def horovod_lines(ranks: list[dict[str, Any]]) -> list[str]:
    """Rank 0's Horovod settings (``deepcam_hvd.horovod_tuning``): value, source, reason; the
    ranks whose settings differ are named."""
    tuning = ranks[0].get("horovod_tuning")
    if not tuning:
        return []
    others = [r["rank"] for r in ranks[1:] if r.get("horovod_tuning", {}).get("settings")
              != tuning["settings"]]
    lines = ["horovod settings (rank 0; your own HOROVOD_* variables win):"]
    for s in tuning["settings"]:
        value = s["value"] if s["value"] is not None else "(horovod default)"
        lines.append(f"  {s['variable']}={value}  [{s['source']}: {s['reason']}]")
    if others:
        lines.append(f"  ranks {', '.join(map(str, others))} chose differently (see --json)")
    return lines


def show_ranks(comm: Communicator, facts: dict[str, Any], as_json: bool,
               output: str | None) -> None:
    """Collective: gather every rank's ``facts``; rank 0 prints the table (or JSON) and writes
    ``output``."""
    ranks = comm.allgather_object(facts)
    if comm.is_root:
        document = json.dumps({"size": comm.size, "ranks": ranks}, indent=2)
        click.echo(document if as_json else format_table(ranks))
        if output:
            Path(output).write_text(document + "\n")


json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
output_option = click.option(
    "--output", type=click.Path(dir_okay=False, writable=True), default=None,
    help="Also write the JSON document to this file (rank 0), e.g. under horovodrun, which "
         "prefixes every printed line with the rank.")


@click.command()
@json_option
@output_option
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False),
              default=None,
              help="A training config (TOML/YAML/JSON, as for train --config): show the Horovod "
                   "settings a training run of it would get (its model, sample size and batch "
                   "set the step they are chosen from).")
@runtime_options
def info(as_json: bool, output: str | None, config_file: str | None, launcher: str,
         backend: str, device: str) -> None:
    """Show, per rank, how this launch is wired for PyTorch (DeepCAM; run it under your
    launcher). ``deepcam-hvd cosmoflow info`` shows the TensorFlow wiring."""
    from deepcam_hvd.runtime import start_runtime

    workload = None
    if config_file:
        workload = workload_for_config(resolve_config(read_config_file(config_file)))
    runtime = start_runtime(launcher, backend, device, workload=workload)
    show_ranks(runtime.backend, runtime.describe(), as_json, output)
    runtime.backend.shutdown()

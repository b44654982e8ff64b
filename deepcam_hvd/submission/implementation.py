"""The implementation in the package: the installed source and how it ran on the system."""

from __future__ import annotations

import filecmp
import importlib.metadata
import json
import shlex
import shutil
from pathlib import Path

import deepcam_hvd
from deepcam_hvd.errors import ConfigError
from deepcam_hvd.submission import BENCHMARK
from deepcam_hvd.submission.layout import Layout
from deepcam_hvd.submission.record import LaunchRecord
from deepcam_hvd.submission.runset import RunSet


def installed_source() -> Path:
    """The directory of the ``deepcam_hvd`` package that is running (not a git tree)."""
    return Path(deepcam_hvd.__file__).resolve().parent


def _ignore(_dir: str, names: list[str]) -> list[str]:
    # Byte code and hidden files are not source, and the repo checker rejects dot-names.
    return [n for n in names if n == "__pycache__" or n.endswith((".pyc", ".pyo"))
            or n.startswith(".")]


def check_source_dest(dest: Path) -> bool:
    """True if ``dest`` is free, False if it holds this very source (another system's package
    in the same org shares it); ConfigError if it holds anything else."""
    if not dest.exists():
        return True
    target = dest / "deepcam_hvd"
    if target.is_dir() and _same_tree(installed_source(), target):
        return False
    raise ConfigError(f"{dest} already exists and holds another implementation; choose "
                      "another --impl or --out")


def copy_source(dest: Path) -> bool:
    """Copy the installed package to ``dest/deepcam_hvd``; False if an identical copy is there.

    A different implementation already under ``dest`` is refused, never overwritten.
    """
    if not check_source_dest(dest):
        return False
    shutil.copytree(installed_source(), dest / "deepcam_hvd", ignore=_ignore)
    return True


def _same_tree(a: Path, b: Path) -> bool:
    cmp = filecmp.dircmp(a, b, ignore=["__pycache__"])
    if cmp.left_only or cmp.right_only or cmp.diff_files or cmp.funny_files:
        return False
    _, mismatch, errors = filecmp.cmpfiles(a, b, cmp.common_files, shallow=False)
    if mismatch or errors:
        return False
    return all(_same_tree(a / d, b / d) for d in cmp.common_dirs)


def _requirements() -> list[str]:
    try:
        reqs = importlib.metadata.requires("deepcam-hvd") or []
    except importlib.metadata.PackageNotFoundError:
        return []
    return [r for r in reqs if "extra ==" not in r]


PATH_OPTIONS = ("--data_dir", "--data-dir", "--data_dir_prefix", "--data-dir-prefix", "--config")


def _portable_options(record: LaunchRecord, dest: Path) -> list[str]:
    """The run's train options with the data root as $DATA_DIR and a --config file copied
    next to the scripts (both are paths on the machine that ran, not in the package)."""

    def portable(option: str, value: str) -> str:
        if option != "--config":
            return f'"${{DATA_DIR:-{value}}}"'
        source = Path(record.cwd, value)
        if not source.is_file():
            return shlex.quote(value)
        shutil.copyfile(source, dest / source.name)
        return f'"$(dirname "$0")/{source.name}"'

    options: list[str] = []
    pending = ""
    for arg in record.train_options:
        if pending:
            options += [pending, portable(pending, arg)]
            pending = ""
            continue
        name, eq, value = arg.partition("=")
        if name in PATH_OPTIONS and eq:
            options.append(f"{name}={portable(name, value)}")
        elif name in PATH_OPTIONS:
            pending = name
        else:
            options.append(shlex.quote(arg))
    return options


def _train_line(record: LaunchRecord | None, dest: Path) -> str:
    if record is None:
        return ('deepcam-hvd train --config run.toml --output_dir "$OUTPUT_DIR"  '
                "# the runs were not started by 'deepcam-hvd submission run': command unknown")
    launcher = " ".join(shlex.quote(a) for a in record.launcher)
    options = " ".join(_portable_options(record, dest))
    seed = ' --seed "${SEED:?a fresh seed per run}"' if record.seed is not None else ""
    line = f'${{LAUNCHER:-{launcher}}} deepcam-hvd train {options} --output_dir "$OUTPUT_DIR"'
    return line.replace("  ", " ") + seed


def write_system_files(layout: Layout, runs: RunSet,
                       records: list[LaunchRecord | None]) -> list[Path]:
    """README.md, setup.sh, init_datasets.sh, run_and_time.sh and <system>_<impl>.json."""
    dest = layout.system_impl_dir
    if dest.exists():
        raise ConfigError(f"{dest} already exists: refusing to overwrite it (choose another "
                          "--out or --system)")
    dest.mkdir(parents=True)
    first = records[0] if records else None
    train = _train_line(first, dest)
    reqs = " ".join(shlex.quote(r) for r in _requirements())
    files = {
        "setup.sh": "#!/usr/bin/env bash\n# One-time set-up: the Python dependencies. Horovod "
                    "must be built with MPI and PyTorch\n# (HOROVOD_WITH_MPI=1 "
                    "HOROVOD_WITH_PYTORCH=1); the source is ../" + layout.impl + "/deepcam_hvd "
                    "(put its parent on PYTHONPATH).\nset -euo pipefail\n"
                    f"python3 -m pip install {reqs}\n",
        "init_datasets.sh": "#!/usr/bin/env bash\n# Check the DeepCAM data root (train/, "
                            "validation/, stats.h5) before the runs.\nset -euo pipefail\n"
                            'deepcam-hvd data check "${DATA_DIR:?set DATA_DIR}"\n',
        "run_and_time.sh": "#!/usr/bin/env bash\n# One run: a fresh OUTPUT_DIR and a fresh "
                           "seed each time, never resumed.\nset -euo pipefail\n"
                           f"{train}\n",
        "README.md": _readme(layout, runs, train),
        f"{layout.system}_{layout.impl}.json": json.dumps({
            "benchmark": BENCHMARK, "implementation": layout.impl, "system": layout.system,
            "division": runs.division, "global_batch_size": runs.global_batch_size,
            "runs": [{"log": r.path.name, "seeds": r.seeds, "status": r.status,
                      "epochs": r.epochs_to_stop, "command": rec.command if rec else None}
                     for r, rec in zip(runs.runs, records, strict=True)],
        }, indent=2) + "\n",
    }
    written = []
    for name, text in files.items():
        path = dest / name
        path.write_text(text)
        if name.endswith(".sh"):
            path.chmod(0o755)
        written.append(path)
    return written


def _readme(layout: Layout, runs: RunSet, train: str) -> str:
    count = len(runs.runs)
    return (f"# DeepCAM with deepcam-hvd on {layout.system}\n\n"
            f"Implementation: `../{layout.impl}/deepcam_hvd` (Horovod data parallel PyTorch).\n"
            f"Division: {runs.division}; global batch size {runs.global_batch_size}; "
            f"{runs.number_of_nodes} node(s), {runs.accelerators_per_node} accelerator(s) "
            f"per node; {count} independent run(s).\n\n"
            "1. `./setup.sh` installs the dependencies.\n"
            "2. `DATA_DIR=/path/to/deepcam ./init_datasets.sh` checks the data.\n"
            "3. `OUTPUT_DIR=/fresh/dir ./run_and_time.sh`, once per run, each with a new "
            "OUTPUT_DIR; the run's MLPerf log is `$OUTPUT_DIR/mlperf.log`.\n\n"
            f"The command of each run:\n\n```bash\n{train}\n```\n")

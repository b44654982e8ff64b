"""`deepcam-hvd jobs render/list`: every template renders to a valid script with the settings
the real systems need, and bad input is one line of error, exit 2."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from deepcam_hvd.cli import main
from deepcam_hvd.errors import ConfigError
from deepcam_hvd.jobs import RenderRequest, get_system, load_systems, parse_time, render
from deepcam_hvd.jobs.render import fill

RENDERABLE = [name for name, s in load_systems().items() if s.renderable]


def cli(*args: str) -> tuple[int, str, str]:
    """Run the CLI in-process; (exit code, stdout, stderr)."""
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def rendered(system: str, nodes: int = 2, **kwargs: object) -> str:
    req = RenderRequest(system=system, nodes=nodes, data=kwargs.pop("data", "/data/deepcam"),
                        **kwargs)  # type: ignore[arg-type]
    if get_system(system).launcher in ("mpirun", "horovodrun") and nodes > 1:
        req.hosts = ",".join(f"n{i}" for i in range(nodes))
    return render(get_system(system), req)


def sbatch_options(script: str) -> dict[str, str]:
    """The ``#SBATCH --key=value`` lines as a dict."""
    found = {}
    for line in script.splitlines():
        m = re.match(r"#SBATCH --([a-z-]+)(?:=(.*))?$", line)
        if m:
            found[m.group(1)] = m.group(2) or ""
    return found


def test_list_names_every_system() -> None:
    code, out, _ = cli("jobs", "list")
    assert code == 0
    for name in ("archer2-cpu", "archer2-gpu", "cirrus-gpu", "perlmutter-gpu", "kestrel-gpu",
                 "generic-cpu", "mpirun", "horovodrun"):
        assert re.search(rf"^{name}\s", out, re.M), name


@pytest.mark.parametrize("system", RENDERABLE)
def test_every_template_renders_to_valid_bash(system: str, tmp_path: Path) -> None:
    script = rendered(system, preset="")
    assert "{{" not in script and "}}" not in script
    path = tmp_path / "job.sh"
    path.write_text(script)
    check = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr
    assert "deepcam-hvd train --data_dir" in script
    assert "--resume auto" in script
    assert "--seed" not in script  # each run draws its own; a resumed one keeps its own
    commands = [line for line in script.splitlines() if not line.lstrip().startswith("#")]
    assert system == "horovodrun" or not any("horovodrun" in line for line in commands)
    if get_system(system).launcher == "slurm":
        opts = sbatch_options(script)
        assert opts["signal"] == "USR1@300"
        assert opts["nodes"] == "2"
        assert "--kill-on-bad-exit=1" in script
        assert re.search(r'^"\$\{SRUN\[@\]\}" deepcam-hvd train', script, re.M)


def test_archer2_cpu_follows_the_archer2_layout() -> None:
    script = rendered("archer2-cpu", nodes=256, account="z19", time="12:00:00", data=None)
    opts = sbatch_options(script)
    assert opts["ntasks-per-node"] == "8" and opts["cpus-per-task"] == "16"
    assert opts["hint"] == "nomultithread" and opts["distribution"] == "block:block"
    assert opts["partition"] == "standard" and opts["qos"] == "standard"
    assert opts["account"] == "z19" and opts["time"] == "12:00:00"
    assert "exclusive" in opts
    assert "export OMP_NUM_THREADS=$SLURM_CPUS_PER_TASK" in script
    assert "export SRUN_CPUS_PER_TASK=$SLURM_CPUS_PER_TASK" in script
    assert "--cpu-bind=cores" in script
    assert "module load PrgEnv-gnu\nmodule load cray-python" in script
    assert "--preset nersc10-baseline" in script  # 2048 ranks x local batch 1
    assert "DATA_DIR=/work/z19/shared/mlperf-hpc/deepcam/full" in script
    assert "--mpi=" not in script  # Cray's srun default (cray_shasta) wires up Cray MPICH


def test_archer2_cpu_switches_to_largescale_qos() -> None:
    assert sbatch_options(rendered("archer2-cpu", nodes=1024, preset=""))["qos"] == "standard"
    assert sbatch_options(rendered("archer2-cpu", nodes=1025, preset=""))["qos"] == "largescale"


def test_gpu_templates_run_one_rank_per_gpu() -> None:
    perlmutter = sbatch_options(rendered("perlmutter-gpu", nodes=256, account="m1234"))
    assert perlmutter["gpus-per-node"] == "4" and perlmutter["ntasks-per-node"] == "4"
    assert perlmutter["constraint"] == "gpu" and perlmutter["cpus-per-task"] == "32"
    kestrel = rendered("kestrel-gpu", nodes=4)
    assert sbatch_options(kestrel)["gres"] == "gpu:4"
    assert "--preset esif-baseline" in kestrel and "--gres=gpu:4" in kestrel
    # Cirrus and ARCHER2 GPU refuse --ntasks/--cpus-per-task as batch options: srun has them.
    for system, gpus in (("cirrus-gpu", ("gres", "gpu:4")), ("archer2-gpu", ("gpus", "8"))):
        script = rendered(system, nodes=2, time="00:50:00")
        opts = sbatch_options(script)
        assert opts[gpus[0]] == gpus[1]
        assert "ntasks-per-node" not in opts and "cpus-per-task" not in opts
        assert "--ntasks=8 --tasks-per-node=4" in script


def test_generic_cpu_uses_pmi2_and_the_given_layout() -> None:
    script = rendered("generic-cpu", nodes=1, tasks_per_node=2, cpus_per_task=1,
                      time="00:10:00", config=None)
    opts = sbatch_options(script)
    assert opts["ntasks-per-node"] == "2" and opts["cpus-per-task"] == "1"
    assert "--mpi=pmi2" in script
    assert "partition" not in opts and "account" not in opts


def test_reproducing_command_line_is_in_the_script() -> None:
    script = rendered("generic-cpu", nodes=1, time="01:00:00", train_args=["--max_epochs", "3"])
    assert "#   deepcam-hvd jobs render generic-cpu --nodes 1 --data /data/deepcam " \
           "--time 01:00:00 -- --max_epochs 3" in script
    assert script.rstrip().endswith("exit $rc")
    assert "--max_epochs 3" in script


def test_render_writes_an_executable_file(tmp_path: Path) -> None:
    out = tmp_path / "job.sbatch"
    code, _, err = cli("jobs", "render", "perlmutter-gpu", "--nodes", "256", "--data", "/d",
                       "--account", "m1", "-o", str(out))
    assert code == 0, err
    assert out.stat().st_mode & 0o111
    assert sbatch_options(out.read_text())["account"] == "m1"


@pytest.mark.parametrize(("args", "message"), [
    (["nowhere", "--nodes", "1"], "unknown system 'nowhere'; known systems: archer2-cpu"),
    (["generic-cpu", "--nodes", "0", "--data", "/d"], "--nodes must be at least 1, got 0"),
    (["generic-cpu", "--nodes", "1", "--data", "/d", "--time", "2h"],
     "--time '2h' is not HH:MM:SS or D-HH:MM:SS"),
    (["generic-cpu", "--nodes", "1", "--data", "/d", "--time", "01:75:00"],
     "minutes and seconds must be below 60"),
    (["archer2-cpu", "--nodes", "1", "--time", "30:00:00"], "longer than archer2-cpu's limit"),
    (["generic-cpu", "--nodes", "1", "--data", "/d", "--time", "00:04:00"],
     "leaves no room for the 300 s stop warning"),
    (["perlmutter-gpu", "--nodes", "3", "--data", "/d"],
     "--preset nersc10-baseline fixes the global batch at 2048, which 12 ranks"),
    (["perlmutter-gpu", "--nodes", "2"], "--data is required for perlmutter-gpu"),
    (["generic-cpu", "--nodes", "1", "--data", "/d", "--preset", "fast"],
     "--preset 'fast' is not known"),
    (["archer2-gpu", "--nodes", "3"], "--nodes 3 is more than archer2-gpu allows (2)"),
    (["kestrel-gpu", "--nodes", "1", "--data", "/d", "--tasks-per-node", "8"],
     "at most one rank per GPU"),
    (["generic-cpu", "--nodes", "1", "--data", "/d", "--account", "a b"],
     "--account 'a b' may only hold"),
    (["mpirun", "--nodes", "2", "--data", "/d"], "--hosts h1,h2,... is required"),
    (["eos-h100", "--nodes", "1", "--data", "/d"], "description for the scaling model only"),
    (["generic-cpu", "--nodes", "1", "--data", "/d", "--config", "/no/such.toml"],
     "config file /no/such.toml"),
])
def test_bad_input_is_one_line_exit_2(args: list[str], message: str) -> None:
    code, out, err = cli("jobs", "render", *args)
    assert code == 2, out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("deepcam-hvd: error: ")
    assert message in lines[0]


def test_parse_time() -> None:
    assert parse_time("00:10:00") == 600
    assert parse_time("1-02:00:00") == 93600
    assert parse_time("100:00:00") == 360000
    for bad in ("10:00", "00:00:00", "1:2:3", "-1:00:00", "ab:cd:ef"):
        with pytest.raises(ConfigError):
            parse_time(bad)


def test_fill_drops_empty_optional_lines_and_expands_blocks() -> None:
    template = "a={{a}}\n#SBATCH --account={{acct?}}\n{{block}}\n{{empty}}\nend\n"
    out = fill(template, {"a": "1", "acct": "", "block": "x\ny", "empty": ""})
    assert out == "a=1\nx\ny\nend\n"
    with pytest.raises(ConfigError, match="unknown placeholder"):
        fill("{{nope}}", {})


STUB_LAUNCHER = """#!/bin/bash
# srun/mpirun/horovodrun stand-in: drop the launcher's own options, run the command on one rank
while [ $# -gt 0 ] && [ "$1" != deepcam-hvd ]; do shift; done
exec "$@"
"""
STUB_DEEPCAM = """#!/bin/bash
# deepcam-hvd stand-in: record the arguments, one per line, one file per call
printf '%s\\n' "$@" > "$(mktemp "$DEEPCAM_CALLS/call.XXXXXX")"
"""


def stub_venv(tmp_path: Path) -> Path:
    """A --venv whose activate puts stand-ins for the launchers, ``module`` and ``deepcam-hvd``
    first on PATH, so a rendered script runs here in a fraction of a second."""
    venv = tmp_path / "venv"
    bindir = venv / "bin"
    bindir.mkdir(parents=True)
    (bindir / "activate").write_text(f'export PATH="{bindir}:$PATH"\n')
    stubs = {"srun": STUB_LAUNCHER, "mpirun": STUB_LAUNCHER, "horovodrun": STUB_LAUNCHER,
             "module": "#!/bin/sh\nexit 0\n", "deepcam-hvd": STUB_DEEPCAM}
    for name, text in stubs.items():
        (bindir / name).write_text(text)
        (bindir / name).chmod(0o755)
    return venv


def run_job(script: Path, tmp_path: Path, **env: str) -> list[str]:
    """Run a rendered script on the stand-ins; the arguments of its ``deepcam-hvd train``."""
    calls = tmp_path / "calls"
    if calls.exists():
        for old in calls.iterdir():
            old.unlink()
    calls.mkdir(exist_ok=True)
    base = {k: v for k, v in os.environ.items()
            if not k.startswith("SLURM_") and k != "DEEPCAM_RUN_DIR"}
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path, env={**base, "DEEPCAM_CALLS": str(calls), **env})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    trains = [args for args in (f.read_text().splitlines() for f in calls.iterdir())
              if args[:1] == ["train"]]
    assert len(trains) == 1, trains
    return trains[0]


def option(args: list[str], name: str) -> str:
    """The value after ``name`` in an argument list."""
    return args[args.index(name) + 1]


@pytest.mark.parametrize("system", RENDERABLE)
def test_each_job_trains_in_its_own_directory(system: str, tmp_path: Path) -> None:
    """A new submission never continues a finished run; a requeued job resumes its own."""
    root = tmp_path / "runs"
    script = tmp_path / "job.sh"
    script.write_text(rendered(system, nodes=1, preset="", venv=str(stub_venv(tmp_path)),
                               output_root=str(root), job_name="deepcam-t",
                               info_step=False, workdir=str(tmp_path)))
    if get_system(system).launcher == "slurm":
        first = run_job(script, tmp_path, SLURM_JOB_NAME="deepcam-t", SLURM_JOB_ID="1001")
        again = run_job(script, tmp_path, SLURM_JOB_NAME="deepcam-t", SLURM_JOB_ID="1002")
        requeued = run_job(script, tmp_path, SLURM_JOB_NAME="deepcam-t", SLURM_JOB_ID="1001")
        assert option(first, "--output_dir") == f"{root}/deepcam-t-1001"
        assert option(again, "--output_dir") == f"{root}/deepcam-t-1002"
        assert option(requeued, "--output_dir") == f"{root}/deepcam-t-1001"
    else:  # mpirun / horovodrun: one directory per run of the script
        first, again = run_job(script, tmp_path), run_job(script, tmp_path)
        pattern = rf"{re.escape(str(root))}/deepcam-t-\d{{8}}T\d{{6}}Z-\d+"
        assert re.fullmatch(pattern, option(first, "--output_dir")), first
        assert re.fullmatch(pattern, option(again, "--output_dir")), again
        assert option(first, "--output_dir") != option(again, "--output_dir")
    assert (root / Path(option(first, "--output_dir")).name).is_dir()
    for args in (first, again):
        assert option(args, "--resume") == "auto"
        assert option(args, "--data_dir") == "/data/deepcam"
        assert "--seed" not in args
    # continuing a given run is explicit
    named = run_job(script, tmp_path, DEEPCAM_RUN_DIR=str(tmp_path / "mine"),
                    SLURM_JOB_NAME="deepcam-t", SLURM_JOB_ID="1003")
    assert option(named, "--output_dir") == str(tmp_path / "mine")
    assert option(named, "--resume") == "auto"


def test_output_root_defaults_to_runs_in_the_workdir(tmp_path: Path) -> None:
    script = rendered("generic-cpu", nodes=1, workdir=str(tmp_path))
    assert f"OUTPUT_ROOT={tmp_path.resolve()}/runs\n" in script
    assert "OUTPUT_DIR=${DEEPCAM_RUN_DIR:-$OUTPUT_ROOT/$SLURM_JOB_NAME-$SLURM_JOB_ID}" in script
    relative = rendered("generic-cpu", nodes=1, workdir=str(tmp_path), output_root="out/a")
    assert f"OUTPUT_ROOT={tmp_path.resolve()}/out/a\n" in relative


def test_output_dir_is_an_alias_of_output_root(tmp_path: Path) -> None:
    for flag in ("--output-root", "--output-dir"):
        code, out, err = cli("jobs", "render", "generic-cpu", "--nodes", "1", "--data", "/d",
                             flag, str(tmp_path / "r"))
        assert code == 0, err
        assert f"OUTPUT_ROOT={tmp_path / 'r'}\n" in out
        assert f"#   deepcam-hvd jobs render generic-cpu --nodes 1 --data /d --output-root " \
               f"{tmp_path / 'r'}\n" in out

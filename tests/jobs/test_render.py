"""`deepcam-hvd jobs render/list`: every template renders to a valid script with the settings
the real systems need, for DeepCAM and (on CPU systems) CosmoFlow; the train line holds only
options its command accepts; bad input is one line of error, exit 2."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from deepcam_hvd.cli import main
from deepcam_hvd.errors import ConfigError
from deepcam_hvd.jobs import RenderRequest, get_system, load_systems, parse_time, render
from deepcam_hvd.jobs.render import fill

RENDERABLE = [name for name, s in load_systems().items() if s.renderable]
CPU_RENDERABLE = [name for name in RENDERABLE if not get_system(name).gpus_per_node]
GPU_RENDERABLE = [name for name in RENDERABLE if get_system(name).gpus_per_node]
GOLDEN = Path(__file__).parent / "golden"
ONEDNN_LINE = ("export TF_ENABLE_ONEDNN_OPTS=1  # CosmoFlow: TF's oneDNN kernels (12x faster on "
               "AMD EPYC)\n")


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


def train_options(script: str, command: str) -> list[str]:
    """The arguments after ``command`` on the script's one line that runs it (continuation
    lines joined), split as the shell splits them (``"$DATA_DIR"`` stays a word)."""
    joined = script.replace("\\\n", " ")
    lines = [line for line in joined.splitlines()
             if f" {command} " in line and not line.lstrip().startswith("#")]
    assert len(lines) == 1, lines
    return shlex.split(lines[0].split(f" {command} ", 1)[1])


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
    (["archer2-cpu", "--nodes", "1", "--workload", "cosmoflow", "--preset", "nersc10-baseline"],
     "--preset nersc10-baseline is a DeepCAM preset; --workload cosmoflow takes none"),
    (["generic-cpu", "--nodes", "1", "--workload", "cosmoflow"],
     "--data is required for generic-cpu (no shared CosmoFlow data set is known there): the "
     "data root with train/ and validation/"),
    (["mpirun", "--nodes", "1", "--workload", "cosmoflow", "--data", "/d", "--config", "t.toml"],
     "--config is read by DeepCAM's train only; give CosmoFlow's settings after '--'"),
    *[([name, "--nodes", "1", "--workload", "cosmoflow", "--data", "/d"],
       f"--workload cosmoflow: {name} has MI210 GPUs and there is no install profile for "
       "CosmoFlow on them") for name in GPU_RENDERABLE
      if get_system(name).hardware.gpu_kind == "rocm"],
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


def run_job(script: Path, tmp_path: Path, command: tuple[str, ...] = ("train",),
            **env: str) -> list[str]:
    """Run a rendered script on the stand-ins; the arguments of its ``deepcam-hvd COMMAND``
    (the command's own words first)."""
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
              if args[:len(command)] == list(command)]
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


# --- DeepCAM scripts are what they were before --workload existed ---------------------------

@pytest.mark.parametrize("golden", sorted(GOLDEN.iterdir()), ids=lambda p: p.name)
def test_deepcam_scripts_are_unchanged(golden: Path) -> None:
    """The scripts of the CPU templates, which gained CosmoFlow-only lines, byte for byte as
    rendered before (tests/jobs/golden/, rendered from the templates without workloads)."""
    system = golden.name.split("-deepcam.")[0]
    slurm = get_system(system).launcher == "slurm"
    script = rendered(system, nodes=2, account="z19" if slurm else None,
                      time="01:00:00" if slurm else None, train_args=["--max_epochs", "3"],
                      workdir="/w", venv="/v")
    assert script == golden.read_text()


@pytest.mark.parametrize("system", RENDERABLE)
def test_deepcam_scripts_have_no_cosmoflow_lines(system: str) -> None:
    script = rendered(system, preset="")
    assert script.splitlines()[1].startswith("# DeepCAM with Horovod on ")
    assert ('deepcam-hvd train --data_dir "$DATA_DIR" --output_dir "$OUTPUT_DIR" \\\n'
            f"    --resume auto --run_tag {system}-2n\n") in script
    assert re.search(r'^echo "deepcam: ', script, re.M)
    for cosmoflow_only in ("CosmoFlow", "cosmoflow", "TF_ENABLE_ONEDNN_OPTS",
                           "UCX_MEMTYPE_CACHE", "--cpu-freq"):
        assert cosmoflow_only not in script


@pytest.mark.parametrize("system", RENDERABLE)
def test_deepcam_train_line_holds_only_options_train_accepts(system: str,
                                                            tmp_path: Path) -> None:
    from deepcam_hvd.commands.train import train

    config = tmp_path / "train.toml"
    config.write_text("max_epochs = 3\n")
    script = rendered(system, nodes=2, config=str(config), train_args=["--start_lr", "0.002"])
    ctx = train.make_context("train", train_options(script, "deepcam-hvd train"))
    assert ctx.params["data_dir_prefix"] == "$DATA_DIR"
    assert ctx.params["output_dir"] == "$OUTPUT_DIR"
    assert ctx.params["checkpoint"] == "auto"
    assert ctx.params["config_file"] == str(config)
    assert ctx.params["start_lr"] == "0.002"
    assert ctx.params["preset_name"] == (get_system(system).preset or None)


# --- CosmoFlow ------------------------------------------------------------------------------

@pytest.mark.parametrize("system", CPU_RENDERABLE)
def test_cosmoflow_renders_for_every_cpu_template(system: str, tmp_path: Path) -> None:
    script = rendered(system, nodes=2, workload="cosmoflow", data="/data/cosmo")
    assert "{{" not in script and "}}" not in script
    path = tmp_path / "job.sh"
    path.write_text(script)
    check = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr
    assert script.splitlines()[1].startswith("# CosmoFlow with Horovod on ")
    assert ('deepcam-hvd cosmoflow train --data_dir "$DATA_DIR" --output_dir "$OUTPUT_DIR" \\\n'
            "    --resume auto\n") in script
    assert "DATA_DIR=/data/cosmo\n" in script
    assert ONEDNN_LINE in script
    assert re.search(r'^echo "cosmoflow: ', script, re.M)
    assert "deepcam-hvd train" not in script
    # DeepCAM's own options: cosmoflow train takes none of them
    assert "--run_tag" not in script and "--preset" not in script and "--config" not in script
    assert f"cosmoflow-{system}-2n" in script  # the default job name
    if get_system(system).launcher == "slurm":
        assert sbatch_options(script)["job-name"] == f"cosmoflow-{system}-2n"
        assert re.search(r'^"\$\{SRUN\[@\]\}" deepcam-hvd cosmoflow train', script, re.M)


@pytest.mark.parametrize("system", CPU_RENDERABLE)
@pytest.mark.parametrize("train_args", [[], ["--max_epochs", "2", "--n_train", "8",
                                             "--inter_threads", "0"]])
def test_cosmoflow_train_line_holds_only_options_it_accepts(system: str,
                                                            train_args: list[str]) -> None:
    """Every option the template puts on the line is one ``cosmoflow train`` parses."""
    from deepcam_hvd.commands.cosmoflow import train

    script = rendered(system, nodes=1, workload="cosmoflow", data="/data/cosmo",
                      train_args=train_args)
    args = train_options(script, "deepcam-hvd cosmoflow train")
    assert args[:7] == ["--data_dir", "$DATA_DIR", "--output_dir", "$OUTPUT_DIR",
                        "--resume", "auto", *train_args][:7]
    ctx = train.make_context("train", args)
    assert ctx.params["data_dir"] == "$DATA_DIR"
    assert ctx.params["output_dir"] == "$OUTPUT_DIR"
    assert ctx.params["resume"] == "auto"
    if train_args:
        assert ctx.params["max_epochs"] == 2 and ctx.params["n_train"] == 8
        assert ctx.params["inter_threads"] == 0


def test_archer2_cpu_cosmoflow_follows_archer2s_tensorflow_guide() -> None:
    """The seed's ARCHER2 CosmoFlow script: 32 nodes x 8 ranks x 16 cores, oneDNN on,
    UCX_MEMTYPE_CACHE=n, srun --hint=nomultithread --distribution=block:block
    --cpu-freq=2250000, the mini data set; no DeepCAM preset although the system has one."""
    script = rendered("archer2-cpu", nodes=32, workload="cosmoflow", data=None, account="z19",
                      time="01:00:00", train_args=["--max_epochs", "2048", "--n_train", "1024",
                                                   "--n_valid", "1024", "--inter_threads", "0"])
    opts = sbatch_options(script)
    assert opts["job-name"] == "cosmoflow-archer2-cpu-32n"
    assert opts["nodes"] == "32" and opts["time"] == "01:00:00" and opts["account"] == "z19"
    assert opts["ntasks-per-node"] == "8" and opts["cpus-per-task"] == "16"
    assert opts["partition"] == "standard" and opts["qos"] == "standard"
    assert opts["hint"] == "nomultithread" and opts["distribution"] == "block:block"
    assert "exclusive" in opts and opts["signal"] == "USR1@300"
    assert ("DATA_DIR=/work/z19/shared/mlperf-hpc/cosmoflow/mini/"
            "cosmoUniverse_2019_05_4parE_tf_v2_mini\n") in script
    assert "export OMP_NUM_THREADS=$SLURM_CPUS_PER_TASK\n" in script
    assert "export SRUN_CPUS_PER_TASK=$SLURM_CPUS_PER_TASK\n" in script
    assert ONEDNN_LINE in script
    assert "export UCX_MEMTYPE_CACHE=n  # CosmoFlow: as ARCHER2's TensorFlow guide sets it\n" \
        in script
    assert ("SRUN=(srun --hint=nomultithread --distribution=block:block --cpu-bind=cores\n"
            "      --kill-on-bad-exit=1\n"
            "      --cpu-freq=2250000  # CosmoFlow: 2.25 GHz, as ARCHER2's TF guide (default "
            "2.0)\n)\n") in script
    assert ('"${SRUN[@]}" deepcam-hvd cosmoflow train --data_dir "$DATA_DIR" --output_dir '
            '"$OUTPUT_DIR" \\\n    --resume auto --max_epochs 2048 --n_train 1024 --n_valid '
            "1024 --inter_threads 0\n") in script
    assert "module load PrgEnv-gnu\nmodule load cray-python\n" in script
    assert "--preset" not in script and "nersc10" not in script
    assert ("#   deepcam-hvd jobs render archer2-cpu --nodes 32 --workload cosmoflow --time "
            "01:00:00 --account z19 -- --max_epochs 2048 --n_train 1024 --n_valid 1024 "
            "--inter_threads 0\n") in script


def test_cosmoflow_mpirun_passes_onednn_to_open_mpi_ranks() -> None:
    script = rendered("mpirun", nodes=2, workload="cosmoflow", data="/data/cosmo")
    assert "    MPIRUN+=(-x TF_ENABLE_ONEDNN_OPTS)  # CosmoFlow: Open MPI passes on only what " \
           "-x names\n" in script
    assert "OUTPUT_DIR=${DEEPCAM_RUN_DIR:-$OUTPUT_ROOT/cosmoflow-mpirun-2n-$(date" in script


def test_cosmoflow_takes_no_system_preset_but_an_empty_one_is_fine() -> None:
    for preset in (None, ""):
        script = rendered("perlmutter-gpu", nodes=1, preset=preset)  # DeepCAM: the system's
        assert ("--preset nersc10-baseline" in script) == (preset is None)
        script = rendered("archer2-cpu", nodes=1, workload="cosmoflow", preset=preset)
        assert "--preset" not in train_options(script, "deepcam-hvd cosmoflow train")
        assert "nersc10" not in script


def test_unknown_workload_is_refused() -> None:
    with pytest.raises(ConfigError, match="--workload 'tf' is not one of deepcam, cosmoflow"):
        rendered("generic-cpu", nodes=1, workload="tf")
    code, _, err = cli("jobs", "render", "generic-cpu", "--nodes", "1", "--workload", "tf")
    assert code == 2 and "'tf' is not one of 'deepcam', 'cosmoflow'" in err


@pytest.mark.parametrize("args", [
    ["archer2-cpu", "--nodes", "4", "--workload", "cosmoflow", "--account", "z19", "--time",
     "02:00:00", "--no-info", "--", "--max_epochs", "8", "--n_train", "64"],
    ["mpirun", "--nodes", "2", "--workload", "cosmoflow", "--hosts", "a,b", "--data", "/d"],
    ["archer2-cpu", "--nodes", "4", "--time", "02:00:00", "--preset", ""],
])
def test_the_recorded_command_renders_the_same_script(args: list[str]) -> None:
    code, first, err = cli("jobs", "render", *args)
    assert code == 0, err
    recorded = next(line for line in first.splitlines() if line.startswith("#   deepcam-hvd "))
    words = shlex.split(recorded.removeprefix("#   "))
    assert ("--workload" in words) == ("--workload" in args)
    code, again, err = cli(*words[1:])
    assert code == 0, err
    assert again == first


@pytest.mark.parametrize("system", CPU_RENDERABLE)
def test_cosmoflow_job_trains_in_its_own_directory(system: str, tmp_path: Path) -> None:
    root = tmp_path / "runs"
    script = tmp_path / "job.sh"
    script.write_text(rendered(system, nodes=1, workload="cosmoflow", data="/data/cosmo",
                               venv=str(stub_venv(tmp_path)), output_root=str(root),
                               info_step=False, workdir=str(tmp_path),
                               train_args=["--max_epochs", "1"]))
    job = f"cosmoflow-{system}-1n"
    args = run_job(script, tmp_path, ("cosmoflow", "train"), SLURM_JOB_NAME=job,
                   SLURM_JOB_ID="2001")
    out = option(args, "--output_dir")
    if get_system(system).launcher == "slurm":
        assert out == f"{root}/{job}-2001"
    else:
        assert re.fullmatch(rf"{re.escape(str(root))}/{job}-\d{{8}}T\d{{6}}Z-\d+", out), out
    assert args == ["cosmoflow", "train", "--data_dir", "/data/cosmo", "--output_dir", out,
                    "--resume", "auto", "--max_epochs", "1"]
    assert Path(out).is_dir()


NVIDIA_RENDERABLE = [name for name in GPU_RENDERABLE
                     if get_system(name).hardware.gpu_kind == "cuda"]


@pytest.mark.parametrize("system", NVIDIA_RENDERABLE)
def test_cosmoflow_renders_for_nvidia_gpus_with_its_own_profile(system: str,
                                                                tmp_path: Path) -> None:
    """TensorFlow's CUDA 12.2 build lives in its own venv (profile nvidia-nccl-tf); the job
    says so, and shows the TensorFlow wiring, not torch's."""
    script = rendered(system, nodes=2, workload="cosmoflow", data="/data/cosmo")
    path = tmp_path / "job.sh"
    path.write_text(script)
    check = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr
    assert "profile nvidia-nccl-tf" in script
    assert re.search(r'^    "\$\{SRUN\[@\]\}" deepcam-hvd cosmoflow info ', script, re.M)
    assert re.search(r'^"\$\{SRUN\[@\]\}" deepcam-hvd cosmoflow train', script, re.M)
    deepcam = rendered(system, nodes=2, data="/data/cam")
    assert re.search(r"profile nvidia-nccl[^-]", deepcam) and "nvidia-nccl-tf" not in deepcam
    assert re.search(r'^    "\$\{SRUN\[@\]\}" deepcam-hvd info ', deepcam, re.M)


def test_venv_of_another_profile_is_warned_about(tmp_path: Path) -> None:
    from deepcam_hvd.jobs.render import PROFILE_MARKER, RenderRequest, venv_warning

    venv = tmp_path / "venv"
    venv.mkdir()
    system = get_system("perlmutter-gpu")
    request = RenderRequest("perlmutter-gpu", 1, workload="cosmoflow", venv=str(venv))
    assert venv_warning(system, request) is None  # no marker: a site install, cannot tell
    (venv / PROFILE_MARKER).write_text("nvidia-nccl\n")
    warning = venv_warning(system, request)
    assert warning is not None and "installed with profile nvidia-nccl, but a CosmoFlow job " \
        "on perlmutter-gpu needs one installed with DEEPCAM_BACKEND=nvidia-nccl-tf" in warning
    (venv / PROFILE_MARKER).write_text("nvidia-nccl-tf\n")
    assert venv_warning(system, request) is None
    deepcam = RenderRequest("perlmutter-gpu", 1, venv=str(venv))
    assert "DEEPCAM_BACKEND=nvidia-nccl " in (venv_warning(system, deepcam) or "")
    assert venv_warning(get_system("archer2-cpu"), deepcam) is None  # CPU jobs: any profile

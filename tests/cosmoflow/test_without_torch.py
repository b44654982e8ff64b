"""A CosmoFlow process is a TensorFlow process: the real CLI writes data, trains, resumes and
times a step without ever importing torch (start-up time and memory, and no second CUDA stack
beside TensorFlow's on a GPU node)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

tf = pytest.importorskip("tensorflow", reason="CosmoFlow needs TensorFlow")

# Runs the CLI in this interpreter and writes, as it exits, whether torch was ever loaded.
WRAPPER = textwrap.dedent("""
    import atexit, sys
    out = sys.argv.pop(1)
    atexit.register(lambda: open(out, "w").write(str("torch" in sys.modules)))
    from deepcam_hvd.cli import main
    sys.argv[0] = "deepcam-hvd"
    main()
""")


def run_cli(tmp_path: Path, name: str, *args: str) -> bool:
    """Whether torch was loaded by ``deepcam-hvd ARGS`` (which must succeed)."""
    wrapper = tmp_path / "wrapper.py"
    wrapper.write_text(WRAPPER)
    flag = tmp_path / f"{name}.torch"
    done = subprocess.run([sys.executable, str(wrapper), str(flag), *args], capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    return flag.read_text() == "True"


def test_synth_train_resume_and_bench_never_load_torch(tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "run"
    assert not run_cli(tmp_path, "synth", "cosmoflow", "data", "synth", "--output", str(data),
                       "--cube", "32", "--train", "8", "--validation", "4")
    train = ["cosmoflow", "train", "--data_dir", str(data), "--output_dir", str(out),
             "--local_batch_size", "4", "--seed", "5"]
    assert not run_cli(tmp_path, "train", *train, "--max_epochs", "1")
    assert not run_cli(tmp_path, "resume", *train, "--max_epochs", "2", "--resume", "auto")
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "cosmoflow_step000000002.ckpt", "cosmoflow_step000000004.ckpt"]
    assert not run_cli(tmp_path, "bench", "cosmoflow", "bench", "step", "--cube", "32",
                       "--batch", "1", "--steps", "1", "--warmup", "0")
    report = tmp_path / "info.json"
    assert not run_cli(tmp_path, "info", "cosmoflow", "info", "--cube", "32", "--output",
                       str(report))
    rank = json.loads(report.read_text())["ranks"][0]
    assert rank["backend"] == "local" and rank["device"] == "/CPU:0"
    assert rank["tensorflow"] == tf.__version__ and rank["horovod_tuning"] is None
    assert rank["horovod_build"]["frameworks"] == ["tensorflow"]
    # and the check can fail: a DeepCAM command does load torch through the same wrapper
    assert run_cli(tmp_path, "deepcam-info", "info", "--device", "cpu")

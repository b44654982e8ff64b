"""``benchmarks/cosmoflow_step.py``'s bookkeeping on made-up inputs (nothing is launched)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def script() -> Iterator[ModuleType]:
    # The script imports its helpers from small_step_scaling beside it, as when it runs; its
    # dataclasses need it in sys.modules while they are made.
    spec = importlib.util.spec_from_file_location("cosmoflow_step",
                                                  BENCHMARKS / "cosmoflow_step.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["cosmoflow_step"] = module
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCHMARKS))
    yield module
    for name in ("cosmoflow_step", "small_step_scaling"):
        sys.modules.pop(name, None)


def test_parse_variant(script: ModuleType) -> None:
    v = script.parse_variant("2x1-gloo-reference")
    assert (v.name, v.layout.ranks, v.layout.threads, v.layout.launcher, v.reference) == \
        ("2x1-gloo-reference", 2, 1, "horovodrun", True)
    assert (v.backend, v.local_batch(4)) == ("horovod", 2)
    one = script.parse_variant("1x2")
    assert (one.layout.ranks, one.layout.threads, one.reference, one.backend,
            one.local_batch(4)) == (1, 2, False, "local", 4)
    with pytest.raises(SystemExit, match="unknown variant '4x1'"):
        script.parse_variant("4x1")
    with pytest.raises(SystemExit, match="does not divide"):
        script.parse_variant("2x1-mpi").local_batch(3)


def names(chosen: list) -> list[str]:
    return [v.name for v in chosen]


def test_select_variants(script: ModuleType) -> None:
    chosen, notes = script.select_variants(["1x2", "2x1-mpi"], have_reference=True)
    assert names(chosen) == ["1x2", "2x1-mpi", "1x2-reference", "2x1-mpi-reference"]
    assert notes == []
    chosen, _ = script.select_variants(["1x2", "2x1-gloo-reference"], have_reference=True)
    assert names(chosen) == ["1x2", "2x1-gloo-reference"]  # listed explicitly: as given
    chosen, notes = script.select_variants(["1x2", "2x1-mpi-reference"], have_reference=False)
    assert names(chosen) == ["1x2"]
    assert notes == ["no --reference DIR: skipped 2x1-mpi-reference"]
    chosen, notes = script.select_variants(["1x2", "2x1-gloo"], have_reference=False)
    assert names(chosen) == ["1x2", "2x1-gloo"]
    assert notes == ["no --reference DIR: skipped 1x2-reference, 2x1-gloo-reference"]


def test_commands(script: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(script, "tool", lambda name: f"/bin/{name}")
    monkeypatch.setattr(script, "DEEPCAM", "deepcam-hvd")
    ref, out = Path("/ref/cosmoflow"), Path("/tmp/x.json")
    tail = ["--steps", "10", "--warmup", "3"]
    assert script.command(script.parse_variant("1x2"), 32, 4, 10, 3, ref, out) == [
        "deepcam-hvd", "cosmoflow", "bench", "step", "--cube", "32", "--local_batch_size", "4",
        *tail, "--backend", "local", "--device", "cpu", "--json", "/tmp/x.json"]
    mpi = script.command(script.parse_variant("2x1-mpi-reference"), 32, 4, 10, 3, ref, out)
    assert mpi[:4] == ["/bin/mpirun", "-np", "2", "deepcam-hvd"]
    assert mpi[9:11] == ["--local_batch_size", "2"]
    assert mpi[-6:] == ["--device", "cpu", "--json", "/tmp/x.json", "--reference",
                        "/ref/cosmoflow"]
    gloo = script.command(script.parse_variant("2x1-gloo"), 128, 2, 3, 1, None, out)
    assert gloo[:5] == ["/bin/horovodrun", "-np", "2", "--gloo", "deepcam-hvd"]
    assert gloo[8:12] == ["--cube", "128", "--local_batch_size", "1"]
    assert "--reference" not in gloo and gloo[gloo.index("--backend") + 1] == "horovod"
    with pytest.raises(SystemExit, match="needs --reference"):
        script.command(script.parse_variant("1x2-reference"), 32, 4, 10, 3, None, out)


def test_environment_sets_threads(script: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOROVOD_CYCLE_TIME", "7")
    monkeypatch.setenv("OMP_NUM_THREADS", "16")
    v = script.parse_variant("2x1-mpi")
    env = script.environment(script.ScalingVariant(v.name, v.layout.ranks, v.layout.threads,
                                                   v.backend))
    assert env["OMP_NUM_THREADS"] == "1" and "HOROVOD_CYCLE_TIME" not in env


def fake_rounds() -> list[dict[str, dict[str, float]]]:
    def run(step: float, batch: int = 4) -> dict[str, float]:
        return {"step_s_median": step, "samples_per_s": batch / step, "ranks": 1,
                "threads_per_rank": 2, "local_batch_size": batch, "others_cpu_share": 0.05,
                "load_start": 1.0, "load_end": 2.0}

    return [
        {"1x2": run(0.5), "2x1-mpi": run(0.4), "2x1-gloo": run(0.8), "1x2-reference": run(1.0)},
        {"1x2": run(0.4), "2x1-mpi": run(0.5), "2x1-gloo": run(0.5), "1x2-reference": run(1.0)},
    ]


def test_ratios_within_rounds(script: ModuleType) -> None:
    names = ["1x2", "2x1-mpi", "2x1-gloo", "1x2-reference"]
    pairs = script.ratio_pairs(names)
    assert pairs == {"1x2: ours / reference": ("1x2", "1x2-reference"),
                     "2x1-mpi / 1x2": ("2x1-mpi", "1x2"),
                     "2x1-gloo / 1x2": ("2x1-gloo", "1x2"),
                     "2x1-mpi / 2x1-gloo": ("2x1-mpi", "2x1-gloo")}
    got = script.ratios(fake_rounds(), pairs)
    assert got["1x2: ours / reference"] == pytest.approx([2.0, 2.5])
    assert got["2x1-mpi / 1x2"] == pytest.approx([1.25, 0.8])
    assert got["2x1-gloo / 1x2"] == pytest.approx([0.625, 0.8])
    assert got["2x1-mpi / 2x1-gloo"] == pytest.approx([2.0, 1.0])
    all_six = [*script.LAYOUTS, *(n + "-reference" for n in script.LAYOUTS)]
    assert len(script.ratio_pairs(all_six)) == 9


def test_table(script: ModuleType) -> None:
    rounds = fake_rounds()
    doc = {"variants": ["1x2", "1x2-reference"], "rounds": rounds,
           "ratios": script.ratios(rounds, script.ratio_pairs(["1x2", "1x2-reference"]))}
    lines = script.table(doc).splitlines()
    assert lines[2] == ("| 1x2 | 1 x 2 | 4 | 0.450 (0.400-0.500) | 9.00 (8.00-10.00) | "
                        "5 (5-5) % | 1.0-2.0, 1.0-2.0 |")
    assert lines[3].startswith("| 1x2-reference | 1 x 2 | 4 | 1.000 (1.000-1.000) | 4.00 ")
    assert lines[-1] == "| 1x2: ours / reference | 2.25 (2.00-2.50) |"


def test_rounds_rotate_the_order(script: ModuleType, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys.modules["small_step_scaling"], "wait_for_quiet",
                        lambda limit, max_wait: (0.0, 1.0))
    ran: list[str] = []

    def measure(name: str) -> dict[str, float]:
        ran.append(name)
        return {"samples_per_s": float(len(ran))}

    rounds = script.run_rounds(["a", "b", "c"], 3, measure, lambda r: "ok", 1.5, 0)
    assert ran == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert [r["a"]["samples_per_s"] for r in rounds] == [1.0, 6.0, 8.0]
    assert {"load_start", "load_end", "quiet_wait_s", "runnable_before"} <= set(rounds[0]["b"])
    assert capsys.readouterr().out.splitlines()[3] == "round 2 b: ok"

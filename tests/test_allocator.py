"""Allocator choice: the plan from DEEPCAM_ALLOCATOR, and real processes that run on it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deepcam_hvd.allocator import (
    ACTIVE_VARIABLE,
    JEMALLOC_CONF,
    AllocatorPlan,
    active_allocator,
    find_jemalloc,
    plan_allocator,
    preload_environment,
)
from deepcam_hvd.errors import ConfigError
from tests.launch import DEEPCAM, run_ranks

JE = "/opt/x/libjemalloc.so.2"


def test_auto_prefers_jemalloc_and_never_purges() -> None:
    plan = plan_allocator({}, jemalloc=JE)
    assert plan == AllocatorPlan("jemalloc", JE, {"MALLOC_CONF": JEMALLOC_CONF})


def test_auto_without_jemalloc_falls_back_to_huge_pages_or_plain() -> None:
    assert plan_allocator({}, jemalloc="", huge_pages=True).env == {"THP_MEM_ALLOC_ENABLE": "1"}
    assert plan_allocator({}, jemalloc="", huge_pages=False) == AllocatorPlan("system")


def test_explicit_choices_and_bad_values(tmp_path: Path) -> None:
    assert plan_allocator({"DEEPCAM_ALLOCATOR": "system"}, jemalloc=JE) == AllocatorPlan("system")
    with pytest.raises(ConfigError, match="DEEPCAM_ALLOCATOR=jemalloc but no libjemalloc"):
        plan_allocator({"DEEPCAM_ALLOCATOR": "jemalloc"}, jemalloc="")
    with pytest.raises(ConfigError, match="DEEPCAM_ALLOCATOR='fast' is not one of"):
        plan_allocator({"DEEPCAM_ALLOCATOR": "fast"}, jemalloc=JE)
    missing = tmp_path / "libtcmalloc.so"
    with pytest.raises(ConfigError, match=f"DEEPCAM_ALLOCATOR={missing}: no such file"):
        plan_allocator({"DEEPCAM_ALLOCATOR": str(missing)})
    missing.write_bytes(b"")
    assert plan_allocator({"DEEPCAM_ALLOCATOR": str(missing)}) == \
        AllocatorPlan("preloaded", str(missing), {})


def test_preload_environment_runs_once_and_keeps_user_settings() -> None:
    plan = plan_allocator({}, jemalloc=JE)
    env = preload_environment(plan, {"LD_PRELOAD": "/a/libx.so", "MALLOC_CONF": "narenas:2"})
    assert env is not None
    assert env["LD_PRELOAD"] == f"{JE} /a/libx.so"
    assert env["MALLOC_CONF"] == "narenas:2"  # the user's wins
    assert env[ACTIVE_VARIABLE] == JE
    assert preload_environment(plan, env) is None  # the re-executed process goes on
    # a loader that refused the library leaves LD_PRELOAD without it: the marker stops a loop
    assert preload_environment(plan, {ACTIVE_VARIABLE: JE}) is None
    assert preload_environment(AllocatorPlan("system"), {}) is None


def test_active_allocator_reads_the_mapped_libraries(tmp_path: Path) -> None:
    maps = tmp_path / "maps"
    maps.write_text("7f00 r-xp 00000000 08:01 1 /usr/lib/x86_64-linux-gnu/libjemalloc.so.2\n")
    assert active_allocator(maps) == "jemalloc"
    maps.write_text("7f00 r-xp 00000000 08:01 1 /usr/lib/x86_64-linux-gnu/libc.so.6\n")
    assert active_allocator(maps).startswith("system")


@pytest.mark.skipif(find_jemalloc() is None, reason="libjemalloc2 is not installed")
@pytest.mark.parametrize("launcher", [
    "none", pytest.param("mpirun", marks=pytest.mark.multirank),
    pytest.param("horovodrun-gloo", marks=pytest.mark.multirank)])
def test_command_runs_on_jemalloc(tmp_path: Path, launcher: str) -> None:
    out = tmp_path / "info.json"
    proc = run_ranks([DEEPCAM, "info", "--output", str(out)], launcher=launcher)
    assert proc.returncode == 0, proc.stderr
    ranks = json.loads(out.read_text())["ranks"]
    assert [r["allocator"] for r in ranks] == ["jemalloc"] * len(ranks)
    assert len({r["pid"] for r in ranks}) == len(ranks)


def test_system_choice_and_bad_choice_from_the_command_line(tmp_path: Path) -> None:
    out = tmp_path / "info.json"
    proc = run_ranks([DEEPCAM, "info", "--output", str(out)], launcher="none",
                     env={"DEEPCAM_ALLOCATOR": "system"})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())["ranks"][0]["allocator"].startswith("system")
    proc = run_ranks([DEEPCAM, "info"], launcher="none", env={"DEEPCAM_ALLOCATOR": "fast"})
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "deepcam-hvd: error: DEEPCAM_ALLOCATOR='fast' is not one of auto, jemalloc, system or "
        "the path of a malloc library"]

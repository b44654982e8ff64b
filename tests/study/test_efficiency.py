"""`study run`'s efficiencies: per series, per core, against a named baseline (issue 14)."""

from __future__ import annotations

import csv
import io

import pytest

from deepcam_hvd.study.outputs import study_csv
from deepcam_hvd.study.runner import StudyOptions, efficiencies, plan


def rows_of_issue_14() -> list[dict[str, object]]:
    """`study run --kind layout,strong` as issue 14 measured it (samples/s)."""
    opts = StudyOptions(out=None, kinds=("layout", "strong"))  # type: ignore[arg-type]
    rates = {"r1xt1-lb4": 16.0, "r1xt2-lb4": 21.7, "r2xt1-lb2": 16.2}
    return [{"name": c.name, "series": list(c.series), "ranks": c.ranks,
             "threads_per_rank": c.threads, "samples_per_s": rates[c.name]} for c in plan(opts)]


def test_each_series_against_its_own_baseline() -> None:
    rows = rows_of_issue_14()
    efficiencies(rows)
    one, layout_best, two = rows
    assert two["efficiency"] == {"layout": pytest.approx(16.2 / 21.7),
                                 "strong": pytest.approx(16.2 / 32.0)}
    assert two["efficiency_baseline"] == {"layout": "r1xt2-lb4", "strong": "r1xt1-lb4"}
    assert one["efficiency"] == {"strong": 1.0}
    assert layout_best["efficiency"] == {"layout": 1.0}


def test_csv_names_the_baselines() -> None:
    rows = rows_of_issue_14()
    efficiencies(rows)
    table = list(csv.DictReader(io.StringIO(study_csv({"configs": rows}))))
    assert table[2]["efficiency"] == "layout=0.747 strong=0.506"
    assert table[2]["efficiency_baseline"] == "layout=r1xt2-lb4 strong=r1xt1-lb4"


def test_configs_without_a_run_get_no_efficiency() -> None:
    rows = rows_of_issue_14()
    for r in rows:
        r["samples_per_s"] = None
    efficiencies(rows)
    assert all("efficiency" not in r for r in rows)

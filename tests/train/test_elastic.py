"""What an elastic launch must be before training starts (train/elastic.py)."""

from __future__ import annotations

import pytest

from deepcam_hvd.errors import ConfigError
from deepcam_hvd.launchers import LaunchInfo
from deepcam_hvd.train.elastic import check_elastic_launch

ELASTIC = LaunchInfo("horovodrun-gloo", 0, 2, 0, 2, "gloo")


def test_elastic_gloo_launch_is_accepted() -> None:
    check_elastic_launch(ELASTIC, "auto", {"HOROVOD_ELASTIC": "1"})


@pytest.mark.parametrize(("launch", "backend", "env", "names"), [
    (ELASTIC, "torch", {"HOROVOD_ELASTIC": "1"}, "--backend torch"),
    (LaunchInfo("mpirun", 0, 2, 0, 2, "mpi"), "auto", {}, "this launch: mpirun"),
    (ELASTIC, "auto", {}, "--min-np/--max-np"),
    # measured: Horovod 0.28.1 segfaults on the reset after a lost worker with it set
    (ELASTIC, "horovod", {"HOROVOD_ELASTIC": "1", "HOROVOD_FUSION_THRESHOLD": "134217728"},
     "unset HOROVOD_FUSION_THRESHOLD"),
])
def test_refusals_name_the_setting(launch: LaunchInfo, backend: str, env: dict[str, str],
                                   names: str) -> None:
    with pytest.raises(ConfigError, match=names) as err:
        check_elastic_launch(launch, backend, env)
    assert "\n" not in str(err.value)

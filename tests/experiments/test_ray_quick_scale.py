"""``genuine-table1 --quick`` through a local Ray instance (2 CPUs): exactly the numbers of the
in-process run with one thread per training. Minutes on two cores: marked slow."""

import pytest

from invreg.experiments.runner import run

pytest.importorskip("ray")


@pytest.mark.slow
def test_quick_table1_on_ray_equals_the_in_process_run(tmp_path, one_thread, local_ray):
    serial = run("genuine-table1", scale="quick", out=tmp_path / "serial",
                 cache=tmp_path / "serial-models")
    parallel = run("genuine-table1", scale="quick", out=tmp_path / "ray",
                   cache=tmp_path / "ray-models", jobs=2)
    assert parallel.per_seed == serial.per_seed
    assert parallel.tables["invariance_weights"].rows == serial.tables["invariance_weights"].rows
    assert [r["nu"] for r in parallel.rows] == [r["nu"] for r in serial.rows]

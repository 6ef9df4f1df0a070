"""Trainings on a Ray cluster of two nodes on this machine (``ray.cluster_utils.Cluster``) land
on both nodes, with the numbers of the in-process run."""

import os

import pytest

from invreg.experiments import genuine, runner
from invreg.experiments.core import Settings, get_scale
from invreg.experiments.executor import RayExecutor

ray = pytest.importorskip("ray")


@pytest.fixture
def two_nodes():
    from ray.cluster_utils import Cluster

    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    small = dict(num_cpus=1, object_store_memory=100 * 2**20)
    cluster = Cluster(initialize_head=True,
                      head_node_args=dict(small, include_dashboard=False))
    cluster.add_node(**small)
    cluster.wait_for_nodes()
    yield cluster
    ray.shutdown()
    cluster.shutdown()


@pytest.mark.slow  # two Ray nodes start on one machine: minutes on 2 busy cores (make test-slow)
def test_trainings_land_on_both_nodes_with_the_same_results(tmp_path, one_thread, two_nodes,
                                                            monkeypatch):
    import invreg.experiments.core as core

    scale = get_scale("genuine-table1", "smoke")
    serial = genuine.table1(Settings(scale, tmp_path / "serial", 1, 1, extra={"groups": ["R4"]},
                                     progress=lambda message: None))
    settings = Settings(scale, tmp_path / "cluster", 1, 1, extra={"groups": ["R4"]},
                        cache=tmp_path / "models", progress=lambda message: None)
    executor = RayExecutor(address=two_nodes.address)
    try:
        nodes = {node["NodeID"][:8] for node in ray.nodes()}
        assert len(nodes) == 2
        graph = runner.run_trainings("genuine-table1", settings, executor,
                                     progress=lambda message: None)
    finally:
        executor.close()
    where = {finished.where.split("(node ")[1].rstrip(")") for finished in graph.done.values()}
    assert where == nodes  # WT, DA and the search's first round start at once, one per CPU
    monkeypatch.setattr(core.pl.Trainer, "fit", lambda *a, **k: pytest.fail("trained here"))
    assert genuine.table1(settings).per_seed == serial.per_seed

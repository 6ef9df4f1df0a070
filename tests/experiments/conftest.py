"""Fixtures of the experiments' tests: a small local Ray instance, shut down afterwards, and
one torch thread (the arithmetic of a Ray task)."""

import logging
import os

import pytest
import torch


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in every Ray task: the same arithmetic in both
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray instance of 2 CPUs for the module's tests (usage statistics off, no
    dashboard); the runner's executor joins it and leaves it running."""
    ray = pytest.importorskip("ray")
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False,
             logging_level=logging.ERROR, object_store_memory=200 * 2**20)
    yield ray
    ray.shutdown()

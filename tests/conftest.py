"""Fixtures shared by the whole suite: one torch thread, a tiny Trainer factory, and one
upstream hyper-network trained once per session. Callback-only fixtures are in
``tests/callbacks/conftest.py``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from tiny import hyper_backbone, hyper_loader
from tiny import tiny_trainer as make_tiny_trainer

from invreg.modules.hyper import HyperUpstreamModule

#: two conftest.py files share one module name; pytest loads both as conftests, and
#: --doctest-modules must not import them again as modules (they hold no doctests)
collect_ignore = ["conftest.py"]


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread() -> Iterator[None]:
    """Tiny tensors: one thread is faster, and immune to a busy machine's oversubscription."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_trainer(tmp_path: Path) -> Callable[..., pl.Trainer]:
    """``tiny_trainer(**options)``: a quiet CPU Trainer writing under the test's ``tmp_path``
    (defaults in :data:`tiny.TINY_TRAINER_DEFAULTS`)."""

    def make(**options) -> pl.Trainer:
        return make_tiny_trainer(tmp_path, **options)

    return make


@pytest.fixture(scope="session")
def upstream_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A HyperUpstreamModule over :func:`tiny.hyper_backbone`, trained 2 epochs on
    :func:`tiny.hyper_loader` (invariance weight 1, lr 1e-2), saved once for the session.

    Read-only: a test that changes or deletes the file works on a copy.
    """
    folder = tmp_path_factory.mktemp("upstream")
    path = folder / "upstream.ckpt"
    pl.seed_everything(0)
    module = HyperUpstreamModule(hyper_backbone(), num_classes=3, invariance_weight=1.0, lr=1e-2)
    trainer = make_tiny_trainer(folder, max_epochs=2)
    trainer.fit(module, hyper_loader(), hyper_loader(shuffle=False))
    trainer.save_checkpoint(path)
    return path

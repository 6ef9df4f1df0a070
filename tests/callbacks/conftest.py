"""Fixtures of the callback tests: their tiny data module, and W&B off unless a test switches
it on itself."""

from __future__ import annotations

import pytest
from callback_helpers import TinyData

#: two conftest.py files share one module name; pytest loads both as conftests, and
#: --doctest-modules must not import them again as modules (they hold no doctests)
collect_ignore = ["conftest.py"]


@pytest.fixture
def data() -> TinyData:
    """The callback tests' tiny data module (``callback_helpers.TinyData``)."""
    return TinyData()


@pytest.fixture(autouse=True)
def _wandb_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    """The callback tests log to W&B only where a test switches it on itself."""
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("WANDB_SILENT", "true")

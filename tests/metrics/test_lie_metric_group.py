"""``LieDerivativeError(group=...)``: the metric takes the run's group (a Group or its name),
gives the numbers and the state names of the generator name, and refuses a finite group."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from invreg.groups import ContinuousRotations, Rotations, Scalings, Translations
from invreg.metrics import LieDerivativeError


def images(batch: int = 5) -> torch.Tensor:
    return torch.randn(batch, 1, 8, 8, generator=torch.Generator().manual_seed(1))


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 6), nn.Tanh(), nn.Linear(6, 3))


@pytest.mark.parametrize(("name", "kwargs"), [
    ("rotation", {"group": "so2"}),
    ("rotation", {"group": ContinuousRotations(45)}),
    ("scale", {"group": Scalings()}),
    ("translate_x", {"group": Translations(), "generator": "translate_x"}),
], ids=lambda v: repr(v)[:30])
def test_the_group_gives_the_value_and_states_of_the_generator_name(name, kwargs):
    x, net = images(), model()
    by_group = LieDerivativeError(fill=-0.2, layer="1", **kwargs)
    by_name = LieDerivativeError(name, fill=-0.2, layer="1")
    assert by_group.generator == name and by_group.group is not None and by_name.group is None
    # the same states: a MetricCollection may share them, and a sync reduces them alike
    assert list(by_group._defaults) == list(by_name._defaults)
    for metric in (by_group, by_name):
        metric.update(net, x[:3])
        metric.update(net, x[3:])
    assert torch.equal(by_group.compute(), by_name.compute()) and by_name.compute() > 0


def test_a_finite_or_ambiguous_group_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match=r"^group: Rotations\(n=8\) has no Lie generator") as info:
        LieDerivativeError(group=Rotations(8))
    assert "Translations" in str(info.value) and "'translate_x'" in str(info.value)
    with pytest.raises(ValueError, match="'translate_x', 'translate_y'"):
        LieDerivativeError(group=Translations())

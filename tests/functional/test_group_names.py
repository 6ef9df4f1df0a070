"""Every public function and class that takes a group also takes its registry name, and gives
the same result with either."""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

import invreg.callbacks
import invreg.evaluation
import invreg.functional
import invreg.metrics
import invreg.testing
from invreg import functional as F
from invreg.groups import Rotations
from invreg.models import MLP

PUBLIC = [invreg.functional, invreg.testing, invreg.evaluation, invreg.metrics, invreg.callbacks]


def _takes_group():
    for module in PUBLIC:
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            try:
                parameters = inspect.signature(obj).parameters
            except (TypeError, ValueError):
                continue
            if "group" in parameters:
                yield f"{module.__name__}.{name}", parameters["group"].annotation


@pytest.mark.parametrize("name, annotation", list(_takes_group()))
def test_every_group_parameter_is_annotated_to_take_a_name(name, annotation):
    assert "str" in str(annotation), f"{name}(group: {annotation}) does not take a group name"


@pytest.fixture(scope="module")
def model_and_input():
    torch.manual_seed(0)
    return MLP((1, 6, 6), 3, hidden_widths=[8]).double().eval(), torch.randn(4, 1, 6, 6).double()


@pytest.mark.parametrize("call", [
    lambda m, x, g: F.orbit_logits(m, x, g),
    lambda m, x, g: F.orbit_forward(m, x, g, layers=["hidden.0"]).features["hidden.0"],
    lambda m, x, g: F.orbit_features(m, x, g, ["hidden.0"]).features["hidden.0"],
    lambda m, x, g: F.geed(m, x, g, "hidden.0"),
    lambda m, x, g: F.geed_terms(F.orbit_features(m, x, g, ["hidden.0"]), "hidden.0", g)[0],
    lambda m, x, g: F.orbit_saliency(m, x, None, g, steps=4),
    lambda m, x, g: F.saliency_invariance(m, x, None, g, steps=4),
], ids=["orbit_logits", "orbit_forward", "orbit_features", "geed", "geed_terms",
        "orbit_saliency", "saliency_invariance"])
def test_a_name_gives_what_the_group_gives(model_and_input, call):
    model, x = model_and_input
    by_name, by_object = call(model, x, "c4"), call(model, x, Rotations(4))
    assert torch.equal(by_name, by_object)


def test_an_unknown_name_is_a_clear_error(model_and_input):
    model, x = model_and_input
    with pytest.raises(ValueError, match="Unknown group name 'c5x'"):
        F.saliency_invariance(model, x, None, "c5x")
    with pytest.raises(TypeError, match="group: expected a name or a Group"):
        F.orbit_logits(model, x, nn.Identity())

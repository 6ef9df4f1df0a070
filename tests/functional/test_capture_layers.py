"""capture_layers records each layer's own output, even when the next layer works in place."""

from __future__ import annotations

import torch
from torch import nn

from invreg.functional import capture_layers
from invreg.metrics import layer_profile
from invreg.models import E2CNN


def test_an_in_place_relu_does_not_change_the_recorded_linear_output():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(inplace=True), nn.Linear(8, 2))
    x = torch.randn(16, 4)
    with capture_layers(model, ["0", "1"]) as captured:
        model(x)
    linear, relu = captured["0"][0], captured["1"][0]
    torch.testing.assert_close(linear, model[0](x), rtol=0, atol=0)
    assert (linear < 0).any() and torch.equal(relu, linear.clamp_min(0))


def test_the_record_keeps_the_graph_for_feature_losses():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(inplace=True))
    with capture_layers(model, ["0"]) as captured:
        model(torch.randn(5, 4))
    captured["0"][0].pow(2).sum().backward()
    assert model[0].weight.grad is not None and model[0].weight.grad.abs().sum() > 0


def test_an_e2cnn_norm_layer_is_measured_before_its_in_place_relu():
    torch.manual_seed(0)
    model = E2CNN((1, 9, 9), num_classes=3, group="c4", channels=(2, 3), kernel_size=3).eval()
    with torch.no_grad(), capture_layers(model, ["blocks.0.norm", "blocks.0.activation"]) as got:
        model(torch.randn(4, 1, 9, 9))
    norm, activation = got["blocks.0.norm"][0].tensor, got["blocks.0.activation"][0].tensor
    assert (norm < 0).any() and torch.equal(activation, norm.clamp_min(0))
    rows = layer_profile(model, [torch.randn(4, 1, 9, 9)], "c4",
                         layers=["blocks.0.norm", "blocks.0.activation"], modes=("invariance",))
    assert rows[0]["D"] != rows[1]["D"]

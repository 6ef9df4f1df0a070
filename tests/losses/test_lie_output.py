"""One forward-mode pass gives both f(x) and the Lie derivative penalty (float64)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from invreg.functional import lie_derivative
from invreg.functional.lie import lie_derivative_with_output
from invreg.losses import LieDerivativeL2
from invreg.models import MLP, SmallCNN

#: the same float64 kernels on the same numbers, summed in another order at most
TOL = 256 * torch.finfo(torch.float64).eps


def models() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {"mlp": MLP((1, 10, 10), 4, hidden_widths=(16, 16)).double(),
            "cnn": SmallCNN((1, 10, 10), 4, channels=(4, 8)).double().eval()}


def images(batch: int = 5) -> torch.Tensor:
    return torch.randn(batch, 1, 10, 10, generator=torch.Generator().manual_seed(0),
                       dtype=torch.float64)


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bool((a - b).abs().max() <= TOL * b.abs().max())


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_output_and_derivative_equal_the_separate_passes(name):
    model, x = models()[name], images()
    output, derivative = lie_derivative_with_output(model, x, "rotation")
    assert close(output, model(x))
    assert close(derivative, lie_derivative(model, x, "rotation"))


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_one_pass_training_loss_has_the_two_pass_gradient(name):
    model, x = models()[name], images()
    y = torch.arange(5) % 4
    loss = LieDerivativeL2("rotation")
    logits, penalty = loss.output_and_loss(model, x)
    one_pass = torch.autograd.grad(F.cross_entropy(logits, y) + 0.1 * penalty,
                                   list(model.parameters()))
    two_passes = torch.autograd.grad(F.cross_entropy(model(x), y) + 0.1 * loss(model, x),
                                     list(model.parameters()))
    assert penalty > 0
    for a, b in zip(one_pass, two_passes, strict=True):
        assert close(a, b)


def test_layer_derivative_with_the_model_output():
    model, x = models()["mlp"], images()
    output, derivative = lie_derivative_with_output(model, x, "scale", layer="hidden")
    assert close(output, model(x))
    assert derivative.shape == (5, 16)
    assert close(derivative, lie_derivative(model, x, "scale", layer="hidden"))
    _, penalty = LieDerivativeL2("scale", layer="hidden").output_and_loss(model, x)
    assert close(penalty, derivative.pow(2).sum(-1).mean())


def test_bad_inputs_name_the_argument():
    model = models()["mlp"]
    with pytest.raises(ValueError, match="x: empty batch"):
        LieDerivativeL2("rotation").output_and_loss(model, images(0))
    with pytest.raises(ValueError, match="x: expected an image batch"):
        LieDerivativeL2("rotation").output_and_loss(model, torch.randn(3, 100))

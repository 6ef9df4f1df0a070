"""LieDerivativeError never turns NaN silently and never changes the model it measures.

Before: one NaN pixel made the metric NaN with no error (the orbit metrics refuse NaN), and a
BatchNorm model in training mode had its running statistics updated by each measurement.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from invreg.functional import lie_derivative_error
from invreg.losses import LieDerivativeL2
from invreg.metrics import LieDerivativeError


def images(batch: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 1, 6, 6, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64)


def linear_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(36, 3)).double()


class LogOfInput(nn.Module):
    """NaN outputs on negative pixels, from finite inputs (a model that breaks)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, :3].log()


def bn_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(),
                         nn.Linear(32, 3)).double()


def test_nan_pixel_is_refused_naming_x():
    x = images()
    x[1, 0, 2, 3] = float("nan")
    metric = LieDerivativeError("rotation")
    with pytest.raises(ValueError, match=r"^x: contains NaN or Inf"):
        metric.update(linear_model(), x)
    x[1, 0, 2, 3] = float("inf")
    with pytest.raises(ValueError, match=r"^x: contains NaN or Inf"):
        lie_derivative_error(linear_model(), x, "translate_x")
    # nothing was added: the metric still has no sample
    with pytest.warns(UserWarning, match="no samples"):
        assert torch.isnan(metric.compute())


def test_non_finite_model_output_is_refused_naming_the_model():
    metric = LieDerivativeError("rotation")
    with pytest.raises(ValueError, match=r"^model: its output or its Lie derivative is NaN"):
        metric.update(LogOfInput(), images())
    # a layer is named when it is the one differentiated
    model = nn.Sequential(LogOfInput(), nn.Linear(3, 2).double())
    with pytest.raises(ValueError, match=r"^layer '0': its output or its Lie derivative"):
        LieDerivativeError("rotation", layer="0").update(model, images())


def test_the_training_loss_still_propagates_non_finite_values():
    # a gradient scaler must see the overflow: the loss returns NaN, it does not raise
    x = images()
    x[0, 0, 0, 0] = float("nan")
    assert torch.isnan(LieDerivativeL2("rotation")(linear_model(), x))


def running_stats(model: nn.Module) -> list[torch.Tensor]:
    return [b.detach().clone() for b in model.buffers()]


def test_measuring_a_train_mode_batchnorm_model_leaves_it_unchanged():
    model, x = bn_model().train(), images(8)
    model(images(8, seed=1))  # non-trivial running statistics
    before = running_stats(model)
    metric = LieDerivativeError("rotation")
    metric.update(model, x)
    after = running_stats(model)
    assert all(torch.equal(b, a) for b, a in zip(before, after, strict=True))
    assert model.training and all(m.training for m in model.modules())  # modes restored
    # measured in eval mode: the value of the model in eval()
    expected = lie_derivative_error(model.eval(), x, "rotation")
    torch.testing.assert_close(metric.compute().double(), expected,
                               rtol=16 * torch.finfo(torch.float32).eps, atol=0.0)


def test_eval_mode_false_measures_the_batch_statistics_and_restores_the_buffers():
    model, x = bn_model().train(), images(8)
    model(images(8, seed=1))
    before = running_stats(model)
    metric = LieDerivativeError("rotation", eval_mode=False)
    metric.update(model, x)
    assert all(torch.equal(b, a) for b, a in zip(before, running_stats(model), strict=True))
    assert model.training
    # the train-mode value (batch statistics), which differs from the eval-mode one
    train_value = lie_derivative_error(model, x, "rotation")
    torch.testing.assert_close(metric.compute().double(), train_value.detach(),
                               rtol=16 * torch.finfo(torch.float32).eps, atol=0.0)
    assert not torch.isclose(train_value, lie_derivative_error(model.eval(), x, "rotation"))
    with pytest.raises(TypeError, match="eval_mode"):
        LieDerivativeError("rotation", eval_mode="no")


def test_the_training_loss_uses_and_updates_the_batch_statistics():
    # the loss's pass is the training forward: train-mode batch norm behaves as in training
    model, x = bn_model().train(), images(8)
    before = running_stats(model)
    LieDerivativeL2("rotation")(model, x)
    assert not torch.equal(before[0], model[1].running_mean)

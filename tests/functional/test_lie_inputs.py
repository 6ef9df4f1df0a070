"""lie_derivative on an empty batch and on a model that returns a tuple: clear errors.

Before: both crashed inside torch (``cannot reshape tensor of 0 elements`` and
``_unpack_dual(): argument 'dual' must be Tensor, not tuple``).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from invreg.functional import lie_derivative, lie_derivative_error
from invreg.functional.lie import lie_derivative_with_output
from invreg.losses import LieDerivativeL2
from invreg.metrics import LieDerivativeError


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(9, 4), nn.Tanh(), nn.Linear(4, 2))


class LogitsAndFeatures(nn.Module):
    """Returns ``(logits, features)``, as many research backbones do."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(9, 4), nn.Tanh())
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(x)
        return self.head(features), features


def test_empty_batch_gives_an_empty_derivative():
    empty = torch.zeros(0, 1, 3, 3)
    for generator in ("rotation", "scale"):
        assert lie_derivative(mlp(), empty, generator).shape == (0, 2)
    output, derivative = lie_derivative_with_output(mlp(), empty, "rotation")
    assert output.shape == (0, 2) and derivative.shape == (0, 2)
    assert lie_derivative(mlp(), empty, "rotation", layer="1").shape == (0, 4)
    assert lie_derivative_error(mlp(), empty, "rotation", reduction="none").shape == (0,)
    assert lie_derivative_error(mlp(), empty, "rotation", reduction="sum") == 0
    with pytest.raises(ValueError, match="x: empty batch"):
        lie_derivative_error(mlp(), empty, "rotation")  # the mean over 0 samples


def test_empty_batch_with_a_model_that_cannot_run_on_it_is_a_value_error():
    def flat(x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1)[:, :2]

    with pytest.raises(ValueError, match=r"x: empty batch \(0 samples\).*cannot run on 0"):
        lie_derivative(flat, torch.zeros(0, 1, 3, 3), "rotation")


def test_a_model_returning_a_tuple_is_a_type_error():
    x = torch.randn(3, 1, 3, 3)
    model = LogitsAndFeatures()
    for call in (
        lambda: lie_derivative(model, x, "rotation"),
        lambda: lie_derivative_with_output(model, x, "rotation"),
        lambda: LieDerivativeL2("rotation")(model, x),
        lambda: LieDerivativeError("rotation").update(model, x),
    ):
        with pytest.raises(TypeError, match=r"model: must return a tensor of logits") as info:
            call()
        assert "LogitsAndFeatures returned tuple" in str(info.value)
        assert "lambda x: model(x)[0]" in str(info.value)
    # the two ways out the message names
    expected = lie_derivative(nn.Sequential(model.body, model.head), x, "rotation")
    torch.testing.assert_close(lie_derivative(lambda v: model(v)[0], x, "rotation"), expected)
    torch.testing.assert_close(
        lie_derivative(model, x, "rotation", layer="body"),
        lie_derivative(model.body, x, "rotation"),
    )

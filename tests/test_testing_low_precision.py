"""The invariance assertions refuse float16 / bfloat16 outputs with a derived tolerance.

Before: ``16·eps·sqrt(D)·max|f|`` in bfloat16 (eps = 2⁻⁷) is ``max|f|`` itself for D = 64,
so a plain MLP whose orbit error is O(1) in float32 passed once cast to bfloat16.
"""

from __future__ import annotations

import pytest
import torch

from invreg import models, testing
from invreg.models import MLP
from invreg.testing import parametrize_dtypes

LOW = [torch.bfloat16, torch.float16]


def plain_mlp() -> MLP:
    torch.manual_seed(0)
    return MLP((1, 8, 8), 3, hidden_widths=(16,))


def test_the_mlp_is_not_invariant_in_float32():
    with pytest.raises(AssertionError, match="not invariant"):
        testing.assert_invariant(plain_mlp(), "c4")


@parametrize_dtypes(dtypes=LOW)
def test_low_precision_is_refused_with_the_fix(dtype):
    model = plain_mlp().to(dtype)
    x = testing.random_input(model, "c4")
    calls = [
        lambda: testing.assert_invariant(model, "c4"),
        lambda: testing.assert_invariant(model, "c4", x, atol=1e-3),  # rtol still derived
        lambda: testing.assert_equivariant(torch.nn.Conv2d(1, 2, 3, padding=1).to(dtype), "c4",
                                           x),
        lambda: testing.default_tolerance(torch.ones(2, 3, dtype=dtype), 64, dtype),
    ]
    for call in calls:
        with pytest.raises(TypeError) as info:
            call()
        message = str(info.value)
        assert str(dtype) in message and "float32 or float64" in message
        assert "model.double()" in message and "atol and rtol" in message


@parametrize_dtypes(dtypes=LOW)
def test_explicit_tolerances_are_checked_in_low_precision(dtype):
    model = plain_mlp().to(dtype)
    with pytest.raises(AssertionError, match="not invariant"):
        testing.assert_invariant(model, "c4", atol=0.01, rtol=0.0)
    # an invariant model passes at a tolerance that fits its precision
    tied = models.TiedMLP((1, 8, 8), 3, group="c4", hidden_widths=(16,)).to(dtype)
    testing.assert_invariant(tied, "c4", atol=0.0, rtol=0.0)

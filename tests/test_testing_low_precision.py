"""float16 / bfloat16 models: checked through the float64 recompute, refused without it.

Before: ``16·eps·sqrt(D)·max|f|`` in bfloat16 (eps = 2⁻⁷) is ``max|f|`` itself for D = 64,
so a plain MLP whose orbit error is O(1) in float32 passed once cast to bfloat16. Now the
weights are compared in float64 (tolerance ``2·eps(dtype)·max|f|`` for their storage), and the
bound computed in the low-precision dtype itself is refused.
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


def tied_mlp() -> models.TiedMLP:
    torch.manual_seed(0)
    return models.TiedMLP((1, 8, 8), 3, group="c4", hidden_widths=(16,))


def test_the_mlp_is_not_invariant_in_float32():
    with pytest.raises(AssertionError, match="not invariant"):
        testing.assert_invariant(plain_mlp(), "c4")


@parametrize_dtypes(dtypes=LOW)
def test_low_precision_is_checked_through_the_float64_recompute(dtype):
    with pytest.raises(AssertionError, match=f"path: float64 recompute.*dtype {dtype}"):
        testing.assert_invariant(plain_mlp().to(dtype), "c4")
    report = testing.assert_invariant(tied_mlp().to(dtype), "c4")
    assert report.path == testing.RECOMPUTE_PATH and report.dtype == dtype
    conv = torch.nn.Conv2d(1, 2, 3, padding=1).to(dtype)
    x = testing.random_input(plain_mlp().to(dtype), "c4")
    with pytest.raises(AssertionError, match="not equivariant.*float64 recompute"):
        testing.assert_equivariant(conv, "c4", x)


@parametrize_dtypes(dtypes=LOW)
def test_low_precision_in_its_own_dtype_is_refused_with_the_fix(dtype):
    model = plain_mlp().to(dtype)
    x = testing.random_input(model, "c4")
    calls = [
        lambda: testing.assert_invariant(model, "c4", recompute=False),
        lambda: testing.assert_invariant(model, "c4", x, atol=1e-3, recompute=False),
        lambda: testing.assert_equivariant(
            torch.nn.Conv2d(1, 2, 3, padding=1).to(dtype), "c4", x, recompute=False
        ),
        lambda: testing.default_tolerance(torch.ones(2, 3, dtype=dtype), 64, dtype),
    ]
    for call in calls:
        with pytest.raises(TypeError) as info:
            call()
        message = str(info.value)
        assert str(dtype) in message and "float32 or float64" in message
        assert "model.double()" in message and "atol and rtol" in message
        assert "recompute=True" in message


@parametrize_dtypes(dtypes=LOW)
def test_explicit_tolerances_are_checked_in_low_precision(dtype):
    model = plain_mlp().to(dtype)
    with pytest.raises(AssertionError, match="not invariant"):
        testing.assert_invariant(model, "c4", atol=0.01, rtol=0.0, recompute=False)
    # an invariant model passes at a tolerance that fits its precision
    testing.assert_invariant(tied_mlp().to(dtype), "c4", atol=0.0, rtol=0.0, recompute=False)

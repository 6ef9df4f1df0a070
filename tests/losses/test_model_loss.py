"""A loss of the model itself (``ModelInvarianceLoss``): a user's own term trains through
``InvarianceModule`` like the Lie derivative, by its base class alone."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from invreg.losses import (
    FeatureL2,
    InvarianceLoss,
    LieDerivativeL2,
    LogitL2,
    ModelInvarianceLoss,
)
from invreg.models import MLP
from invreg.modules import InvarianceModule

EPS = torch.finfo(torch.float32).eps


class InputGradientL2(ModelInvarianceLoss):
    """A term of the model and the inputs: ``mean ‖∂ sum f(x) / ∂x‖²`` (no transformed copies)."""

    def forward(self, model, x=None, fill=0.0):
        x = x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(model(x).sum(), x, create_graph=True)
        return grad.pow(2).flatten(1).sum(1).mean()


def rows_forwarded(module: InvarianceModule, stage: str, batch) -> list[int]:
    sizes: list[int] = []
    handle = module.backbone.register_forward_hook(
        lambda _module, inputs, _output: sizes.append(inputs[0].shape[0]))
    try:
        with torch.set_grad_enabled(True):
            module.shared_step(batch, stage)
    finally:
        handle.remove()
    return sizes


def test_a_model_loss_of_ones_own_trains_without_copies():
    pl.seed_everything(0)
    module = InvarianceModule(MLP((1, 4, 4), 3, hidden_widths=(8,)), group="c4",
                              invariance_loss=InputGradientL2(), invariance_weight=0.5,
                              augment=False)
    x, y = torch.randn(6, 1, 4, 4), torch.arange(6) % 3
    # training: the logits for the task loss, then the term's own pass; no copies
    assert rows_forwarded(module, "train", (x, y)) == [6, 6]
    # validation: the orbit for the metrics (finite group: all of it), then the term
    assert rows_forwarded(module, "val", (x, y)) == [6 * 4, 6]
    loss = module.shared_step((x, y), "train")
    expected = (nn.functional.cross_entropy(module.backbone(x), y)
                + 0.5 * InputGradientL2()(module.backbone, x))
    assert torch.allclose(loss, expected, rtol=8 * EPS, atol=0.0)


def test_the_default_output_and_loss_is_a_forward_then_the_term():
    model = MLP((1, 4, 4), 3, hidden_widths=(8,))
    x = torch.randn(5, 1, 4, 4)
    logits, term = InputGradientL2().output_and_loss(model, x)
    assert torch.equal(logits, model(x)) and torch.equal(term, InputGradientL2()(model, x))


def test_needs_model_follows_the_base_class():
    assert LieDerivativeL2("rotation").needs_model and InputGradientL2().needs_model
    assert not LogitL2().needs_model and not FeatureL2("hidden.0").needs_model
    with pytest.raises(TypeError, match=r"Mine.needs_model: a loss that differentiates the "
                                        r"model derives from invreg.losses.ModelInvarianceLoss"):
        type("Mine", (InvarianceLoss,), {"needs_model": True})
    type("Plain", (InvarianceLoss,), {"needs_model": False})  # saying no changes nothing


def test_a_model_loss_must_say_how_it_is_computed():
    with pytest.raises(NotImplementedError, match=r"ModelInvarianceLoss.forward\(model, x, "
                                                  r"fill\)"):
        ModelInvarianceLoss()(nn.Identity(), torch.zeros(1))

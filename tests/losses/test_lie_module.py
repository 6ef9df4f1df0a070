"""InvarianceModule with the Lie derivative loss forwards only what the loss and metrics use."""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from invreg.groups import ContinuousRotations
from invreg.losses import LieDerivativeL2
from invreg.models import MLP
from invreg.modules import InvarianceModule


def rows_forwarded(module: InvarianceModule, stage: str, batch) -> list[int]:
    """The batch size of every backbone forward during one ``shared_step``."""
    sizes: list[int] = []
    handle = module.backbone.register_forward_hook(
        lambda _module, inputs, _output: sizes.append(inputs[0].shape[0])
    )
    try:
        module.shared_step(batch, stage)
    finally:
        handle.remove()
    return sizes


def lie_module(orbit_mode: str = "sample") -> InvarianceModule:
    pl.seed_everything(0)
    return InvarianceModule(MLP((1, 8, 8), 3, hidden_widths=(8,)), group=ContinuousRotations(),
                            invariance_loss=LieDerivativeL2("rotation"), orbit_mode=orbit_mode,
                            orbit_size=5)


def test_training_step_forwards_no_transformed_copies():
    # the Lie loss differentiates the model at x: one forward-mode pass of x gives both the
    # logits of the task loss and the derivative; nothing for the orbit copies
    x, y = torch.randn(6, 1, 8, 8), torch.arange(6) % 3
    for orbit_mode in ("sample", "full"):
        module = lie_module(orbit_mode)
        assert rows_forwarded(module, "train", (x, y)) == [6]


def test_an_overridden_forward_with_features_still_gives_the_logits():
    # a subclass that decides the logits itself keeps its say: a plain forward through it,
    # then the Lie loss's own pass
    class Scaled(InvarianceModule):
        def forward_with_features(self, x):
            logits = 2.0 * self.backbone(x)
            return logits, logits

    pl.seed_everything(0)
    module = Scaled(MLP((1, 8, 8), 3, hidden_widths=(8,)), group=ContinuousRotations(),
                    invariance_loss=LieDerivativeL2("rotation"), augment=False)
    x, y = torch.randn(6, 1, 8, 8), torch.arange(6) % 3
    assert rows_forwarded(module, "train", (x, y)) == [6, 6]
    loss = module.shared_step((x, y), "train")
    expected = (torch.nn.functional.cross_entropy(2.0 * module.backbone(x), y)
                + module.invariance_weight * module.invariance_loss(module.backbone, x))
    assert torch.allclose(loss, expected, rtol=8 * torch.finfo(torch.float32).eps, atol=0.0)


def test_validation_still_forwards_the_orbit_for_its_metrics():
    x, y = torch.randn(6, 1, 8, 8), torch.arange(6) % 3
    module = lie_module("full")
    with torch.no_grad():
        sizes = rows_forwarded(module, "val", (x, y))
    assert sizes[0] == 6 * 5  # x and its 4 copies: the orbit metrics read them
    assert module.orbit_metrics["val_"]["accuracy"].compute().isfinite()


def test_training_step_loss_is_task_loss_plus_weighted_lie_error():
    x, y = torch.randn(6, 1, 8, 8), torch.arange(6) % 3
    module = lie_module()
    module.augment = False
    loss = module.shared_step((x, y), "train")
    task = torch.nn.functional.cross_entropy(module.backbone(x), y)
    lie = module.invariance_loss(module.backbone, x)
    expected = task + module.invariance_weight * lie
    # the same float32 operations in the same order: equal up to a few ulps of the loss
    assert torch.allclose(loss, expected, rtol=8 * torch.finfo(torch.float32).eps, atol=0.0)

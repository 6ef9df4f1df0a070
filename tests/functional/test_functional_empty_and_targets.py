"""Empty batches and bad targets at the functional boundary."""

import pytest
import torch
from torch import nn

from invreg.functional import (
    geed,
    logit_invariance,
    orbit_accuracy,
    orbit_consistency,
    orbit_features,
    orbit_logits,
    orbit_saliency,
    predictive_kl_invariance,
    saliency,
    saliency_invariance,
)
from invreg.groups import ContinuousRotations, Rotations
from invreg.models import E2CNN, MLP

C4 = Rotations(4)


class Counting(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net, self.batches = net, []

    def forward(self, x):
        self.batches.append(x.shape[0])
        return self.net(x)


def test_orbit_logits_of_an_empty_batch():
    model = Counting(MLP((1, 6, 6), 5, hidden_widths=(4,)))
    empty = torch.zeros(0, 1, 6, 6)
    assert orbit_logits(model, empty, C4).shape == (0, 4, 5)
    assert orbit_logits(model, empty, C4, chunk_size=2).shape == (0, 4, 5)
    assert model.batches == [0, 0]  # one empty forward each, to learn C
    so2 = ContinuousRotations()
    assert orbit_logits(model, empty, so2, num_samples=3).shape == (0, 3, 5)


def test_a_model_that_cannot_run_on_nothing_gets_a_clear_error():
    model = E2CNN((1, 9, 9), 3, group="c4", channels=(2,)).eval()
    with pytest.raises(ValueError, match="empty batch.*E2CNN cannot run on 0 inputs"):
        orbit_logits(model, torch.zeros(0, 1, 9, 9), C4)


def test_output_metrics_of_an_empty_orbit():
    orbit = torch.zeros(0, 4, 5)
    for fn in (logit_invariance, predictive_kl_invariance):
        assert fn(orbit, reduction="none").shape == (0, 3)
        assert fn(orbit, reduction="sum").item() == 0.0
        with pytest.raises(ValueError, match="empty batch"):
            fn(orbit)
    assert logit_invariance(orbit, normalized=True, reduction="none").shape == (0, 3)
    target = torch.zeros(0, dtype=torch.long)
    assert orbit_consistency(orbit, reduction="none").shape == (0,)
    assert orbit_accuracy(orbit, target, reduction="sum").item() == 0.0
    with pytest.raises(ValueError, match="empty batch"):
        orbit_consistency(orbit)
    with pytest.raises(ValueError, match="empty batch"):
        orbit_accuracy(orbit, target)


def test_saliency_of_an_empty_batch_needs_no_forward():
    model = Counting(MLP((1, 6, 6), 3, hidden_widths=(4,)))
    empty = torch.zeros(0, 1, 6, 6)
    assert orbit_saliency(model, empty, None, C4).shape == (0, 4, 1, 6, 6)
    assert saliency(model, empty, None).shape == (0, 1, 6, 6)
    si = saliency_invariance(model, empty, torch.zeros(0, dtype=torch.long), C4, reduction="none")
    assert si.shape == (0, 3)
    with pytest.raises(ValueError, match="empty batch"):
        saliency_invariance(model, empty, None, C4)
    assert model.batches == []


def test_geed_of_an_empty_batch():
    model = MLP((1, 6, 6), 3, hidden_widths=(4,))
    empty = torch.zeros(0, 1, 6, 6)
    orbit = orbit_features(model, empty, C4, ["hidden.0"])
    assert orbit.features["hidden.0"].shape == (0, 4, 4) and orbit.logits.shape == (0, 4, 3)
    per_pair = geed(model, empty, C4, "hidden.0", normalize=False, reduction="none")
    assert per_pair.shape == (0, 3)
    with pytest.raises(ValueError, match="empty batch"):
        geed(model, empty, C4, "hidden.0", normalize=False)
    with pytest.raises(ValueError, match="at least 2 samples"):
        geed(model, empty, C4, "hidden.0")


@pytest.mark.parametrize(
    ("target", "error", "match"),
    [
        (torch.tensor([0, 5]), ValueError, r"target: class indices must lie in \[0, 5\).*\[0, 5\]"),
        (torch.tensor([-1, 2]), ValueError, r"target: class indices must lie in \[0, 5\)"),
        (torch.tensor([0.0, 1.0]), TypeError, r"target: expected integer.*float32"),
        (torch.tensor([True, False]), TypeError, r"target: expected integer.*bool"),
        (torch.tensor([[0, 1]]), ValueError, r"target: expected class indices of shape \(2,\)"),
        ([0, 1], TypeError, "target: expected a Tensor"),
    ],
)
def test_orbit_accuracy_rejects_bad_targets(target, error, match):
    orbit = torch.randn(2, 3, 5)
    with pytest.raises(error, match=match):
        orbit_accuracy(orbit, target)


def test_saliency_rejects_bad_targets():
    model = MLP((1, 4, 4), 3, hidden_widths=(4,))
    x = torch.randn(2, 1, 4, 4)
    with pytest.raises(ValueError, match=r"target: class indices must lie in \[0, 3\)"):
        saliency_invariance(model, x, torch.tensor([0, -1]), C4, "gradient")
    with pytest.raises(TypeError, match=r"target: expected integer.*float32"):
        saliency_invariance(model, x, torch.tensor([0.0, 1.0]), C4)
    with pytest.raises(TypeError, match=r"target: expected integer.*float32"):
        saliency_invariance(model, x[:0], torch.zeros(0), C4)


def test_integer_orbits_are_rejected():
    with pytest.raises(TypeError, match="orbit: expected floating-point"):
        logit_invariance(torch.zeros(2, 3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="C >= 1"):
        orbit_consistency(torch.zeros(2, 3, 0))

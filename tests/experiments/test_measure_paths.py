"""The experiments measure through invreg.metrics with the numbers of the formulas they used
to call by hand: spectral-decay's accuracy and LI, layerwise's drifted inputs."""

from types import SimpleNamespace

import torch
from torch.utils.data import TensorDataset

from invreg import functional as IF
from invreg.data.drift import blend, drifted, get_drift_source, match_statistics
from invreg.experiments import spectral
from invreg.models import MLP
from invreg.modules import InvarianceModule


def test_spectral_accuracy_and_li_are_those_of_one_orbit_forward():
    torch.manual_seed(0)
    x, y = torch.randn(300, 1, 6, 6), torch.randint(0, 4, (300,))
    model = InvarianceModule(MLP((1, 6, 6), 4, hidden_widths=(16,)), group="c4").eval()
    data = SimpleNamespace(test_dataset=TensorDataset(x, y), std=0.5, setup=lambda stage: None)
    settings = SimpleNamespace(scale=SimpleNamespace(eval_samples=8))
    row = spectral.measure(model, data, "c4", settings)
    with torch.no_grad():
        orbit = IF.orbit_logits(model, x, "c4")
    assert row["acc"] == 100 * IF.accuracy(orbit, y).item()  # bit for bit
    assert row["LI"] == IF.logit_invariance(orbit).item() > 0
    assert model.training is False


def test_layerwise_drifted_inputs_are_the_blend_of_matched_samples():
    x = torch.randn(12, 1, 16, 16)
    expected = blend(x, match_statistics(get_drift_source("natural_images").sample(
        12, x.shape[1:], torch.Generator().manual_seed(3)), x), 0.5)
    assert torch.equal(drifted(x, "natural_images", 0.5, torch.Generator().manual_seed(3)),
                       expected)
    assert not torch.equal(expected, x)

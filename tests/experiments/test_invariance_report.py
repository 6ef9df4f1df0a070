"""invariance_report: SI from the data's background, and from a grey image as SI_grey."""

import torch

from invreg import functional as IF
from invreg.experiments.core import invariance_report
from invreg.groups import Rotations
from invreg.models import MLP


def test_si_uses_the_background_and_si_grey_the_zero_baseline():
    torch.manual_seed(0)
    model = MLP([1, 8, 8], 4, hidden_widths=[16]).eval()
    x, y = torch.randn(6, 1, 8, 8), torch.randint(0, 4, (6,))
    group, background = Rotations(4), -0.8
    report = invariance_report(model, x, y, group, saliency_samples=6, ig_steps=4,
                               background=background)

    def si(baseline):
        return IF.saliency_invariance(model, x, y, group, "integrated_gradients", steps=4,
                                      baseline=baseline).item()

    # the same function on the same inputs: equal up to float32 summation order
    assert abs(report["SI"] - si(background)) <= 1e-6
    assert abs(report["SI_grey"] - si(0.0)) <= 1e-6
    assert abs(report["SI"] - report["SI_grey"]) > 1e-4  # the baseline matters here
    same = invariance_report(model, x, y, group, saliency_samples=6, ig_steps=4, background=0.0)
    assert same["SI"] == same["SI_grey"]

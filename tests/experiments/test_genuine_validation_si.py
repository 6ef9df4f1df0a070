"""genuine's validation SI (the ν search's measure) goes through SaliencyInvarianceSimilarity
and gives exactly the value of the functional call it replaced."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from invreg import functional as IF
from invreg.experiments.genuine import validation_si
from invreg.groups import get_group


class ValidationData:
    """What validation_si reads of a data module: setup, the validation tensors, background."""

    def __init__(self, x, y, background):
        self.val_dataset, self.background, self.stages = TensorDataset(x, y), background, []

    def setup(self, stage):
        self.stages.append(stage)


@pytest.mark.parametrize(("group", "samples"), [("c4", 5), ("t3", 9)])
def test_validation_si_equals_the_replaced_functional_call(group, samples):
    torch.manual_seed(0)
    x, y = torch.randn(9, 1, 12, 12), torch.randint(4, (9,))
    model = nn.Sequential(nn.Flatten(), nn.Linear(144, 32), nn.ReLU(), nn.Linear(32, 4)).eval()
    data = ValidationData(x, y, background=-0.42)
    settings = SimpleNamespace(scale=SimpleNamespace(eval_samples=samples, ig_steps=6))
    value = validation_si(model, data, group, settings)
    # invreg/experiments/genuine.py before the change
    replaced = IF.saliency_invariance(model, x[:samples], y[:samples], get_group(group),
                                      "integrated_gradients", steps=6, baseline=-0.42,
                                      max_batch_size=1024).item()
    assert type(value) is float and value == replaced
    assert data.stages == ["validate"]
    # the baseline is the data's empty pixel: another one gives another SI
    data.background = 0.0
    assert validation_si(model, data, group, settings) != value

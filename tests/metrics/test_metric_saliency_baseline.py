"""SI's integrated-gradients baseline: 'background' is the data module's empty pixel."""

import warnings

import pytest
import torch
from tiny import tiny_trainer

from invreg.data import DigitsDataModule
from invreg.functional import saliency_invariance
from invreg.groups import Rotations
from invreg.metrics import SaliencyInvarianceSimilarity
from invreg.models import MLP
from invreg.modules import InvarianceModule

#: SI of the same maps, batched the same way, agrees to float32 rounding; 1e-5 relative covers
#: the summation order of a batched backward
SAME = 1e-5


@pytest.fixture(scope="module")
def digits_run():
    """A small MLP fitted for one epoch on standardised 8×8 digits, still attached to its
    trainer (so ``module.trainer.datamodule`` is the digits module)."""
    torch.manual_seed(0)
    data = DigitsDataModule(batch_size=128, seed=0, augment_group="c4")
    module = InvarianceModule(MLP(data.input_shape, data.num_classes, hidden_widths=[64]),
                              group="c4", invariance_weight=0.0, lr=1e-2)
    trainer = tiny_trainer()
    trainer.fit(module, data)
    x, y = data.val_dataset.tensors
    return data, module.eval(), x[:8], y[:8]


def si(model, x, y, **kwargs):
    metric = SaliencyInvarianceSimilarity(Rotations(4), steps=8, **kwargs)
    metric.update(model, x, y)
    return metric


def test_background_is_the_trainers_datamodule_background(digits_run):
    data, module, x, y = digits_run
    assert data.background < -0.5  # −mean/std of the raw digits: an empty pixel
    background = si(module, x, y)  # default baseline="background"
    assert background.baseline_value == data.background
    expected = saliency_invariance(module, x, y, Rotations(4), steps=8, baseline=data.background)
    assert background.compute().item() == pytest.approx(expected.item(), rel=SAME)
    # a number is used as given, and here it changes SI by far more than rounding
    grey = si(module, x, y, baseline=0.0)
    assert grey.baseline_value == 0.0
    assert abs(background.compute().item() - grey.compute().item()) > 100 * SAME


def test_background_passed_to_update_or_zero_with_one_warning(digits_run):
    data, module, x, y = digits_run
    plain = module.backbone  # a plain nn.Module: it knows no data module
    given = SaliencyInvarianceSimilarity(Rotations(4), steps=8)
    given.update(plain, x, y, background=data.background)
    assert given.baseline_value == data.background
    assert given.compute().item() == pytest.approx(si(module, x, y).compute().item(), rel=SAME)
    fallback = SaliencyInvarianceSimilarity(Rotations(4), steps=8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fallback.update(plain, x, y)
        fallback.update(plain, x, y)
    assert sum("no data module" in str(w.message) for w in caught) == 1
    assert fallback.baseline_value == 0.0


@pytest.mark.parametrize("baseline, error", [("grey", ValueError), (None, TypeError),
                                             (float("nan"), ValueError), (True, TypeError)])
def test_baseline_option_is_checked(baseline, error):
    with pytest.raises(error, match="baseline"):
        SaliencyInvarianceSimilarity(Rotations(4), baseline=baseline)

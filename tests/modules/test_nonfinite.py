"""A diverging run stops with an error naming the step and the loss terms; bad weights are
refused at construction."""

import math

import pytest
import torch
from tiny import tiny_trainer
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from invreg.models import MLP
from invreg.modules import InvarianceModule, NonFiniteLossError
from invreg.testing import parametrize_dtypes


def tiny_net():
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    net.num_classes = 3
    return net


def data(n=64):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, 4, 4, generator=generator)
    y = torch.randint(0, 3, (n,), generator=generator)
    return DataLoader(TensorDataset(x, y), batch_size=16)


def trainer(epochs=3):
    return tiny_trainer(max_epochs=epochs, num_sanity_val_steps=0)


@pytest.mark.parametrize("weight", [float("nan"), float("inf"), -1.0, "1", True, None])
def test_invariance_weight_must_be_a_finite_number(weight):
    with pytest.raises(ValueError, match="invariance_weight must be a"):
        InvarianceModule(tiny_net(), invariance_weight=weight)


@pytest.mark.parametrize("lr", [float("nan"), -1e-3])
def test_learning_rate_must_be_finite_and_non_negative(lr):
    with pytest.raises(ValueError, match="lr must be a finite number"):
        InvarianceModule(tiny_net(), lr=lr)


def test_on_nonfinite_loss_must_be_known():
    with pytest.raises(ValueError, match="on_nonfinite_loss must be 'raise' or 'skip'"):
        InvarianceModule(tiny_net(), on_nonfinite_loss="ignore")


def test_diverging_run_stops_naming_step_and_terms():
    torch.manual_seed(0)
    # lr 1e30: one Adam step puts the weights near 1e30, the logits overflow float32 at once
    module = InvarianceModule(MLP([1, 4, 4], 3, hidden_widths=[32, 32]), group="c4", lr=1e30)
    with pytest.raises(NonFiniteLossError) as caught:
        trainer(epochs=20).fit(module, data())
    message = str(caught.value)
    assert "global step" in message and "train batch" in message
    for term in ("task_loss=", "invariance_loss=", "loss="):
        assert term in message
    assert "lower the learning rate" in message


def test_skip_mode_skips_nonfinite_batches_without_updating_weights():
    torch.manual_seed(0)
    module = InvarianceModule(tiny_net(), group="c4", on_nonfinite_loss="skip", lr=1e-2)
    original = module.invariance_loss.forward
    calls = {"n": 0}

    def poisoned(orbit):
        calls["n"] += 1
        value = original(orbit)
        # every third training batch produces a NaN invariance error
        return value * math.nan if module.training and calls["n"] % 3 == 0 else value

    module.invariance_loss.forward = poisoned
    before = {k: v.clone() for k, v in module.state_dict().items()}
    with pytest.warns(RuntimeWarning, match="skipping the batch: non-finite loss"):
        trainer(epochs=1).fit(module, data())
    after = module.state_dict()
    assert all(torch.isfinite(v).all() for v in after.values())
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the finite batches ran


def test_nonfinite_validation_loss_raises_even_in_skip_mode():
    module = InvarianceModule(tiny_net(), group="c4", on_nonfinite_loss="skip")
    with torch.no_grad():
        module.backbone[1].weight.fill_(math.inf)
    with pytest.raises(NonFiniteLossError, match="val batch 0"):
        tiny_trainer().validate(module, data())


class HidesNaN(nn.Module):
    """A backbone whose output stays finite whatever NaN its input holds."""

    num_classes = 3

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(16, 3)

    def forward(self, x):
        return self.linear(torch.nan_to_num(x.flatten(1)))


@pytest.mark.parametrize("policy", ["raise", "skip"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_inputs_are_refused_even_when_the_loss_stays_finite(policy, bad):
    module = InvarianceModule(HidesNaN(), on_nonfinite_loss=policy)
    x, y = torch.randn(4, 1, 4, 4), torch.zeros(4, dtype=torch.long)
    x[2, 0, 1, 1] = bad
    with pytest.raises(ValueError, match="train batch contains NaN or Inf inputs"):
        module.shared_step((x, y), "train")


@parametrize_dtypes(dtypes=(torch.float32, torch.float16))
def test_large_finite_inputs_whose_sum_overflows_pass(dtype):
    from invreg.modules.checkpointing import check_finite_inputs

    x = torch.full((64, 1, 4, 4), torch.finfo(dtype).max / 2, dtype=dtype)
    assert not torch.isfinite(x.sum())  # the screen alone would refuse them
    check_finite_inputs(x, "train")
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or Inf"):
        check_finite_inputs(x, "train")

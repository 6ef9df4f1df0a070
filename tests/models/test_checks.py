import pytest
import torch

import invreg.models
from invreg.models import MLP, TiedMLP, invariance_deviations, max_invariance_deviation
from invreg.testing import assert_invariant


def test_hand_computed_deviations():
    # f = flatten: rotating the identity matrix by 90° swaps its diagonals (change 1),
    # rotating by 180° maps it to itself (change 0)
    x = torch.eye(2).reshape(1, 1, 2, 2)
    deviations = invariance_deviations(torch.nn.Flatten(), x, "c4")
    assert torch.equal(deviations, torch.tensor([0.0, 1.0, 0.0, 1.0]))
    assert max_invariance_deviation(torch.nn.Flatten(), x, "c4") == 1.0


def test_check_can_fail_and_pass():
    torch.manual_seed(0)
    x = torch.randn(4, 1, 8, 8)
    mlp = MLP((1, 8, 8), 3, hidden_widths=(16,))
    tied = TiedMLP((1, 8, 8), 3, group="c4", hidden_widths=(16,))
    assert max_invariance_deviation(mlp, x, "c4") > 1e-3
    # invariant up to float32 rounding: fan-ins 64 and 16 plus the 4 pooled elements, n terms
    # err by at most n·eps of the logits' scale
    eps = torch.finfo(torch.float32).eps
    assert max_invariance_deviation(tied, x, "c4") < (64 + 16 + 4) * eps * tied(x).abs().max()
    assert_invariant(tied, "c4", x)
    with pytest.raises(AssertionError, match="not invariant"):
        assert_invariant(mlp, "c4", x)


def test_continuous_group_with_num_samples():
    x = torch.randn(2, 1, 8, 8)
    gen = torch.Generator().manual_seed(0)
    deviations = invariance_deviations(
        MLP((1, 8, 8), 2, hidden_widths=(4,)), x, "so2", num_samples=5, generator=gen
    )
    assert deviations.shape == (5,) and deviations[0] == 0


def test_modes_restored():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Dropout(0.5), torch.nn.BatchNorm1d(4))
    model.train()
    model[2].eval()  # a frozen batch norm inside a training model
    x = torch.randn(3, 1, 2, 2)
    assert max_invariance_deviation(model, x, "flip") > 0  # not invariant, but deterministic
    assert model.training and model[1].training and not model[2].training
    model.eval()
    max_invariance_deviation(model, x, "flip")
    assert not any(m.training for m in model.modules())


def test_eval_mode_makes_dropout_deterministic():
    model = torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.AdaptiveAvgPool2d(1))
    x = torch.randn(4, 2, 6, 6)
    # a global mean is rotation invariant: a 36-term mean, reordered, errs by 36·eps·max|x|
    eps = torch.finfo(torch.float32).eps
    assert max_invariance_deviation(model, x, "c4") < 36 * eps * x.abs().max()
    assert max_invariance_deviation(model, x, "c4", eval_mode=False) > 1e-3


def test_the_removed_twin_names_its_replacement_and_argument_order():
    # invreg.models.assert_invariant(model, x, group) duplicated invreg.testing.assert_invariant
    # (model, group, x) in another order; for one release the old name raises, naming the new
    x = torch.randn(2, 1, 8, 8)
    tied = TiedMLP((1, 8, 8), 3, group="c4", hidden_widths=(4,))
    with pytest.raises(TypeError) as info:
        invreg.models.assert_invariant(tied, x, "c4")
    message = str(info.value)
    assert "invreg.testing.assert_invariant(model, group, x=None, atol=None, rtol=None" in message
    assert "group comes before x" in message and "rtol=0.0" in message
    assert "assert_invariant" not in invreg.models.__all__

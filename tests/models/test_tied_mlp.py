import pytest
import torch

from invreg.groups import CyclicShifts, get_group
from invreg.models import MLP, TiedMLP, invariance_deviations

EPS32 = torch.finfo(torch.float32).eps


@pytest.mark.parametrize("pooling", ["mean", "max"])
@pytest.mark.parametrize(
    "group, input_shape",
    [("c4", (1, 12, 12)), ("d4", (2, 11, 11)), ("t3", (1, 36, 36)), ("t3", (1, 6, 36))],
)
def test_invariant_to_every_group_element(group, input_shape, pooling):
    torch.manual_seed(0)
    model = TiedMLP(
        input_shape, num_classes=5, group=group, hidden_widths=(32, 16), pooling=pooling
    )
    x = torch.randn(6, *input_shape)
    g = get_group(group)
    logits = model(x)
    assert logits.std() > 1e-2  # the outputs are not trivially constant
    # invariant up to float32 rounding: n-term sums err by at most n·eps of their scale; the
    # terms: the first layer's fan-in, the |G| pooled elements, the hidden fan-ins 32 and 16
    fan_ins = torch.Size(input_shape).numel() + g.order + 32 + 16
    tol = fan_ins * EPS32 * logits.abs().max().item()
    for element in range(g.order):
        transformed = g.act(x, element)
        if element:
            assert not torch.equal(transformed, x)  # the transform does change the input
        assert (model(transformed) - logits).abs().max() < tol
    deviations = invariance_deviations(model, x, group)
    assert deviations.shape == (g.order,) and deviations.max() < tol


def test_group_object_accepted():
    model = TiedMLP((1, 8, 9), num_classes=2, group=CyclicShifts(3, dim=-1), hidden_widths=(4,))
    assert model(torch.randn(2, 1, 8, 9)).shape == (2, 2)


def test_same_parameters_as_mlp_and_state_dict_transfers():
    tied = TiedMLP((1, 36, 36), num_classes=9, group="c4")
    mlp = MLP((1, 36, 36), num_classes=9)
    assert sum(p.numel() for p in tied.parameters()) == sum(p.numel() for p in mlp.parameters())
    mlp.load_state_dict(tied.state_dict())  # same names and shapes


def test_hook_names():
    model = TiedMLP((1, 6, 6), num_classes=3, group="d4", hidden_widths=(5, 4))
    outputs = {}
    for name in ["hidden.0", "pool", "hidden.1", "head"]:
        model.get_submodule(name).register_forward_hook(
            lambda m, i, o, name=name: outputs.setdefault(name, o)
        )
    model(torch.randn(2, 1, 6, 6))
    assert outputs["hidden.0"].shape == (2, 8, 5)  # one row per orbit element
    assert outputs["pool"].shape == (2, 5)
    assert outputs["hidden.1"].shape == (2, 4)
    assert outputs["head"].shape == (2, 3)


def test_continuous_group_rejected():
    with pytest.raises(ValueError, match="finite"):
        TiedMLP((1, 8, 8), num_classes=2, group="so2")


def test_group_that_cannot_act_rejected():
    with pytest.raises(ValueError, match=r"input_shape=\(1, 8, 10\)"):
        TiedMLP((1, 8, 10), num_classes=2, group="c4")  # not square
    with pytest.raises(ValueError, match="t3|CyclicShifts"):
        TiedMLP((1, 8, 10), num_classes=2, group="t3")  # 10 not divisible by 3


def test_bad_pooling_and_input():
    with pytest.raises(ValueError, match="pooling"):
        TiedMLP((1, 8, 8), num_classes=2, group="c4", pooling="sum")
    model = TiedMLP((1, 8, 8), num_classes=2, group="c4", hidden_widths=(4,))
    with pytest.raises(ValueError, match=r"\(1, 8, 8\).*\(2, 1, 9, 9\)"):
        model(torch.randn(2, 1, 9, 9))

import pytest
import torch

from invreg.groups import Dihedral, Rotations, get_group
from invreg.models import E2CNN, invariance_deviations, max_invariance_deviation

SMALL = dict(channels=(3, 4, 6), kernel_size=3)
EPS32 = torch.finfo(torch.float32).eps


def rounding(model, x, logits):
    """How far float32 logits of an exactly invariant E2CNN may move under a group element:
    an n-term sum errs by at most n·eps of its scale, and the terms along the network are the
    convolutions' fan-ins (input channels × k²), the spatial pooling (H·W) and the head."""
    fan_ins = sum(
        m.in_type.size * m.kernel_size**2 for m in model.modules() if type(m).__name__ == "R2Conv"
    )
    fan_ins += sum(m.in_features for m in model.modules() if isinstance(m, torch.nn.Linear))
    return (fan_ins + x.shape[-2] * x.shape[-1]) * EPS32 * logits.abs().max().item()


def warmed_up(model, input_shape, steps=1):
    """A few training steps, so batch-norm statistics and weights move off their init."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    for _ in range(steps):
        loss = model(torch.randn(8, *input_shape)).logsumexp(dim=1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


@pytest.mark.parametrize("group", ["c4", "d4", Rotations(4), Dihedral(4), "c2", "d2", "d1"])
@pytest.mark.parametrize("size", [29, 28, 9])
def test_invariant_to_every_group_element(group, size):
    torch.manual_seed(0)
    input_shape = (2, size, size)
    model = warmed_up(E2CNN(input_shape, num_classes=5, group=group, **SMALL), input_shape)
    g = get_group(group)
    x = torch.randn(4, *input_shape)
    with torch.no_grad():
        logits = model(x)
        assert logits.std() > 1e-2  # not trivially constant
        tol = rounding(model, x, logits)
        for element in range(g.order):
            transformed = g.act(x, element)
            if element:
                assert not torch.equal(transformed, x)
            assert (model(transformed) - logits).abs().max() < tol
    assert max_invariance_deviation(model, x, group) < tol


def test_default_architecture_invariant_and_output_shape():
    torch.manual_seed(0)
    model = E2CNN((1, 29, 29), num_classes=9, group="d4").eval()
    x = torch.randn(3, 1, 29, 29)
    assert model(x).shape == (3, 9)
    assert model.features(x).shape == (3, 32)
    assert len(model.blocks) == 3 and model.blocks[0].conv.out_type.size == 8 * 8
    assert invariance_deviations(model, x, "d4").max() < rounding(model, x, model(x))


def test_c8_is_approximately_invariant_to_45_degrees():
    torch.manual_seed(0)
    model = E2CNN((1, 15, 15), num_classes=3, group="c8", **SMALL).eval()
    x = torch.nn.functional.avg_pool2d(torch.randn(2, 1, 19, 19), 5, stride=1)  # smooth
    mask = (torch.linspace(-1, 1, 15).pow(2)[:, None] + torch.linspace(-1, 1, 15).pow(2)) < 0.8
    deviations = invariance_deviations(model, x * mask, "c8")
    # multiples of 90° are exact up to rounding
    assert deviations[::2].max() < rounding(model, x, model(x * mask))
    scale = model(x * mask).abs().max()
    assert deviations.max() < 0.5 * scale  # 45° only up to interpolation error


@pytest.mark.parametrize("group", ["t3", "flip", "flips", "so2", "d3", "ty2", "nonsense"])
def test_unsupported_groups_rejected(group):
    with pytest.raises(ValueError, match="E2CNN supports rotations"):
        E2CNN((1, 9, 9), num_classes=2, group=group, **SMALL)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(input_shape=(1, 9, 10)), "H == W"),
        (dict(input_shape=(1, 9)), "input_shape"),
        (dict(kernel_size=4), "kernel_size"),
        (dict(activation="gelu"), r"activation.*'elu', 'relu'"),
        (dict(channels=()), "channels"),
        (dict(num_classes=0), "num_classes"),
    ],
)
def test_bad_arguments(kwargs, match):
    args = dict(input_shape=(1, 9, 9), num_classes=3, channels=(2,), kernel_size=3) | kwargs
    with pytest.raises(ValueError, match=match):
        E2CNN(**args)


@pytest.mark.parametrize("activation", ["relu", "elu", "tanh", "sigmoid"])
def test_activations_keep_invariance(activation):
    torch.manual_seed(0)
    model = E2CNN((1, 11, 11), 3, group="c4", activation=activation, batch_norm=False, **SMALL)
    x = torch.randn(2, 1, 11, 11)
    assert max_invariance_deviation(model, x, "c4") < rounding(model, x, model(x))


def test_wrong_input_shape():
    model = E2CNN((1, 9, 9), 3, group="c4", **SMALL)
    with pytest.raises(ValueError, match=r"\(1, 9, 9\).*\(2, 3, 9, 9\)"):
        model(torch.randn(2, 3, 9, 9))


def test_trivial_group_is_a_plain_cnn():
    model = E2CNN((1, 9, 9), 3, group="c1", **SMALL).eval()
    x = torch.randn(2, 1, 9, 9)
    assert model(x).shape == (2, 3)
    assert max_invariance_deviation(model, x, "c4") > 1e-3  # nothing ties rotations


def test_state_dict_does_not_depend_on_mode():
    torch.manual_seed(0)
    source = warmed_up(E2CNN((1, 9, 9), 3, group="d4", **SMALL), (1, 9, 9))
    x = torch.randn(2, 1, 9, 9)
    expected = source(x)
    eval_keys = set(source.state_dict())
    assert not any(k.endswith((".filter", ".expanded_bias")) for k in eval_keys)
    assert set(source.train().state_dict()) == eval_keys
    source.eval()
    for target_mode in ("train", "eval"):
        target = E2CNN((1, 9, 9), 3, group="d4", **SMALL)
        getattr(target, target_mode)()
        target.load_state_dict(source.state_dict())  # strict
        # the same weights: equal up to rounding (the filter is expanded anew)
        assert (target.eval()(x) - expected).abs().max() <= rounding(source, x, expected)
    # a checkpoint written by bare e2cnn in eval mode (with the filter cache) also loads
    target = E2CNN((1, 9, 9), 3, group="d4", **SMALL).eval()
    state = source.state_dict()
    state["blocks.0.conv.filter"] = torch.zeros_like(source.blocks[0].conv.filter)
    target.load_state_dict(state)
    assert (target(x) - expected).abs().max() <= rounding(source, x, expected)


def test_input_gradients_in_eval_mode_repeatable():
    # bare e2cnn caches an attached filter in eval mode: the second backward would fail
    model = E2CNN((1, 9, 9), 3, group="c4", **SMALL).eval()
    for _ in range(2):
        x = torch.randn(2, 1, 9, 9, requires_grad=True)
        model(x).sum().backward()
        assert x.grad is not None and x.grad.abs().sum() > 0


def test_training_updates_are_seen_after_eval():
    torch.manual_seed(0)
    model = E2CNN((1, 9, 9), 3, group="c4", **SMALL).eval()
    x = torch.randn(2, 1, 9, 9)
    before = model(x)
    warmed_up(model, (1, 9, 9))
    assert not torch.allclose(model(x), before)


def test_uint8_warning_silenced(recwarn):
    E2CNN((1, 9, 9), 3, group="d4", **SMALL).eval()
    assert not [w for w in recwarn if "uint8" in str(w.message)]

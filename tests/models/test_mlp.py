import pytest
import torch

from invreg.models import MLP, max_invariance_deviation


def paper_mlp_parameter_count(pixels=36 * 36, width=128, depth=5, classes=9):
    first = pixels * width + width
    rest = (depth - 1) * (width * width + width)
    head = width * classes + classes
    return first + rest + head


def test_output_shape():
    model = MLP((1, 12, 12), num_classes=5, hidden_widths=(16, 8))
    assert model(torch.randn(3, 1, 12, 12)).shape == (3, 5)
    assert model.features(torch.randn(3, 1, 12, 12)).shape == (3, 8)
    assert model.feature_dim == 8


def test_paper_parameter_count():
    model = MLP((1, 36, 36), num_classes=9)
    count = sum(p.numel() for p in model.parameters())
    assert count == paper_mlp_parameter_count() == 233_225
    assert 220_000 < count < 240_000  # the paper's "~230k parameters"


def test_layer_names_and_hooks():
    model = MLP((1, 6, 6), num_classes=4, hidden_widths=(7, 5, 3))
    names = dict(model.named_modules())
    for name in [
        "flatten",
        "hidden.0",
        "hidden.0.linear",
        "hidden.0.activation",
        "hidden.2",
        "head",
    ]:
        assert name in names
    seen = {}
    model.get_submodule("hidden.1").register_forward_hook(lambda m, i, o: seen.setdefault("h", o))
    model(torch.randn(2, 1, 6, 6))
    assert seen["h"].shape == (2, 5)
    assert (seen["h"] >= 0).all()  # after the ReLU


@pytest.mark.parametrize("activation", ["relu", "gelu", "tanh", "sigmoid", "elu", "silu", "ReLU"])
def test_activations(activation):
    model = MLP((4,), num_classes=2, hidden_widths=(3,), activation=activation)
    assert model(torch.randn(2, 4)).shape == (2, 2)


def test_plain_mlp_is_not_invariant():
    torch.manual_seed(0)
    model = MLP((1, 12, 12), num_classes=5, hidden_widths=(32, 32))
    x = torch.randn(4, 1, 12, 12)
    assert max_invariance_deviation(model, x, "c4") > 1e-3
    assert max_invariance_deviation(model, x, "t3") > 1e-3


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num_classes=0), "num_classes"),
        (dict(num_classes=2.5), "num_classes"),
        (dict(hidden_widths=()), "hidden_widths"),
        (dict(hidden_widths=(8, 0)), "hidden_widths"),
        (dict(hidden_widths=8), "hidden_widths"),
        (dict(activation="swishy"), r"activation.*'relu'"),
        (dict(input_shape=()), "input_shape"),
        (dict(input_shape=(1, -3)), "input_shape"),
        (dict(input_shape=36), "input_shape"),
    ],
)
def test_bad_constructor_arguments(kwargs, match):
    args = dict(input_shape=(1, 6, 6), num_classes=3) | kwargs
    with pytest.raises(ValueError, match=match):
        MLP(**args)


def test_wrong_input_shape_names_both_shapes():
    model = MLP((1, 6, 6), num_classes=3)
    with pytest.raises(ValueError, match=r"\(1, 6, 6\).*\(2, 1, 7, 7\)"):
        model(torch.randn(2, 1, 7, 7))
    with pytest.raises(ValueError, match="input_shape"):
        model(torch.randn(1, 6, 6))

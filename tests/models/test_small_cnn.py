import pytest
import torch

from invreg.models import SmallCNN


@pytest.mark.parametrize("input_shape", [(1, 28, 28), (3, 9, 13), (1, 40), (2, 1), (1, 1, 1)])
def test_output_shape(input_shape):
    model = SmallCNN(input_shape, num_classes=4, channels=(4, 8, 8))
    assert model(torch.randn(2, *input_shape)).shape == (2, 4)
    assert model.features(torch.randn(2, *input_shape)).shape == (2, 8)


def test_block_names():
    model = SmallCNN((1, 16, 16), num_classes=3, channels=(4, 6))
    names = dict(model.named_modules())
    for name in ["blocks.0.conv", "blocks.0.norm", "blocks.0.activation", "blocks.0.pool", "head"]:
        assert name in names
    assert isinstance(names["blocks.0.conv"], torch.nn.Conv2d)
    assert isinstance(SmallCNN((1, 40), 3).blocks[0].conv, torch.nn.Conv1d)
    assert "blocks.0.norm" not in dict(SmallCNN((1, 8, 8), 3, batch_norm=False).named_modules())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(input_shape=(16,)), "input_shape"),
        (dict(input_shape=(1, 2, 3, 4)), "input_shape"),
        (dict(channels=()), "channels"),
        (dict(kernel_size=4), "kernel_size"),
        (dict(activation="nope"), "activation"),
        (dict(num_classes=0), "num_classes"),
    ],
)
def test_bad_arguments(kwargs, match):
    args = dict(input_shape=(1, 8, 8), num_classes=3) | kwargs
    with pytest.raises(ValueError, match=match):
        SmallCNN(**args)


def test_wrong_input_shape():
    with pytest.raises(ValueError, match=r"\(1, 40\).*\(2, 1, 41\)"):
        SmallCNN((1, 40), 3)(torch.randn(2, 1, 41))


def test_pooled_features_are_a_named_module_and_feed_the_head():
    import torch

    from invreg.functional.invariance import capture_layers
    from invreg.models import E2CNN

    for model in (SmallCNN((1, 8, 8), 3).eval(),
                  E2CNN((1, 9, 9), 3, group="c4", channels=(2, 3), kernel_size=3).eval()):
        x = torch.randn(2, *model.input_shape)
        with torch.no_grad(), capture_layers(model, ["pool"]) as captured:
            logits = model(x)
        pooled = captured["pool"][-1]
        assert pooled.shape == (2, model.feature_dim)
        torch.testing.assert_close(model.head(pooled), logits, rtol=0, atol=0)
        assert not any(True for _ in model.pool.parameters())

"""HyperCNN and InvarianceDescriptor: descriptor-conditioned weights and augmentations."""

import pytest
import torch

from invreg.groups import Rotations
from invreg.models.hyper import (
    DESCRIPTOR_COMPONENTS,
    HyperCNN,
    HyperConv2d,
    InvarianceDescriptor,
    StaticConv2d,
)


def net(**kwargs):
    torch.manual_seed(0)
    args = dict(input_shape=(1, 12, 12), num_classes=3, descriptor=["rotation", "flip"],
                channels=(4, 8), embedding_dim=8, embedding_hidden=16) | kwargs
    return HyperCNN(**args)


def images(batch=5, size=12):
    return torch.randn(batch, 1, size, size, generator=torch.Generator().manual_seed(1))


def test_generated_weights_and_outputs_change_with_the_descriptor():
    model = net()
    low, high = model.generate_weights([0.0, 0.0]), model.generate_weights([1.0, 0.0])
    assert set(low) == {"blocks.0.conv", "blocks.1.conv"}
    for name in low:
        assert low[name][0].shape == model.blocks[int(name[7])].conv.weight_shape
        assert not torch.allclose(low[name][0], high[name][0])
    x = images()
    assert not torch.allclose(model(x, [0.0, 0.0]), model(x, [1.0, 0.0]))
    # a number means "this strength for every component"; a mapping names them
    assert torch.equal(model(x, 1.0), model(x, {"rotation": 1.0, "flip": 1.0}))


def test_per_sample_descriptors_equal_one_forward_per_descriptor():
    model, x = net(), images()
    d = torch.rand(5, 2, generator=torch.Generator().manual_seed(2))
    per_sample = model(x, d)
    one_by_one = torch.cat([model(x[i : i + 1], d[i]) for i in range(5)])
    assert torch.allclose(per_sample, one_by_one, atol=1e-5)


def test_outputs_are_differentiable_in_the_descriptor():
    model = net()
    d = torch.tensor([0.5, 0.5], requires_grad=True)
    model(images(), d).logsumexp(dim=1).sum().backward()
    assert d.grad is not None and d.grad.abs().sum() > 0


def test_default_descriptor_and_subset_of_generated_layers():
    model = net(generated_layers=[1])
    assert isinstance(model.blocks[0].conv, StaticConv2d)
    assert isinstance(model.blocks[1].conv, HyperConv2d)
    x = images()
    assert torch.equal(model(x), model(x, [0.0, 0.0]))
    model.set_default_descriptor([1.0, 0.5])
    assert torch.equal(model(x), model(x, [1.0, 0.5]))
    assert model.parameter_counts()["static_convs"] == 4 * 9 + 4


def test_summary_and_repr_report_parameters_and_generation_cost():
    model = net()
    counts, cost = model.parameter_counts(), model.generation_cost()
    assert counts["total"] == sum(p.numel() for p in model.parameters())
    # generator of block 1: 8 embedding units -> 8·4·3·3 kernel values + 8 biases
    assert cost["generated_weights"] == (4 * 9 + 4) + (8 * 4 * 9 + 8)
    assert cost["generation_macs"] == 2 * 16 + 16 * 8 + 8 * cost["generated_weights"]
    summary = model.summary()
    assert f"{counts['total']:,}" in summary and f"{cost['generation_macs']:,}" in summary
    assert f"generation_macs={cost['generation_macs']:,}" in repr(model)


def test_config_rebuilds_the_same_architecture():
    model = net(descriptor_limits={"rotation": 90.0})
    clone = HyperCNN(**model.config)
    clone.load_state_dict(model.state_dict())
    x = images()
    assert torch.equal(clone(x, [0.3, 0.7]), model(x, [0.3, 0.7]))
    assert clone.descriptor.limits["rotation"] == 90.0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(descriptor=["rotatoin"]), "unknown component 'rotatoin'.*Did you mean 'rotation'"),
        (dict(descriptor=["rotation", "rotation"]), "distinct"),
        (dict(descriptor=[]), "non-empty"),
        (dict(descriptor_limits={"scale": 2.0}), "not components"),
        (dict(descriptor_limits={"flip": 2.0}), "probability"),
        (dict(input_shape=(1, 12, 10)), "rotation.*square"),
        (dict(generated_layers=[2]), "generated_layers"),
        (dict(norm="instance"), "norm"),
        (dict(kernel_size=2), "kernel_size"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        net(**kwargs)


@pytest.mark.parametrize(
    "descriptor, match",
    [([0.5, 1.5], r"\[0, 1\]"), ([0.5], r"shape \[2\]"), (torch.rand(3, 2), "one row per sample"),
     ({"rotation": 0.5}, "a strength for each")],
)
def test_bad_descriptors(descriptor, match):
    with pytest.raises(ValueError, match=match):
        net()(images(), descriptor)


def test_augment_strength_zero_is_the_identity_and_one_transforms():
    desc = InvarianceDescriptor(["rotation", "translation", "scale", "flip"])
    x = images(batch=64)
    assert torch.equal(desc.augment(x, torch.zeros(4)), x)
    moved = desc.augment(x, torch.ones(64, 4), generator=torch.Generator().manual_seed(0))
    assert moved.shape == x.shape and not torch.allclose(moved, x)


def test_strength_sets_the_spread_of_the_elements():
    gen = torch.Generator().manual_seed(0)
    rotation = DESCRIPTOR_COMPONENTS["rotation"]()
    strength = torch.tensor([0.0, 0.25, 1.0]).repeat_interleave(2000)
    angles = rotation.elements(strength, gen).reshape(3, 2000).abs()
    assert angles[0].max() == 0 and angles[1].max() <= 45 and angles[1].max() > 44
    assert angles[2].max() <= 180 and angles[2].max() > 179  # r = 1: uniform in [-180, 180]
    flips = DESCRIPTOR_COMPONENTS["flip"]().elements(strength, gen).reshape(3, 2000).float()
    assert flips[0].sum() == 0 and abs(flips[2].mean() - 0.5) < 0.05
    assert abs(flips[1].mean() - 0.125) < 0.03


def test_full_rotation_strength_covers_the_c4_rotations():
    desc = InvarianceDescriptor(["rotation"], limits={"rotation": 180})
    x = torch.zeros(1, 1, 8, 8)
    x[..., 1:3, 2:6] = 1.0
    assert desc.limits == {"rotation": 180.0}
    # the rotation component acts through its group, here ContinuousRotations(180)
    quarter = desc.components[0].group.act(x, torch.tensor([90.0]))
    assert torch.allclose(quarter, Rotations(4).act(x, 1))


def test_descriptor_sampling_per_sample_per_batch_and_corners():
    desc = InvarianceDescriptor(["rotation", "flip"])
    gen = torch.Generator().manual_seed(0)
    d = desc.sample(100, generator=gen)
    assert d.shape == (100, 2) and 0 <= d.min() and d.max() <= 1 and d.std(0).min() > 0.2
    shared = desc.sample(100, per_sample=False, generator=gen)
    assert torch.equal(shared, shared[:1].expand(100, 2))
    corners = desc.sample(1000, corner_probability=1.0, generator=gen)
    assert set(corners.unique().tolist()) == {0.0, 1.0}


def test_descriptor_components_sample_and_act_through_their_groups():
    desc = InvarianceDescriptor(["rotation", "flip", "translation", "scale"],
                                limits={"flip": 0.8})
    strength = torch.rand(64, generator=torch.Generator().manual_seed(3))
    for component in desc.components:
        gen_a, gen_b = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
        options = {"probability": 0.8} if component.name == "flip" else {}
        assert torch.equal(component.elements(strength, gen_a),
                           component.group.sample_with_strength(strength, gen_b, **options))
    # augment = each component's group acting in turn, with the background as fill
    x, d = images(batch=8), torch.rand(8, 4, generator=torch.Generator().manual_seed(4))
    expected, gen = x, torch.Generator().manual_seed(5)
    for k, component in enumerate(desc.components):
        elements = component.elements(d[:, k], gen)
        expected = component.group.act(expected, elements, fill=-0.5)
    augmented = desc.augment(x, d, torch.Generator().manual_seed(5), fill=-0.5)
    assert torch.equal(augmented, expected)


def test_the_hyper_models_transform_only_through_the_groups():
    """invreg.models.hyper imports no augmentation code: sampling and acting are the groups'."""
    import ast
    from pathlib import Path

    import invreg.models.hyper as package

    for path in Path(package.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith("invreg.data"), (path.name, node.module)

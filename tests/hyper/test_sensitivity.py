"""The two-sided upstream objective: descriptor targets, the fixed-descriptor CNN, the module."""

import math

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from invreg.models.hyper import FixedDescriptorCNN, HyperCNN, InvarianceDescriptor
from invreg.modules.hyper import HyperDownstreamModule, load_upstream_backbone
from invreg.modules.hyper_sensitivity import HyperSensitivityUpstreamModule
from invreg.testing import parametrize_dtypes

NAMES = ["rotation", "flip", "scale"]


def test_component_targets_describe_the_applied_element():
    desc = InvarianceDescriptor(NAMES, {"scale": 1.3})
    rotation, flip, scale = desc.components
    target = rotation.target(torch.tensor([0.0, 90.0, 180.0, -90.0]))
    expected = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    # float32 cos/sin of π/2 multiples: error a few ulps of 1
    assert torch.allclose(target, expected, atol=4 * torch.finfo(torch.float32).eps)
    assert flip.target(torch.tensor([0, 1, 1])).flatten().tolist() == [0.0, 1.0, 1.0]
    assert scale.target(torch.tensor([math.log(1.3), -math.log(1.3)])).flatten().tolist() == \
        pytest.approx([1.0, -1.0])
    # a perfect prediction costs nothing; a confident right flip logit almost nothing
    assert rotation.prediction_loss(target, torch.tensor([0.0, 90.0, 180.0, -90.0])).max() < 1e-12
    logits = torch.tensor([[-20.0], [20.0]])
    assert flip.prediction_loss(logits, torch.tensor([0, 1])).max() < 1e-8
    assert flip.prediction_loss(-logits, torch.tensor([0, 1])).min() > 19


def test_full_range_elements_and_act_transform_the_input():
    desc = InvarianceDescriptor(NAMES)
    x = torch.rand(16, 1, 12, 12)
    elements = desc.full_range_elements(16, torch.Generator().manual_seed(0))
    assert [e.shape[0] for e in elements] == [16, 16, 16]
    assert elements[1].unique().numel() == 2  # flips at full strength: both elements occur
    out = desc.act(x, elements)
    assert out.shape == x.shape and not torch.allclose(out, x)
    with pytest.raises(ValueError, match="one tensor per component"):
        desc.act(x, elements[:2])


@parametrize_dtypes()
def test_fixed_descriptor_cnn_computes_what_the_hyper_network_generates(dtype):
    torch.manual_seed(0)
    net = HyperCNN((1, 12, 12), 5, descriptor=NAMES, channels=(4, 8)).to(dtype)
    d = [1.0, 0.0, 0.5]
    cnn = net.fixed(d)
    assert isinstance(cnn, FixedDescriptorCNN)
    x = torch.randn(6, 1, 12, 12, dtype=dtype)
    reference, fixed = net(x, d), cnn(x)
    # the same operations in another order: rounding of a few ulps of the logits' size
    tolerance = 100 * torch.finfo(dtype).eps * reference.abs().max().item()
    assert (fixed - reference).abs().max().item() <= tolerance
    # an ordinary CNN: the conv weights and nothing of the generators
    convs = 4 * 1 * 9 + 4 + 8 * 4 * 9 + 8
    norms = 2 * (4 + 8)
    assert sum(p.numel() for p in cnn.parameters()) == convs + norms + 8 * 5 + 5
    # its own weights: training it leaves the hyper-network as it was
    before = net.generate_weights(d)["blocks.0.conv"][0].clone()
    with torch.no_grad():
        cnn.blocks[0].conv.weight.add_(1.0)
    assert torch.equal(net.generate_weights(d)["blocks.0.conv"][0], before)
    with pytest.raises(TypeError, match="expected a HyperCNN"):
        FixedDescriptorCNN(cnn)


def _module(**kwargs):
    torch.manual_seed(0)
    backbone = HyperCNN((1, 12, 12), 3, descriptor=NAMES, channels=(4, 8))
    return HyperSensitivityUpstreamModule(backbone, fill=0.0, **kwargs)


def _batch():
    generator = torch.Generator().manual_seed(1)
    return torch.rand(32, 1, 12, 12, generator=generator), torch.randint(0, 3, (32,),
                                                                         generator=generator)


def test_sensitivity_term_is_weighted_by_one_minus_the_descriptor():
    module = _module()
    x, y = _batch()
    desc = module.backbone.descriptor
    module.backbone.descriptor.sample = (  # every component at full invariance
        lambda n, per_sample, corner, generator, device: torch.ones(n, desc.size))
    terms = {}
    module._record_batch = lambda split, values, n: terms.update(values)
    module.step((x, y), "val", 0)
    assert terms["sensitivity_loss"].item() == 0.0 and terms["invariance_loss"].item() > 0
    module.backbone.descriptor.sample = (  # every component sensitive: no invariance asked
        lambda n, per_sample, corner, generator, device: torch.zeros(n, desc.size))
    module.step((x, y), "val", 0)
    assert terms["sensitivity_loss"].item() > 0 and terms["invariance_loss"].item() == 0.0


def test_upstream_trains_heads_and_its_checkpoint_feeds_the_downstream_module(tmp_path):
    module = _module(descriptor_sampling="batch")
    heads = {k: v.clone() for k, v in module.transformation_heads.state_dict().items()}
    x, y = _batch()
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, DataLoader(TensorDataset(x, y), batch_size=16))
    assert {"train/sensitivity_loss_epoch", "train/loss_epoch"} <= set(trainer.callback_metrics)
    moved = module.transformation_heads.state_dict()
    assert all(not torch.equal(moved[k], heads[k]) for k in heads)
    path = tmp_path / "upstream.ckpt"
    trainer.save_checkpoint(path)
    backbone = load_upstream_backbone(path)
    assert backbone.descriptor.names == tuple(NAMES)
    downstream = HyperDownstreamModule(upstream_checkpoint=str(path), num_classes=2)
    assert torch.equal(downstream.backbone.generate_weights([0.0, 1.0, 0.5])["blocks.1.conv"][0],
                       module.backbone.generate_weights([0.0, 1.0, 0.5])["blocks.1.conv"][0])
    restored = HyperSensitivityUpstreamModule.load_from_checkpoint(path)
    assert restored.sensitivity_weight == module.sensitivity_weight
    assert torch.equal(restored.transformation_heads["rotation"].weight,
                       module.transformation_heads["rotation"].weight)


def test_sensitivity_weight_is_checked():
    with pytest.raises(ValueError, match="sensitivity_weight"):
        _module(sensitivity_weight=-1.0)


def test_relative_invariance_error_cannot_be_shrunk_by_a_constant_feature():
    from invreg.functional import relative_invariance_error

    torch.manual_seed(0)
    h = torch.randn(32, 8, dtype=torch.float64)
    moved = h + 0.1 * torch.randn(32, 8, dtype=torch.float64)
    offset = torch.zeros(8, dtype=torch.float64)
    offset[0] = 1e3  # one large constant feature
    plain = relative_invariance_error(h, moved)
    # float64 sums of 256 terms: relative rounding well below 1e-12
    assert relative_invariance_error(h + offset, moved + offset).item() == pytest.approx(
        plain.item(), rel=1e-12)
    assert relative_invariance_error(3 * h, 3 * moved).item() == pytest.approx(plain.item(),
                                                                               rel=1e-12)
    # what the relative form prevents: the norm-normalised error collapses under the offset
    norm_normalised = ((h + offset - moved - offset).pow(2).sum(1) / (h + offset).pow(2).sum(1))
    assert norm_normalised.mean() < 1e-4 * plain
    with pytest.raises(ValueError, match="B >= 2"):
        relative_invariance_error(h[:1], moved[:1])

"""HyperUpstreamModule and HyperDownstreamModule checkpoints load in one line."""

import shutil

import pytest
import pytorch_lightning as pl
import torch
from tiny import hyper_loader, tiny_trainer

from invreg.models.hyper import HyperCNN
from invreg.modules import HyperDownstreamModule, HyperUpstreamModule


def test_downstream_checkpoint_loads_without_its_upstream_file(tmp_path, upstream_checkpoint):
    upstream_path = tmp_path / "upstream.ckpt"
    shutil.copyfile(upstream_checkpoint, upstream_path)  # the shared file stays
    assert isinstance(HyperUpstreamModule.load_from_checkpoint(upstream_path).backbone,
                      HyperCNN)

    pl.seed_everything(0)
    downstream = HyperDownstreamModule(upstream_checkpoint=str(upstream_path), num_classes=4)
    trainer = tiny_trainer(tmp_path, limit_train_batches=2, limit_val_batches=1)
    trainer.fit(downstream, hyper_loader(num_classes=4), hyper_loader(num_classes=4))
    downstream_path = tmp_path / "downstream.ckpt"
    trainer.save_checkpoint(downstream_path)
    upstream_path.unlink()  # moved, deleted, another machine: the downstream file is enough

    loaded = HyperDownstreamModule.load_from_checkpoint(downstream_path)
    assert isinstance(loaded, HyperDownstreamModule)
    assert torch.equal(loaded.descriptor, downstream.descriptor)
    x = torch.rand(3, *downstream.backbone.input_shape)
    downstream.eval()
    assert torch.equal(loaded(x), downstream(x))
    assert all(not p.requires_grad for p in loaded.backbone.parameters())


def test_downstream_takes_one_source_of_the_backbone(tmp_path):
    config = HyperCNN([1, 8, 8], 10, descriptor=["rotation"], channels=(4,)).config
    with pytest.raises(ValueError, match="not both"):
        HyperDownstreamModule(upstream_checkpoint="x.ckpt", backbone_config=config,
                              num_classes=10)


@pytest.mark.parametrize("weight", [float("nan"), -0.5])
def test_hyper_invariance_weight_must_be_finite(weight):
    with pytest.raises(ValueError, match="invariance_weight must be a finite number"):
        HyperUpstreamModule(invariance_weight=weight,
                            backbone=HyperCNN([1, 8, 8], 10, descriptor=["rotation"]))

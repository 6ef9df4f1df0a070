"""The modules' own random streams: seeded per batch, kept in checkpoints, resumable."""

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from tiny import tiny_trainer

from invreg.data import DigitsDataModule
from invreg.models import MLP
from invreg.models.hyper import HyperCNN
from invreg.modules import InvarianceModule
from invreg.modules.hyper import HyperUpstreamModule
from invreg.modules.streams import CHECKPOINT_KEY


def invariance_module():
    return InvarianceModule(MLP((1, 8, 8), num_classes=10, hidden_widths=[8]), group="c4")


def draws(module, n=8):
    return torch.randint(1000, (n,), generator=module.random_generator)


def test_batch_streams_depend_on_the_batch_not_on_earlier_draws():
    module = invariance_module()
    module.on_train_batch_start(None, 3)
    first = draws(module)
    draws(module)  # more draws in between, e.g. a sanity check
    module.on_validation_batch_start(None, 0)
    draws(module)
    module.on_train_batch_start(None, 3)
    assert torch.equal(draws(module), first)
    module.on_train_batch_start(None, 4)
    assert not torch.equal(draws(module), first)
    # validation repeats its draws at every evaluation, apart from the training stream
    module.on_validation_batch_start(None, 3)
    validation = draws(module)
    module.on_validation_batch_start(None, 3)
    assert torch.equal(draws(module), validation)
    assert not torch.equal(validation, first)


def test_seed_is_the_global_seed_and_travels_in_the_checkpoint():
    pl.seed_everything(5)
    module = invariance_module()
    assert module.random_seed == 5
    checkpoint = {}
    module.on_save_checkpoint(checkpoint)
    assert checkpoint[CHECKPOINT_KEY] == {"seed": 5}
    pl.seed_everything(6)
    restored = invariance_module()
    restored.on_load_checkpoint(checkpoint)
    module.on_train_batch_start(None, 0)
    restored.on_train_batch_start(None, 0)
    assert torch.equal(draws(restored), draws(module))
    # a checkpoint without the entry (written before the streams existed) keeps the seed
    restored.on_load_checkpoint({})
    assert restored.random_seed == 5


def _fit_hyper(tmp_path, name, max_epochs, ckpt_path=None):
    pl.seed_everything(0)
    backbone = HyperCNN((1, 8, 8), num_classes=10, descriptor=["rotation", "flip"],
                        channels=(4, 8), embedding_dim=8, embedding_hidden=8)
    module = HyperUpstreamModule(backbone, num_classes=10, invariance_weight=1.0,
                                 corner_probability=0.2, lr=1e-2)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / name, save_last=True)
    trainer = tiny_trainer(tmp_path, max_epochs=max_epochs, callbacks=[checkpoint],
                           enable_checkpointing=True, deterministic=True)
    trainer.fit(module, DigitsDataModule(batch_size=512, augment_group="flip"),
                ckpt_path=ckpt_path)
    return module.state_dict()


def test_hyper_upstream_resume_is_bit_identical(tmp_path):
    expected = _fit_hyper(tmp_path, "full", 2)
    _fit_hyper(tmp_path, "first", 1)
    resumed = _fit_hyper(tmp_path, "resumed", 2, ckpt_path=tmp_path / "first" / "last.ckpt")
    assert expected.keys() == resumed.keys()
    for key in expected:
        assert torch.equal(expected[key], resumed[key]), key

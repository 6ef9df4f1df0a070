"""ν fixed at 0 (augmentation alone, a weight-tied model): the training step forwards the batch
alone, since the invariance term cannot change the gradient; ``track_invariance`` measures it."""

import pytest
import pytorch_lightning as pl
import torch
from tiny import tiny_trainer
from torch.utils.data import DataLoader, TensorDataset

from invreg.models import MLP
from invreg.modules import InvarianceModule


def module(weight=0.0, **options):
    pl.seed_everything(0)
    return InvarianceModule(MLP((1, 4, 4), 3, hidden_widths=(8,)), group="c4",
                            invariance_weight=weight, **options)


def rows_forwarded(model, stage, batch):
    sizes = []
    handle = model.backbone.register_forward_hook(
        lambda _m, inputs, _out: sizes.append(inputs[0].shape[0]))
    try:
        with torch.set_grad_enabled(stage == "train"):
            model.shared_step(batch, stage)
    finally:
        handle.remove()
    return sizes


def batch(n=6):
    gen = torch.Generator().manual_seed(1)
    return torch.randn(n, 1, 4, 4, generator=gen), torch.arange(n) % 3


@pytest.mark.parametrize("orbit_mode, copies", [("sample", 1), ("full", 3)])
def test_zero_weight_trains_on_the_batch_alone(orbit_mode, copies):
    assert rows_forwarded(module(orbit_mode=orbit_mode), "train", batch()) == [6]
    tracked = module(orbit_mode=orbit_mode, track_invariance=True)
    assert rows_forwarded(tracked, "train", batch()) == [6 * (1 + copies)]
    assert rows_forwarded(module(0.5, orbit_mode=orbit_mode), "train", batch()) == [
        6 * (1 + copies)]
    # validation measures the invariance error over the orbit whatever ν is
    assert rows_forwarded(module(orbit_mode=orbit_mode), "val", batch()) == [6 * 4]


def test_the_loss_and_its_gradient_are_the_task_loss():
    x, y = batch()
    fast, tracked = module(augment=False), module(augment=False, track_invariance=True)
    tracked.load_state_dict(fast.state_dict())
    loss = fast.shared_step((x, y), "train")
    reference = tracked.shared_step((x, y), "train")
    expected = torch.nn.functional.cross_entropy(fast.backbone(x), y)
    eps = torch.finfo(torch.float32).eps
    assert torch.allclose(loss, expected, rtol=8 * eps, atol=0.0)
    # ν·I with ν = 0 adds nothing: the same task loss, computed in a batch of 2B rows there
    torch.testing.assert_close(loss, reference, rtol=64 * eps, atol=0.0)
    grads = torch.autograd.grad(loss, list(fast.parameters()))
    reference_grads = torch.autograd.grad(reference, list(tracked.parameters()))
    for g, r in zip(grads, reference_grads, strict=True):
        scale = r.abs().max().clamp_min(1e-30)
        assert (g - r).abs().max() <= 64 * eps * scale


def logged_keys(model):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 1, 4, 4, generator=gen)
    data = TensorDataset(x, torch.arange(64) % 3)
    trainer = tiny_trainer(max_epochs=1)
    trainer.fit(model, DataLoader(data, batch_size=32), DataLoader(data, batch_size=32))
    return set(trainer.callback_metrics)


def test_logs_no_training_invariance_term_unless_tracked():
    untracked = logged_keys(module())
    assert "train/task_loss_epoch" in untracked and "val/invariance_loss" in untracked
    assert not any(key.startswith("train/invariance_loss") for key in untracked)
    assert "train/invariance_loss_epoch" in logged_keys(module(track_invariance=True))


def test_hyperparameters_record_it_and_a_checkpoint_restores_it(tmp_path):
    assert module().hparams["track_invariance"] is False
    assert module(0.5).hparams["track_invariance"] is False  # the cache key leaves it out
    tracked = module(track_invariance=True)
    path = tmp_path / "m.ckpt"
    trainer = tiny_trainer(max_epochs=0)
    trainer.strategy.connect(tracked)
    trainer.save_checkpoint(path)
    restored = InvarianceModule.load_from_checkpoint(path)
    assert restored.unweighted is False and restored.hparams["track_invariance"] is True


def test_track_invariance_must_be_a_bool():
    with pytest.raises(TypeError, match="track_invariance: expected True or False"):
        module(track_invariance="yes")

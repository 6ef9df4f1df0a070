import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from invreg.functional import logit_invariance, orbit_logits
from invreg.groups import Rotations
from invreg.losses import FeatureL2, PredictiveKL
from invreg.modules import InvarianceModule


class TinyNet(nn.Module):
    def __init__(self, num_classes=3):
        super().__init__()
        self.num_classes = num_classes
        self.hidden = nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.ReLU())
        self.head = nn.Linear(32, num_classes)

    def forward(self, x):
        return self.head(self.hidden(x))


def loaders(n=96, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 4, 4, generator=gen)
    y = (x[:, 0, 0, 0] > 0).long() + (x[:, 0, 3, 3] > 0).long()
    ds = TensorDataset(x, y)
    return DataLoader(ds, batch_size=32, shuffle=True, generator=gen), DataLoader(ds, batch_size=48)


def fit(module, epochs=15):
    pl.seed_everything(0)
    trainer = pl.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    train, val = loaders()
    trainer.fit(module, train, val)
    return trainer


def li_on_data(module):
    x = loaders()[1].dataset.tensors[0]
    module.eval()
    with torch.no_grad():
        return logit_invariance(orbit_logits(module.backbone, x, Rotations(4))).item()


def test_regulariser_reduces_logit_invariance_error():
    torch.manual_seed(0)
    da = InvarianceModule(TinyNet(), group="c4", invariance_weight=0.0, lr=1e-2)
    fit(da)
    torch.manual_seed(0)
    ir = InvarianceModule(TinyNet(), group="c4", invariance_weight=5.0, lr=1e-2)
    trainer = fit(ir)
    assert li_on_data(ir) < 0.2 * li_on_data(da)
    logged = trainer.callback_metrics
    for key in ["train/task_loss_epoch", "train/invariance_loss_epoch", "val/acc", "val/loss"]:
        assert key in logged, key


def test_training_step_combines_task_and_weighted_invariance_loss():
    torch.manual_seed(0)
    module = InvarianceModule(TinyNet(), group="c4", invariance_weight=2.0, augment=False,
                              orbit_mode="full")
    x, y = next(iter(loaders()[1]))
    logged = {}
    # epoch means are logged as metric objects: their value after this one batch
    module.log = lambda name, value, **kw: logged.__setitem__(name, value.compute())
    loss = module.shared_step((x, y), "val")
    expected_task = nn.functional.cross_entropy(module.backbone(x), y)
    expected_inv = logit_invariance(orbit_logits(module.backbone, x, Rotations(4)))
    assert torch.allclose(logged["val/task_loss"], expected_task, atol=1e-6)
    assert torch.allclose(logged["val/invariance_loss"], expected_inv, atol=1e-6)
    assert torch.allclose(loss, expected_task + 2.0 * expected_inv, atol=1e-6)


def test_sample_mode_never_draws_identity():
    module = InvarianceModule(TinyNet(), group="c4")
    x = torch.randn(500, 1, 4, 4)
    copies = module.transformed_copies(x, "sample")
    assert copies.shape == (500, 1, 1, 4, 4)
    assert not (copies[:, 0] == x).flatten(1).all(dim=1).any()


def test_feature_loss_compares_named_layer():
    module = InvarianceModule(TinyNet(), group="c4", invariance_loss=FeatureL2("hidden"))
    logits, features = module.forward_with_features(torch.randn(5, 1, 4, 4))
    assert logits.shape == (5, 3) and features.shape == (5, 32)
    with pytest.raises(ValueError, match="invariance_loss.layer: .*'hiden'.*Did you mean 'hidden'"):
        InvarianceModule(TinyNet(), invariance_loss=FeatureL2("hiden"))


def test_overriding_forward_with_features_changes_what_is_compared():
    class ProbabilityInvariance(InvarianceModule):
        def forward_with_features(self, x):
            logits = self.backbone(x)
            return logits, logits.softmax(dim=-1)

    module = ProbabilityInvariance(TinyNet(), group="c4", augment=False)
    _, feats = module.forward_with_features(torch.randn(2, 1, 4, 4))
    assert torch.allclose(feats.sum(-1), torch.ones(2))
    fit(module, epochs=1)


def test_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match="invariance_weight"):
        InvarianceModule(TinyNet(), invariance_weight=-1)
    with pytest.raises(ValueError, match="Unknown group name"):
        InvarianceModule(TinyNet(), group="c4x")
    with pytest.raises(ValueError, match="orbit_size"):
        InvarianceModule(TinyNet(), group="so2", orbit_mode="full")
    with pytest.raises(ValueError, match="num_classes"):
        InvarianceModule(nn.Linear(16, 3))
    module = InvarianceModule(TinyNet(num_classes=3), num_classes=4)
    with pytest.raises(ValueError, match=r"expected logits of shape \[\d+, 4\]"):
        module.shared_step((torch.randn(2, 1, 4, 4), torch.zeros(2).long()), "val")
    module = InvarianceModule(TinyNet())
    bad = torch.randn(2, 1, 4, 4)
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        module.shared_step((bad, torch.zeros(2).long()), "train")


def test_predictive_kl_and_continuous_group_train():
    module = InvarianceModule(TinyNet(), group="so2", invariance_loss=PredictiveKL(),
                              orbit_mode="full", orbit_size=3)
    fit(module, epochs=1)
    module = InvarianceModule(TinyNet(), group="so2", invariance_loss="normalized_logit_l2")
    fit(module, epochs=1)

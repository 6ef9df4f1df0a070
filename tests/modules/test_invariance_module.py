import pytest
import pytorch_lightning as pl
import torch
from tiny import tiny_trainer
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from invreg.functional import logit_invariance, orbit_logits
from invreg.groups import Rotations
from invreg.losses import FeatureL2, NormalizedLogitL2, PredictiveKL
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
    trainer = tiny_trainer(max_epochs=epochs)
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
    module.log = lambda name, value, **kw: logged.__setitem__(name, value)
    loss = module.shared_step((x, y), "val")
    module.on_validation_epoch_end()  # the epoch means after this one batch
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


def kl_pairs(orbit):
    """``KL(softmax f(x) ‖ softmax f(g·x))`` per sample and non-identity element."""
    log_p = orbit.log_softmax(dim=-1)
    return (log_p[:, :1].exp() * (log_p[:, :1] - log_p[:, 1:])).sum(-1)


def normalized_l2_pairs(orbit):
    """``‖f(x) − f(g·x)‖² / ‖f(x)‖²`` per sample and non-identity element."""
    return (orbit[:, :1] - orbit[:, 1:]).pow(2).sum(-1) / orbit[:, :1].pow(2).sum(-1)


@pytest.mark.parametrize(
    ("loss", "loss_class", "pairs"),
    [(PredictiveKL(), PredictiveKL, kl_pairs),
     ("normalized_logit_l2", NormalizedLogitL2, normalized_l2_pairs)],
    ids=["predictive_kl", "normalized_logit_l2"],
)
def test_predictive_kl_and_continuous_group_train(loss, loss_class, pairs):
    """On SO(2) with ``orbit_mode="full"`` the step compares ``f(x)`` with ``orbit_size − 1``
    rotated copies by the chosen loss, and training moves the weights with finite losses."""
    torch.manual_seed(0)
    module = InvarianceModule(TinyNet(), group="so2", invariance_loss=loss, orbit_mode="full",
                              orbit_size=3, invariance_weight=2.0, augment=False).double()
    assert isinstance(module.invariance_loss, loss_class)
    x, y = next(iter(loaders()[1]))
    x = x.double()
    logged = {}
    module.log = lambda name, value, **kw: logged.__setitem__(name, value)
    module.random_generator.manual_seed(7)
    total = module.shared_step((x, y), "train")
    # the same draw of angles, by hand: the identity and two rotated copies of each sample
    module.random_generator.manual_seed(7)
    orbit_inputs = module.group.orbit(x, num_samples=3, generator=module.random_generator)
    assert orbit_inputs.shape == (48, 3, 1, 4, 4)
    with torch.no_grad():
        orbit = module.backbone(orbit_inputs.flatten(0, 1)).view(48, 3, 3)
    invariance = pairs(orbit).mean()
    task = nn.functional.cross_entropy(orbit[:, 0], y)
    # float64 sums over a few dozen terms of size ~1: a few hundred eps of the magnitude
    tol = 256 * torch.finfo(torch.float64).eps * max(1.0, invariance.item(), task.item())
    assert invariance > 1e3 * tol  # the rotated copies differ: the comparison is not vacuous
    torch.testing.assert_close(total.detach(), task + 2.0 * invariance, rtol=0, atol=tol)

    module = InvarianceModule(TinyNet(), group="so2", invariance_loss=loss, orbit_mode="full",
                              orbit_size=3, lr=1e-2)
    before = [p.detach().clone() for p in module.parameters()]
    trainer = fit(module, epochs=1)
    assert all(not torch.equal(b, p) for b, p in zip(before, module.parameters(), strict=True))
    for key in ("train/task_loss_epoch", "train/invariance_loss_epoch", "val/invariance_loss"):
        value = trainer.callback_metrics[key]
        assert torch.isfinite(value) and value > 0, key

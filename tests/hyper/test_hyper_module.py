"""HyperInvarianceModule: upstream pre-training, checkpoint hand-over, downstream fitting."""

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger, WandbLogger
from torch.utils.data import DataLoader, TensorDataset

from invreg.models.hyper import HyperCNN
from invreg.modules.hyper import HyperInvarianceModule, load_upstream_backbone


def loader(n=64, num_classes=3, seed=0, shuffle=True):
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(num_classes, (n,), generator=gen)
    x = 0.3 * torch.randn(n, 1, 8, 8, generator=gen)
    x[torch.arange(n), 0, 2 * y, 2 * y] += 3.0  # a class-dependent bright pixel
    return DataLoader(TensorDataset(x, y), batch_size=16, shuffle=shuffle, generator=gen)


def backbone():
    torch.manual_seed(0)
    return HyperCNN((1, 8, 8), num_classes=3, descriptor=["rotation", "flip"], channels=(4, 8),
                    embedding_dim=8, embedding_hidden=8)


def trainer(tmp_path, epochs=1, **kwargs):
    pl.seed_everything(0)
    return pl.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False,
                      default_root_dir=tmp_path, **kwargs)


def snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.fixture(scope="module")
def upstream_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("upstream") / "upstream.ckpt"
    module = HyperInvarianceModule("upstream", backbone(), num_classes=3, invariance_weight=1.0,
                                   lr=1e-2)
    fit = trainer(path.parent, epochs=2)
    fit.fit(module, loader(), loader(shuffle=False))
    fit.save_checkpoint(path)
    return path


@pytest.mark.parametrize("sampling", ["sample", "batch"])
def test_upstream_training_lowers_the_loss_and_logs(tmp_path, sampling):
    module = HyperInvarianceModule("upstream", backbone(), num_classes=3, invariance_weight=1.0,
                                   descriptor_sampling=sampling, corner_probability=0.2,
                                   lr=1e-2)
    before = snapshot(module)
    fit = trainer(tmp_path, epochs=4)
    fit.validate(module, loader(shuffle=False), verbose=False)
    first = fit.callback_metrics["val/task_loss"].item()
    fit.fit(module, loader(), loader(shuffle=False))
    metrics = fit.callback_metrics
    assert metrics["val/task_loss"].item() < first
    for key in ["train/task_loss_epoch", "train/invariance_loss_epoch", "val/invariance_loss",
                "val/acc"]:
        assert key in metrics, key
    after = module.state_dict()
    for name in ["backbone.blocks.0.conv.generator.weight",
                 "backbone.descriptor_embedding.0.weight", "backbone.head.weight"]:
        assert not torch.equal(before[name], after[name]), name


def test_upstream_validation_is_deterministic(tmp_path):
    module = HyperInvarianceModule("upstream", backbone(), num_classes=3)
    fit = trainer(tmp_path)
    runs = [fit.validate(module, loader(shuffle=False), verbose=False)[0] for _ in range(2)]
    assert runs[0] == runs[1]


def test_checkpoint_rebuilds_the_hyper_network(upstream_checkpoint):
    restored = load_upstream_backbone(upstream_checkpoint)
    module = HyperInvarianceModule.load_from_checkpoint(upstream_checkpoint)
    x = next(iter(loader()))[0]
    assert torch.equal(restored(x, [0.2, 0.9]), module.backbone(x, [0.2, 0.9]))
    assert restored.config == backbone().config


def test_downstream_freezes_the_hyper_network_and_learns_descriptor_and_head(
    tmp_path, upstream_checkpoint
):
    module = HyperInvarianceModule("downstream", upstream_checkpoint=str(upstream_checkpoint),
                                   num_classes=4, descriptor_init=[0.5, 0.02],
                                   descriptor_lr=0.3, lr=1e-2)
    assert module.head.out_features == 4 and module.backbone.head.out_features == 3
    trainable = {n for n, p in module.named_parameters() if p.requires_grad}
    assert trainable == {"descriptor", "head.weight", "head.bias"}
    before = snapshot(module)
    fit = trainer(tmp_path, epochs=2)
    fit.fit(module, loader(num_classes=4), loader(num_classes=4, shuffle=False))
    after = module.state_dict()
    for name, value in before.items():
        changed = not torch.equal(value, after[name])
        assert changed == (not name.startswith("backbone.")), name
    assert not module.backbone.training  # frozen norms stay in inference mode
    d = module.descriptor.detach()
    assert ((d >= 0) & (d <= 1)).all()
    # a big descriptor learning rate pushes a component against the box: it was clamped
    history = torch.tensor([values for _, values in module.descriptor_history])
    assert len(history) == fit.global_step
    assert ((history == 0) | (history == 1)).any()
    assert ((history >= 0) & (history <= 1)).all()
    assert {"descriptor/rotation", "descriptor/flip"} <= set(fit.callback_metrics)


def test_fixed_descriptor_stays_put(tmp_path, upstream_checkpoint):
    module = HyperInvarianceModule("downstream", upstream_checkpoint=str(upstream_checkpoint),
                                   num_classes=3, descriptor_init={"rotation": 1.0, "flip": 0.0},
                                   learn_descriptor=False)
    trainer(tmp_path).fit(module, loader())
    assert module.descriptor.tolist() == [1.0, 0.0]
    assert {n for n, p in module.named_parameters() if p.requires_grad} == {
        "head.weight", "head.bias"}


def test_descriptor_waits_for_the_warm_up_epochs(tmp_path, upstream_checkpoint):
    module = HyperInvarianceModule("downstream", upstream_checkpoint=str(upstream_checkpoint),
                                   num_classes=3, descriptor_warmup_epochs=1, descriptor_lr=0.1)
    trainer(tmp_path, epochs=2).fit(module, loader())
    steps_per_epoch = len(loader())
    history = torch.tensor([values for _, values in module.descriptor_history])
    assert torch.all(history[:steps_per_epoch] == 0.5)  # epoch 0: only the head learns
    assert not torch.equal(history[-1], torch.tensor([0.5, 0.5]))


def test_descriptor_trajectory_goes_to_every_logger(tmp_path, upstream_checkpoint, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    wandb_logger = WandbLogger(save_dir=str(tmp_path), offline=True)
    logged = []
    monkeypatch.setattr(wandb_logger, "log_metrics",
                        lambda metrics, step=None: logged.append((metrics, step)))
    csv = CSVLogger(tmp_path)
    module = HyperInvarianceModule("downstream", upstream_checkpoint=str(upstream_checkpoint),
                                   num_classes=3)
    pl.seed_everything(0)
    fit = pl.Trainer(max_epochs=1, logger=[csv, wandb_logger], enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=1)
    fit.fit(module, loader())
    charts = [(m, s) for m, s in logged if "descriptor/trajectory" in m]
    assert len(charts) == 1 and charts[0][1] == fit.global_step
    assert any("descriptor/rotation" in m for m, _ in logged)
    csv_text = next(tmp_path.rglob("metrics.csv")).read_text()
    assert "descriptor/rotation" in csv_text.splitlines()[0]


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="upstream_checkpoint: no file at .*nope.ckpt"):
        HyperInvarianceModule("downstream", upstream_checkpoint=str(tmp_path / "nope.ckpt"),
                              num_classes=3)


def test_a_checkpoint_that_is_not_upstream_is_rejected(tmp_path, upstream_checkpoint):
    module = HyperInvarianceModule("downstream", upstream_checkpoint=str(upstream_checkpoint),
                                   num_classes=3)
    fit = trainer(tmp_path)
    fit.fit(module, loader())
    path = tmp_path / "downstream.ckpt"
    fit.save_checkpoint(path)
    with pytest.raises(ValueError, match="not a checkpoint of HyperInvarianceModule"):
        HyperInvarianceModule("downstream", upstream_checkpoint=str(path), num_classes=3)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(stage="sideways"), ValueError, "stage"),
        (dict(stage="upstream"), ValueError, "exactly one of backbone"),
        (dict(stage="upstream", backbone=torch.nn.Linear(2, 2)), TypeError, "HyperCNN"),
        (dict(stage="upstream", backbone="B", num_classes=5), ValueError, "does not match"),
        (dict(stage="upstream", backbone="B", invariance_error="l1"), ValueError,
         "invariance_error"),
        (dict(stage="upstream", backbone="B", descriptor_sampling="x"), ValueError,
         "descriptor_sampling"),
        (dict(stage="downstream", num_classes=3), ValueError, "needs upstream_checkpoint"),
        (dict(stage="downstream", descriptor_warmup_epochs=-1), ValueError, "warmup"),
        (dict(stage="downstream", backbone="B", upstream_checkpoint="x.ckpt"), ValueError,
         "do not pass backbone"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    if kwargs.get("backbone") == "B":
        kwargs["backbone"] = backbone()
    with pytest.raises(error, match=match):
        HyperInvarianceModule(**kwargs)


def test_bad_descriptor_init(upstream_checkpoint):
    with pytest.raises(ValueError, match=r"strengths must lie in \[0, 1\]"):
        HyperInvarianceModule("downstream", upstream_checkpoint=str(upstream_checkpoint),
                              num_classes=3, descriptor_init=2.0)
    with pytest.raises(ValueError, match="a strength for each"):
        HyperInvarianceModule("downstream", upstream_checkpoint=str(upstream_checkpoint),
                              num_classes=3, descriptor_init={"rotatoin": 1.0})

"""HyperUpstreamModule and HyperDownstreamModule: pre-training, checkpoint hand-over, fitting;
the DescriptorTrajectoryCallback that follows the learned descriptor."""

import csv

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger, WandbLogger
from tiny import hyper_backbone, hyper_loader, tiny_trainer

from invreg.callbacks import DescriptorTrajectoryCallback
from invreg.losses import FeatureL2, NormalizedLogitL2
from invreg.modules.hyper import (
    HyperDownstreamModule,
    HyperUpstreamModule,
    load_upstream_backbone,
)
from invreg.modules.hyper_common import UPSTREAM_MARK


def trainer(tmp_path, epochs=1, **kwargs):
    pl.seed_everything(0)
    return tiny_trainer(tmp_path, max_epochs=epochs, **kwargs)


def snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("sampling", ["sample", "batch"])
def test_upstream_training_lowers_the_loss_and_logs(tmp_path, sampling):
    module = HyperUpstreamModule(hyper_backbone(), num_classes=3, invariance_weight=1.0,
                                   descriptor_sampling=sampling, corner_probability=0.2,
                                   lr=1e-2)
    before = snapshot(module)
    fit = trainer(tmp_path, epochs=4)
    fit.validate(module, hyper_loader(shuffle=False), verbose=False)
    first = fit.callback_metrics["val/task_loss"].item()
    fit.fit(module, hyper_loader(), hyper_loader(shuffle=False))
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
    module = HyperUpstreamModule(hyper_backbone(), num_classes=3)
    fit = trainer(tmp_path)
    runs = [fit.validate(module, hyper_loader(shuffle=False), verbose=False)[0] for _ in range(2)]
    assert runs[0] == runs[1]


def test_checkpoint_rebuilds_the_hyper_network(upstream_checkpoint):
    restored = load_upstream_backbone(upstream_checkpoint)
    module = HyperUpstreamModule.load_from_checkpoint(upstream_checkpoint)
    x = next(iter(hyper_loader()))[0]
    assert torch.equal(restored(x, [0.2, 0.9]), module.backbone(x, [0.2, 0.9]))
    assert restored.config == hyper_backbone().config


def test_downstream_freezes_the_hyper_network_and_learns_descriptor_and_head(
    tmp_path, upstream_checkpoint
):
    module = HyperDownstreamModule(upstream_checkpoint=str(upstream_checkpoint),
                                   num_classes=4, descriptor_init=[0.5, 0.02],
                                   descriptor_lr=0.3, lr=1e-2)
    assert module.head.out_features == 4 and module.backbone.head.out_features == 3
    trainable = {n for n, p in module.named_parameters() if p.requires_grad}
    assert trainable == {"descriptor", "head.weight", "head.bias"}
    before = snapshot(module)
    trajectory = DescriptorTrajectoryCallback()
    fit = trainer(tmp_path, epochs=2, callbacks=[trajectory])
    fit.fit(module, hyper_loader(num_classes=4), hyper_loader(num_classes=4, shuffle=False))
    after = module.state_dict()
    for name, value in before.items():
        changed = not torch.equal(value, after[name])
        assert changed == (not name.startswith("backbone.")), name
    assert not module.backbone.training  # frozen norms stay in inference mode
    d = module.descriptor.detach()
    assert ((d >= 0) & (d <= 1)).all()
    # a big descriptor learning rate pushes a component against the box: it was clamped
    history = torch.tensor([values for _, values in trajectory.history])
    assert len(history) == fit.global_step
    assert ((history == 0) | (history == 1)).any()
    assert ((history >= 0) & (history <= 1)).all()
    assert {"descriptor/rotation", "descriptor/flip"} <= set(fit.callback_metrics)


def test_fixed_descriptor_stays_put(tmp_path, upstream_checkpoint):
    module = HyperDownstreamModule(upstream_checkpoint=str(upstream_checkpoint),
                                   num_classes=3, descriptor_init={"rotation": 1.0, "flip": 0.0},
                                   learn_descriptor=False)
    trainer(tmp_path).fit(module, hyper_loader())
    assert module.descriptor.tolist() == [1.0, 0.0]
    assert {n for n, p in module.named_parameters() if p.requires_grad} == {
        "head.weight", "head.bias"}


def test_descriptor_waits_for_the_warm_up_epochs(tmp_path, upstream_checkpoint):
    module = HyperDownstreamModule(upstream_checkpoint=str(upstream_checkpoint),
                                   num_classes=3, descriptor_warmup_epochs=1, descriptor_lr=0.1)
    trajectory = DescriptorTrajectoryCallback()
    trainer(tmp_path, epochs=2, callbacks=[trajectory]).fit(module, hyper_loader())
    steps_per_epoch = len(hyper_loader())
    history = torch.tensor([values for _, values in trajectory.history])
    assert torch.all(history[:steps_per_epoch] == 0.5)  # epoch 0: only the head learns
    assert not torch.equal(history[-1], torch.tensor([0.5, 0.5]))


def test_descriptor_callback_logs_a_row_per_epoch_to_a_csv_logger(tmp_path, upstream_checkpoint):
    module = HyperDownstreamModule(upstream_checkpoint=str(upstream_checkpoint), num_classes=3,
                                   descriptor_lr=0.1)
    trajectory = DescriptorTrajectoryCallback()
    fit = trainer(tmp_path, epochs=3, callbacks=[trajectory])
    fit.loggers = [CSVLogger(tmp_path)]  # trainer() has none
    fit.fit(module, hyper_loader())
    with open(next(tmp_path.rglob("metrics.csv"))) as file:
        rows = [r for r in csv.DictReader(file) if r["descriptor/rotation"]]
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    # each row holds the descriptor after that epoch's last step
    steps_per_epoch = len(hyper_loader())
    for epoch, row in enumerate(rows):
        step, values = trajectory.history[(epoch + 1) * steps_per_epoch - 1]
        assert step == (epoch + 1) * steps_per_epoch
        logged = [float(row["descriptor/rotation"]), float(row["descriptor/flip"])]
        assert logged == pytest.approx(values, rel=0, abs=torch.finfo(torch.float32).eps)
    assert len({tuple(values) for _, values in trajectory.history}) > 1  # d moved


def test_descriptor_callback_sends_the_trajectory_plot_to_wandb(
    tmp_path, upstream_checkpoint, monkeypatch
):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    wandb_logger = WandbLogger(save_dir=str(tmp_path), offline=True)
    logged = []
    monkeypatch.setattr(wandb_logger, "log_metrics",
                        lambda metrics, step=None: logged.append((metrics, step)))
    module = HyperDownstreamModule(upstream_checkpoint=str(upstream_checkpoint), num_classes=3)
    fit = trainer(tmp_path, epochs=2, callbacks=[DescriptorTrajectoryCallback()])
    fit.loggers = [wandb_logger]
    fit.fit(module, hyper_loader())
    charts = [(m, s) for m, s in logged if "descriptor/trajectory" in m]
    assert len(charts) == 1 and charts[0][1] == fit.global_step
    assert sum("descriptor/rotation" in m for m, _ in logged) == 2  # one per epoch


def test_descriptor_callback_without_a_logger_fills_callback_metrics(
    tmp_path, upstream_checkpoint
):
    module = HyperDownstreamModule(upstream_checkpoint=str(upstream_checkpoint), num_classes=3)
    fit = trainer(tmp_path, callbacks=[DescriptorTrajectoryCallback()])
    fit.fit(module, hyper_loader())
    logged = [fit.callback_metrics[f"descriptor/{n}"].item() for n in ("rotation", "flip")]
    assert logged == module.descriptor.tolist()


def test_descriptor_callback_needs_a_learned_descriptor(tmp_path):
    fit = trainer(tmp_path, callbacks=[DescriptorTrajectoryCallback()])
    with pytest.raises(TypeError, match="learned descriptor.*HyperUpstreamModule"):
        fit.fit(HyperUpstreamModule(hyper_backbone()), hyper_loader())


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="upstream_checkpoint: no file at .*nope.ckpt"):
        HyperDownstreamModule(upstream_checkpoint=str(tmp_path / "nope.ckpt"),
                              num_classes=3)


def test_a_checkpoint_that_is_not_upstream_is_rejected(tmp_path, upstream_checkpoint):
    module = HyperDownstreamModule(upstream_checkpoint=str(upstream_checkpoint),
                                   num_classes=3)
    fit = trainer(tmp_path)
    fit.fit(module, hyper_loader())
    path = tmp_path / "downstream.ckpt"
    fit.save_checkpoint(path)
    with pytest.raises(ValueError, match="not a checkpoint of HyperUpstreamModule"):
        HyperDownstreamModule(upstream_checkpoint=str(path), num_classes=3)


def test_checkpoints_of_the_former_single_module_still_hand_over(tmp_path, upstream_checkpoint):
    """An upstream checkpoint written before the split (marked by its ``stage`` argument,
    not by the entry HyperUpstreamModule adds) still gives its hyper-network."""
    saved = torch.load(upstream_checkpoint, weights_only=True)
    assert saved.pop(UPSTREAM_MARK) is True
    old = tmp_path / "old.ckpt"
    torch.save(saved, old)
    with pytest.raises(ValueError, match="not a checkpoint of HyperUpstreamModule"):
        load_upstream_backbone(old)
    saved["hyper_parameters"]["stage"] = "upstream"
    torch.save(saved, old)
    x = next(iter(hyper_loader()))[0]
    torch.testing.assert_close(load_upstream_backbone(old)(x, [0.3, 0.6]),
                               load_upstream_backbone(upstream_checkpoint)(x, [0.3, 0.6]),
                               rtol=0, atol=0)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(), ValueError, "exactly one of backbone"),
        (dict(backbone=torch.nn.Linear(2, 2)), TypeError, "HyperCNN"),
        (dict(backbone="B", backbone_config=hyper_backbone().config), ValueError, "exactly one of"),
        (dict(backbone="B", num_classes=5), ValueError, "does not match"),
        (dict(backbone="B", invariance_loss="l1"), ValueError, "Unknown invariance loss 'l1'"),
        (dict(backbone="B", invariance_loss=FeatureL2(layer="blocks.0")), ValueError,
         "compares the head's input features"),
        (dict(backbone="B", descriptor_sampling="x"), ValueError, "descriptor_sampling"),
        (dict(backbone="B", corner_probability=1.5), ValueError, "corner_probability"),
        (dict(backbone="B", lr=-1.0), ValueError, "lr must be a finite number"),
    ],
)
def test_bad_upstream_arguments(kwargs, error, match):
    if kwargs.get("backbone") == "B":
        kwargs["backbone"] = hyper_backbone()
    with pytest.raises(error, match=match):
        HyperUpstreamModule(**kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num_classes=3), "needs upstream_checkpoint"),
        (dict(num_classes=None, upstream_checkpoint="x.ckpt"), "num_classes"),
        (dict(num_classes=3, descriptor_warmup_epochs=-1), "warmup"),
        (dict(num_classes=3, descriptor_lr=float("nan")), "descriptor_lr"),
        (dict(num_classes=3, upstream_checkpoint="x.ckpt", backbone_config={}), "not both"),
    ],
)
def test_bad_downstream_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HyperDownstreamModule(**kwargs)


def test_upstream_takes_a_loss_object_and_keeps_its_description(tmp_path):
    module = HyperUpstreamModule(hyper_backbone(), invariance_weight=1.0,
                                 invariance_loss=NormalizedLogitL2())
    assert isinstance(module.invariance_loss, NormalizedLogitL2)
    fit = trainer(tmp_path)
    fit.fit(module, hyper_loader())
    path = tmp_path / "upstream.ckpt"
    fit.save_checkpoint(path)
    assert isinstance(HyperUpstreamModule.load_from_checkpoint(path).invariance_loss,
                      NormalizedLogitL2)


def test_upstream_training_is_a_function_of_the_seed(tmp_path):
    """Same seed, same weights, bit for bit: the module draws descriptors and augmentations
    from its own seeded streams (a different seed gives different weights)."""
    def fit(seed):
        pl.seed_everything(seed)
        module = HyperUpstreamModule(hyper_backbone(), invariance_weight=1.0,
                                     corner_probability=0.2, lr=1e-2)
        pl.seed_everything(seed)
        run = tiny_trainer(tmp_path, max_epochs=2, deterministic=True)
        run.fit(module, hyper_loader(seed=seed), hyper_loader(shuffle=False))
        return snapshot(module)

    first, again, other = fit(0), fit(0), fit(1)
    assert first.keys() == again.keys()
    for key in first:
        assert torch.equal(first[key], again[key]), key
    assert not torch.equal(first["backbone.head.weight"], other["backbone.head.weight"])


def test_bad_descriptor_init(upstream_checkpoint):
    with pytest.raises(ValueError, match=r"strengths must lie in \[0, 1\]"):
        HyperDownstreamModule(upstream_checkpoint=str(upstream_checkpoint),
                              num_classes=3, descriptor_init=2.0)
    with pytest.raises(ValueError, match="a strength for each"):
        HyperDownstreamModule(upstream_checkpoint=str(upstream_checkpoint),
                              num_classes=3, descriptor_init={"rotatoin": 1.0})


def test_upstream_refuses_a_loss_that_needs_the_model():
    from invreg.losses import LieDerivativeL2
    from invreg.modules import HyperUpstreamModule

    for loss in (LieDerivativeL2("rotation"), "lie_rotation"):
        with pytest.raises(ValueError, match="needs the model itself"):
            HyperUpstreamModule(backbone=hyper_backbone(), invariance_loss=loss)


@pytest.mark.parametrize("policy", ["raise", "skip"])
def test_nan_inputs_are_refused_whatever_the_policy(policy):
    from invreg.modules import HyperUpstreamModule

    module = HyperUpstreamModule(backbone=hyper_backbone(), on_nonfinite_loss=policy)
    x, y = next(iter(hyper_loader()))
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="contains NaN or Inf inputs"):
        module.training_step((x, y), 0)  # the HyperCNN's loss stays finite here

"""Every callback under fit, validate and test, with CSV, TensorBoard, W&B (disabled) or no
logger, and without the wandb package."""

import sys

import pytest
import torch
from callback_helpers import fast_callbacks, make_trainer, tiny_module
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger, WandbLogger

from invreg.callbacks import InvarianceCallback

LOGGERS = {
    "csv": lambda root: CSVLogger(root),
    "tensorboard": lambda root: TensorBoardLogger(root),
    "wandb": lambda root: WandbLogger(save_dir=str(root), mode="disabled"),
    "none": lambda root: None,
}
PREFIXES = ("orbit", "spectral", "saliency", "drift")


def ours(callbacks):
    return [c for c in callbacks if isinstance(c, InvarianceCallback)]


@pytest.mark.parametrize("logger_name", list(LOGGERS))
def test_all_callbacks_under_fit_validate_and_test(tmp_path, data, logger_name):
    callbacks = fast_callbacks()
    module = tiny_module()
    trainer = make_trainer(tmp_path, callbacks, logger=LOGGERS[logger_name](tmp_path))
    try:
        trainer.fit(module, data)
        trainer.validate(module, data)
        trainer.test(module, data)
    finally:
        if logger_name == "wandb":
            import wandb

            wandb.finish()  # a later WandbLogger would otherwise reuse this run
    for callback in ours(callbacks):
        stages = [h["stage"] for h in callback.history]
        assert stages == ["fit", "validate", "test"], type(callback).__name__
        assert callback.seconds > 0
    # the run directory has the figures and tables, whatever the logger
    run = ours(callbacks)[0].run_dir
    assert run is not None
    for prefix in ("spectral", "saliency", "drift"):
        assert list((run / prefix).glob("*.png")), prefix
    assert list((run / "drift").glob("test_step*.csv"))
    assert "orbit/test/SI" in trainer.callback_metrics


def test_validate_and_test_without_fit_use_gradients_inside_inference_mode(tmp_path, data):
    callbacks = fast_callbacks()
    module = tiny_module()
    trainer = make_trainer(tmp_path, callbacks, inference_mode=True)
    trainer.validate(module, data)
    trainer.test(module, data)
    for callback in ours(callbacks):
        assert [h["split"] for h in callback.history] == ["val", "test"]
    spectral = callbacks[1].history[-1]
    assert spectral["jacobian_sigma_max"] > 0
    assert all(p.grad is None for p in module.parameters())  # input gradients only


def test_training_is_unchanged_by_the_callbacks(tmp_path, data):
    weights = []
    for callbacks in ([], fast_callbacks()):
        torch.manual_seed(0)
        module = tiny_module()
        make_trainer(tmp_path, callbacks, max_epochs=2).fit(module, data)
        weights.append(torch.cat([p.detach().flatten() for p in module.parameters()]))
    assert torch.equal(weights[0], weights[1])


def test_works_without_wandb_installed(tmp_path, data, monkeypatch):
    for name in [m for m in sys.modules if m == "wandb" or m.startswith("wandb.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` now raises ImportError
    with pytest.raises(ImportError):
        import wandb  # noqa: F401
    callbacks = fast_callbacks()
    trainer = make_trainer(tmp_path, callbacks, logger=CSVLogger(tmp_path))
    module = tiny_module()
    trainer.fit(module, data)
    trainer.test(module, data)
    run = tmp_path / "lightning_logs" / "version_0"
    assert (run / "saliency" / "val_step000000.png").exists()
    assert (run / "spectral" / "spectral_decay_val.png").exists()
    assert (run / "drift" / "test_step000001.csv").exists()
    assert "orbit/val/DI" in (run / "metrics.csv").read_text()


def test_save_local_false_writes_no_files(tmp_path, data):
    make_trainer(tmp_path, fast_callbacks(save_local=False), logger=CSVLogger(tmp_path)).fit(
        tiny_module(), data
    )
    run = tmp_path / "lightning_logs" / "version_0"
    assert not any((run / prefix).exists() for prefix in PREFIXES)

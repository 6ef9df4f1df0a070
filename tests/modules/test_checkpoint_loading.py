"""Any invreg checkpoint loads in one line, in a fresh process, without its config."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny import tiny_trainer
from torch import nn

from invreg.config import from_config, to_config
from invreg.groups import Flips, Product, Rotations
from invreg.losses import FeatureL2
from invreg.models import MLP
from invreg.modules import InvarianceModule

ROOT = Path(__file__).resolve().parents[2]
TINY_CONFIG = """
seed_everything: 0
trainer:
  max_epochs: 1
  accelerator: cpu
  logger: false
  enable_progress_bar: false
  enable_model_summary: false
  limit_train_batches: 2
  limit_val_batches: 1
  callbacks:
    - class_path: pytorch_lightning.callbacks.ModelCheckpoint
      init_args:
        dirpath: {dirpath}
        filename: best
model:
  class_path: invreg.modules.InvarianceModule
  init_args:
    backbone:
      class_path: invreg.models.MLP
      init_args:
        input_shape: [1, 8, 8]
        num_classes: 10
        hidden_widths: [16]
    group: d4
    invariance_loss:
      class_path: invreg.losses.FeatureL2
      init_args:
        layer: hidden.0
    invariance_weight: 0.5
data:
  class_path: invreg.data.DigitsDataModule
  init_args:
    batch_size: 64
    augment_group: c4
"""

LOAD_AND_CHECK = """
import sys, torch
from invreg.modules import InvarianceModule
module = InvarianceModule.load_from_checkpoint(sys.argv[1])
state = torch.load(sys.argv[1], weights_only=True)["state_dict"]
assert all(torch.equal(module.state_dict()[k], v) for k, v in state.items())
print(type(module.backbone).__name__, module.group, module.invariance_loss.layer,
      module.invariance_weight)
"""


def run_python(*args, cwd):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300, env={"WANDB_MODE": "disabled", "PATH": "/usr/bin:/bin"})


def test_cli_written_checkpoint_loads_in_a_fresh_process(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(TINY_CONFIG.format(dirpath=tmp_path / "ckpt"))
    trained = run_python("-m", "invreg.cli", "fit", "--config", str(config), cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-2000:]
    checkpoint = tmp_path / "ckpt" / "best.ckpt"
    # another folder, no config anywhere near: only the checkpoint
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    loaded = run_python("-c", LOAD_AND_CHECK, str(checkpoint), cwd=elsewhere)
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert loaded.stdout.split() == ["MLP", "Dihedral(n=4)", "hidden.0", "0.5"]


def fit_and_save(module, path):
    x = torch.randn(16, 1, 8, 8)
    data = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, torch.randint(0, 10, (16,))), batch_size=8)
    trainer = tiny_trainer()
    trainer.fit(module, data)
    trainer.save_checkpoint(path)
    return path


def test_python_built_module_with_group_and_loss_objects_round_trips(tmp_path):
    group = Product(Rotations(2), Flips())  # half turns and mirrors commute
    module = InvarianceModule(MLP([1, 8, 8], 10, hidden_widths=[8]), group=group,
                              invariance_loss=FeatureL2("hidden.0"), invariance_weight=2.0)
    path = fit_and_save(module, tmp_path / "m.ckpt")
    # plain data only: loads with torch.load's safe default
    hparams = torch.load(path, weights_only=True)["hyper_parameters"]
    assert hparams["group"]["class_path"] == "invreg.groups.product.Product"
    loaded = InvarianceModule.load_from_checkpoint(path)
    assert loaded.group == group and loaded.invariance_loss.layer == "hidden.0"
    assert isinstance(loaded.backbone, MLP) and loaded.backbone.hidden_widths == (8,)
    x = torch.randn(4, 1, 8, 8)
    assert torch.equal(loaded(x), module(x))


class OwnNet(nn.Module):
    """A user's backbone: records no constructor arguments."""

    def __init__(self):
        super().__init__()
        self.num_classes = 10
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))

    def forward(self, x):
        return self.net(x)


def test_own_backbone_is_passed_back_with_a_clear_error_otherwise(tmp_path):
    module = InvarianceModule(OwnNet(), group="c4")
    path = fit_and_save(module, tmp_path / "own.ckpt")
    with pytest.raises(ValueError, match=r"backbone: the checkpoint could not store a OwnNet .*"
                                         r"load_from_checkpoint\(path, backbone=\.\.\.\)"):
        InvarianceModule.load_from_checkpoint(path)
    loaded = InvarianceModule.load_from_checkpoint(path, backbone=OwnNet())
    x = torch.randn(4, 1, 8, 8)
    assert torch.equal(loaded(x), module(x))


def test_config_round_trip_and_refusals():
    group = Product(Rotations(2), Flips(("vertical",)))
    assert from_config(to_config(group), object, "group") == group
    with pytest.raises(ValueError, match="refusing to import"):
        from_config({"class_path": "not_imported_here.Thing"}, object, "backbone")
    # importable, but not a class invreg describes: never called
    with pytest.raises(TypeError, match="records its constructor arguments"):
        from_config({"class_path": "subprocess.Popen", "init_args": {"args": ["true"]}},
                    object, "backbone")
    with pytest.raises(TypeError, match="is not a Module"):
        from_config(to_config(Rotations(4)), nn.Module, "backbone")
    with pytest.raises(ValueError, match="class_path"):
        from_config({"init_args": {}}, object, "backbone")


def test_checkpoint_with_a_data_module_holding_group_objects_loads_safely(tmp_path):
    from invreg.data import DigitsDataModule

    data = DigitsDataModule(batch_size=256, augment_group=Rotations(4))
    module = InvarianceModule(MLP(data.input_shape, data.num_classes, hidden_widths=[8]),
                              group=Rotations(4))
    trainer = tiny_trainer(tmp_path, limit_train_batches=1, limit_val_batches=1)
    trainer.fit(module, data)
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    # the whole file is plain data (torch.load's safe default), data module included
    checkpoint = torch.load(tmp_path / "m.ckpt", weights_only=True)
    assert checkpoint["datamodule_hyper_parameters"]["augment_group"]["init_args"] == {"n": 4}
    InvarianceModule.load_from_checkpoint(tmp_path / "m.ckpt")
    assert DigitsDataModule.load_from_checkpoint(tmp_path / "m.ckpt").augment_group == Rotations(4)


def test_a_group_built_from_functions_is_never_replaced_by_the_default(tmp_path):
    from invreg.groups import FiniteGroup

    def flip(x):
        return torch.flip(x, dims=(-1,))

    group = FiniteGroup.from_generator(flip, order=2, input_shape=(1, 8, 8))
    module = InvarianceModule(MLP((1, 8, 8), 10, hidden_widths=(8,)), group=group)
    path = fit_and_save(module, tmp_path / "custom.ckpt")
    with pytest.raises(ValueError, match=r"group: the checkpoint could not store FiniteGroup"):
        InvarianceModule.load_from_checkpoint(path)  # not Rotations(4), the default
    loaded = InvarianceModule.load_from_checkpoint(path, group=group)
    assert loaded.group is group
    x = torch.randn(4, 1, 8, 8)
    assert torch.equal(loaded(x), module(x))


def _flip_weight_bytes(path):
    """Damage the bytes of the first weight tensor, keeping the zip structure intact."""
    import zipfile

    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith("data/0"))
    head = info.header_offset
    start = head + 30 + int.from_bytes(raw[head + 26:head + 28], "little") + int.from_bytes(
        raw[head + 28:head + 30], "little")
    for i in range(8):
        raw[start + info.file_size // 2 + i] ^= 0x7F
    path.write_bytes(bytes(raw))


def test_corrupted_checkpoints_are_refused_by_every_invreg_entry_point(tmp_path):
    """torch.load does not check the archive's CRCs: load_from_checkpoint, trainer.validate
    (ckpt_path=...) and a downstream module's upstream_checkpoint loaded changed weights
    without a word."""
    from invreg.modules import HyperDownstreamModule

    module = InvarianceModule(MLP([1, 8, 8], 10, hidden_widths=[8]), group="c4")
    path = fit_and_save(module, tmp_path / "m.ckpt")
    _flip_weight_bytes(path)
    assert "state_dict" in torch.load(path, weights_only=True), "torch loads it silently"
    crc = r"m.ckpt' is corrupted: its member '.*' fails its CRC-32 check"
    with pytest.raises(ValueError, match=r"^checkpoint_path: .*" + crc):
        InvarianceModule.load_from_checkpoint(path)
    x = torch.randn(8, 1, 8, 8)
    data = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, torch.randint(0, 10, (8,))), batch_size=8)
    with pytest.raises(ValueError, match=r"^ckpt_path: .*" + crc):
        tiny_trainer().validate(module, data, ckpt_path=path, verbose=False)
    with pytest.raises(ValueError, match=r"^upstream_checkpoint: .*" + crc):
        HyperDownstreamModule(upstream_checkpoint=str(path), num_classes=4)


def test_a_mid_epoch_checkpoint_still_loads_for_evaluation(tmp_path):
    """Only resuming training from it is refused (tests/test_resume.py runs that through
    `invreg fit`); its weights load and evaluate."""
    from invreg.modules.checkpointing import check_epoch_end

    module = InvarianceModule(MLP([1, 8, 8], 10, hidden_widths=[8]), group="c4")
    x = torch.randn(32, 1, 8, 8)
    data = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, torch.randint(0, 10, (32,))), batch_size=8)
    trainer = tiny_trainer(tmp_path, max_steps=2, enable_checkpointing=False)
    trainer.fit(module, data)  # stops after 2 of the epoch's 4 batches
    path = tmp_path / "mid.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=True)
    with pytest.raises(ValueError, match=r"middle of epoch 0 \(after 2 of its training"):
        check_epoch_end(checkpoint, path)
    loaded = InvarianceModule.load_from_checkpoint(path)
    assert torch.equal(loaded(x), module(x))
    tiny_trainer().validate(module, data, ckpt_path=path, verbose=False)
    with pytest.raises(ValueError, match=r"mid.ckpt' was saved in the middle of epoch 0"):
        tiny_trainer(max_steps=4).fit(module, data, ckpt_path=path)

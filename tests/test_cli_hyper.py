"""configs/hyper/: upstream then downstream through the ``invreg`` CLI, with tiny budgets."""

from pathlib import Path

import pytest
import torch

from invreg.callbacks import DescriptorTrajectoryCallback
from invreg.cli import run_cli as main
from invreg.data.tasks import DigitOrientationDataModule, RotatedDigitsDataModule
from invreg.models.hyper import HyperCNN
from invreg.modules.hyper import HyperDownstreamModule, HyperUpstreamModule

CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "hyper"
TINY = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
        "--trainer.limit_val_batches", "1", "--trainer.logger", "false"]
DOWNSTREAM = {"downstream_rotated": (RotatedDigitsDataModule, 10),
              "downstream_orientation": (DigitOrientationDataModule, 4)}


def test_upstream_config_parses():
    cli = main(["--config", str(CONFIGS / "upstream.yaml")], run=False)
    assert isinstance(cli.model, HyperUpstreamModule)
    assert isinstance(cli.model.backbone, HyperCNN)
    assert cli.model.backbone.input_shape == cli.datamodule.input_shape == (1, 20, 20)
    assert cli.model.num_classes == cli.datamodule.num_classes == 10
    assert cli.model.backbone.descriptor.names == ("rotation",)


@pytest.fixture(scope="module")
def trained_upstream(tmp_path_factory):
    """Run the upstream config (tiny) in a scratch directory: it writes the checkpoint to the
    relative path the downstream configs point at."""
    workdir = tmp_path_factory.mktemp("hyper_cli")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(workdir)
        main(["fit", "--config", str(CONFIGS / "upstream.yaml"), *TINY])
    checkpoint = workdir / "runs/hyper/upstream/upstream.ckpt"
    assert checkpoint.is_file()
    return workdir


@pytest.mark.parametrize("name", sorted(DOWNSTREAM))
def test_downstream_configs_load_the_upstream_checkpoint_and_train(
    name, trained_upstream, monkeypatch
):
    monkeypatch.chdir(trained_upstream)
    data_class, num_classes = DOWNSTREAM[name]
    config = ["--config", str(CONFIGS / f"{name}.yaml")]
    cli = main(config, run=False)
    assert isinstance(cli.model, HyperDownstreamModule) and isinstance(cli.datamodule, data_class)
    assert cli.model.head.out_features == cli.datamodule.num_classes == num_classes
    frozen = {k: v.clone() for k, v in cli.model.backbone.state_dict().items()}
    cli = main(["fit", *config, *TINY, "--trainer.enable_checkpointing", "false",
                "--model.init_args.descriptor_warmup_epochs", "0"])
    for key, value in cli.model.backbone.state_dict().items():
        assert torch.equal(value, frozen[key]), key
    assert cli.model.descriptor.item() != 0.5  # the rotation strength moved from its start
    trajectory = [c for c in cli.trainer.callbacks if isinstance(c, DescriptorTrajectoryCallback)]
    assert len(trajectory) == 1 and len(trajectory[0].history) == cli.trainer.global_step
    assert cli.trainer.callback_metrics["descriptor/rotation"] == cli.model.descriptor.item()


def test_downstream_config_without_upstream_checkpoint_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="upstream_checkpoint: no file at"):
        main(["--config", str(CONFIGS / "downstream_rotated.yaml")], run=False)

"""CUDA paths: the same results on a GPU as on the CPU. Skipped where no GPU is present."""

import pytest
import pytorch_lightning as pl
import torch

from invreg import functional as IF
from invreg.data import DigitsDataModule
from invreg.groups import ContinuousRotations, CyclicShifts, Dihedral, Flips, Rotations
from invreg.models import E2CNN, MLP, TiedMLP, max_invariance_deviation
from invreg.modules import InvarianceModule

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize(
    "group",
    [Rotations(4), Rotations(8), Dihedral(4), CyclicShifts(3), Flips(), ContinuousRotations()],
    ids=repr,
)
def test_group_action_on_cuda_matches_cpu(group):
    x = torch.randn(6, 2, 12, 12)
    g = group.sample(6, generator=torch.Generator().manual_seed(0))
    cpu = group.act(x, g)
    gpu = group.act(x.cuda(), g.cuda())
    assert gpu.device.type == "cuda"
    assert torch.allclose(gpu.cpu(), cpu, atol=1e-5)


def test_orbit_measures_on_cuda_match_cpu():
    torch.manual_seed(0)
    model = MLP([1, 12, 12], 5, hidden_widths=[32])
    x = torch.randn(10, 1, 12, 12)
    cpu = IF.orbit_logits(model, x, Rotations(4))
    gpu = IF.orbit_logits(model.cuda(), x.cuda(), Rotations(4))
    assert torch.allclose(gpu.cpu(), cpu, atol=1e-5)
    assert torch.allclose(IF.logit_invariance(gpu).cpu(), IF.logit_invariance(cpu), atol=1e-5)


def test_invariant_models_on_cuda():
    x = torch.randn(4, 1, 29, 29, device="cuda")
    assert max_invariance_deviation(TiedMLP([1, 29, 29], 3, group="c4").cuda(), x, "c4") < 1e-5
    assert max_invariance_deviation(E2CNN([1, 29, 29], 3, group="d4").cuda(), x, "d4") < 1e-4


def test_training_on_gpu():
    data = DigitsDataModule(batch_size=64, seed=0)
    module = InvarianceModule(MLP(data.input_shape, data.num_classes, hidden_widths=[64]),
                              group="c4", lr=3e-3)
    trainer = pl.Trainer(accelerator="gpu", devices=1, max_epochs=2, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False)
    trainer.fit(module, data)
    assert trainer.callback_metrics["val/acc"] > 0.3

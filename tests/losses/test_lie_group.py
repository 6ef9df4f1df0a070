"""``LieDerivativeL2(group=...)``: the loss takes the run's group (a Group or its name) and gives
the numbers of the generator name; a loss without a group is described as before."""

from __future__ import annotations

import pytest
import torch
from tiny import tiny_trainer
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from invreg.config import from_config, to_config
from invreg.groups import ContinuousRotations, Product, Rotations, Scalings, Translations
from invreg.losses import InvarianceLoss, LieDerivativeL2
from invreg.models import SmallCNN
from invreg.modules import InvarianceModule


def images(batch: int = 4, size: int = 10) -> torch.Tensor:
    return torch.randn(batch, 1, size, size, generator=torch.Generator().manual_seed(0),
                       dtype=torch.float64)


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(100, 8), nn.Tanh(), nn.Linear(8, 3)).double()


FORMS = [
    ("rotation", {"group": ContinuousRotations()}),
    ("rotation", {"group": "so2"}),
    ("rotation", {"group": Product(ContinuousRotations(), Rotations(2)), "generator": None}),
    ("scale", {"group": Product(ContinuousRotations(), Scalings()), "generator": "scale"}),
    ("scale", {"group": Scalings(1.2)}),
    ("translate_y", {"group": Translations(), "generator": "translate_y"}),
]


@pytest.mark.parametrize(("name", "kwargs"), FORMS, ids=lambda v: repr(v)[:40])
def test_the_group_gives_the_loss_of_the_generator_name(name, kwargs):
    x, net = images(), model()
    by_group, by_name = LieDerivativeL2(**kwargs), LieDerivativeL2(name)
    assert by_group.generator == by_group.lie_generator.name == name
    for fill in (0.0, -0.3):
        assert torch.equal(by_group(net, x, fill=fill), by_name(net, x, fill=fill))
        pairs = zip(by_group.output_and_loss(net, x, fill), by_name.output_and_loss(net, x, fill),
                    strict=True)
        assert all(torch.equal(a, b) for a, b in pairs)
    assert by_name(net, x) > 0


def test_finite_groups_and_ambiguous_groups_are_refused_naming_the_choices():
    with pytest.raises(ValueError, match=r"^group: Rotations\(n=4\) has no Lie generator") as info:
        LieDerivativeL2(group="c4")
    assert "ContinuousRotations ('so2')" in str(info.value) and "'rotation'" in str(info.value)
    with pytest.raises(ValueError, match=r"'translate_x', 'translate_y'\); name one"):
        LieDerivativeL2(group=Translations())
    with pytest.raises(ValueError, match=r"\('rotation', 'scale'\); name one"):
        LieDerivativeL2(group=Product(ContinuousRotations(), Scalings()))
    with pytest.raises(ValueError, match=r"^generator: expected one of .*'scale'"):
        LieDerivativeL2()
    with pytest.raises(ValueError, match=r"^group: Unknown group name 'c4x'"):
        LieDerivativeL2(group="c4x")


def test_a_loss_without_group_is_described_as_before():
    # the description is what checkpoints and the experiments' model cache keys are made of
    assert to_config(LieDerivativeL2("rotation")) == {
        "class_path": "invreg.losses.lie.LieDerivativeL2",
        "init_args": {"generator": "rotation", "layer": None},
    }
    expected = "LieDerivativeL2(generator='scale', layer='1')"
    assert repr(LieDerivativeL2("scale", layer="1")) == expected


def test_a_loss_with_a_group_rebuilds_from_its_description():
    loss = LieDerivativeL2("translate_y", group=Translations(3.0))
    config = to_config(loss)
    assert config["init_args"]["group"] == {
        "class_path": "invreg.groups.affine.Translations", "init_args": {"max_shift": 3.0}}
    rebuilt = from_config(config, InvarianceLoss, "invariance_loss")
    assert rebuilt.group == Translations(3.0) and rebuilt.generator == "translate_y"
    assert "group=Translations(max_shift=3)" in repr(rebuilt)
    assert LieDerivativeL2(group="so2").group == ContinuousRotations()
    assert LieDerivativeL2("rotation").group is None


def test_module_trained_with_the_run_group_reloads(tmp_path):
    group = ContinuousRotations(30.0)
    module = InvarianceModule(SmallCNN((1, 12, 12), 3, channels=(4, 8)), group=group,
                              invariance_loss=LieDerivativeL2(group=group))
    trainer = tiny_trainer(tmp_path, max_steps=1, limit_val_batches=0)
    x, y = torch.randn(4, 1, 12, 12), torch.arange(4) % 3
    trainer.fit(module, DataLoader(TensorDataset(x, y), batch_size=4))
    trainer.save_checkpoint(tmp_path / "lie.ckpt")
    loaded = InvarianceModule.load_from_checkpoint(tmp_path / "lie.ckpt")
    assert loaded.invariance_loss.group == group
    assert loaded.invariance_loss.generator == "rotation"


def test_a_finite_run_group_is_refused_by_the_loss():
    with pytest.raises(ValueError, match="has no Lie generator"):
        LieDerivativeL2(group=Rotations(8))

"""``Group.check_input_shape``: a group that cannot act on a data module's inputs is refused
before training, with the valid choices named; ``InvarianceModule.setup`` calls it."""

import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from invreg.groups import CyclicShifts, Dihedral, Flips, Rotations, get_group
from invreg.groups.product import Product
from invreg.modules import InvarianceModule


@pytest.mark.parametrize(
    ("name", "shape"),
    [("t3", (1, 36, 36)), ("t12", (1, 36, 36)), ("ty4", (1, 8, 8)), ("c4", (1, 8, 8)),
     ("d4", (3, 5, 5)), ("flip", (1, 7, 9)), ("t5", (1, 40)), ("c8", (1, 9, 9))],
)
def test_fitting_groups_pass(name, shape):
    group = get_group(name)
    group.check_input_shape(shape)
    # the shape check agrees with acting on a batch of that shape
    x = torch.randn(2, *shape)
    assert group.act(x, group.sample(2)).shape == x.shape


def test_shifts_that_do_not_divide_the_axis_name_the_valid_choices():
    with pytest.raises(ValueError) as info:
        get_group("t5").check_input_shape((1, 36, 36))
    message = str(info.value)
    assert message.startswith("t5 needs n dividing 36")
    assert message.endswith(": t2, t3, t4, t6, t9, t12, t18, t36")
    with pytest.raises(ValueError, match=r"ty3 needs n dividing 8 .*y axis.*: ty2, ty4, ty8$"):
        get_group("ty3").check_input_shape((1, 8, 10))
    # every listed choice passes; each check agrees with acting on a batch
    for n in (2, 3, 4, 6, 9, 12, 18, 36):
        CyclicShifts(n).check_input_shape((1, 36, 36))
    with pytest.raises(ValueError, match="not a multiple of the axis length 36"):
        CyclicShifts(5).check_input(torch.zeros(1, 1, 36, 36))


def test_shifts_with_an_explicit_step():
    CyclicShifts(3, shift=4).check_input_shape((1, 12))
    with pytest.raises(ValueError, match=r"n·5 a multiple of 12 .*: t12$"):
        CyclicShifts(3, shift=5).check_input_shape((1, 12))


@pytest.mark.parametrize("group", [Rotations(4), Dihedral(4), Rotations(8)])
def test_rotations_need_square_images(group):
    with pytest.raises(ValueError, match=r"cannot act on inputs of shape \(1, 28, 36\).*square"):
        group.check_input_shape((1, 28, 36))


def test_images_only_groups_refuse_signals():
    with pytest.raises(ValueError, match=r"Rotations\(n=4\) cannot act on inputs of shape \(1, 40"):
        Rotations(4).check_input_shape((1, 40))
    with pytest.raises(ValueError, match=r"\(1, 40\)"):
        get_group("ty2").check_input_shape((1, 40))


def test_product_checks_both_factors():
    product = Product(Flips("vertical"), CyclicShifts(3))
    product.check_input_shape((1, 36, 36))
    with pytest.raises(ValueError, match="t3 needs n dividing 8"):
        product.check_input_shape((1, 8, 8))
    with pytest.raises(ValueError, match="square"):
        Product(Rotations(2), Flips()).check_input_shape((1, 6, 9))


@pytest.mark.parametrize("shape", [(), (1, 0, 8), (1, 8.0, 8), (1, True, 8)])
def test_bad_shape_argument(shape):
    with pytest.raises(ValueError, match="check_input_shape\\(shape\\): expected positive ints"):
        Rotations(4).check_input_shape(shape)


def test_shape_that_is_not_a_sequence():
    with pytest.raises(TypeError, match="expected a tuple of ints"):
        Rotations(4).check_input_shape(28)


class _Shaped(pl.LightningDataModule):
    """Random images of a given shape: enough to reach ``setup``."""

    def __init__(self, input_shape):
        super().__init__()
        self.input_shape = input_shape
        self.num_classes = 2

    def train_dataloader(self):
        x = torch.randn(8, *self.input_shape)
        return DataLoader(TensorDataset(x, torch.arange(8) % 2), batch_size=4)


def _module(group):
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(36 * 36, 2))
    return InvarianceModule(backbone, group=group, num_classes=2)


def test_module_setup_refuses_a_group_that_does_not_fit(tmp_path):
    trainer = pl.Trainer(
        max_epochs=1, limit_train_batches=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
    )
    module = _module("t5")
    with pytest.raises(ValueError, match=r"t5 needs n dividing 36 .*: t2, t3, t4, t6"):
        trainer.fit(module, datamodule=_Shaped((1, 36, 36)))
    assert trainer.global_step == 0

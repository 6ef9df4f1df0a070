"""Downstream digit tasks: same split as DigitsDataModule, rotated images, orientation labels."""

import pytest
import torch

from invreg.data import DigitsDataModule
from invreg.data.tasks import DigitOrientationDataModule, RotatedDigitsDataModule
from invreg.groups import Rotations

COMMON = dict(upscale=2, pad=2, standardize=False, seed=3)


@pytest.fixture(scope="module")
def plain():
    dm = DigitsDataModule(**COMMON)
    dm.setup()
    return dm


def test_rotated_digits_share_the_split_and_labels_but_are_rotated(plain):
    dm = RotatedDigitsDataModule(max_angle=180, **COMMON)
    dm.setup()
    for split in ("train", "val", "test"):
        assert torch.equal(dm.split_indices[split], plain.split_indices[split])
        x, y = getattr(dm, f"{split}_dataset").tensors
        x0, y0 = getattr(plain, f"{split}_dataset").tensors
        assert torch.equal(y, y0) and x.shape == x0.shape
        angles = dm.transform_elements[split]
        assert angles.abs().max() <= 180 and angles.abs().max() > 150
        changed = (x - x0).flatten(1).abs().amax(dim=1) > 0.1
        assert changed.float().mean() > 0.95  # (almost) every image was rotated
    assert dm.num_classes == 10 and dm.input_shape == (1, 20, 20)


def test_orientation_labels_are_the_quarter_turns(plain):
    dm = DigitOrientationDataModule(**COMMON)
    dm.setup()
    assert dm.num_classes == 4
    for split in ("train", "test"):
        x, turns = getattr(dm, f"{split}_dataset").tensors
        x0, digits = getattr(plain, f"{split}_dataset").tensors
        assert torch.equal(dm.digit_labels[split], digits)
        assert sorted(turns.unique().tolist()) == [0, 1, 2, 3]
        # undoing the labelled rotation gives back the upright digit, exactly
        assert torch.equal(Rotations(4).act(x, (-turns) % 4), x0)
    dm.setup()  # a second setup keeps the orientation labels
    assert torch.equal(dm.train_dataset.tensors[1], dm.transform_elements["train"])

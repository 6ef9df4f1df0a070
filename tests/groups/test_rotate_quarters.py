"""Quarter-turn rotations by index gather/scatter equal a per-sample ``rot90``, bit for bit."""

import pytest
import torch

from invreg.groups.rotations import rotate, rotate_quarters


def per_sample(x, turns):
    return torch.stack([torch.rot90(xi, int(k), dims=(-2, -1)) for xi, k in zip(x, turns,
                                                                                 strict=True)])


@pytest.mark.parametrize("turns", [[0, 1, 2, 3, 1, 0, 3], [2] * 5, [0] * 3, [3, 1], []])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.int64])
def test_equals_per_sample_rot90(turns, dtype):
    turns = torch.tensor(turns, dtype=torch.long)
    x = (torch.randn(len(turns), 2, 5, 5, generator=torch.Generator().manual_seed(0)) * 9).to(dtype)
    got = rotate_quarters(x, turns)
    assert got.dtype == x.dtype and got.shape == x.shape
    assert torch.equal(got, per_sample(x, turns)) if len(turns) else got.numel() == 0
    assert got.data_ptr() != x.data_ptr() or x.numel() == 0  # a new tensor, never a view of x


def test_rotate_mixes_exact_and_bilinear_samples():
    x = torch.randn(4, 1, 6, 6, generator=torch.Generator().manual_seed(1))
    angles = torch.tensor([90.0, 45.0, -90.0, 360.0], dtype=torch.float64)
    out = rotate(x, angles)
    assert torch.equal(out[[0, 2, 3]], per_sample(x[[0, 2, 3]], torch.tensor([1, 3, 0])))
    assert not torch.equal(out[1], x[1])

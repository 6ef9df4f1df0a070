"""Drift sources: offline inputs to blend into a data set, ``x_β = (1 − β)·x + β·x_drift``.

Moskalev et al. (2023, Fig. 4) blend MNIST with FashionMNIST pixel-wise and watch the
invariance error of a model grow with ``β``. FashionMNIST has no offline package, so invreg
offers sources that need nothing beyond the installed packages:

* :class:`NaturalImageDrift` (``"natural_images"``) — patches of scikit-learn's two bundled
  photographs (``sklearn.datasets.load_sample_images()``), grey (or RGB for 3 channels),
  area-downsampled to the input size;
* :class:`MNIST1DDrift` (``"mnist1d"``) — procedural MNIST-1D signals (no download);
* :class:`NoiseDrift` (``"noise"``) — Gaussian or uniform noise;
* :class:`TensorDrift` — any tensor you already have (e.g. local FashionMNIST IDX files).

Every source draws ``num`` samples of one input shape, ``[num, *shape]``, from a
``torch.Generator`` (same seed, same samples). :func:`match_statistics` gives them the scalar
mean and std of the data they are blended into, so a standardised data set is not blended with
raw ``[0, 1]`` pixels; :func:`blend` mixes.

>>> import torch
>>> source = get_drift_source("noise")
>>> x = torch.randn(4, 1, 8, 8)
>>> drift = match_statistics(source.sample(4, (1, 8, 8), torch.Generator().manual_seed(0)), x)
>>> torch.equal(blend(x, drift, 0.0), x), blend(x, drift, 1.0).shape
(True, torch.Size([4, 1, 8, 8]))
"""

from __future__ import annotations

import functools
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

#: keeps the statistics matching finite for a constant drift sample
STD_EPS = 1e-12


def blend(x: Tensor, drift: Tensor, beta: float) -> Tensor:
    """``(1 − β)·x + β·drift``, pixel-wise; ``β = 0`` returns ``x`` unchanged.

    Args:
        x: inputs ``[B, ...]``.
        drift: drift samples of the same shape.
        beta: blending weight in ``[0, 1]``.
    """
    if not 0.0 <= float(beta) <= 1.0:
        raise ValueError(f"beta must lie in [0, 1], got {beta!r}")
    if drift.shape != x.shape:
        raise ValueError(
            f"drift: expected the shape of x, {tuple(x.shape)}, got {tuple(drift.shape)}"
        )
    if beta == 0:
        return x
    return (1.0 - beta) * x + beta * drift.to(dtype=x.dtype, device=x.device)


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


DRIFT_SOURCES: dict[str, type[DriftSource]] = {
    "natural_images": NaturalImageDrift,
    "mnist1d": MNIST1DDrift,
    "noise": NoiseDrift,
}


def get_drift_source(source: str | DriftSource) -> DriftSource:
    """A :class:`DriftSource` from a name in :data:`DRIFT_SOURCES` (default arguments) or as is."""
    if isinstance(source, DriftSource):
        return source
    if isinstance(source, str) and source in DRIFT_SOURCES:
        return DRIFT_SOURCES[source]()
    raise ValueError(
        f"source: expected a DriftSource or one of {sorted(DRIFT_SOURCES)}, got {source!r}"
    )


__all__ = [
    "DRIFT_SOURCES",
    "DriftSource",
    "MNIST1DDrift",
    "NaturalImageDrift",
    "NoiseDrift",
    "TensorDrift",
    "blend",
    "get_drift_source",
    "match_statistics",
    "sample_photographs",
]

"""Saliency maps over the orbit, mapped back with g⁻¹: does the model look at the same evidence?"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor

from invreg.callbacks.base import (
    InvarianceCallback,
    Split,
    Subset,
    measured_group,
)
from invreg.functional.saliency import SaliencyRecipe
from invreg.groups import Group
from invreg.metrics.saliency import BACKGROUND, SaliencyInvarianceSimilarity, resolve_baseline
from invreg.plotting import (
    DEFAULT_DPI,
    check_dpi,
    check_figure_format,
    log_figure,
    model_title,
    new_figure,
)

#: :class:`SaliencyCallback`'s default recipe: the paper's, 32 steps, from the empty pixel
CALLBACK_RECIPE = SaliencyRecipe(steps=32, baseline=BACKGROUND)
#: how :func:`grid_figure` draws the maps
SALIENCY_STYLES = ("thresholded", "overlay")


class SaliencyCallback(InvarianceCallback):
    """An image grid of saliency maps per logged step, like Moskalev et al.'s Figure 3.

    Rows are ``num_samples`` fixed samples; the first column is the input ``x``, the next ones
    the saliency map of every orbit element ``g`` mapped back into ``x``'s frame,
    ``g⁻¹·m(g·x)`` (identity first, so column 2 is ``m(x)``). For an invariant decision process
    the columns of a row are equal. Each row is labelled with its SI (mean cosine to ``m(x)``).
    Maps and SI come from :class:`~invreg.metrics.SaliencyInvarianceSimilarity` (its
    ``keep_maps``) for the label's class, by default with the paper's recipe (|integrated
    gradients|, 0.9·max threshold, 3×3 blur);
    inverse transformations are the group's own (``group.act(m, group.inverse(g))``).
    ``style="overlay"`` draws the raw maps instead (the recipe without threshold and blur),
    over the input; SI is the recipe's either way (both come from one backward pass).
    Integrated gradients start from ``baseline``: by default the data module's ``background``
    (an empty image), the value used is in each :attr:`history` row (``"SI_baseline"``) and in
    the figure's caption.

    Logged under ``saliency/<split>/grid``: a ``wandb.Image`` on W&B, an image on TensorBoard;
    with ``save_local`` also ``saliency/<split>_step<step>.png`` in the run directory (for any
    logger). Computed on rank 0 only (an image needs no reduction).

    Args:
        group: the group (or its name); default: ``pl_module.group``.
        orbit_size: orbit elements for a continuous group (drawn once, identity first).
        recipe: the :class:`~invreg.functional.SaliencyRecipe` of the maps; default the
            paper's with 32 integrated-gradients steps and ``baseline="background"``:
            ``trainer.datamodule.background``, the value of an empty pixel after
            standardisation (0.0, with a one-time warning, when the data module has none); a
            number is a constant image in the units of the model's inputs (0.0 is a grey image
            on standardised data, so every background pixel gets attribution). In a config:
            ``recipe: {steps: 8, baseline: 0.0}``.
        style: ``"thresholded"`` (default): the recipe's maps, as in the paper's figure;
            ``"overlay"``: the raw |attribution| (no threshold, no blur) drawn over the input,
            transparent where it is small. Both share one colour scale per row (the row's
            largest value), shown by the colour bar.
        dpi, figure_format: resolution and file format (``"png"``, ``"pdf"``, ``"svg"``) of
            the local figure file; the loggers always get a PNG image.
        num_samples, every_n_epochs, split, seed, at_end, save_local: see
            :class:`~invreg.callbacks.base.InvarianceCallback`.
    """

    prefix = "saliency"

    def __init__(
        self,
        num_samples: int = 4,
        every_n_epochs: int = 5,
        split: Split = "auto",
        seed: int = 0,
        group: str | Group | None = None,
        orbit_size: int = 6,
        recipe: SaliencyRecipe = CALLBACK_RECIPE,
        at_end: bool = True,
        save_local: bool = True,
        style: str = "thresholded",
        dpi: int = DEFAULT_DPI,
        figure_format: str = "png",
    ) -> None:
        super().__init__(num_samples, every_n_epochs, split, seed, at_end, save_local)
        self.group = None if group is None else measured_group(group, None, type(self).__name__)
        self.style = _check_style(style)
        self.dpi, self.figure_format = check_dpi(dpi), check_figure_format(figure_format)
        if isinstance(orbit_size, bool) or not isinstance(orbit_size, int) or orbit_size < 2:
            raise ValueError(f"orbit_size must be an integer >= 2, got {orbit_size!r}")
        if not isinstance(recipe, SaliencyRecipe) or isinstance(recipe.baseline, Tensor):
            raise TypeError(
                f"recipe: expected a SaliencyRecipe with a number or 'background' as baseline, "
                f"got {recipe!r}"
            )
        self.orbit_size, self.recipe = orbit_size, recipe
        self._warned = False

    def evaluate(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, subset: Subset, split: str
    ) -> dict[str, Any]:
        if not trainer.is_global_zero:
            return {}
        x, y = self._full_subset(split, pl_module.device)
        group = measured_group(self.group, pl_module, type(self).__name__)
        baseline, fell_back = resolve_baseline(
            self.recipe.baseline, trainer.datamodule, type(self).__name__, not self._warned
        )
        self._warned = self._warned or fell_back
        # SI and both styles of figure from one batched backward; rank 0 alone: no sync
        metric = SaliencyInvarianceSimilarity(
            group, replace(self.recipe, baseline=baseline), keep_maps=x.shape[0],
            sync_on_compute=False,
        ).to(pl_module.device)
        metric.update(pl_module, x, y, elements=group.fixed_elements(self.orbit_size, self.seed))
        kept = metric.kept_maps()
        figure = grid_figure(
            kept.x, kept.raw if self.style == "overlay" else kept.maps, kept.similarity,
            group.element_labels(kept.elements), targets=kept.targets, style=self.style,
            title=f"Saliency over the orbit: {model_title(pl_module, group)}",
        )
        step = self.step(trainer)
        path = self.local_path(trainer, f"{split}_step{step:06d}.{self.figure_format}")
        caption = (
            f"rows: samples; columns: input, then g⁻¹·m(g·x) per orbit element ({group!r}); "
            f"integrated-gradients baseline {baseline:g}"
        )
        log_figure(trainer, self.key(split, "grid"), figure, step, path, caption,
                   dpi=self.dpi, figure_format=self.figure_format)
        return {"SI": metric.compute().item(), "SI_baseline": float(baseline)}

    def _full_subset(self, split: str, device: torch.device) -> tuple[Tensor, Tensor | None]:
        x, y = self._subsets[split]
        return x.to(device).clone(), None if y is None else y.to(device).clone()


def grid_figure(
    x: Tensor,
    maps: Tensor,
    similarity: Tensor,
    labels: list[str],
    *,
    targets: Tensor | None = None,
    style: str = "thresholded",
    title: str | None = None,
) -> Any:
    """The saliency grid of :class:`SaliencyCallback`: a ``Figure`` with two image axes.

    ``x`` ``[R, C, *S]`` (``S`` = ``(H, W)`` or ``(L,)``, a signal drawn as a band), ``maps``
    ``[R, N, C, *S]`` (orbit element ``j`` mapped back: ``g_j⁻¹·m(g_j·x)``), ``similarity``
    ``[R]`` (SI per row), ``labels`` the ``N`` column names (group elements), ``targets``
    ``[R]`` the class each row explains (shown next to its SI).

    Left axes: the inputs. Right axes: the maps tiled ``R × N``, channels summed as ``|m|``,
    each divided by the largest value of its row, so the colour bar (an inset of the right
    axes) reads as a fraction of the row's maximum. ``style="thresholded"`` draws the maps
    alone; ``"overlay"`` draws the inputs in grey under the maps, with the maps' opacity
    growing with their value.
    """
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    style = _check_style(style)
    rows, columns = maps.shape[:2]
    if len(labels) != columns:
        raise ValueError(f"labels: expected {columns} column names, got {len(labels)}")
    inputs = [_as_image(x[i].mean(dim=0, keepdim=True)) for i in range(rows)]
    magnitude = maps.detach().abs().sum(dim=2).float().cpu()  # [R, N, *S]
    peak = magnitude.flatten(1).amax(dim=1).clamp_min(torch.finfo(torch.float32).tiny)
    scaled = (magnitude / peak.view(-1, *([1] * (magnitude.ndim - 1)))).numpy()
    tiles = [[_as_band(scaled[i, j]) for j in range(columns)] for i in range(rows)]
    height, width = tiles[0][0].shape
    tile_inches = 0.9 if max(height, width) <= 32 else 1.1
    tile_height = tile_inches * min(height / width, 1.5)
    fig_width = tile_inches * (columns + 1) + 2.2
    fig_height = tile_height * rows + 1.05
    # fixed margins (a layout engine would double the rendering time); files are saved with a
    # tight bounding box
    figure = new_figure(fig_width, fig_height, layout=None)
    figure.subplots_adjust(left=1.1 / fig_width, right=1 - 1.0 / fig_width,
                           bottom=0.45 / fig_height, top=1 - 0.6 / fig_height, wspace=0.08)
    left, right = figure.subplots(1, 2, width_ratios=[1, columns])
    left.imshow(_tile([[t] for t in inputs]), cmap="gray", interpolation="nearest")
    cmap = colormaps["inferno" if style == "overlay" else "magma"]
    norm = Normalize(0.0, 1.0)
    if style == "overlay":
        right.imshow(_tile([[t] * columns for t in inputs]), cmap="gray",
                     interpolation="nearest")
        heat = _tile(tiles)
        rgba = cmap(norm(np.nan_to_num(heat)))
        rgba[..., 3] = np.where(np.isnan(heat), 0.0, 0.15 + 0.85 * np.nan_to_num(heat))
        right.imshow(rgba, interpolation="nearest")
    else:
        right.imshow(_tile(tiles), cmap=cmap, norm=norm, interpolation="nearest")
    centres = [(height + 1) * i + height / 2 - 0.5 for i in range(rows)]
    row_labels = [f"SI {s:.2f}" for s in similarity.tolist()]
    if targets is not None:
        row_labels = [f"class {int(t)}\n{r}" for t, r in zip(targets.tolist(), row_labels,
                                                              strict=True)]
    left.set_yticks(centres, row_labels, fontsize=8)
    left.set_xticks([width / 2 - 0.5], ["input x"], fontsize=8)
    left.set_ylabel("sample (target class, SI)", fontsize=8)
    right.set_xticks([(width + 1) * j + width / 2 - 0.5 for j in range(columns)], labels,
                     fontsize=8)
    right.set_yticks([])
    right.set_xlabel("group element g (identity first)", fontsize=8)
    kind = "raw |saliency| over x" if style == "overlay" else "thresholded saliency"
    right.set_title(f"{kind}, mapped back: g⁻¹·m(g·x)", fontsize=9)
    # an inset of the right axes: the figure keeps exactly two axes of its own
    bar_axes = right.inset_axes((1.02, 0.0, 0.04 / max(1, columns / 4), 1.0))
    colorbar = figure.colorbar(ScalarMappable(norm=norm, cmap=cmap), cax=bar_axes)
    colorbar.set_label("|m| ÷ row maximum", fontsize=8)
    colorbar.ax.tick_params(labelsize=7)
    if title:
        figure.suptitle(title, fontsize=10, y=1 - 0.08 / fig_height, va="top")
    return figure


def _check_style(style: str) -> str:
    if style not in SALIENCY_STYLES:
        raise ValueError(f"style must be one of {SALIENCY_STYLES}, got {style!r}")
    return style


def _as_band(array: np.ndarray) -> np.ndarray:
    """A 2-D map as is; a 1-D signal repeated into a band (as :func:`_as_image` does)."""
    if array.ndim == 1:
        return np.repeat(array[None], max(1, array.shape[0] // 4), axis=0)
    return array


def _as_image(tile: Tensor) -> np.ndarray:
    """``[1, H, W]`` or ``[1, L]`` → a 2-D array in ``[0, 1]`` (signals drawn as a band)."""
    array = tile.detach().float().cpu().numpy()[0]
    if array.ndim == 1:
        array = np.repeat(array[None], max(1, array.shape[0] // 4), axis=0)
    low, high = array.min(), array.max()
    return (array - low) / (high - low) if high > low else np.zeros_like(array)


def _tile(grid: list[list[np.ndarray]]) -> np.ndarray:
    height, width = grid[0][0].shape
    rows, columns = len(grid), len(grid[0])
    out = np.full((rows * (height + 1) - 1, columns * (width + 1) - 1), np.nan)
    for i, row in enumerate(grid):
        for j, tile in enumerate(row):
            out[i * (height + 1) : i * (height + 1) + height,
                j * (width + 1) : j * (width + 1) + width] = tile
    return out


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
    fixed_elements,
    resolve_group,
)
from invreg.functional.saliency import SaliencyRecipe, orbit_saliency, saliency_similarity
from invreg.groups import Group
from invreg.metrics.saliency import BACKGROUND, resolve_baseline
from invreg.plotting import log_figure, new_figure

#: :class:`SaliencyCallback`'s default recipe: the paper's, 32 steps, from the empty pixel
CALLBACK_RECIPE = SaliencyRecipe(steps=32, baseline=BACKGROUND)


class SaliencyCallback(InvarianceCallback):
    """An image grid of saliency maps per logged step, like Moskalev et al.'s Figure 3.

    Rows are ``num_samples`` fixed samples; the first column is the input ``x``, the next ones
    the saliency map of every orbit element ``g`` mapped back into ``x``'s frame,
    ``g⁻¹·m(g·x)`` (identity first, so column 2 is ``m(x)``). For an invariant decision process
    the columns of a row are equal. Each row is labelled with its SI (mean cosine to ``m(x)``).
    Maps come from :func:`invreg.functional.saliency.orbit_saliency` for the label's class, by
    default with the paper's recipe (|integrated gradients|, 0.9·max threshold, 3×3 blur);
    inverse transformations are the group's own (``group.act(m, group.inverse(g))``).
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
    ) -> None:
        super().__init__(num_samples, every_n_epochs, split, seed, at_end, save_local)
        self.group = None if group is None else resolve_group(group, None, type(self).__name__)
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
        group = resolve_group(self.group, pl_module, type(self).__name__)
        elements = fixed_elements(group, self.orbit_size, self.seed)
        baseline, fell_back = resolve_baseline(
            self.recipe.baseline, trainer.datamodule, type(self).__name__, not self._warned
        )
        self._warned = self._warned or fell_back
        recipe = replace(self.recipe, baseline=baseline)
        maps = orbit_saliency(pl_module, x, y, group, recipe, elements=elements)
        # SI from the same maps: one batched backward, not two
        similarity = saliency_similarity(maps, reduction="none")
        elems = elements if elements is not None else torch.arange(group.order)
        figure = grid_figure(x, maps, similarity.mean(dim=1), _element_labels(group, elems))
        step = self.step(trainer)
        path = self.local_path(trainer, f"{split}_step{step:06d}.png")
        caption = (
            f"rows: samples; columns: input, then g⁻¹·m(g·x) per orbit element ({group!r}); "
            f"integrated-gradients baseline {baseline:g}"
        )
        log_figure(trainer, self.key(split, "grid"), figure, step, path, caption)
        return {"SI": similarity.mean().item(), "SI_baseline": float(baseline)}

    def _full_subset(self, split: str, device: torch.device) -> tuple[Tensor, Tensor | None]:
        x, y = self._subsets[split]
        return x.to(device).clone(), None if y is None else y.to(device).clone()


def grid_figure(x: Tensor, maps: Tensor, similarity: Tensor, labels: list[str]) -> Any:
    """Rows: samples; column 0 the input, columns 1.. the maps ``[R, N, *D]`` (each map
    normalised to its own maximum, channels summed)."""
    rows, columns = maps.shape[:2]
    inputs = [_as_image(x[i].mean(dim=0, keepdim=True)) for i in range(rows)]
    tiles = [[_as_image(maps[i, j].abs().sum(dim=0, keepdim=True)) for j in range(columns)]
             for i in range(rows)]
    height, width = tiles[0][0].shape
    scale = 0.45 if width <= 16 else 0.9
    fig_width, fig_height = scale * (columns + 1) + 1.0, scale * rows * height / width + 0.65
    # fixed margins in inches (a layout engine would double the rendering time)
    figure = new_figure(fig_width, fig_height, layout=None)
    figure.subplots_adjust(left=0.6 / fig_width, right=1 - 0.1 / fig_width,
                           bottom=0.3 / fig_height, top=1 - 0.3 / fig_height, wspace=0.1)
    left, right = figure.subplots(1, 2, width_ratios=[1, columns])
    left.imshow(_tile([[t] for t in inputs]), cmap="gray", interpolation="nearest")
    right.imshow(_tile(tiles), cmap="magma", interpolation="nearest", vmin=0, vmax=1)
    centres = [(height + 1) * i + height / 2 - 0.5 for i in range(rows)]
    left.set_yticks(centres, [f"SI {s:.2f}" for s in similarity.tolist()], fontsize=7)
    left.set_xticks([width / 2 - 0.5], ["input"], fontsize=7)
    right.set_xticks([(width + 1) * j + width / 2 - 0.5 for j in range(columns)], labels,
                     fontsize=7)
    right.set_yticks([])
    right.set_title("saliency g⁻¹·m(g·x)", fontsize=8)
    return figure


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


def _element_labels(group: Group, elements: Tensor) -> list[str]:
    if hasattr(group, "angles"):
        return [f"{a:g}°" for a in group.angles(elements.cpu()).tolist()]
    if elements.ndim == 1:
        return [f"g={v:.3g}" if elements.is_floating_point() else f"g={v}"
                for v in elements.tolist()]
    return [f"g{i}" for i in range(elements.shape[0])]

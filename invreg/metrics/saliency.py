"""Saliency invariance similarity SI: is the decision process invariant?

API: the *group* and the options are constructor arguments (what is measured); the *model* and
the batch go to ``update(model, x, ...)`` (what it is measured on). The metric holds no
reference to the model, so it adds nothing to a LightningModule's ``state_dict`` and one metric
can score several models in turn. In a ``MetricCollection`` pass keyword arguments::

    metrics.update(preds=logits, target=labels, model=model, x=images)
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace
from typing import Any, Literal

import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torchmetrics.utilities import dim_zero_cat

from invreg.functional.invariance import resolve_elements
from invreg.functional.saliency import (
    BACKGROUND,
    RECIPE_FIELDS,
    AttributionMethod,
    SaliencyRecipe,
    is_captum_method,
    make_recipe,
    orbit_saliency_stages,
    saliency_similarity,
)
from invreg.groups import Group, get_group
from invreg.metrics.base import SumCountMetric, config_digest

TARGET_CLASSES = ("label", "prediction")
#: the integrated-gradients baseline option of the run-level SI APIs: a number (in the units
#: of the model's inputs) or ``"background"``, the data module's value of an empty pixel
Baseline = float | Literal["background"]
#: the metric's and the callbacks' default: the paper's recipe from the data's empty pixel
DEFAULT_RECIPE = SaliencyRecipe(baseline=BACKGROUND)


def check_baseline(baseline: Any, allow_tensor: bool = False) -> None:
    """``ValueError`` / ``TypeError`` unless ``baseline`` is a finite number or
    ``"background"`` (or a Tensor, where ``allow_tensor``)."""
    if isinstance(baseline, str):
        if baseline != BACKGROUND:
            raise ValueError(
                f"baseline: expected a number or {BACKGROUND!r} (the data module's empty-pixel "
                f"value), got {baseline!r}"
            )
        return
    if allow_tensor and isinstance(baseline, Tensor):
        return
    if isinstance(baseline, bool) or not isinstance(baseline, int | float):
        raise TypeError(
            f"baseline: expected a number or {BACKGROUND!r}, got {type(baseline).__name__}"
        )
    if not math.isfinite(baseline):
        raise ValueError(f"baseline: expected a finite number, got {baseline!r}")


def datamodule_background(datamodule: Any) -> float | None:
    """``datamodule.background`` as a float, or ``None`` when there is no such attribute."""
    value = getattr(datamodule, BACKGROUND, None) if datamodule is not None else None
    return None if value is None else float(value)


def resolve_baseline(
    baseline: float | Tensor | str, datamodule: Any, owner: str, warn: bool = True
) -> tuple[float | Tensor, bool]:
    """The integrated-gradients baseline to use, and whether ``"background"`` fell back to 0.

    A number (or Tensor) is returned as it is; ``"background"`` becomes
    ``datamodule.background`` (call it after the data module's ``setup``: the value depends on
    the train statistics), or 0.0 with a ``UserWarning`` (when ``warn``) if there is none.
    """
    if not isinstance(baseline, str):
        return baseline, False
    value = datamodule_background(datamodule)
    if value is not None:
        return value, False
    if warn:
        source = (
            "there is no data module"
            if datamodule is None
            else f"the data module {type(datamodule).__name__} has no `background` attribute"
        )
        warnings.warn(
            f"{owner}: baseline='background' but {source}; "
            "integrated gradients use the baseline 0.0 (zero in input units). Pass "
            "baseline=<value of an empty pixel> to choose it.",
            UserWarning,
            stacklevel=3,
        )
    return 0.0, True


def trainer_datamodule(model: nn.Module) -> Any:
    """The data module of the trainer a LightningModule is attached to, else ``None``."""
    if not isinstance(model, pl.LightningModule):
        return None
    try:
        trainer = model.trainer
    except RuntimeError:  # not attached to a Trainer
        return None
    return getattr(trainer, "datamodule", None)


def recipe_key(recipe: SaliencyRecipe) -> Any:
    """What a recipe's metric state names are digested from: the recipe (its repr), or, for a
    Captum instance, whose repr holds a memory address, its class name and the other fields."""
    method = recipe.method
    if not is_captum_method(method) or isinstance(method, str | type):
        return recipe
    others = tuple(getattr(recipe, name) for name in RECIPE_FIELDS if name != "method")
    return (f"{type(method).__module__}.{type(method).__qualname__} instance", *others)


@dataclass(frozen=True)
class SaliencyMaps:
    """The maps :class:`SaliencyInvarianceSimilarity` keeps with ``keep_maps=R``: the first
    ``R`` samples it saw (``R'`` ≤ ``R`` of them), all on the orbit ``elements``.

    Attributes:
        x: the inputs ``[R', *D]``.
        raw: the attributions mapped back, ``g⁻¹·a(g·x)``, ``|·|`` when the recipe says so,
            without threshold or blur ``[R', N, *D]`` (identity first).
        maps: ``raw`` thresholded and blurred as the recipe says ``[R', N, *D]``: the maps SI
            compares.
        similarity: each sample's SI, the mean over ``g ≠ e`` of its cosines ``[R']``.
        targets: the classes passed to ``update`` ``[R']``; ``None`` when the explained class
            was the prediction (no ``target``, or ``target_class="prediction"``).
        elements: the orbit elements ``[N]`` (identity first).
    """

    x: Tensor
    raw: Tensor
    maps: Tensor
    similarity: Tensor
    targets: Tensor | None
    elements: Tensor


class SaliencyInvarianceSimilarity(SumCountMetric):
    """Saliency invariance similarity SI (decision-process level; higher is better, 1 invariant).

    ``SI = mean_{i, g≠e} cos( m(x_i), g⁻¹·m(g·x_i) )``, the mean over samples **and** over the
    ``N − 1`` non-identity group elements; ``m`` the saliency map of the target class (the same
    class for all orbit elements of a sample), mapped back by the group itself
    (:func:`~invreg.functional.saliency_invariance`; all orbit maps in one batched backward).
    Defaults are the paper's recipe: ``|integrated gradients|``, entries below ``0.9·max`` set
    to 0, Gaussian blur (kernel 3, σ = 1).

    The integrated-gradients baseline (the paper does not state one) is an explicit option:
    ``baseline="background"`` (default) explains against an empty image, the data module's
    ``background`` (the value of an empty pixel after standardisation); a number is a constant
    image in the units of ``x`` (``0.0``: a grey image at the train mean on standardised data,
    so every background pixel gets attribution). :attr:`baseline_value` says which value the
    last ``update`` used; report it with SI.

    - ``update(model, x, target=None, background=None, elements=None)``: ``model`` maps
      ``[B, *D]`` to logits ``[B, C]`` (put it in ``eval()`` mode); ``x`` ``[B, *D]``;
      ``target`` ``[B]`` class indices or ``None`` (then the class predicted on ``x``),
      integer, in ``[0, C)`` (``TypeError`` / ``ValueError`` otherwise). With
      ``baseline="background"`` the value is ``background`` if given, else
      ``model.trainer.datamodule.background`` for a LightningModule attached to a trainer,
      else 0.0 with a one-time ``UserWarning``. Works under ``torch.no_grad`` /
      ``inference_mode``. ``elements`` (``[N]``, identity first) fixes the orbit (default:
      ``num_samples`` of them). An empty batch leaves the state unchanged; maps and cosines
      run in at least float32.
    - ``compute()``: scalar in ``[−1, 1]``; NaN with a ``UserWarning`` if nothing was seen.
    - ``per_sample_values()`` (with ``per_sample=True``): each sample's SI, the mean over
      ``g ≠ e`` of its cosines, ``[samples seen]`` in the order seen: a ``"cat"`` state,
      gathered across processes like the sum and the count (each process's samples in turn).
    - ``kept_maps()`` (with ``keep_maps=R``): a :class:`SaliencyMaps` of the first ``R``
      samples seen — inputs, raw and processed maps, per-sample SI, targets, elements — or
      ``None`` before any sample; the maps of a figure, from the same backward as SI. They
      are not metric state: not gathered across processes, not in ``state_dict``, not moved
      by ``.to()``; ``reset()`` drops them. Samples of an ``update`` whose orbit elements
      differ from the kept ones are not kept (pass ``elements`` to fix the orbit of a
      continuous group).

    Args:
        group: a :class:`~invreg.groups.Group` or its name (``"c4"``, ``"t3"``...).
        recipe: a :class:`~invreg.functional.SaliencyRecipe` or a method (default: the
            paper's recipe with ``baseline="background"``): a built-in name or a Captum
            attribution — a ``captum.attr`` class such as ``IntegratedGradients`` (built on
            each ``update``'s model, so one metric can score several models), an instance
            built on the model passed to ``update``, or ``"captum.attr.<Name>"``
            (``pip install invreg[captum]``); keyword arguments named like its fields
            (``steps=8``, ``baseline=0.0``, ``attribution_kwargs={...}``, ...) replace them;
            the other keyword arguments go to ``torchmetrics.Metric``.
        target_class: ``"label"`` explains the ``target`` passed to ``update`` (the predicted
            class when it is ``None``); ``"prediction"`` always explains the predicted class.
        max_batch_size, num_samples: see :func:`~invreg.functional.saliency_invariance`.
        per_sample: keep each sample's SI for :meth:`per_sample_values` (a bootstrap
            interval, a figure's row labels); memory grows with the samples seen.
        keep_maps: keep the first ``keep_maps`` samples' maps for :meth:`kept_maps`
            (default 0: none).

    >>> import torch
    >>> from invreg.groups import Rotations
    >>> class Energy(torch.nn.Module):  # invariant to every rotation
    ...     def forward(self, x):
    ...         s = x.pow(2).flatten(1).sum(1)
    ...         return torch.stack([s, -s], dim=1)
    >>> metric = SaliencyInvarianceSimilarity(Rotations(4), baseline=0.0)
    >>> metric.update(Energy(), torch.randn(4, 1, 8, 8))
    >>> metric.compute() > 0.999
    tensor(True)
    >>> metric.baseline_value
    0.0
    """

    higher_is_better = True
    plot_lower_bound = -1.0
    plot_upper_bound = 1.0

    def __init__(
        self,
        group: Group | str,
        recipe: SaliencyRecipe | AttributionMethod | None = None,
        *,
        target_class: str = "label",
        max_batch_size: int | None = None,
        num_samples: int | None = None,
        per_sample: bool = False,
        keep_maps: int = 0,
        **kwargs: Any,
    ) -> None:
        options = {k: kwargs.pop(k) for k in RECIPE_FIELDS if k in kwargs}
        super().__init__(**kwargs)
        if not isinstance(per_sample, bool):
            raise TypeError(f"per_sample: expected True or False, got {per_sample!r}")
        if isinstance(keep_maps, bool) or not isinstance(keep_maps, int) or keep_maps < 0:
            raise ValueError(
                f"keep_maps: expected the number of samples whose maps to keep (an integer "
                f">= 0), got {keep_maps!r}"
            )
        self.per_sample, self.keep_maps = per_sample, keep_maps
        self._kept: list[SaliencyMaps] = []
        self._in_forward = False
        #: the recipe of the maps (its baseline may be ``"background"``)
        self.recipe = make_recipe(recipe, DEFAULT_RECIPE, options)
        if target_class not in TARGET_CLASSES:
            raise ValueError(f"target_class must be one of {TARGET_CLASSES}, got {target_class!r}")
        self.group = get_group(group)
        #: the baseline the last ``update`` used (``None`` before the first)
        self.baseline_value: float | Tensor | None = None
        self._warned = False
        self.target_class = target_class
        self.max_batch_size, self.num_samples = max_batch_size, num_samples
        digest = config_digest(self.group, target_class, recipe_key(self.recipe), num_samples)
        self._init_states(f"similarity_sum_{digest}", f"similarity_pairs_{digest}")
        self._per_sample_name = f"similarity_per_sample_{digest}"
        if per_sample:
            self.add_state(self._per_sample_name, default=[], dist_reduce_fx="cat")

    def update(
        self,
        model: nn.Module,
        x: Tensor,
        target: Tensor | None = None,
        background: float | None = None,
        elements: Tensor | None = None,
    ) -> None:
        if self.target_class == "prediction":
            target = None
        if isinstance(self.recipe.baseline, str) and background is not None:
            check_baseline(background)
            baseline: float | Tensor = float(background)
        else:
            baseline, fell_back = resolve_baseline(
                self.recipe.baseline, trainer_datamodule(model), type(self).__name__,
                not self._warned,
            )
            self._warned = self._warned or fell_back
        self.baseline_value = baseline
        if elements is None and self._kept_count() < self.keep_maps:
            # the orbit of the kept maps' columns (drawn as orbit_saliency would draw it)
            elements = resolve_elements(self.group, x, self.num_samples, None, None)
        raw, maps = orbit_saliency_stages(
            model, x, target, self.group, replace(self.recipe, baseline=baseline),
            max_batch_size=self.max_batch_size, num_samples=self.num_samples, elements=elements,
        )
        similarity = saliency_similarity(maps, reduction="none")  # [B, N − 1]
        self._accumulate(similarity.sum(), similarity.numel())
        if not (self.per_sample or self.keep_maps):
            return
        per_sample = similarity.mean(dim=1).detach()
        if self.per_sample:
            getattr(self, self._per_sample_name).append(per_sample)
        room = self.keep_maps - self._kept_count()
        if room > 0 and x.shape[0] and (
            not self._kept or torch.equal(self._kept[0].elements, elements.to(x.device))
        ):
            rows = slice(0, room)
            self._kept.append(SaliencyMaps(
                x[rows].detach().clone(), raw[rows].clone(), maps[rows].clone(),
                per_sample[rows].clone(), None if target is None else target[rows].clone(),
                elements.to(x.device),
            ))

    def per_sample_values(self) -> Tensor:
        """Each sample's SI (mean over ``g ≠ e`` of its cosines) in the order seen, ``[samples]``
        (gathered across processes); needs ``per_sample=True``."""
        if not self.per_sample:
            raise ValueError(
                "per_sample_values(): this metric keeps no per-sample values; construct it "
                "with per_sample=True"
            )
        with self.sync_context(
            dist_sync_fn=self.dist_sync_fn, should_sync=self._to_sync,
            should_unsync=self._should_unsync,
        ):
            state = getattr(self, self._per_sample_name)
            if isinstance(state, list) and not state:
                return torch.zeros(0, device=self.device)
            return dim_zero_cat(state).clone()

    def kept_maps(self) -> SaliencyMaps | None:
        """The first ``keep_maps`` samples' maps (:class:`SaliencyMaps`), ``None`` before any;
        ``ValueError`` when the metric keeps none (``keep_maps=0``)."""
        if not self.keep_maps:
            raise ValueError(
                "kept_maps(): this metric keeps no maps; construct it with keep_maps=<samples>"
            )
        if not self._kept:
            return None
        parts = self._kept
        targets = parts[0].targets
        if any(part.targets is None for part in parts):
            targets = None
        elif len(parts) > 1:
            targets = torch.cat([part.targets for part in parts])
        if len(parts) == 1:
            return replace(parts[0], targets=targets)
        return SaliencyMaps(
            torch.cat([part.x for part in parts]), torch.cat([part.raw for part in parts]),
            torch.cat([part.maps for part in parts]),
            torch.cat([part.similarity for part in parts]), targets, parts[0].elements,
        )

    def _kept_count(self) -> int:
        return sum(part.x.shape[0] for part in self._kept)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        # torchmetrics' forward resets the state around the batch's update: keep the maps
        self._in_forward = True
        try:
            return super().forward(*args, **kwargs)
        finally:
            self._in_forward = False

    def reset(self) -> None:
        super().reset()
        if not self._in_forward:
            self._kept = []

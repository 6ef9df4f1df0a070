"""Saliency invariance similarity SI: is the decision process invariant?

API: the *group* and the options are constructor arguments (what is measured); the *model* and
the batch go to ``update(model, x, ...)`` (what it is measured on). The metric holds no
reference to the model, so it adds nothing to a LightningModule's ``state_dict`` and one metric
can score several models in turn. In a ``MetricCollection`` pass keyword arguments::

    metrics.update(preds=logits, target=labels, model=model, x=images)
"""

from __future__ import annotations

from torch import Tensor, nn

from invreg.functional.saliency import SALIENCY_METHODS, SaliencyMethod, saliency_invariance
from invreg.groups import Group, get_group
from invreg.metrics.base import SumCountMetric, config_digest

TARGET_CLASSES = ("label", "prediction")


class SaliencyInvarianceSimilarity(SumCountMetric):
    """Saliency invariance similarity SI (decision-process level; higher is better, 1 invariant).

    ``SI = mean_{i, g≠e} cos( m(x_i), g⁻¹·m(g·x_i) )``, the mean over samples **and** over the
    ``N − 1`` non-identity group elements; ``m`` the saliency map of the target class (the same
    class for all orbit elements of a sample), mapped back by the group itself
    (:func:`~invreg.functional.saliency_invariance`; all orbit maps in one batched backward).
    Defaults are the paper's recipe: ``|integrated gradients|``, entries below ``0.9·max`` set
    to 0, Gaussian blur (kernel 3, σ = 1).

    - ``update(model, x, target=None)``: ``model`` maps ``[B, *D]`` to logits ``[B, C]`` (put
      it in ``eval()`` mode); ``x`` ``[B, *D]``; ``target`` ``[B]`` class indices or ``None``
      (then the class predicted on ``x``), integer, in ``[0, C)`` (``TypeError`` /
      ``ValueError`` otherwise). Works under ``torch.no_grad`` / ``inference_mode``. An empty
      batch leaves the state unchanged; maps and cosines run in at least float32.
    - ``compute()``: scalar in ``[−1, 1]``; NaN with a ``UserWarning`` if nothing was seen.

    Args:
        group: a :class:`~invreg.groups.Group` or its name (``"c4"``, ``"t3"``...).
        method: ``"integrated_gradients"``, ``"gradient"`` or ``"gradient_x_input"``.
        target_class: ``"label"`` explains the ``target`` passed to ``update`` (the predicted
            class when it is ``None``); ``"prediction"`` always explains the predicted class.
        baseline, steps, absolute, threshold, blur, blur_kernel_size, blur_sigma,
            max_batch_size, num_samples: see :func:`~invreg.functional.saliency_invariance`.

    >>> import torch
    >>> from invreg.groups import Rotations
    >>> class Energy(torch.nn.Module):  # invariant to every rotation
    ...     def forward(self, x):
    ...         s = x.pow(2).flatten(1).sum(1)
    ...         return torch.stack([s, -s], dim=1)
    >>> metric = SaliencyInvarianceSimilarity(Rotations(4))
    >>> metric.update(Energy(), torch.randn(4, 1, 8, 8))
    >>> metric.compute() > 0.999
    tensor(True)
    """

    higher_is_better = True
    plot_lower_bound = -1.0
    plot_upper_bound = 1.0

    def __init__(
        self,
        group: Group | str,
        method: SaliencyMethod = "integrated_gradients",
        *,
        target_class: str = "label",
        baseline: float | Tensor = 0.0,
        steps: int = 50,
        absolute: bool = True,
        threshold: float | None = 0.9,
        blur: bool = True,
        blur_kernel_size: int = 3,
        blur_sigma: float = 1.0,
        max_batch_size: int | None = None,
        num_samples: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if method not in SALIENCY_METHODS:
            raise ValueError(f"method must be one of {SALIENCY_METHODS}, got {method!r}")
        if target_class not in TARGET_CLASSES:
            raise ValueError(f"target_class must be one of {TARGET_CLASSES}, got {target_class!r}")
        self.group = get_group(group)
        self.method = method
        self.target_class = target_class
        self.options = dict(
            baseline=baseline,
            steps=steps,
            absolute=absolute,
            threshold=threshold,
            blur=blur,
            blur_kernel_size=blur_kernel_size,
            blur_sigma=blur_sigma,
            max_batch_size=max_batch_size,
            num_samples=num_samples,
        )
        digest = config_digest(self.group, method, target_class, sorted(self.options.items()))
        self._init_states(f"similarity_sum_{digest}", f"similarity_pairs_{digest}")

    def update(self, model: nn.Module, x: Tensor, target: Tensor | None = None) -> None:
        if self.target_class == "prediction":
            target = None
        similarity = saliency_invariance(
            model, x, target, self.group, self.method, reduction="none", **self.options
        )
        self._accumulate(similarity.sum(), similarity.numel())

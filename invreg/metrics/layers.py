"""Layer-wise G-EED: where in the network does invariance arise?

API: the *group* and the options are constructor arguments (what is measured); the *model* and
the batch go to ``update(model, x, ...)`` (what it is measured on). The metric holds no
reference to the model, so it adds nothing to a LightningModule's ``state_dict`` and one metric
can score several models in turn. In a ``MetricCollection`` pass keyword arguments::

    metrics.update(preds=logits, target=labels, model=model, x=images)
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from invreg.functional.geed import (
    DISTANCES,
    GEED_MODES,
    Distance,
    GeedMode,
    geed_terms,
    get_layer,
    orbit_features,
)
from invreg.groups import Group, get_group
from invreg.metrics.base import SumCountMetric, config_digest


class LayerInvariance(SumCountMetric):
    """Layer-wise invariance / equivariance deviation G-EED (Kvinge et al. 2022; lower is
    better, 0 invariant): where in the network invariance arises.

    For each layer ``i``, ``D_i = mean_{x, g≠e} m(ref_g(x), f_i(g·x))`` — the mean over samples
    **and** over the ``N − 1`` non-identity group elements — with ``ref_g(x)`` the orbit
    centroid ``mean_g f_i(g·x)`` (``mode="invariance"``) or ``g·f_i(x)``
    (``mode="equivariance"``: e2cnn layers transform by their own field type, plain feature
    maps by the group's spatial action). ``m`` is ``1 − cos``, the Euclidean distance or the
    KL divergence of softmaxed features (invariance: ``KL(p̄ ‖ softmax f_i(g·x))`` with
    ``p̄ = mean_g softmax f_i(g·x)``, the mean of the softmaxes, not the softmax of the mean
    logits). With ``normalize=True`` the value is
    ``D_i / R_i``, ``R_i`` the mean distance between the features of random input pairs
    (each sample with the next one in its batch; batches of one sample add no pair), both
    accumulated over all updates: ``(ΣD/n_D) / (ΣR/n_R)``. See :mod:`invreg.functional.geed`.

    All layers come from ONE orbit forward per ``update`` (forward hooks), so hidden and input
    orbits share their group elements.

    - ``update(model, x)``: ``model`` any module holding the named layers (``eval()`` mode),
      ``x`` ``[B, *D]``. An empty batch (``B = 0``) leaves the state unchanged. Features of
      any floating dtype are compared in at least float32; the states are float32.
    - ``compute()``: a scalar tensor if ``layers`` is one name, else a dict ``{layer: value}``
      (``MetricCollection`` flattens it, ``LightningModule.log_dict`` logs it); NaN with a
      ``UserWarning`` for a layer without data.

    Args:
        group: a :class:`~invreg.groups.Group` or its name.
        layers: a module name (``dict(model.named_modules())``; ``""`` is the model's output)
            or a list of names.
        mode: ``"invariance"`` or ``"equivariance"``.
        distance: ``"cosine"``, ``"euclidean"`` or ``"kl"``.
        normalize: divide by the random-pair distance.
        chunk_size, num_samples: see :func:`~invreg.functional.orbit_logits`.

    >>> import torch
    >>> from invreg.groups import Rotations
    >>> model = torch.nn.Sequential(torch.nn.Identity(), torch.nn.Flatten())
    >>> metric = LayerInvariance(Rotations(4), ["0", "1"])
    >>> metric.update(model, torch.randn(4, 1, 6, 6))
    >>> {name: value.item() > 0.2 for name, value in metric.compute().items()}  # not invariant
    {'0': True, '1': True}
    >>> metric = LayerInvariance(
    ...     Rotations(4), "0", mode="equivariance", distance="euclidean", normalize=False
    ... )
    >>> metric.update(model, torch.randn(4, 1, 6, 6))
    >>> metric.compute()  # the identity map is equivariant
    tensor(0.)
    """

    higher_is_better = False

    def __init__(
        self,
        group: Group | str,
        layers: str | Sequence[str],
        mode: GeedMode = "invariance",
        distance: Distance = "cosine",
        normalize: bool = True,
        *,
        chunk_size: int | None = None,
        num_samples: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if mode not in GEED_MODES:
            raise ValueError(f"mode must be one of {GEED_MODES}, got {mode!r}")
        if distance not in DISTANCES:
            raise ValueError(f"distance must be one of {sorted(DISTANCES)}, got {distance!r}")
        self.single = isinstance(layers, str)
        self.layers = [layers] if isinstance(layers, str) else list(layers)
        if not self.layers or len(set(self.layers)) != len(self.layers):
            raise ValueError(f"layers: expected distinct module names, got {layers!r}")
        self.group = get_group(group)
        self.mode, self.distance, self.normalize = mode, distance, bool(normalize)
        self.chunk_size, self.num_samples = chunk_size, num_samples
        digest = config_digest(self.group, self.layers, mode, distance, num_samples)
        shape = (len(self.layers),)
        self._init_states(f"deviation_sum_{digest}", f"deviation_pairs_{digest}", shape)
        self._random_name = f"random_pair_distance_sum_{digest}"
        self._random_count_name = f"random_pairs_{digest}"
        self.add_state(self._random_name, default=torch.zeros(shape), dist_reduce_fx="sum")
        self.add_state(
            self._random_count_name,
            default=torch.zeros(shape, dtype=torch.long),
            dist_reduce_fx="sum",
        )

    def update(self, model: nn.Module, x: Tensor) -> None:
        for name in self.layers:  # fail on a typo before any forward
            get_layer(model, name)
        self.group.check_input(x)
        if x.shape[0] == 0:  # an empty batch adds nothing (and needs no forward)
            return
        with torch.no_grad():
            orbit = orbit_features(
                model, x, self.group, self.layers, self.chunk_size, self.num_samples
            )
            terms = [
                geed_terms(orbit, name, self.group, self.mode, self.distance)
                for name in self.layers
            ]
        deviations = torch.stack([d.sum() for d, _ in terms])
        randoms = torch.stack([r.sum() for _, r in terms])
        self._accumulate(deviations, torch.tensor([d.numel() for d, _ in terms]).to(self.device))
        random_sum = getattr(self, self._random_name)
        setattr(self, self._random_name, random_sum + randoms.to(random_sum.dtype))
        counts = torch.tensor([r.numel() for _, r in terms], device=self.device)
        setattr(self, self._random_count_name, getattr(self, self._random_count_name) + counts)

    def random_pair_distance(self) -> Tensor | dict[str, Tensor]:
        """``R``: the mean distance between the features of random input pairs, per layer (the
        denominator of ``compute()`` with ``normalize=True``; shaped like ``compute()``'s
        value). NaN with a ``UserWarning`` for a layer that saw no pair."""
        scale, unseen = self._random_mean()
        if unseen:
            warnings.warn(
                "LayerInvariance.random_pair_distance(): no random input pairs were seen (every "
                "batch had one sample, or no update); returning NaN.",
                UserWarning,
                stacklevel=2,
            )
        return self._per_layer(scale)

    def compute(self) -> Tensor | dict[str, Tensor]:
        values = self._mean()
        if self.normalize:
            scale, unseen = self._random_mean()
            if unseen and not values.isnan().all():
                warnings.warn(
                    "LayerInvariance.compute(): normalize=True but no random input pairs were "
                    "seen (every batch had one sample); returning NaN.",
                    UserWarning,
                    stacklevel=2,
                )
            values = values / scale
        return self._per_layer(values)

    def _random_mean(self) -> tuple[Tensor, bool]:
        """``R`` per layer (NaN where no pair was seen), and whether any layer saw none."""
        random_sum = getattr(self, self._random_name)
        random_count = getattr(self, self._random_count_name)
        scale = torch.where(random_count > 0, random_sum / random_count.clamp_min(1), torch.nan)
        return scale, bool((random_count == 0).any())

    def _per_layer(self, values: Tensor) -> Tensor | dict[str, Tensor]:
        """One layer's value, or ``{layer: value}``."""
        if self.single:
            return values[0]
        return dict(zip(self.layers, values.unbind(0), strict=True))

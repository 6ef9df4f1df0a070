"""Evaluate a classifier's accuracy and invariance over a whole data loader."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from invreg.groups import Group, get_group
from invreg.metrics.orbit import OrbitMetrics


class RenamedKeys(dict):
    """A plain ``dict`` whose renamed keys, read by ``[]``, raise a ``KeyError`` naming the
    new key.

    ``renamed`` maps each old key to its new one. Only ``d[old]`` differs from a plain dict:
    ``get``, ``in``, iteration, equality, ``json.dumps`` and pickling see the dict's own keys.

    >>> scores = RenamedKeys({"accuracy": 0.5}, renamed={"acc": "accuracy"})
    >>> scores["accuracy"], scores.get("acc"), "acc" in scores, scores == {"accuracy": 0.5}
    (0.5, None, False, True)
    >>> scores["acc"]
    Traceback (most recent call last):
    ...
    KeyError: "'acc' was renamed 'accuracy': read scores['accuracy']"
    """

    def __init__(self, values: Any = (), /, *, renamed: dict[str, str]) -> None:
        super().__init__(values)
        self.renamed = dict(renamed)

    def __missing__(self, key: Any) -> Any:
        if key in self.renamed:
            new = self.renamed[key]
            raise KeyError(f"{key!r} was renamed {new!r}: read scores[{new!r}]")
        raise KeyError(key)


#: result keys of :func:`evaluate_invariance` renamed to the names :class:`OrbitMetrics` uses
RENAMED_SCORE_KEYS = {"acc": "accuracy", "orbit_acc": "orbit_accuracy"}


@contextmanager
def eval_mode(model: nn.Module, enabled: bool = True) -> Iterator[nn.Module]:
    """Run the block with ``model`` in ``eval()`` mode, then restore every submodule's own
    train / eval flag (also when the block raises). ``enabled=False`` changes nothing.

    >>> net = nn.Sequential(nn.Dropout(), nn.BatchNorm1d(2).eval())
    >>> with eval_mode(net):
    ...     net.training
    False
    >>> net.training, net[1].training
    (True, False)
    """
    modes = [(module, module.training) for module in model.modules()]
    if enabled:
        model.eval()
    try:
        yield model
    finally:
        if enabled:
            # pre-order: a parent's train() resets its children, which are restored after it
            for module, training in modes:
                if module.training != training:
                    module.train(training)


def evaluate_invariance(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    group: str | Group,
    num_samples: int | None = None,
    chunk_size: int | None = None,
) -> dict[str, float]:
    """Accuracy, DI, LI, orbit consistency and orbit accuracy of ``model`` on ``batches``.

    Every batch ``(x, y)`` feeds one :class:`~invreg.metrics.OrbitMetrics` (one orbit forward
    each, ``chunk_size`` samples per forward; ``num_samples`` orbit elements for a continuous
    group). Returns ``accuracy``, ``DI``, ``LI``, ``consistency`` and ``orbit_accuracy`` (the
    names of :class:`~invreg.metrics.OrbitMetrics`; the former keys ``acc`` and ``orbit_acc``
    raise a ``KeyError`` naming the new ones): means over all samples (and, for DI and LI,
    over the non-identity orbit elements), accumulated as sums and counts, so the result does
    not depend on the batch size. ``model`` runs without gradients in eval mode
    (:func:`eval_mode`: restored afterwards). ``ValueError`` if the batches hold no sample.

    >>> from invreg.groups import Rotations
    >>> class Energy(nn.Module):  # invariant to every rotation
    ...     def forward(self, x):
    ...         s = x.pow(2).flatten(1).sum(1)
    ...         return torch.stack([s, -s], dim=1)
    >>> batches = [(torch.randn(3, 1, 4, 4), torch.zeros(3, dtype=torch.long))]
    >>> scores = evaluate_invariance(Energy(), batches, Rotations(4))
    >>> scores["accuracy"], round(scores["LI"], 6), scores["consistency"]  # LI: float32 rounding
    (1.0, 0.0, 1.0)
    """
    device = next(model.parameters(), torch.empty(0)).device
    metrics = OrbitMetrics(get_group(group), chunk_size=chunk_size, num_samples=num_samples)
    metrics.to(device)
    samples = 0
    with eval_mode(model):
        for x, y in batches:
            metrics.update_from_model(model, x.to(device), y.to(device))
            samples += x.shape[0]
    if samples == 0:
        raise ValueError("evaluate_invariance: the data loader yielded no samples")
    values = {key: value.item() for key, value in metrics.compute().items()}
    keys = ("accuracy", "DI", "LI", "consistency", "orbit_accuracy")
    return RenamedKeys({key: values[key] for key in keys}, renamed=RENAMED_SCORE_KEYS)

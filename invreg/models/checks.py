"""One-call invariance checks for any model: ``max |f(g·x) − f(x)|`` over the orbit."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from invreg import testing
from invreg.evaluation import eval_mode as evaluation_mode
from invreg.functional import orbit_logits
from invreg.groups import Group, get_group


def invariance_deviations(
    model: nn.Module,
    x: Tensor,
    group: str | Group,
    *,
    eval_mode: bool = True,
    num_samples: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Largest output change caused by each orbit element: ``[N]``, identity first.

    ``d[j] = max_{i, c} |f(g_j·x_i)_c − f(x_i)_c|`` over samples ``i`` and output entries
    ``c``; ``d[0] = 0`` (the identity). ``N`` is the group's order, or ``num_samples`` for a
    continuous group. Runs under ``torch.no_grad()``; with ``eval_mode=True`` (default) the
    model is evaluated in ``eval()`` mode and every submodule's mode is restored afterwards.

    >>> import torch
    >>> identity_net = torch.nn.Flatten()
    >>> invariance_deviations(identity_net, torch.eye(2).reshape(1, 1, 2, 2), "c4")
    tensor([0., 1., 0., 1.])
    """
    group = get_group(group)
    with torch.no_grad(), evaluation_mode(model, eval_mode):
        orbit = orbit_logits(model, x, group, num_samples=num_samples, generator=generator)
    diff = (orbit - orbit[:, :1]).abs()  # [B, N, ...]
    return diff.transpose(0, 1).flatten(start_dim=1).amax(dim=1)


def max_invariance_deviation(
    model: nn.Module,
    x: Tensor,
    group: str | Group,
    *,
    eval_mode: bool = True,
    num_samples: int | None = None,
    generator: torch.Generator | None = None,
) -> float:
    """``max_{g ∈ G, i, c} |f(g·x_i)_c − f(x_i)_c|``: 0 for an exactly invariant model.

    Works for any model mapping ``[B, ...]`` to ``[B, ...]`` and any group that acts on ``x``
    (see :func:`invariance_deviations` for the options).

    >>> import torch
    >>> from invreg.models import TiedMLP
    >>> _ = torch.manual_seed(0)
    >>> x = torch.randn(4, 1, 8, 8)
    >>> max_invariance_deviation(TiedMLP((1, 8, 8), 3, group="c4"), x, "c4") < 1e-5
    True
    """
    deviations = invariance_deviations(
        model, x, group, eval_mode=eval_mode, num_samples=num_samples, generator=generator
    )
    return float(deviations.max())


def assert_invariant(
    model: nn.Module,
    x: Tensor,
    group: str | Group,
    atol: float | None = None,
    rtol: float | None = None,
    *,
    eval_mode: bool = True,
    num_samples: int | None = None,
    generator: torch.Generator | None = None,
    **kwargs,
) -> None:
    """:func:`invreg.testing.assert_invariant` with the argument order of
    :func:`invariance_deviations` (``model, x, group``): raise ``AssertionError`` naming the
    worst orbit element when ``|f(g·x) − f(x)|`` exceeds the tolerance.

    Tolerances as in :func:`invreg.testing.assert_invariant`: derived from the dtype and the
    output magnitude (``atol = 16·eps·sqrt(D)·max|f|``, ``rtol = 16·eps``) unless given, and up
    to 4× the round-trip interpolation floor for groups that resample (``c8``, ``so2`` ...). An
    ``atol`` given alone is a bound on ``|f(g·x) − f(x)|`` (``rtol`` then 0). ``generator``
    seeds the elements of a continuous group; other keywords (``floor_factor``) pass through.

    >>> import torch
    >>> assert_invariant(torch.nn.Flatten(), torch.ones(1, 1, 3, 3), "d4")
    """
    if atol is not None and rtol is None:
        rtol = 0.0
    if generator is not None:
        kwargs.setdefault("seed", int(torch.randint(0, 2**62, (), generator=generator)))
    testing.assert_invariant(
        model, group, x, atol, rtol, num_samples=num_samples, eval_mode=eval_mode, **kwargs
    )

"""How far a model is from invariance: ``max |f(g·x) − f(x)|`` over the orbit, per element.

The pass/fail check with tolerances derived from the dtype is
:func:`invreg.testing.assert_invariant` (``model, group, x``).
"""

from __future__ import annotations

from typing import NoReturn

import torch
from torch import Tensor, nn

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


def assert_invariant(*args: object, **kwargs: object) -> NoReturn:
    """Removed: use :func:`invreg.testing.assert_invariant` (one check, one argument order).

    This was a second entry point with the arguments in another order (``model, x, group``).
    For one release it raises ``TypeError`` naming its replacement,
    ``invreg.testing.assert_invariant(model, group, x=None, atol=None, rtol=None, *,
    num_samples, floor_factor, seed, eval_mode)``: ``group`` before ``x``; an
    ``atol`` given alone leaves ``rtol`` derived (pass ``rtol=0.0`` for a plain bound on
    ``|f(g·x) − f(x)|``); ``seed=`` (an int) replaces ``generator=``.
    """
    raise TypeError(
        "invreg.models.assert_invariant(model, x, group, ...) was removed; use "
        "invreg.testing.assert_invariant(model, group, x=None, atol=None, rtol=None, *, "
        "num_samples, floor_factor, seed, eval_mode): group comes before x, an "
        "atol given alone leaves rtol derived (pass rtol=0.0 to bound |f(g·x) − f(x)| by atol), "
        "and seed= (an int) replaces generator="
    )

"""The Lie derivative of a model along a continuous image transformation (Gruver et al. 2023,
"The Lie derivative for measuring learned equivariance").

For a one-parameter family of transformations ``g_t`` (``g_0`` the identity) the Lie
derivative of an invariant-target model ``f`` at ``x`` is

    L f(x) = d/dt f(g_t·x) |_{t=0}        ([B, C] for logits [B, C])

and the Lie derivative error is the mean over samples of ``‖L f(x)‖²`` (the paper's
equation; ``norm="l2"`` gives ``‖L f(x)‖``). It is 0 for a model exactly invariant to ``g_t``.

Generators (:data:`GENERATORS`), with the conventions of :mod:`invreg.groups`:

- ``"rotation"``: ``t`` in radians, counter-clockwise as displayed, about the image centre
  (:class:`~invreg.groups.ContinuousRotations` at ``t·180/π`` degrees); square images only.
- ``"translate_x"`` / ``"translate_y"``: ``t`` in pixels, content moving right / down
  (:class:`~invreg.groups.Translations` ``(t, 0)`` / ``(0, t)``).
- ``"scale"``: factor ``e^t`` about the centre (:class:`~invreg.groups.Scalings` at ``t``).

How it is computed. ``g_t·x`` is ``grid_sample(x, affine_grid(θ(t)))`` — bilinear, zeros
outside the frame (``fill`` outside with :meth:`Group.act`'s ``fill``), ``align_corners=False``:
the resampling of the continuous groups. The velocity of the sampling grid,
``V = d/dt affine_grid(θ(t))`` at 0, comes from forward-mode AD (``torch.func.jvp``) through
``affine_grid``; the model's derivative along the image tangent is one batched forward-mode
pass of the model (``torch.autograd.forward_ad``).

The kink. At ``t = 0`` every sampling point sits exactly on a pixel centre, where bilinear
interpolation is only piecewise linear: its one-sided derivatives in ``t`` differ (moving
right reads the forward difference ``x[i+1] − x[i]``, moving left the backward one), and
automatic differentiation at the kink returns one side chosen by the rounding of each
coordinate. We define ``L f`` with the **symmetric** derivative, the average of the
derivatives at ``t = 0⁺`` and ``t = 0⁻``. For bilinear interpolation that average is exactly
``V · ∇x`` with ``∇x`` the central-difference image gradient (``½(x[i+1] − x[i−1])`` per axis,
zeros beyond the frame), so it is what a central finite difference
``(f(g_ε·x) − f(g_{−ε}·x)) / 2ε`` converges to. Why: at a pixel centre the derivative of
``grid_sample`` with respect to its sampling point is, on either side, the slope of the
interpolation in the cell on that side (``x[i+1] − x[i]`` moving right, ``x[i] − x[i−1]``
moving left, times ``W/2`` per normalised unit with ``align_corners=False``); their average is
the central difference. So the tangent is computed directly: central differences of
``x − fill`` padded with zeros (``W/4 · (x[i+1] − x[i−1])`` along the width, ``H/4 · ...``
along the height), dotted with ``V``. Exact, elementwise and differentiable in ``x``: no
resampling pass. The model sees the untransformed ``x``.

The model must return a tensor (an e2cnn ``GeometricTensor`` is read through its ``.tensor``);
a model that returns a tuple such as ``(logits, features)`` gets a ``TypeError``: wrap it
(``lambda x: model(x)[0]``) or pass ``layer=`` to differentiate a submodule's output. An empty
batch gives ``[0, C]`` when the model runs on 0 inputs, else a ``ValueError`` naming ``x``.

Measure in ``model.eval()``: in training mode batch norm couples the samples of a batch and
these functions, like a forward of the model, update its running statistics (what the training
loss wants). :class:`~invreg.metrics.LieDerivativeError` measures in ``eval()`` mode and
leaves the model unchanged.

Non-finite values: :func:`lie_derivative_error` raises ``ValueError`` for NaN / Inf in ``x``
and for a Lie derivative that is not finite (the model's outputs or their derivative), unless
``allow_nonfinite=True`` (the training loss: a gradient scaler must see the overflow). Squared
norms are formed without overflow (:func:`~invreg.functional.scaled_sum_of_squares`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd import forward_ad
from torch.func import jvp

from invreg.functional.invariance import (
    _reduce,
    capture_layers,
    check_finite,
    forward_batch,
    layer_output,
    scaled_sum_of_squares,
    upcast,
)

#: the generators of :func:`lie_derivative`: name → ``θ(t, H, W)``, the ``[2, 3]`` pull-back
#: affine map of :func:`invreg.groups.rotations.resample` (normalised coordinates).
GENERATORS: dict[str, Callable[[Tensor, int, int], Tensor]] = {
    # read the input at R(−t)·p: the counter-clockwise display rotation of _rotate_bilinear
    "rotation": lambda t, h, w: torch.stack([
        torch.stack([torch.cos(t), -torch.sin(t), 0 * t]),
        torch.stack([torch.sin(t), torch.cos(t), 0 * t]),
    ]),
    # content moves by +t pixels: read at x − t (Translations: theta[0, 2] = −2·dx / W)
    "translate_x": lambda t, h, w: torch.stack([
        torch.stack([1 + 0 * t, 0 * t, -2 * t / w]),
        torch.stack([0 * t, 1 + 0 * t, 0 * t]),
    ]),
    "translate_y": lambda t, h, w: torch.stack([
        torch.stack([1 + 0 * t, 0 * t, 0 * t]),
        torch.stack([0 * t, 1 + 0 * t, -2 * t / h]),
    ]),
    # zoom by e^t: read at e^{−t}·p (Scalings)
    "scale": lambda t, h, w: torch.stack([
        torch.stack([torch.exp(-t), 0 * t, 0 * t]),
        torch.stack([0 * t, torch.exp(-t), 0 * t]),
    ]),
}

LIE_REDUCTIONS = ("mean", "sum", "none")
LIE_NORMS = ("squared", "l2")


def check_lie_input(x: Tensor, generator: str, name: str = "x") -> None:
    """``ValueError`` / ``TypeError`` naming the argument unless ``generator`` is a key of
    :data:`GENERATORS` and ``x`` a floating image batch ``[B, C, H, W]`` (square for
    ``"rotation"``)."""
    if not isinstance(generator, str) or generator not in GENERATORS:
        raise ValueError(f"generator: expected one of {sorted(GENERATORS)}, got {generator!r}")
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a tensor [B, C, H, W], got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(
            f"{name}: expected an image batch [B, C, H, W], got shape {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise TypeError(
            f"{name}: the Lie derivative resamples bilinearly and needs a floating-point "
            f"tensor, got dtype {x.dtype}; convert it first, e.g. x.float()"
        )
    if generator == "rotation" and x.shape[-1] != x.shape[-2]:
        raise ValueError(
            f"{name}: the rotation generator needs square images (H == W), got shape "
            f"{tuple(x.shape)}"
        )


def lie_tangent(x: Tensor, generator: str, fill: float = 0.0) -> Tensor:
    """The symmetric derivative ``d/dt g_t·x`` at ``t = 0`` of the bilinear resampling, ``[B,
    C, H, W]`` like ``x`` (see the module docstring: ``V · ∇x`` with central differences).

    ``fill`` is the plane's value outside the frame (:meth:`invreg.groups.Group.act`): the
    tangent of ``act(x) + fill·(1 − act(1))`` is the tangent of ``x − fill``.

    >>> x = torch.tensor([[[[0.0, 1.0, 4.0]]]])
    >>> lie_tangent(x, "translate_x")  # −∂x/∂col, central differences, zero beyond the frame
    tensor([[[[-0.5000, -2.0000,  0.5000]]]])
    """
    check_lie_input(x, generator)
    b, c, h, w = x.shape
    compute = torch.float64 if x.dtype == torch.float64 else torch.float32
    if x.numel() == 0:
        return torch.zeros_like(x)
    theta = GENERATORS[generator]
    zero = torch.zeros((), dtype=compute, device=x.device)
    # the sampling grid as a function of t, [1, H, W, 2]; its velocity V at t = 0 by forward AD
    _, velocity = jvp(
        lambda t: F.affine_grid(theta(t, h, w)[None], [1, 1, h, w], align_corners=False),
        (zero,),
        (torch.ones_like(zero),),
    )
    # the symmetric derivative of the bilinear resampling with respect to its sampling point,
    # in normalised units: central differences of x − fill, zeros beyond the frame
    padded = F.pad(x.to(compute) - fill, (1, 1, 1, 1))
    slope_x = (padded[..., 1:-1, 2:] - padded[..., 1:-1, :-2]) * (w / 4)
    slope_y = (padded[..., 2:, 1:-1] - padded[..., :-2, 1:-1]) * (h / 4)
    tangent = slope_x * velocity[..., 0] + slope_y * velocity[..., 1]
    return tangent.to(x.dtype)


def lie_derivative(
    model: nn.Module | Callable[[Tensor], Tensor],
    x: Tensor,
    generator: str,
    layer: str | None = None,
    fill: float = 0.0,
) -> Tensor:
    """``L f(x) = d/dt f(g_t·x)`` at ``t = 0`` (symmetric derivative), ``[B, C]``.

    Args:
        model: maps ``[B, C_in, H, W]`` to outputs ``[B, *D]`` (flattened to ``[B, C]``).
        x: floating images ``[B, C_in, H, W]``.
        generator: a key of :data:`GENERATORS` (``"rotation"``, ``"translate_x"``,
            ``"translate_y"``, ``"scale"``).
        layer: differentiate the output of the submodule of ``model`` with this name
            (``model.named_modules()``) instead of the model's output — locates where
            equivariance breaks. The layer must run once per forward.
        fill: the plane's value outside the frame (a data module's ``background``).

    One batched forward-mode pass of the model (a dual tensor ``x + ε·tangent``,
    ``torch.autograd.forward_ad``: the engine of ``torch.func.jvp``, but it also runs modules
    that update buffers in place, such as batch norm in training mode), in ``x``'s dtype; the
    result is ``[B, prod(D)]`` (``[0, prod(D)]`` for an empty batch; ``ValueError`` if the
    model cannot run on 0 inputs). The model must return a tensor: ``TypeError`` for a tuple
    such as ``(logits, features)`` (wrap it, or use ``layer``). In training mode batch norm
    uses this batch's statistics and updates its running statistics once more, as any forward
    does; to measure without side effects use :class:`~invreg.metrics.LieDerivativeError`
    (``eval()`` mode, model restored). The same pass computes ``f(x)``:
    :func:`lie_derivative_with_output` returns it too.

    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(9, 2))
    >>> lie_derivative(model, torch.randn(4, 1, 3, 3), "rotation").shape
    torch.Size([4, 2])
    """
    return _forward_mode_pass(model, x, generator, layer, fill, keep_output=False)[2]


def lie_derivative_with_output(
    model: nn.Module | Callable[[Tensor], Tensor],
    x: Tensor,
    generator: str,
    layer: str | None = None,
    fill: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """``(f(x), L f(x))`` from one forward-mode pass: the model's output ``[B, *D]`` (the
    primal of the pass, differentiable like a plain forward's; the model's output also when
    ``layer`` is set) and :func:`lie_derivative`'s ``[B, C]``.

    A training step that needs both the task loss on ``f(x)`` and the Lie penalty saves a
    forward (and its backward) by taking ``f(x)`` from here (``benchmarks/bench_lie.py``).

    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(9, 2))
    >>> x = torch.randn(4, 1, 3, 3)
    >>> output, derivative = lie_derivative_with_output(model, x, "rotation")
    >>> torch.allclose(output, model(x)), derivative.shape
    (True, torch.Size([4, 2]))
    """
    output, _, derivative = _forward_mode_pass(model, x, generator, layer, fill, keep_output=True)
    return output, derivative  # type: ignore[return-value]  # keep_output: never None


def _forward_mode_pass(
    model: nn.Module | Callable[[Tensor], Tensor],
    x: Tensor,
    generator: str,
    layer: str | None,
    fill: float,
    keep_output: bool,
) -> tuple[Tensor | None, Tensor, Tensor]:
    """One forward-mode pass (see :func:`lie_derivative`): ``(f(x)`` (``None`` unless
    ``keep_output``), the differentiated output (the model's or ``layer``'s) and its
    derivative ``L f(x)`` ``[B, C])``."""
    check_lie_input(x, generator)
    if layer is not None and not isinstance(model, nn.Module):
        raise TypeError(f"layer: needs an nn.Module model, got {type(model).__name__}")
    tangent = lie_tangent(x, generator, fill=fill)
    with forward_ad.dual_level():
        dual = forward_ad.make_dual(x, tangent)
        if layer is None:
            model_output = differentiated = _model_tensor(forward_batch(model, dual), model)
        else:
            with capture_layers(model, [layer]) as captured:
                model_output = forward_batch(model, dual)
            differentiated = layer_output(captured, layer)[0]
        primal, derivative = forward_ad.unpack_dual(differentiated)
        output = None
        if keep_output:
            output = forward_ad.unpack_dual(_model_tensor(model_output, model)).primal
        if derivative is None:  # the output does not depend on x
            derivative = torch.zeros_like(primal)
    # not reshape(B, -1): an empty batch has no -1 to infer
    return output, primal, derivative.reshape(x.shape[0], math.prod(derivative.shape[1:]))


def _model_tensor(output: object, model: object) -> Tensor:
    """The model's output as a tensor (an e2cnn ``GeometricTensor``'s ``.tensor``), else a
    ``TypeError`` that says what the Lie derivative needs."""
    if isinstance(output, Tensor):
        return output
    tensor = getattr(output, "tensor", None)
    if isinstance(tensor, Tensor) and hasattr(output, "type"):  # e2cnn GeometricTensor
        return tensor
    raise TypeError(
        f"model: must return a tensor of logits [B, ...], but {type(model).__name__} returned "
        f"{type(output).__name__}; for a model that returns (logits, features) pass a wrapper "
        f"such as lambda x: model(x)[0], or layer='<submodule name>' to differentiate a hidden "
        f"layer's output"
    )


def lie_derivative_norms(derivative: Tensor, norm: str = "squared") -> Tensor:
    """Per-sample ``‖L f(x)‖²`` (``norm="squared"``) or ``‖L f(x)‖`` (``"l2"``) of a
    derivative ``[B, C]``, ``[B]`` in at least float32 (formed on the derivative scaled by a
    power of two: finite for any finite derivative whose true norm is representable)."""
    if norm not in LIE_NORMS:
        raise ValueError(f"norm: expected one of {list(LIE_NORMS)}, got {norm!r}")
    scale, squares = scaled_sum_of_squares(upcast(derivative))
    # no overflow for finite derivatives: inf only where the true ‖L f‖² exceeds the dtype
    return scale * (scale * squares) if norm == "squared" else scale * squares.sqrt()


def lie_derivative_error(
    model: nn.Module | Callable[[Tensor], Tensor],
    x: Tensor,
    generator: str,
    reduction: str = "mean",
    norm: str = "squared",
    layer: str | None = None,
    fill: float = 0.0,
    *,
    allow_nonfinite: bool = False,
) -> Tensor:
    """Lie derivative error: ``mean_i ‖L f(x_i)‖²`` over the ``B`` samples.

    ``norm="l2"`` takes the unsquared norm ``‖L f(x_i)‖``; ``reduction`` ``"mean"`` (scalar),
    ``"sum"`` (scalar) or ``"none"`` (``[B]``). Computed in at least float32; differentiable
    with respect to the model's parameters (a training loss, :class:`~invreg.losses.
    LieDerivativeL2`). Other arguments as :func:`lie_derivative`.

    ``ValueError`` if ``x`` holds NaN / Inf, or if the Lie derivative is not finite (the
    model's outputs or their derivative), rather than a NaN error; ``allow_nonfinite=True``
    lets them propagate (what a training loss wants: a gradient scaler must see the overflow).
    A finite derivative whose true ``‖L f‖²`` exceeds the dtype's range gives ``inf``.

    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(9, 2))
    >>> x = torch.ones(2, 1, 3, 3)
    >>> torch.allclose(lie_derivative_error(model, x, "rotation", reduction="none"),
    ...                lie_derivative(model, x, "rotation").pow(2).sum(-1))
    True
    """
    if reduction not in LIE_REDUCTIONS:
        raise ValueError(f"reduction: expected one of {list(LIE_REDUCTIONS)}, got {reduction!r}")
    if norm not in LIE_NORMS:
        raise ValueError(f"norm: expected one of {list(LIE_NORMS)}, got {norm!r}")
    check_lie_input(x, generator)
    if reduction == "mean" and x.shape[0] == 0:
        raise ValueError(f"x: empty batch {tuple(x.shape)}; the mean over 0 samples is undefined")
    if not allow_nonfinite:
        check_finite(x, "x", "clean or filter the inputs first (e.g. torch.nan_to_num)")
    _, differentiated, derivative = _forward_mode_pass(
        model, x, generator, layer, fill, keep_output=False
    )
    if not allow_nonfinite:
        finite = (torch.isfinite(derivative) & torch.isfinite(differentiated).reshape(
            derivative.shape)).all(dim=1)
        if not finite.all():
            what = "model" if layer is None else f"layer {layer!r}"
            raise ValueError(
                f"{what}: its output or its Lie derivative is NaN or Inf on "
                f"{int((~finite).sum())} of {x.shape[0]} samples of finite inputs, so the "
                f"error is undefined: fix the model (overflow, log / sqrt / division at 0)"
            )
    return _reduce(lie_derivative_norms(derivative, norm), reduction)


"""The Lie derivative of a model along a continuous image transformation (Gruver et al. 2023,
"The Lie derivative for measuring learned equivariance").

For a one-parameter family of transformations ``g_t`` (``g_0`` the identity) the Lie
derivative of an invariant-target model ``f`` at ``x`` is

    L f(x) = d/dt f(g_t·x) |_{t=0}        ([B, C] for logits [B, C])

and the Lie derivative error is the mean over samples of ``‖L f(x)‖²`` (the paper's
equation; ``norm="l2"`` gives ``‖L f(x)‖``). It is 0 for a model exactly invariant to ``g_t``.

The family ``g_t`` is a Lie generator of a continuous group (:class:`~invreg.groups.base.
LieGenerator`, :meth:`Group.lie_generators <invreg.groups.Group.lie_generators>`): pass the
run's group (``group=``, or a :class:`~invreg.groups.Group` in place of ``generator``), or a
generator name, a shorthand for a generator of the shipped groups (:data:`GENERATORS`):

- ``"rotation"``: ``t`` in radians, counter-clockwise as displayed, about the image centre
  (:class:`~invreg.groups.ContinuousRotations` at ``t·180/π`` degrees); square images only.
- ``"translate_x"`` / ``"translate_y"``: ``t`` in pixels, content moving right / down
  (:class:`~invreg.groups.Translations` ``(t, 0)`` / ``(0, t)``).
- ``"scale"``: factor ``e^t`` about the centre (:class:`~invreg.groups.Scalings` at ``t``).

A group with several generators (``Translations``) takes the name of one as well
(``group=Translations(), generator="translate_y"``); a finite group has none and raises
``ValueError``. :func:`lie_generator` resolves all these forms.

How it is computed. ``g_t·x`` is ``grid_sample(x, affine_grid(θ(t)))`` — bilinear, zeros
outside the frame (``fill`` outside with :meth:`Group.act`'s ``fill``), ``align_corners=False``:
the resampling of the continuous groups, with the group's own affine map ``θ(t)``
(:attr:`LieGenerator.theta <invreg.groups.base.LieGenerator.theta>`). The velocity of the
sampling grid,
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
from invreg.groups import (
    ContinuousRotations,
    Group,
    LieGenerator,
    Scalings,
    Translations,
    group_argument,
)

GeneratorLike = str | Group | LieGenerator

#: the generator names (shorthands): name → the :class:`~invreg.groups.base.LieGenerator` of
#: :class:`~invreg.groups.ContinuousRotations`, :class:`~invreg.groups.Translations` and
#: :class:`~invreg.groups.Scalings`; calling one, ``GENERATORS[name](t, H, W)``, gives the
#: ``[2, 3]`` pull-back affine map of :func:`invreg.groups.rotations.resample`
GENERATORS: dict[str, LieGenerator] = {
    name: generator
    for group in (ContinuousRotations(), Translations(), Scalings())
    for name, generator in group.lie_generators().items()
}

LIE_REDUCTIONS = ("mean", "sum", "none")
LIE_NORMS = ("squared", "l2")


def lie_generator(
    generator: GeneratorLike | None = None, group: Group | str | None = None
) -> LieGenerator:
    """The one-parameter family ``g_t`` a Lie derivative follows.

    Args:
        generator: a name of :data:`GENERATORS` (``"rotation"``, ``"translate_x"``,
            ``"translate_y"``, ``"scale"``), a :class:`~invreg.groups.base.LieGenerator`, or
            a continuous :class:`~invreg.groups.Group` (as ``group=``). With ``group``: the
            name of one of that group's generators, needed when it has several.
        group: a continuous group, or its name (``"so2"``,
            :func:`~invreg.groups.group_argument`): its own generator.

    Raises:
        ValueError: neither is given, the name is unknown, or the group has no generator (a
            finite group) or several and no name; the message names what is accepted.

    >>> lie_generator(group="so2") == lie_generator("rotation")
    True
    >>> lie_generator("translate_y", group=Translations()).parameter
    'pixels, content moving down'
    """
    if isinstance(generator, LieGenerator):
        if group is not None:
            raise ValueError(
                f"generator: a LieGenerator already names its group ({generator.group!r}); "
                f"leave out group="
            )
        return generator
    if isinstance(generator, Group):
        if group is not None:
            raise ValueError(
                f"generator: got the group {generator!r} and group={group!r}; pass one group"
            )
        generator, group = None, generator
    if generator is not None and not isinstance(generator, str):
        raise ValueError(_expected("generator", generator))
    if group is None:
        if generator not in GENERATORS:
            raise ValueError(_expected("generator", generator))
        return GENERATORS[generator]
    resolved = _group(group)
    if not resolved.lie_generators():
        finite = " (it is finite)" if resolved.is_finite else ""
        raise ValueError(
            f"group: {resolved!r} has no Lie generator{finite}; a Lie derivative needs a "
            f"continuous group, such as ContinuousRotations ('so2'), Translations, Scalings or "
            f"a Product with one of them, or a generator name: {sorted(GENERATORS)}"
        )
    return resolved.lie_generator(generator)


def _group(group: Group | str) -> Group:
    """``group`` as a :class:`~invreg.groups.Group`, else ``ValueError`` naming ``group`` (with a
    hint when it is a generator name)."""
    try:
        resolved = group_argument("group", group)
    except ValueError as err:
        if isinstance(group, str) and group in GENERATORS:
            raise ValueError(
                f"group: {group!r} is a generator name; pass generator={group!r}, or a group "
                f"such as 'so2'"
            ) from None
        raise err from None
    assert resolved is not None
    return resolved


def _expected(name: str, value: object) -> str:
    return (
        f"{name}: expected one of {sorted(GENERATORS)} or a continuous Group (group=), got "
        f"{value!r}"
    )


def check_lie_input(x: Tensor, generator: GeneratorLike, name: str = "x") -> LieGenerator:
    """The generator (:func:`lie_generator`) once ``x`` is checked: ``ValueError`` /
    ``TypeError`` naming the argument unless ``x`` is a floating image batch ``[B, C, H, W]``
    (square for a generator that needs it, ``"rotation"``)."""
    resolved = lie_generator(generator)
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
    if resolved.square and x.shape[-1] != x.shape[-2]:
        raise ValueError(
            f"{name}: the {resolved.name} generator needs square images (H == W), got shape "
            f"{tuple(x.shape)}"
        )
    return resolved


def lie_tangent(x: Tensor, generator: GeneratorLike, fill: float = 0.0) -> Tensor:
    """The symmetric derivative ``d/dt g_t·x`` at ``t = 0`` of the bilinear resampling, ``[B,
    C, H, W]`` like ``x`` (see the module docstring: ``V · ∇x`` with central differences).

    ``fill`` is the plane's value outside the frame (:meth:`invreg.groups.Group.act`): the
    tangent of ``act(x) + fill·(1 − act(1))`` is the tangent of ``x − fill``.

    >>> x = torch.tensor([[[[0.0, 1.0, 4.0]]]])
    >>> lie_tangent(x, "translate_x")  # −∂x/∂col, central differences, zero beyond the frame
    tensor([[[[-0.5000, -2.0000,  0.5000]]]])
    """
    theta = check_lie_input(x, generator).theta
    b, c, h, w = x.shape
    compute = torch.float64 if x.dtype == torch.float64 else torch.float32
    if x.numel() == 0:
        return torch.zeros_like(x)
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
    generator: GeneratorLike,
    layer: str | None = None,
    fill: float = 0.0,
) -> Tensor:
    """``L f(x) = d/dt f(g_t·x)`` at ``t = 0`` (symmetric derivative), ``[B, C]``.

    Args:
        model: maps ``[B, C_in, H, W]`` to outputs ``[B, *D]`` (flattened to ``[B, C]``).
        x: floating images ``[B, C_in, H, W]``.
        generator: the family ``g_t`` (:func:`lie_generator`): a continuous group (its
            generator), a :class:`~invreg.groups.base.LieGenerator`, or a name of
            :data:`GENERATORS` (``"rotation"``, ``"translate_x"``, ``"translate_y"``,
            ``"scale"``).
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
    generator: GeneratorLike,
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
    generator: GeneratorLike,
    layer: str | None,
    fill: float,
    keep_output: bool,
) -> tuple[Tensor | None, Tensor, Tensor]:
    """One forward-mode pass (see :func:`lie_derivative`): ``(f(x)`` (``None`` unless
    ``keep_output``), the differentiated output (the model's or ``layer``'s) and its
    derivative ``L f(x)`` ``[B, C])``."""
    generator = check_lie_input(x, generator)
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
    generator: GeneratorLike,
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
    generator = check_lie_input(x, generator)
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



# -- Gruver et al.'s Local Equivariance Error (LEE) convention -------------------------------

#: the transformations of Gruver et al.'s LEE (``lee/transforms.py`` of their code): name → the
#: velocity ``d/dt`` at ``t = 0`` of the sampling point ``(u, v)`` of their affine map ``θ(t)``,
#: in normalised ``align_corners=True`` units (``u = −1`` at the first pixel centre, ``+1`` at
#: the last). The output at ``(u, v)`` reads the input at ``θ(t)·(u, v, 1)``.
LEE_TRANSFORMS: dict[str, Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]] = {
    "translate_x": lambda u, v: (torch.ones_like(u), torch.zeros_like(v)),  # θ = [[1,0,t],[0,1,0]]
    "translate_y": lambda u, v: (torch.zeros_like(u), torch.ones_like(v)),  # θ = [[1,0,0],[0,1,t]]
    "rotation": lambda u, v: (v, -u),  # θ = [[cos t, sin t, 0], [−sin t, cos t, 0]]
    "shear_x": lambda u, v: (v, torch.zeros_like(v)),  # θ = [[1, t, 0], [0, 1, 0]]
    "shear_y": lambda u, v: (torch.zeros_like(u), u),  # θ = [[1, 0, 0], [t, 1, 0]]
    "hyperbolic_rotation": lambda u, v: (v, u),  # θ = [[cosh t, sinh t, 0], [sinh t, cosh t, 0]]
    "scale": lambda u, v: (-u, -v),  # θ = [[1 − t, 0, 0], [0, 1 − t, 0]]
}
#: ``LEE_TRANSFORMS`` and ``"saturate"`` (``x·(1 + t)``: the tangent is ``x``)
LEE_TRANSFORM_NAMES = (*LEE_TRANSFORMS, "saturate")


def lee_tangent(x: Tensor, transform: str = "rotation") -> Tensor:
    """``d/dt T_t x`` at ``t = 0`` in Gruver et al.'s convention, ``[B, C, H, W]`` like ``x``.

    Their bilinear sampler (``align_corners=True``, reflect padding) differentiated at ``t = 0``
    the way their autograd does: the cell's corner is ``floor`` of the sampling point, so at a
    pixel centre the slope is the **forward** difference ``x[i+1] − x[i]`` along each axis
    (reflected beyond the frame: ``x[W] = x[W−2]``), times ``(W−1)/2`` per normalised unit,
    dotted with the velocity of :data:`LEE_TRANSFORMS`. ``"saturate"`` gives ``x``.

    >>> x = torch.tensor([[[[0.0, 1.0, 4.0]]]]).expand(1, 1, 2, 3)
    >>> lee_tangent(x, "translate_x")[0, 0, 0]  # (W−1)/2 · forward difference, reflected
    tensor([ 1.,  3., -3.])
    """
    if not isinstance(transform, str) or transform not in LEE_TRANSFORM_NAMES:
        raise ValueError(
            f"transform: expected one of {list(LEE_TRANSFORM_NAMES)}, got {transform!r}"
        )
    if not isinstance(x, Tensor):
        raise TypeError(f"x: expected a tensor [B, C, H, W], got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(
            f"x: expected an image batch [B, C, H, W], got shape {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise TypeError(
            f"x: the LEE resamples bilinearly and needs a floating-point tensor, got dtype "
            f"{x.dtype}; convert it first, e.g. x.float()"
        )
    if transform == "saturate":
        return x.clone()
    b, c, h, w = x.shape
    if h < 2 or w < 2:
        raise ValueError(
            f"x: the LEE's reflect padding needs images of at least 2×2 pixels, got shape "
            f"{tuple(x.shape)}"
        )
    if x.numel() == 0:
        return torch.zeros_like(x)
    compute = torch.float64 if x.dtype == torch.float64 else torch.float32
    image = x.to(compute)
    # the normalised align_corners=True coordinates of the pixel centres
    u = torch.linspace(-1.0, 1.0, w, dtype=compute, device=x.device).expand(h, w)
    v = torch.linspace(-1.0, 1.0, h, dtype=compute, device=x.device)[:, None].expand(h, w)
    velocity_u, velocity_v = LEE_TRANSFORMS[transform](u, v)
    # forward differences of the reflect-padded image, in pixels per normalised unit
    padded = F.pad(image, (0, 1, 0, 1), mode="reflect")
    slope_x = (padded[..., :h, 1:] - image) * ((w - 1) / 2)
    slope_y = (padded[..., 1:, :w] - image) * ((h - 1) / 2)
    return (slope_x * velocity_u + slope_y * velocity_v).to(x.dtype)


def local_equivariance_error(
    model: nn.Module | Callable[[Tensor], Tensor],
    x: Tensor,
    transform: str = "rotation",
) -> Tensor:
    """Gruver et al.'s Local Equivariance Error per sample, ``[B]``: the mean over classes of
    ``|d/dt softmax(f(T_t x))|`` at ``t = 0``, with their transformations and units.

    The published number (``lee/e2e_lee.py`` of Gruver et al. 2023): the derivative of the
    softmax probabilities (over the last axis of the flattened output ``[B, C]``), not of the
    raw outputs; the mean of absolute values over the ``C`` classes, not a squared norm; ``T_t``
    their affine resampling (:data:`LEE_TRANSFORMS`, ``"saturate"``), ``t`` in their units
    (normalised ``align_corners=True`` units for translations: one unit is ``(W−1)/2``
    pixels; radians, the other way round from ``"rotation"`` of :func:`lie_derivative`); the
    derivative one-sided and the border reflected (:func:`lee_tangent`). The conversion to
    :func:`lie_derivative` is tabulated in ``docs/lie.md``.

    Args:
        model: maps ``[B, C_in, H, W]`` to logits ``[B, *D]`` (flattened to ``[B, C]``).
        x: floating images ``[B, C_in, H, W]``, ``H, W ≥ 2``.
        transform: a name of :data:`LEE_TRANSFORM_NAMES` (``"rotation"``, ``"translate_x"``,
            ``"translate_y"``, ``"shear_x"``, ``"shear_y"``, ``"hyperbolic_rotation"``,
            ``"scale"``, ``"saturate"``).

    One forward-mode pass of the model (``torch.autograd.forward_ad``) in ``x``'s dtype; the
    result in at least float32. Measure in ``model.eval()``, as they do.

    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(9, 2))
    >>> local_equivariance_error(model, torch.randn(4, 1, 3, 3), "translate_x").shape
    torch.Size([4])
    """
    tangent = lee_tangent(x, transform)
    with forward_ad.dual_level():
        dual = forward_ad.make_dual(x, tangent)
        logits = _model_tensor(forward_batch(model, dual), model)
        logits = logits.reshape(x.shape[0], math.prod(logits.shape[1:]))
        primal, derivative = forward_ad.unpack_dual(torch.softmax(upcast(logits), dim=-1))
    if derivative is None:  # the output does not depend on x
        derivative = torch.zeros_like(primal)
    return derivative.abs().mean(dim=-1)

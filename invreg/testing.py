"""Invariance and equivariance assertions for any model, with tolerances that follow the dtype.

Two checks, for use in a test suite:

* :func:`assert_invariant` — ``f(g·x) == f(x)`` for every element ``g`` of the orbit;
* :func:`assert_equivariant` — ``f(g·x) == g·f(x)``, on plain feature maps ``[B, C, H, W]``
  (the group's own :meth:`~invreg.groups.Group.act` on both sides) or on e2cnn
  ``GeometricTensor`` inputs / outputs (their field type's ``transform``).

Tolerance. Unless given, both are derived from the dtype and the magnitude compared::

    atol = K · eps(dtype) · sqrt(D) · S        rtol = K · eps(dtype)

with ``S = max |f|`` over every output compared, ``D`` the number of entries of one input sample
and ``K = 16``. Why: two computations of the same exact value differ only by rounding; a dot
product of length ``n`` accumulates rounding errors of random sign whose sum grows like
``sqrt(n)·eps`` times the magnitude of the terms (Higham's probabilistic bound), and ``n ≤ D``
for the widest fan-in (a first layer that sees the whole input); ``S`` carries the magnitude, so
scaling a model's output by 1000 scales the tolerance with it; ``K`` covers the depth of the
network, the two sides of the comparison and the ratio between hidden and output magnitudes
(measured largest error ÷ ``atol``: 0.003–0.006 for a weight-tied MLP, 0.004–0.012 for an
e2cnn G-CNN, in float32 and float64; 5·10³ and 10¹² for a plain MLP: ``docs/testing.md``).

Low precision is refused. In bfloat16 (``eps = 2⁻⁷``) ``atol`` reaches ``max |f|`` itself for
any input of 64 entries or more, in float16 (``eps = 2⁻¹⁰``) for 4096: every model would pass.
So a float16 / bfloat16 output with a derived tolerance raises ``TypeError``: check the model
in float32 or float64 (``assert_invariant(model.double(), group, x.double())``), or give both
``atol`` and ``rtol`` yourself.

Interpolation floor. Groups whose action is not exact on the pixel grid (``group.is_exact`` is
``False``: ``c8``, ``so2`` ...) resample bilinearly, so ``g⁻¹·(g·x) ≠ x`` and even a model that is
invariant on continuous images moves. The floor is measured with a *round trip*: the input
``g⁻¹·(g·x)`` is one that the exact action maps to ``x``, so every invariant function of the
continuous image gives it the output ``f(x)``; ``floor_g = max |f(g⁻¹·(g·x)) − f(x)|`` is how far
resampling alone moves *this* model's output on *this* input (for equivariance the output's
round trip ``|g⁻¹·(g·f(x)) − f(x)|`` is added). The check fails when the error of some element
exceeds ``max(tolerance, floor_factor · floor_g)``; the message reports both. Random inputs
(``x=None``) for such groups are smooth and vanish outside the inscribed disc, so that the
floor reflects the model, not white noise that bilinear resampling destroys.

Precision in your own tests: :func:`parametrize_dtypes` runs a test in float32 and float64::

    from invreg.testing import assert_invariant, parametrize_dtypes

    @parametrize_dtypes()
    def test_my_model_is_invariant(dtype):
        model = MyModel().to(dtype)
        assert_invariant(model, "c4")
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from invreg.evaluation import eval_mode as evaluation_mode
from invreg.functional import orbit_logits
from invreg.groups import Group, get_group
from invreg.groups.e2cnn import act as e2cnn_act
from invreg.groups.e2cnn import is_geometric_tensor

#: the dtypes :func:`parametrize_dtypes` runs a test in
DTYPES: tuple[torch.dtype, ...] = (torch.float32, torch.float64)
#: safety factor of the derived tolerance (see the module docstring)
TOLERANCE_FACTOR = 16.0
#: dtypes whose derived tolerance is as large as the outputs: refused (module docstring)
LOW_PRECISION = (torch.float16, torch.bfloat16)
#: a non-exact group fails when its error exceeds this multiple of the interpolation floor
FLOOR_FACTOR = 4.0
#: orbit size used for continuous groups
CONTINUOUS_SAMPLES = 8

Action = Callable[[Any, Tensor], Any]


def parametrize_dtypes(argname: str = "dtype", dtypes: Sequence[torch.dtype] = DTYPES):
    """A ``pytest.mark.parametrize`` over float dtypes, ids ``float32`` / ``float64``.

    Decorate a test that takes ``argname``; cast the model with ``model.to(dtype)``::

        @parametrize_dtypes()
        def test_invariant(dtype):
            assert_invariant(TiedMLP((1, 8, 8), 3, group="c4").to(dtype), "c4")

    In a ``conftest.py``, ``dtype = pytest.fixture(params=DTYPES, ids=str)(lambda request:
    request.param)`` gives the same as a fixture.
    """
    import pytest

    for dtype in dtypes:
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtypes: expected floating torch dtypes, got {dtype!r}")
    return pytest.mark.parametrize(
        argname, list(dtypes), ids=[str(d).removeprefix("torch.") for d in dtypes]
    )


def default_tolerance(outputs: Tensor, input_numel: int, dtype: torch.dtype) -> tuple[float, float]:
    """``(atol, rtol)`` for comparing ``outputs`` computed from inputs of ``input_numel`` entries.

    ``atol = K · eps(dtype) · sqrt(input_numel) · max|outputs|`` and ``rtol = K · eps(dtype)``
    with ``K =`` :data:`TOLERANCE_FACTOR` (derivation: module docstring). ``TypeError`` for
    float16 / bfloat16, where this tolerance is as large as the outputs (module docstring).

    >>> atol, rtol = default_tolerance(torch.full((2, 3), 1000.0), 64, torch.float32)
    >>> round(atol / (16 * 8 * 1000 * torch.finfo(torch.float32).eps), 6), rtol > 0
    (1.0, True)
    """
    if dtype in LOW_PRECISION:
        ratio = TOLERANCE_FACTOR * torch.finfo(dtype).eps * math.sqrt(max(input_numel, 1))
        raise TypeError(
            f"the model's outputs are {dtype}: the tolerance derived from its precision, "
            f"{TOLERANCE_FACTOR:g}·eps·sqrt(D)·max|f| with D = {input_numel}, is {ratio:.3g}× "
            f"max|f|, too coarse for the check to catch a non-invariant model; check it in "
            f"float32 or float64 (cast the model and x, e.g. model.double() and x.double()), "
            f"or pass both atol and rtol"
        )
    eps = torch.finfo(dtype).eps
    scale = float(outputs.detach().abs().max()) if outputs.numel() else 0.0
    return (
        TOLERANCE_FACTOR * eps * math.sqrt(max(input_numel, 1)) * scale,
        TOLERANCE_FACTOR * eps,
    )


def random_input(
    model: nn.Module,
    group: str | Group,
    batch_size: int = 4,
    dtype: torch.dtype | None = None,
    seed: int = 0,
) -> Tensor:
    """A seeded random batch ``[batch_size, *model.input_shape]`` in the model's dtype.

    Standard normal entries; for a non-exact group acting on images ``[B, C, H, W]`` the noise
    is drawn on a 4× coarser grid, upsampled bilinearly and multiplied by the inscribed disc, so
    resampling loses little of it (see the interpolation floor in the module docstring).
    ``ValueError`` if the model has no ``input_shape`` attribute: pass ``x`` yourself.
    """
    shape = getattr(model, "input_shape", None)
    if shape is None:
        raise ValueError(
            f"x: {type(model).__name__} has no input_shape attribute, so no random input can be "
            f"made; pass x, a batch of the model's inputs"
        )
    group = get_group(group)
    dtype = dtype or _model_dtype(model) or torch.get_default_dtype()
    device = next(model.parameters(), torch.empty(0)).device
    generator = torch.Generator().manual_seed(seed)
    shape = tuple(shape)
    if group.is_exact or len(shape) != 3:
        return torch.randn(batch_size, *shape, generator=generator, dtype=dtype).to(device)
    channels, height, width = shape
    coarse = torch.randn(
        batch_size,
        channels,
        max(height // 4, 2),
        max(width // 4, 2),
        generator=generator,
        dtype=dtype,
    )
    x = F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=True)
    ys = torch.linspace(-1.0, 1.0, height, dtype=dtype).view(-1, 1)
    xs = torch.linspace(-1.0, 1.0, width, dtype=dtype).view(1, -1)
    disc = (1.0 - (ys**2 + xs**2)).clamp(min=0.0)  # smooth to 0 at the inscribed circle
    return (x * disc).to(device)


def assert_invariant(
    model: nn.Module,
    group: str | Group,
    x: Tensor | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    *,
    num_samples: int | None = None,
    floor_factor: float = FLOOR_FACTOR,
    seed: int = 0,
    eval_mode: bool = True,
) -> None:
    """Assert ``f(g·x) == f(x)`` for every element ``g`` of the orbit of ``x``.

    The model runs in ``eval()`` mode without gradients (modes restored afterwards;
    ``eval_mode=False`` keeps the modes it has, e.g. to check a model as it trains). Entry ``c``
    of the output of element ``g`` passes when
    ``|f(g·x)_c − f(x)_c| ≤ atol + rtol·|f(x)_c|``; ``atol`` / ``rtol`` default to
    :func:`default_tolerance` (``K·eps·sqrt(D)·max|f|`` and ``K·eps``). For a non-exact group the
    bound is ``max(that, floor_factor · floor_g)`` with the round-trip interpolation floor of the
    module docstring.

    Args:
        model: maps ``[B, *input_shape]`` to outputs ``[B, ...]``.
        group: a :class:`~invreg.groups.Group` or its name (``"c4"``, ``"d4"``, ``"so2"`` ...).
        x: inputs ``[B, *input_shape]``; ``None``: :func:`random_input` (needs
            ``model.input_shape``).
        atol, rtol: non-negative tolerances; ``None`` derives them.
        num_samples: orbit size of a continuous group (default 8, identity included).
        floor_factor: how many times the interpolation floor a non-exact group may reach.
        seed: seeds the random input and the elements of a continuous group.
        eval_mode: run the model in ``eval()`` mode (default).

    Raises:
        AssertionError: naming the worst element, the max and mean absolute error, the
            tolerance, the dtype (and the floor for non-exact groups).
        ValueError / TypeError: an unknown group, an input the group or model cannot take, a
            dtype that differs from the model's, NaN / Inf outputs, bad tolerances, float16 /
            bfloat16 outputs without both ``atol`` and ``rtol`` (``TypeError``: check the
            model in float32 or float64, e.g. ``model.double()``).

    >>> from invreg.models import TiedMLP
    >>> assert_invariant(TiedMLP((1, 8, 8), 3, group="c4", hidden_widths=(16,)), "c4")
    """
    group = get_group(group)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if x is None:
        x = random_input(model, group, seed=seed)
    _check_input(model, group, x)
    atol, rtol = _check_tolerances(atol, rtol)
    _check_floor_factor(floor_factor)
    elements = _elements(group, num_samples, seed, x.device)
    if not isinstance(eval_mode, bool):
        raise TypeError(f"eval_mode: expected True or False, got {eval_mode!r}")
    with torch.no_grad(), evaluation_mode(model, eval_mode):
        outputs = orbit_logits(model, x, group, elements=elements)  # [B, N, ...]
        _check_finite(outputs, "model outputs")
        floors = None
        if not group.is_exact:
            inverse = group.inverse(elements)
            round_trip = torch.stack(
                [
                    model(group.act(group.act(x, g), g_inv))
                    for g, g_inv in zip(elements[1:], inverse[1:], strict=True)
                ],
                dim=1,
            )
            _check_finite(round_trip, "model outputs on round trips g⁻¹·(g·x)")
            floors = _per_element_max((round_trip - outputs[:, :1]).abs())
    reference = outputs[:, :1].expand_as(outputs[:, 1:])
    _report(
        f"{type(model).__name__} is not invariant to {group!r}: |f(g·x) − f(x)|",
        group,
        elements,
        outputs[:, 1:],
        reference,
        floors,
        atol,
        rtol,
        x,
        floor_factor,
    )


def assert_equivariant(
    module: nn.Module,
    group: str | Group,
    x: Any,
    in_action: Action | None = None,
    out_action: Action | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    *,
    num_samples: int | None = None,
    floor_factor: float = FLOOR_FACTOR,
    seed: int = 0,
) -> None:
    """Assert ``module(g·x) == g·module(x)`` for every element ``g`` of the orbit.

    ``in_action(x, g)`` / ``out_action(y, g)`` act by one element ``g`` (a scalar tensor of the
    group's element type) on the input / output. Defaults: for an e2cnn ``GeometricTensor`` the
    action its field type says (:func:`invreg.groups.e2cnn.act`, in the tensor's dtype, as in
    :func:`~invreg.functional.geed`); for a plain tensor the group's own
    :meth:`~invreg.groups.Group.act` (feature maps ``[B, C, H, W]``). ``GeometricTensor``
    outputs are compared through their ``.tensor``. Tolerances, the floor for non-exact groups
    (input and output round trips added), eval mode and the errors raised are those of
    :func:`assert_invariant`.

    >>> conv = torch.nn.Conv2d(2, 3, 3, padding=1, bias=False)
    >>> with torch.no_grad():  # a kernel that rot90 maps onto itself
    ...     _ = conv.weight.copy_(conv.weight + conv.weight.rot90(1, (2, 3))
    ...                       + conv.weight.rot90(2, (2, 3)) + conv.weight.rot90(3, (2, 3)))
    >>> assert_equivariant(conv, "c4", torch.randn(2, 2, 7, 7))
    """
    group = get_group(group)
    if not isinstance(module, nn.Module):
        raise TypeError(f"module: expected a torch.nn.Module, got {type(module).__name__}")
    x_tensor = _tensor_of(x, "x")
    if in_action is None:
        in_action = _default_action(group, x, "x")
        if not is_geometric_tensor(x):
            _check_input(module, group, x_tensor)
    elif not callable(in_action):
        raise TypeError(f"in_action: expected a callable (x, g), got {type(in_action).__name__}")
    if out_action is not None and not callable(out_action):
        raise TypeError(f"out_action: expected a callable (y, g), got {type(out_action).__name__}")
    atol, rtol = _check_tolerances(atol, rtol)
    _check_floor_factor(floor_factor)
    elements = _elements(group, num_samples, seed, x_tensor.device)
    with torch.no_grad(), evaluation_mode(module):
        y = module(x)
        _check_finite(_tensor_of(y, "module output"), "module outputs")
        act_out = out_action or _default_action(group, y, "module output")
        transformed, expected, floors = [], [], []
        inverse = group.inverse(elements)
        for g, g_inv in zip(elements[1:], inverse[1:], strict=True):
            moved_in = in_action(x, g)
            transformed.append(_tensor_of(module(moved_in), "module output"))
            expected.append(_tensor_of(act_out(y, g), "out_action output"))
            if not group.is_exact:
                back = _tensor_of(module(in_action(moved_in, g_inv)), "module output")
                out_back = _tensor_of(act_out(act_out(y, g), g_inv), "out_action output")
                y_tensor = _tensor_of(y, "module output")
                floors.append(
                    (back - y_tensor).abs().flatten().amax()
                    + (out_back - y_tensor).abs().flatten().amax()
                )
        transformed_t = torch.stack(transformed, dim=1)
        expected_t = torch.stack(expected, dim=1)
    _check_finite(transformed_t, "module outputs")
    if transformed_t.shape != expected_t.shape:
        raise ValueError(
            f"out_action: its output has shape {tuple(expected_t.shape[::2])} but the module's "
            f"output has shape {tuple(transformed_t.shape[::2])}; the action must keep the shape"
        )
    _report(
        f"{type(module).__name__} is not equivariant to {group!r}: |f(g·x) − g·f(x)|",
        group,
        elements,
        transformed_t,
        expected_t,
        torch.stack(floors) if floors else None,
        atol,
        rtol,
        x_tensor,
        floor_factor,
    )


# --------------------------------------------------------------------------- helpers
def _report(
    title: str,
    group: Group,
    elements: Tensor,
    outputs: Tensor,
    reference: Tensor,
    floors: Tensor | None,
    atol: float | None,
    rtol: float | None,
    x: Tensor,
    floor_factor: float,
) -> None:
    """Compare ``outputs`` with ``reference`` (``[B, N − 1, ...]``, non-identity elements) and
    raise ``AssertionError`` for the element that exceeds its bound the most."""
    dtype = outputs.dtype
    if atol is None or rtol is None:
        default_atol, default_rtol = default_tolerance(
            torch.cat([outputs.flatten(), reference.flatten()]), x[0].numel(), dtype
        )
        atol = default_atol if atol is None else atol
        rtol = default_rtol if rtol is None else rtol
    errors = (outputs - reference).abs()
    bound = atol + rtol * reference.abs()
    excess = _per_element_max(errors - bound)  # [N − 1]: > 0 where some entry is outside
    max_errors = _per_element_max(errors)
    mean_errors = errors.transpose(0, 1).flatten(start_dim=1).mean(dim=1)
    tolerance = f"atol={atol:.3g}, rtol={rtol:.3g}"
    failing = excess > 0
    floor_note = ""
    if floors is not None:
        allowed = floors.to(max_errors.dtype) * float(floor_factor)
        failing &= max_errors > allowed
    if not failing.any():
        return
    if floors is None:
        j = int(torch.argmax(torch.where(failing, excess, -math.inf)))
    else:
        ratio = max_errors / allowed.clamp(min=atol or torch.finfo(dtype).tiny)
        j = int(torch.argmax(torch.where(failing, ratio, -1.0)))
        times = f" = {float(max_errors[j] / floors[j]):.3g}× it" if float(floors[j]) > 0 else ""
        floor_note = (
            f"; interpolation floor {float(floors[j]):.3g}{times} ({group!r} resamples, so "
            f"errors up to {float(floor_factor):g}× the round-trip error of g⁻¹·(g·x) pass)"
        )
    raise AssertionError(
        f"{title}: worst element g={_element_str(group, elements[j + 1])}: max error "
        f"{float(max_errors[j]):.3g}, mean error {float(mean_errors[j]):.3g}, above the "
        f"tolerance {tolerance} (max |f| = {float(reference.abs().max()):.3g}){floor_note}; "
        f"dtype {dtype}"
    )


def _per_element_max(values: Tensor) -> Tensor:
    """``[B, M, ...]`` → ``[M]``: the largest value of each orbit element."""
    return values.transpose(0, 1).flatten(start_dim=1).amax(dim=1)


def _element_str(group: Group, g: Tensor) -> str:
    if g.ndim == 0 and not g.is_floating_point():
        angles = getattr(group, "angles", None)
        if callable(angles):
            try:
                return f"{int(g)} ({float(angles(g)):g}°)"
            except (TypeError, ValueError):
                pass
        return str(int(g))
    return ", ".join(f"{v:g}" for v in g.flatten().tolist())


def _elements(group: Group, num_samples: int | None, seed: int, device) -> Tensor:
    if group.is_finite:
        if num_samples is not None:
            raise ValueError(
                f"num_samples: {group!r} is finite and its whole orbit is checked; leave "
                f"num_samples=None, got {num_samples!r}"
            )
        elements = group.elements(device=device)
    else:
        generator = torch.Generator().manual_seed(seed)
        elements = group.elements(num_samples or CONTINUOUS_SAMPLES, generator, device)
    if elements.shape[0] < 2:
        raise ValueError(f"group: {group!r} has only the identity; nothing to check")
    return elements


def _check_input(model: nn.Module, group: Group, x: Tensor) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"x: expected a tensor of inputs [B, ...], got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"x: expected a floating-point tensor, got dtype {x.dtype}")
    if x.ndim == 0 or x.shape[0] == 0:
        raise ValueError(f"x: expected a non-empty batch [B, ...], got shape {tuple(x.shape)}")
    shape = getattr(model, "input_shape", None)
    if shape is not None and tuple(x.shape[1:]) != tuple(shape):
        raise ValueError(
            f"x: expected shape [B, {', '.join(map(str, shape))}] (the model's input_shape), got "
            f"{tuple(x.shape)}"
        )
    group.check_input(x)
    model_dtype = _model_dtype(model)
    if model_dtype is not None and model_dtype != x.dtype:
        raise TypeError(
            f"x: dtype {x.dtype} differs from the model's {model_dtype}; cast one of them, e.g. "
            f"model.to({x.dtype})"
        )
    _check_finite(x, "x")


def _check_tolerances(atol: float | None, rtol: float | None) -> tuple[float | None, float | None]:
    for name, value in (("atol", atol), ("rtol", rtol)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"{name}: expected a number or None, got {type(value).__name__}")
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{name}: expected a finite number >= 0, got {value!r}")
    return (None if atol is None else float(atol), None if rtol is None else float(rtol))


def _check_floor_factor(floor_factor: float) -> None:
    if isinstance(floor_factor, bool) or not isinstance(floor_factor, int | float):
        raise TypeError(f"floor_factor: expected a number, got {type(floor_factor).__name__}")
    if not math.isfinite(floor_factor) or floor_factor <= 0:
        raise ValueError(f"floor_factor: expected a finite number > 0, got {floor_factor!r}")


def _check_finite(values: Tensor, what: str) -> None:
    if values.is_floating_point() and not torch.isfinite(values).all():
        bad = int((~torch.isfinite(values)).sum())
        raise ValueError(
            f"{what}: {bad} of {values.numel()} entries are NaN or infinite; invariance cannot "
            f"be checked — fix the model or its input first"
        )


def _model_dtype(model: nn.Module) -> torch.dtype | None:
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return None


def _tensor_of(value: Any, what: str) -> Tensor:
    if is_geometric_tensor(value):
        return value.tensor
    if isinstance(value, Tensor):
        return value
    raise TypeError(
        f"{what}: expected a tensor or an e2cnn GeometricTensor, got {type(value).__name__}"
    )


def _default_action(group: Group, value: Any, what: str) -> Action:
    """``g·value``: the e2cnn action for a GeometricTensor, else ``group.act``."""
    if is_geometric_tensor(value):
        return functools.partial(e2cnn_act, group)
    tensor = _tensor_of(value, what)
    try:
        group.check_input(tensor)
    except (ValueError, TypeError) as err:
        raise ValueError(
            f"{what}: {group!r} cannot act on a tensor of shape {tuple(tensor.shape)} ({err}); "
            f"pass in_action / out_action"
        ) from None
    return group.act


__all__ = [
    "DTYPES",
    "FLOOR_FACTOR",
    "TOLERANCE_FACTOR",
    "assert_equivariant",
    "assert_invariant",
    "default_tolerance",
    "parametrize_dtypes",
    "random_input",
]

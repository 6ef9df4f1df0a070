"""Invariance and equivariance assertions for any model, as sensitive as rounding allows.

Two checks, for use in a test suite:

* :func:`assert_invariant` — ``f(g·x) == f(x)`` for every element ``g`` of the orbit;
* :func:`assert_equivariant` — ``f(g·x) == g·f(x)``, on plain feature maps ``[B, C, H, W]``
  (the group's own :meth:`~invreg.groups.Group.act` on both sides) or on e2cnn
  ``GeometricTensor`` inputs / outputs (their field type's ``transform``).

Both return a :class:`CheckReport` (the margin, the path, the floor) when the check passes and
raise :class:`CheckFailed` (an ``AssertionError`` holding the report) when it fails.

Path 1, the float64 recompute (default, ``recompute=True``). The model is copied
(``copy.deepcopy(model).to(torch.float64)``, e2cnn modules included) and the whole comparison
runs again in float64 on the same inputs, cast exactly. A violation of invariance lives in the
weights and survives the cast; the rounding of a float32 (or bfloat16 / float16) forward pass
does not. What is left is float64 rounding and the rounding of the *stored* weights::

    atol = K · eps(float64) · sqrt(D) · S  +  STORAGE_FACTOR · eps(dtype) · S        rtol = 0

with ``S = max |f|`` over every output compared, ``D`` the number of entries of one input
sample, ``K =`` :data:`TOLERANCE_FACTOR` and ``STORAGE_FACTOR = 2``. The second term is there
because weights made symmetric *in* float32 (e.g. ``w + rot90(w) + ...`` summed in float32)
are symmetric only to float32 rounding, and that survives the cast: measured, it moves a
layer's output by up to ``0.8 · eps(dtype) · S`` (float32, float16, bfloat16). It is zero for
a float64 model. For float32 this tolerance is ``2.4·10⁻⁷ · S``: a leak of ``10⁻⁶ · S`` fails.
The float32 model counts as checked through this recompute: its weights are what is compared.
Low precision is checked the same way, with ``eps(bfloat16) = 2⁻⁷`` in the storage term (a
violation above ``1.6 % · S`` fails); the low-precision forward pass itself is not compared.

Path 2, the calibrated bound (``recompute=False``, or the copy cannot be made or run in
float64: deepcopy or the cast raise, the forward raises, or the outputs are not float64). The
comparison runs in the model's dtype with::

    atol = K · eps(dtype) · sqrt(D) · S        rtol = K · eps(dtype)

Two computations of the same value in a different summation order differ by rounding; a dot
product of length ``n ≤ D`` accumulates errors of random sign like ``sqrt(n)·eps`` times the
magnitude (Higham's probabilistic bound). ``K = 4`` is calibrated: exact networks (weight-tied
MLPs and e2cnn G-CNNs over C4 and D4, 9×9 to 28×28 inputs, float32 and float64, 20 each) reach
at most 0.75 of ``eps·sqrt(D)·S`` (``benchmarks/bench_testing_sensitivity.py``,
``docs/testing.md``); the former ``K = 16`` sat 20–180× above them.
This path refuses float16 / bfloat16 (``TypeError``): there ``atol`` reaches ``S`` for inputs
of 1024 (bfloat16) or 65 536 (float16) entries and is a sizeable part of it for any image,
so give both ``atol`` and ``rtol`` yourself to use it anyway.

Interpolation floor. Groups whose action is not exact on the pixel grid (``group.is_exact`` is
``False``: ``c8``, ``so2`` ...) resample bilinearly, so even a model that is invariant on
continuous images moves. The floor of sample ``b`` and element ``g`` is how far resampling alone
moves *this* model on *this* sample, along two routes to an input whose continuous image is
known: the round trip ``|f(g⁻¹·(g·x_b)) − f(x_b)|`` and the pair ``|f(g·(g·x_b)) −
f((g∘g)·x_b)|`` (one continuous image, resampled twice and once; it catches what cancels on
the way back); the larger of the two (for equivariance the output's routes are added). An
entry of sample ``b`` passes when its error is within ``max(atol + rtol·|f_c|, floor_factor ·
floor_{g,b})``. One resampling moves a network that is equivariant on the grid by about half
of two (measured: 0.6–1.0 of the floor for e2cnn C8 G-CNNs), so the default ``floor_factor =
2`` passes those while a C4-only G-CNN fails the 45° elements (``docs/testing.md``). The floor
is small only for smooth inputs: random inputs (``x=None``) for such groups are band-limited —
plane waves of at most :data:`BAND_LIMIT` cycles per image width — and fade smoothly to zero at
the inscribed circle (:func:`band_limited_input`), so bilinear resampling loses little and
nothing leaves the frame. Pass such inputs when you pass ``x``. A model that averages the
input linearly (a global mean) is missed by both routes — its resampling error cancels on the
way back — and needs a larger ``floor_factor``.

Precision in your own tests: :func:`parametrize_dtypes` runs a test in float32 and float64::

    from invreg.testing import assert_invariant, parametrize_dtypes

    @parametrize_dtypes()
    def test_my_model_is_invariant(dtype):
        model = MyModel().to(dtype)
        assert_invariant(model, "c4")
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from invreg.evaluation import eval_mode as evaluation_mode
from invreg.functional import orbit_logits
from invreg.groups import Group, get_group
from invreg.groups.e2cnn import act as e2cnn_act
from invreg.groups.e2cnn import is_geometric_tensor

#: the dtypes :func:`parametrize_dtypes` runs a test in
DTYPES: tuple[torch.dtype, ...] = (torch.float32, torch.float64)
#: ``K`` of both tolerances, calibrated on exact networks (module docstring)
TOLERANCE_FACTOR = 4.0
#: multiple of ``eps(dtype)·max|f|`` allowed for weights stored in ``dtype`` (module docstring)
STORAGE_FACTOR = 2.0
#: dtypes that only the float64 recompute (or explicit tolerances) can check
LOW_PRECISION = (torch.float16, torch.bfloat16)
#: a non-exact group fails where an error exceeds this multiple of the round-trip floor
FLOOR_FACTOR = 2.0
#: random inputs for non-exact groups hold plane waves of at most this many cycles per width
BAND_LIMIT = 0.7
#: orbit size used for continuous groups
CONTINUOUS_SAMPLES = 8
#: the two ways a check is computed (:attr:`CheckReport.path`)
RECOMPUTE_PATH = "float64 recompute"
CALIBRATED_PATH = "calibrated bound"

Action = Callable[[Any, Tensor], Any]


@dataclass(frozen=True)
class CheckReport:
    """What an invariance / equivariance check measured, for its worst orbit element.

    ``margin = error ÷ tolerance`` at the worst entry (``≤ 1`` passes): ``error`` is that
    entry's ``|f(g·x) − f(x)|``, ``tolerance`` its bound (``atol + rtol·|f|``, or
    ``floor_factor · floor`` where that is larger); ``max_error`` / ``mean_error`` are over the
    element's entries, ``scale`` is ``max |f|``; ``path`` is :data:`RECOMPUTE_PATH`
    or :data:`CALIBRATED_PATH`, ``path_note`` says why / how; ``floor`` is the
    interpolation floor of that entry's sample (``None`` for exact groups); ``dtype`` is the
    model's, ``compute_dtype`` the one the comparison ran in; ``group`` the group's repr.
    """

    group: str
    element: str
    margin: float
    error: float
    tolerance: float
    max_error: float
    mean_error: float
    atol: float
    rtol: float
    scale: float
    path: str
    path_note: str
    floor: float | None
    floor_factor: float
    dtype: torch.dtype
    compute_dtype: torch.dtype

    @property
    def passed(self) -> bool:
        """``margin ≤ 1``: every entry within its bound."""
        return self.margin <= 1.0

    def __str__(self) -> str:
        floor = ""
        if self.floor is not None:
            times = f" (error = {self.error / self.floor:.3g}× it)" if self.floor > 0 else ""
            floor = (
                f"; interpolation floor {self.floor:.3g}{times}: {self.group} resamples, so "
                f"errors up to {self.floor_factor:g}× what resampling alone does (round trip "
                f"g⁻¹·(g·x) vs x, or g·(g·x) vs (g∘g)·x) pass"
            )
        return (
            f"worst element g={self.element}: error {self.error:.3g}, tolerance "
            f"{self.tolerance:.3g}, margin {self.margin:.3g} (error ÷ tolerance; max error "
            f"{self.max_error:.3g}, mean error {self.mean_error:.3g}, atol={self.atol:.3g}, "
            f"rtol={self.rtol:.3g}, max |f| = {self.scale:.3g}){floor}; path: {self.path} "
            f"({self.path_note}); dtype {self.dtype}"
        )


class CheckFailed(AssertionError):
    """The ``AssertionError`` of a failed check; ``report`` holds its :class:`CheckReport`."""

    def __init__(self, message: str, report: CheckReport) -> None:
        super().__init__(message)
        self.report = report


class _NoRecompute(Exception):
    """The float64 copy cannot run the check; the message says why."""


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
    """The calibrated bound ``(atol, rtol)`` for comparing ``outputs`` computed in ``dtype``
    from inputs of ``input_numel`` entries (used without the float64 recompute).

    ``atol = K · eps(dtype) · sqrt(input_numel) · max|outputs|`` and ``rtol = K · eps(dtype)``
    with ``K =`` :data:`TOLERANCE_FACTOR` (calibration: module docstring). ``TypeError`` for
    float16 / bfloat16, where this tolerance is as large as the outputs.

    >>> atol, rtol = default_tolerance(torch.full((2, 3), 1000.0), 64, torch.float32)
    >>> round(atol / (TOLERANCE_FACTOR * 8 * 1000 * torch.finfo(torch.float32).eps), 6)
    1.0
    """
    if dtype in LOW_PRECISION:
        ratio = TOLERANCE_FACTOR * torch.finfo(dtype).eps * math.sqrt(max(input_numel, 1))
        raise TypeError(
            f"the model's outputs are {dtype} and the check runs in that dtype: the tolerance "
            f"derived from its precision, {TOLERANCE_FACTOR:g}·eps·sqrt(D)·max|f| with D = "
            f"{input_numel}, is {ratio:.3g}× max|f|, too coarse to catch a non-invariant model; "
            f"keep recompute=True with a model that can be cast to float64 (it is then "
            f"checked in float64), check it in float32 or float64 (cast the model and x, e.g. "
            f"model.double() and x.double()), or pass both atol and rtol"
        )
    eps = torch.finfo(dtype).eps
    scale = _scale(outputs)
    return (
        TOLERANCE_FACTOR * eps * math.sqrt(max(input_numel, 1)) * scale,
        TOLERANCE_FACTOR * eps,
    )


def recompute_tolerance(
    outputs: Tensor, input_numel: int, dtype: torch.dtype | None
) -> tuple[float, float]:
    """``(atol, rtol)`` for ``outputs`` recomputed in float64 from a model stored in ``dtype``.

    ``atol = K · eps(float64) · sqrt(input_numel) · S + STORAGE_FACTOR · eps(dtype) · S`` with
    ``S = max|outputs|``, and ``rtol = 0``; the second term is zero for a float64 model or one
    without floating weights (``dtype=None``). Derivation: module docstring.

    >>> atol, rtol = recompute_tolerance(torch.ones(3, dtype=torch.float64), 64, torch.float32)
    >>> round(atol / (STORAGE_FACTOR * torch.finfo(torch.float32).eps), 3), rtol
    (1.0, 0.0)
    """
    scale = _scale(outputs)
    compute = TOLERANCE_FACTOR * torch.finfo(torch.float64).eps * math.sqrt(max(input_numel, 1))
    storage = 0.0
    if dtype is not None and dtype != torch.float64:
        storage = STORAGE_FACTOR * torch.finfo(dtype).eps
    return (compute + storage) * scale, 0.0


def random_input(
    model: nn.Module,
    group: str | Group,
    batch_size: int = 4,
    dtype: torch.dtype | None = None,
    seed: int = 0,
) -> Tensor:
    """A seeded random batch ``[batch_size, *model.input_shape]`` in the model's dtype.

    Standard normal entries; for a non-exact group acting on images ``[B, C, H, W]``, a
    band-limited, disc-masked field (:func:`band_limited_input`) whose interpolation floor is
    small. ``ValueError`` if the model has no ``input_shape`` attribute: pass ``x`` yourself.
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
    shape = tuple(shape)
    if group.is_exact or len(shape) != 3:
        generator = torch.Generator().manual_seed(seed)
        return torch.randn(batch_size, *shape, generator=generator, dtype=dtype).to(device)
    return band_limited_input((batch_size, *shape), seed=seed).to(device=device, dtype=dtype)


def band_limited_input(
    shape: Sequence[int], band_limit: float = BAND_LIMIT, num_waves: int = 32, seed: int = 0
) -> Tensor:
    """Smooth random images ``[B, C, H, W]`` (float64) for groups that resample.

    Each channel is ``num_waves`` plane waves ``cos(π·(k·p) + φ) / sqrt(num_waves)`` over pixel
    centres ``p`` in ``[-1, 1]²``, with wave vectors ``k`` uniform in the disc ``|k| ≤
    band_limit`` (cycles per image width) and uniform phases ``φ``, times the window
    ``(1 − |p|²)²`` that fades to zero, with zero slope, at the inscribed circle. Band-limited
    and isotropic, so bilinear resampling changes it little (its error grows like ``|k|²``) and
    rotating it never moves content out of the frame.

    >>> x = band_limited_input((2, 1, 9, 9))
    >>> x.shape, bool(x[..., 0, 0].eq(0).all())  # the corners lie outside the disc
    (torch.Size([2, 1, 9, 9]), True)
    """
    if len(shape) != 4 or any(not isinstance(s, int) or s < 1 for s in shape):
        raise ValueError(f"shape: expected four positive ints [B, C, H, W], got {tuple(shape)}")
    if not isinstance(band_limit, int | float) or not 0 < band_limit < math.inf:
        raise ValueError(f"band_limit: expected a finite number > 0, got {band_limit!r}")
    if isinstance(num_waves, bool) or not isinstance(num_waves, int) or num_waves < 1:
        raise ValueError(f"num_waves: expected a positive int, got {num_waves!r}")
    batch, channels, height, width = shape
    generator = torch.Generator().manual_seed(seed)
    draws = (batch, channels, num_waves, 1, 1)
    radius = torch.rand(draws, generator=generator, dtype=torch.float64).sqrt() * band_limit
    direction = torch.rand(draws, generator=generator, dtype=torch.float64) * (2 * math.pi)
    phase = torch.rand(draws, generator=generator, dtype=torch.float64) * (2 * math.pi)
    ys = (torch.arange(height, dtype=torch.float64) * 2 + 1) / height - 1  # pixel centres
    xs = (torch.arange(width, dtype=torch.float64) * 2 + 1) / width - 1
    ys, xs = ys.view(-1, 1), xs.view(1, -1)
    waves = torch.cos(
        math.pi * radius * (torch.cos(direction) * xs + torch.sin(direction) * ys) + phase
    )
    window = (1.0 - (ys**2 + xs**2)).clamp(min=0.0) ** 2
    return waves.sum(dim=2) / math.sqrt(num_waves) * window


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
    recompute: bool = True,
) -> CheckReport:
    """Assert ``f(g·x) == f(x)`` for every element ``g`` of the orbit of ``x``.

    The model runs in ``eval()`` mode without gradients (modes restored afterwards;
    ``eval_mode=False`` keeps the modes it has, e.g. to check a model as it trains). By default
    the comparison runs on a float64 copy of the model (:func:`recompute_tolerance`: float64
    rounding plus the rounding of the stored weights); with ``recompute=False``, or when no
    float64 copy can run, in the model's dtype with the calibrated bound
    (:func:`default_tolerance`). Entry ``c`` of the output of element ``g`` passes when
    ``|f(g·x)_c − f(x)_c| ≤ atol + rtol·|f(x)_c|``. For a non-exact group the bound of sample
    ``b`` is ``max(that, floor_factor · floor_{g,b})`` with the round-trip interpolation floor
    of the module docstring.

    Args:
        model: maps ``[B, *input_shape]`` to outputs ``[B, ...]``.
        group: a :class:`~invreg.groups.Group` or its name (``"c4"``, ``"d4"``, ``"so2"`` ...).
        x: inputs ``[B, *input_shape]``; ``None``: :func:`random_input` (needs
            ``model.input_shape``).
        atol, rtol: non-negative tolerances; ``None`` derives them for the path taken.
        num_samples: orbit size of a continuous group (default 8, identity included).
        floor_factor: how many times the interpolation floor a non-exact group may reach.
        seed: seeds the random input and the elements of a continuous group.
        eval_mode: run the model in ``eval()`` mode (default).
        recompute: check a float64 copy of the model (default); ``False`` checks the model in
            its own dtype.

    Returns:
        a :class:`CheckReport`: margin (``≤ 1``), path, floor.

    Raises:
        CheckFailed: an ``AssertionError`` naming the worst element, its error, the tolerance
            and the margin (error ÷ tolerance), the path, the dtype and, for non-exact groups,
            the floor; its ``report`` holds them.
        ValueError / TypeError: an unknown group, an input the group or model cannot take, a
            dtype that differs from the model's, NaN / Inf outputs, bad tolerances, float16 /
            bfloat16 outputs checked in their own dtype without both ``atol`` and ``rtol``.

    >>> from invreg.models import TiedMLP
    >>> report = assert_invariant(TiedMLP((1, 8, 8), 3, group="c4", hidden_widths=(16,)), "c4")
    >>> report.path, report.margin < 1e-3
    ('float64 recompute', True)
    """
    group = get_group(group)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if x is None:
        x = random_input(model, group, seed=seed)
    _check_input(model, group, x)
    atol, rtol = _check_tolerances(atol, rtol)
    _check_floor_factor(floor_factor)
    _check_flag("eval_mode", eval_mode)
    _check_flag("recompute", recompute)
    elements = _elements(group, num_samples, seed, x.device)

    def compare(net: nn.Module, inputs: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        with torch.no_grad(), evaluation_mode(net, eval_mode):
            outputs = orbit_logits(net, inputs, group, elements=elements)  # [B, N, ...]
            _check_finite(outputs, "model outputs")
            floors = None
            if not group.is_exact:
                floors = torch.stack(
                    [
                        _resampling_floor(net, group, inputs, g, outputs[:, 0])
                        for g in elements[1:]
                    ],
                    dim=1,
                )  # [B, N − 1]
        return outputs[:, 1:], outputs[:, :1].expand_as(outputs[:, 1:]), floors

    comparison = _compare(model, x, compare, recompute)
    return _report(
        f"{type(model).__name__} is not invariant to {group!r}: |f(g·x) − f(x)|",
        group,
        elements,
        comparison,
        atol,
        rtol,
        x[0].numel(),
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
    recompute: bool = True,
) -> CheckReport:
    """Assert ``module(g·x) == g·module(x)`` for every element ``g`` of the orbit.

    ``in_action(x, g)`` / ``out_action(y, g)`` act by one element ``g`` (a scalar tensor of the
    group's element type) on the input / output. Defaults: for an e2cnn ``GeometricTensor`` the
    action its field type says (:func:`invreg.groups.e2cnn.act`, in the tensor's dtype, as in
    :func:`~invreg.functional.geed`); for a plain tensor the group's own
    :meth:`~invreg.groups.Group.act` (feature maps ``[B, C, H, W]``). ``GeometricTensor``
    outputs are compared through their ``.tensor``. The float64 recompute (actions included,
    applied to float64 data), the tolerances, the floor for non-exact groups (input and output
    round trips added), eval mode, the report and the errors raised are those of
    :func:`assert_invariant`.

    >>> conv = torch.nn.Conv2d(2, 3, 3, padding=1, bias=False)
    >>> with torch.no_grad():  # a kernel that rot90 maps onto itself
    ...     _ = conv.weight.copy_(conv.weight + conv.weight.rot90(1, (2, 3))
    ...                       + conv.weight.rot90(2, (2, 3)) + conv.weight.rot90(3, (2, 3)))
    >>> assert_equivariant(conv, "c4", torch.randn(2, 2, 7, 7)).passed
    True
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
    _check_flag("recompute", recompute)
    elements = _elements(group, num_samples, seed, x_tensor.device)

    def compare(net: nn.Module, inputs: Any) -> tuple[Tensor, Tensor, Tensor | None]:
        with torch.no_grad(), evaluation_mode(net):
            y = net(inputs)
            y_tensor = _tensor_of(y, "module output")
            _check_finite(y_tensor, "module outputs")
            act_out = out_action or _default_action(group, y, "module output")
            transformed, expected, floors = [], [], []
            inverse = group.inverse(elements)
            for g, g_inv in zip(elements[1:], inverse[1:], strict=True):
                moved_in = in_action(inputs, g)
                transformed.append(_tensor_of(net(moved_in), "module output"))
                expected.append(_tensor_of(act_out(y, g), "out_action output"))
                if not group.is_exact:
                    g_g = group.compose(g, g)

                    def moved(value: Tensor) -> Tensor:
                        return _per_sample_max(value.abs().unsqueeze(1))[:, 0]

                    out_g = act_out(y, g)
                    round_trip = moved(
                        _tensor_of(net(in_action(moved_in, g_inv)), "module output") - y_tensor
                    ) + moved(_tensor_of(act_out(out_g, g_inv), "out_action output") - y_tensor)
                    pair = moved(
                        _tensor_of(net(in_action(moved_in, g)), "module output")
                        - _tensor_of(net(in_action(inputs, g_g)), "module output")
                    ) + moved(
                        _tensor_of(act_out(out_g, g), "out_action output")
                        - _tensor_of(act_out(y, g_g), "out_action output")
                    )
                    floors.append(torch.maximum(round_trip, pair))
            transformed_t = torch.stack(transformed, dim=1)
            expected_t = torch.stack(expected, dim=1)
        _check_finite(transformed_t, "module outputs")
        if transformed_t.shape != expected_t.shape:
            raise ValueError(
                f"out_action: its output has shape {tuple(expected_t.shape[::2])} but the "
                f"module's output has shape {tuple(transformed_t.shape[::2])}; the action must "
                f"keep the shape"
            )
        return transformed_t, expected_t, torch.stack(floors, dim=1) if floors else None

    comparison = _compare(module, x, compare, recompute)
    return _report(
        f"{type(module).__name__} is not equivariant to {group!r}: |f(g·x) − g·f(x)|",
        group,
        elements,
        comparison,
        atol,
        rtol,
        x_tensor[0].numel(),
        floor_factor,
    )


# --------------------------------------------------------------------------- helpers
@dataclass(frozen=True)
class _Comparison:
    outputs: Tensor  # [B, N − 1, ...]: the non-identity elements
    reference: Tensor  # what they must equal, same shape
    floors: Tensor | None  # [B, N − 1] round-trip floors of non-exact groups
    path: str
    note: str
    dtype: torch.dtype  # the model's (its weights', else its input's)
    storage: torch.dtype | None  # its weights' (None: no floating weights)


def _compare(
    model: nn.Module,
    x: Any,
    compare: Callable[[nn.Module, Any], tuple[Tensor, Tensor, Tensor | None]],
    recompute: bool,
) -> _Comparison:
    """Run ``compare`` on a float64 copy of ``model`` (``recompute``) or on ``model`` itself."""
    input_dtype = _tensor_of(x, "x").dtype
    weights = _model_dtype(model)
    dtype = weights or input_dtype
    if not recompute:
        return _Comparison(*compare(model, x), CALIBRATED_PATH, "recompute=False", dtype, weights)
    if dtype == torch.float64 and input_dtype == torch.float64:
        return _Comparison(
            *compare(model, x), RECOMPUTE_PATH, "the model is float64", dtype, weights
        )
    try:
        twin = _float64_copy(model)
        try:
            result = compare(twin, _as_float64(x))
        except (RuntimeError, TypeError) as err:  # e.g. a float32 constant inside forward
            raise _NoRecompute(
                f"its float64 copy raised {type(err).__name__}: {str(err)[:200]}"
            ) from err
        returned = {t.dtype for t in result if t is not None}
        if returned != {torch.float64}:
            names = ", ".join(sorted(str(d) for d in returned))
            raise _NoRecompute(f"its float64 copy returned {names} outputs")
    except _NoRecompute as reason:
        note = f"no float64 recompute: {reason}"
        return _Comparison(*compare(model, x), CALIBRATED_PATH, note, dtype, weights)
    note = f"the {dtype} model's weights, cast exactly, compared in float64"
    return _Comparison(*result, RECOMPUTE_PATH, note, dtype, weights)


def _float64_copy(model: nn.Module) -> nn.Module:
    try:
        return copy.deepcopy(model).to(torch.float64)
    except Exception as err:  # noqa: BLE001 — any failure: check the model in its own dtype
        reason = f"copying and casting it raised {type(err).__name__}: {str(err)[:200]}"
        raise _NoRecompute(reason) from err


def _as_float64(x: Any) -> Any:
    if is_geometric_tensor(x):
        return type(x)(x.tensor.to(torch.float64), x.type)
    return x.to(torch.float64)


def _report(
    title: str,
    group: Group,
    elements: Tensor,
    comparison: _Comparison,
    atol: float | None,
    rtol: float | None,
    input_numel: int,
    floor_factor: float,
) -> CheckReport:
    """Compare ``comparison.outputs`` with its ``reference`` (``[B, N − 1, ...]``); raise
    :class:`CheckFailed` if some entry exceeds its bound, else return the report. Both name
    the element whose entry exceeds its bound the most."""
    outputs, reference, floors = comparison.outputs, comparison.reference, comparison.floors
    if atol is None or rtol is None:
        values = torch.cat([outputs.flatten(), reference.flatten()])
        if comparison.path == RECOMPUTE_PATH:
            derived = recompute_tolerance(values, input_numel, comparison.storage)
        else:
            derived = default_tolerance(values, input_numel, outputs.dtype)
        atol = derived[0] if atol is None else atol
        rtol = derived[1] if rtol is None else rtol
    errors = (outputs - reference).abs()
    allowed = atol + rtol * reference.abs()
    if floors is not None:
        per_sample = floors.to(errors.dtype) * float(floor_factor)
        allowed = torch.maximum(allowed, per_sample.view(*floors.shape, *[1] * (errors.ndim - 2)))
    allowed = allowed.expand_as(errors)
    margins = torch.where(errors > 0, errors / allowed, torch.zeros_like(errors))
    per_element = _per_element_max(margins)  # [N − 1]
    j = int(torch.argmax(per_element))
    worst = int(torch.argmax(margins[:, j].flatten()))
    sample = worst // max(margins[:, j][0].numel(), 1)
    report = CheckReport(
        group=repr(group),
        element=_element_str(group, elements[j + 1]),
        margin=float(per_element[j]),
        error=float(errors[:, j].flatten()[worst]),
        tolerance=float(allowed[:, j].flatten()[worst]),
        max_error=float(errors[:, j].max()),
        mean_error=float(errors[:, j].mean()),
        atol=float(atol),
        rtol=float(rtol),
        scale=max(_scale(outputs), _scale(reference)),
        path=comparison.path,
        path_note=comparison.note,
        floor=None if floors is None else float(floors[sample, j]),
        floor_factor=float(floor_factor),
        dtype=comparison.dtype,
        compute_dtype=outputs.dtype,
    )
    if not report.passed:
        raise CheckFailed(f"{title}: {report}", report)
    return report


def _resampling_floor(
    net: nn.Module, group: Group, x: Tensor, g: Tensor, reference: Tensor
) -> Tensor:
    """``[B]``: how far resampling alone moves ``net`` on each sample, for element ``g``.

    Two routes to an input whose continuous image is known: the round trip ``g⁻¹·(g·x)``
    (continuous image ``x``, output ``reference = f(x)``) and the pair ``g·(g·x)`` against
    ``(g∘g)·x`` (the same continuous image, resampled twice and once). Their larger output
    change: the pair keeps part of what the round trip cancels (for ``so2``); where ``g∘g`` is
    exact (45° in ``c8``) both routes agree for any model invariant to the exact elements.
    """
    moved = group.act(x, g)
    back = net(group.act(moved, group.inverse(g)))
    pair = net(group.act(moved, g)) - net(group.act(x, group.compose(g, g)))
    for value in (back, pair):
        _check_finite(value, "model outputs on resampled inputs")
    round_trip = _per_sample_max((back - reference).abs().unsqueeze(1))[:, 0]
    return torch.maximum(round_trip, _per_sample_max(pair.abs().unsqueeze(1))[:, 0])


def _scale(outputs: Tensor) -> float:
    return float(outputs.detach().abs().max()) if outputs.numel() else 0.0


def _per_element_max(values: Tensor) -> Tensor:
    """``[B, M, ...]`` → ``[M]``: the largest value of each orbit element."""
    return values.transpose(0, 1).flatten(start_dim=1).amax(dim=1)


def _per_sample_max(values: Tensor) -> Tensor:
    """``[B, M, ...]`` → ``[B, M]``: the largest value of each sample and orbit element."""
    return values.flatten(start_dim=2).amax(dim=2) if values.ndim > 2 else values


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


def _check_flag(name: str, value: bool) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name}: expected True or False, got {value!r}")


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
    "BAND_LIMIT",
    "CALIBRATED_PATH",
    "DTYPES",
    "FLOOR_FACTOR",
    "RECOMPUTE_PATH",
    "STORAGE_FACTOR",
    "TOLERANCE_FACTOR",
    "CheckFailed",
    "CheckReport",
    "assert_equivariant",
    "assert_invariant",
    "band_limited_input",
    "default_tolerance",
    "parametrize_dtypes",
    "random_input",
    "recompute_tolerance",
]

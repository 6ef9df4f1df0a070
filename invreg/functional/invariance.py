"""Invariance errors of a model's outputs over group orbits.

Conventions (used by every metric and loss in invreg):

* an *orbit tensor* has shape ``[B, N, C]``: for each of ``B`` samples, the outputs on its
  ``N`` orbit elements, the identity first (see :func:`orbit_logits`);
* a *pair* error compares the output on the original input, ``orbit[:, 0]``, with the output on
  each transformed input, ``orbit[:, j]`` for ``j >= 1``;
* ``reduction="mean"`` averages over samples **and** over the ``N - 1`` non-identity elements
  (the papers write sums but report means); ``"sum"`` sums both; ``"none"`` returns the
  per-pair errors ``[B, N - 1]``.

Precision: every formula runs in at least float32 (:func:`working_dtype`): float16 and bfloat16
inputs are upcast *before* subtracting, squaring, softmaxing or summing, so a batch of ordinary
half-precision logits cannot overflow (fp16's largest value is 65504) and a mean is not
rounded to 8 significant bits (bfloat16). Errors are returned in float32 for half-precision
inputs, in float64 for float64 inputs. Argmax-based values (consistency, accuracy) are exact.
Magnitude: squared norms and means are formed on values divided by a power of two
(:func:`scaled_sum_of_squares`, exact), so finite logits of any size give the correct finite
LI, normalised LI and mean (``½‖d‖²`` of float32 logits near ``1e20`` would overflow if
squared directly); a value whose true result exceeds the dtype's range (float32: ``3.4e38``)
is ``inf``, never NaN.

Bad input is rejected at the public boundary, never answered silently: an orbit that is not a
floating-point ``[B, N, C]`` tensor (``TypeError`` / ``ValueError``), NaN or Inf outputs
(``ValueError``, one ``isfinite`` check), targets of a non-integer dtype (``TypeError``) or
outside ``[0, C)`` (``ValueError``).

Empty batches (``B = 0``): :func:`orbit_logits` returns ``[0, N, C]`` (one forward on the
empty batch gives ``C``); ``reduction="none"`` returns ``[0, N - 1]`` (``[0]`` for
consistency / accuracy) and ``"sum"`` returns 0, both well defined; ``"mean"`` over no sample
is undefined and raises ``ValueError`` ("empty batch").
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn

from invreg.groups import Group, get_group

Reduction = Literal["mean", "sum", "none"]

#: keeps the normalised logit error finite when ``f(x) = 0``
NORM_EPS = 1e-12


# --------------------------------------------------------------------------- precision
def working_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype a formula runs in: at least float32 (float64 stays float64).

    >>> working_dtype(torch.bfloat16), working_dtype(torch.float64)
    (torch.float32, torch.float64)
    """
    return torch.promote_types(dtype, torch.float32)


def upcast(values: Tensor) -> Tensor:
    """``values`` in :func:`working_dtype` (no copy when it already is); differentiable."""
    return values.to(working_dtype(values.dtype))


# --------------------------------------------------------------------------- pair errors
def power_of_two_scale(peak: Tensor) -> Tensor:
    """A power of two ``s`` with ``peak / s`` in ``[1, 2)``: ``2^(e − 1)`` for ``peak = m·2^e``
    (:func:`torch.frexp`), ``0.5`` for a peak of 0, NaN or Inf (which then propagate).

    Dividing by ``s`` is exact (a power of two; barring subnormal results), so a formula
    computed on ``values / s`` and scaled back by ``s`` rounds exactly as on ``values``, but its
    squares neither overflow nor underflow: ``s ≤ peak`` is always representable.

    >>> power_of_two_scale(torch.tensor([3.0, 1e20, 0.0]))
    tensor([2.0000e+00, 7.3787e+19, 5.0000e-01])
    """
    _, exponent = torch.frexp(peak)
    return torch.ldexp(torch.ones_like(peak), exponent - 1)


def scaled_sum_of_squares(values: Tensor) -> tuple[Tensor, Tensor]:
    """``(s, r)`` with ``Σ v² = s²·r`` over the last axis, computed without squaring ``values``.

    ``s`` (:func:`power_of_two_scale` of ``max |v|``, no gradient) and ``r = Σ (v / s)²`` in
    ``[1, 4·n)`` are ``[...]``; ``s * (s * r)`` is ``Σ v²`` (infinite only when the true value
    exceeds the dtype's range) and ``s * r.sqrt()`` the Euclidean norm, both correct for
    finite values of any magnitude (``v² `` itself overflows float32 at ``|v| ≈ 1.8e19``).

    >>> s, r = scaled_sum_of_squares(torch.tensor([3e20, 4e20]))
    >>> s * r.sqrt()
    tensor(5.0000e+20)
    """
    if values.ndim == 0 or values.shape[-1] == 0:
        return torch.ones_like(values.sum(dim=-1)), values.pow(2).sum(dim=-1)
    scale = power_of_two_scale(values.detach().abs().amax(dim=-1, keepdim=True))
    return scale.squeeze(-1), (values / scale).pow(2).sum(dim=-1)


def logit_l2(reference: Tensor, transformed: Tensor) -> Tensor:
    """``½‖f(x) − f(g·x)‖²`` over the last axis, per pair ``[...]`` (at least float32).

    Computed on the difference scaled by a power of two (:func:`scaled_sum_of_squares`), so
    finite logits of any magnitude give the correct value; it is ``inf`` only when the true
    value exceeds the dtype's range (float32: ``3.4e38``)."""
    reference, transformed = _check_pair(reference, transformed)
    scale, squares = scaled_sum_of_squares(reference - transformed)
    return scale * (scale * (0.5 * squares))


def normalized_logit_l2(reference: Tensor, transformed: Tensor) -> Tensor:
    """``‖f(x) − f(g·x)‖² / max(‖f(x)‖², 1e-12)`` over the last axis, per pair (scale-free
    logit error; at least float32).

    Both outputs are divided by one power of two per pair (their largest magnitude) before
    subtracting and squaring, so the ratio is correct for finite logits of any magnitude
    (the squared norms of logits near ``1e20`` overflow float32); it is ``inf`` only when the
    true ratio exceeds the dtype's range."""
    reference, transformed = _check_pair(reference, transformed)
    if reference.ndim == 0 or reference.shape[-1] == 0:
        return (reference - transformed).pow(2).sum(dim=-1) / reference.pow(2).sum(
            dim=-1
        ).clamp_min(NORM_EPS)
    peak = torch.maximum(reference.detach().abs(), transformed.detach().abs())
    scale = power_of_two_scale(peak.amax(dim=-1, keepdim=True))
    reference, transformed = reference / scale, transformed / scale
    num = (reference - transformed).pow(2).sum(dim=-1)
    scale = scale.squeeze(-1)
    # max(‖f(x)‖², 1e-12) / s², with 1e-12 / s² formed without squaring s
    return num / torch.clamp(reference.pow(2).sum(dim=-1), min=(NORM_EPS / scale) / scale)


def predictive_kl(reference: Tensor, transformed: Tensor) -> Tensor:
    """``KL(softmax f(x) ‖ softmax f(g·x))`` from logits, per pair (natural log; at least
    float32)."""
    reference, transformed = _check_pair(reference, transformed)
    log_p = torch.log_softmax(reference, dim=-1)
    log_q = torch.log_softmax(transformed, dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=-1)


PAIR_ERRORS = {
    "logit_l2": logit_l2,
    "normalized_logit_l2": normalized_logit_l2,
    "predictive_kl": predictive_kl,
}


def relative_invariance_error(features: Tensor, transformed: Tensor) -> Tensor:
    """Invariance error of features relative to the batch's spread (a scalar)::

        R = Σ_i ‖h_i − h'_i‖² / max(Σ_i ‖h_i − mean_k h_k‖², tiny)

    how far the transformation moves a sample's features ``h_i`` to ``h'_i``, relative to how
    far apart the samples' features are (``tiny``: the smallest normal number of ``features``'
    dtype, so identical features give 0 / tiny = 0, never NaN). Unchanged by adding a constant
    to every feature vector or scaling all of them; 0 for invariant features. A training loss:
    differentiable, computed in the inputs' (promoted) dtype, NaN / Inf propagate (a gradient
    scaler must see an overflow).

    Args:
        features: ``[B, D]`` features of the inputs, ``B >= 2`` (the spread needs two
            samples), floating.
        transformed: ``[B, D]`` features of the transformed inputs, floating.

    Returns:
        a scalar tensor.

    >>> h = torch.tensor([[0.0, 1.0], [2.0, 1.0]])
    >>> float(relative_invariance_error(h, h + torch.tensor([1.0, 0.0])))
    1.0
    >>> float(relative_invariance_error(h + 100.0, h + 100.0))
    0.0
    """
    for name, value in (("features", features), ("transformed", transformed)):
        if not isinstance(value, Tensor) or not value.is_floating_point():
            got = value.dtype if isinstance(value, Tensor) else type(value).__name__
            raise TypeError(f"{name}: expected a floating-point Tensor [B, D], got {got}")
    if features.ndim != 2 or features.shape != transformed.shape or features.shape[0] < 2:
        raise ValueError(
            f"features, transformed: expected two [B, D] tensors with B >= 2, got "
            f"{tuple(features.shape)} and {tuple(transformed.shape)}"
        )
    spread = (features - features.mean(dim=0)).pow(2).sum()
    change = (features - transformed).pow(2).sum()
    return change / spread.clamp_min(torch.finfo(features.dtype).tiny)


# --------------------------------------------------------------------------- orbits
@dataclass
class OrbitFeatures:
    """Outputs and hidden features of one orbit forward (:func:`orbit_forward`).

    Attributes:
        logits: model outputs ``[B, N, ...]``.
        features: layer name -> features ``[B, N, ...]`` (the tensor of a ``GeometricTensor``).
        field_types: layer name -> the e2cnn ``FieldType`` of its output, or ``None`` for a
            plain tensor.
        elements: the orbit elements ``[N]``, identity first.
    """

    logits: Tensor
    features: dict[str, Tensor]
    field_types: dict[str, Any] = field(default_factory=dict)
    elements: Tensor | None = None


def get_layer(model: nn.Module, layer: str) -> nn.Module:
    """``dict(model.named_modules())[layer]``, with an error listing the names on a typo."""
    modules = dict(model.named_modules())
    if layer not in modules:
        names = [n for n in modules if n]
        close = difflib.get_close_matches(layer, names, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(
            f"layer {layer!r} is not a module of {type(model).__name__}.{hint} Available names "
            f"(model.named_modules(); '' is the whole model): {names}"
        )
    return modules[layer]


@contextmanager
def capture_layers(model: nn.Module, layers: Sequence[str]) -> Iterator[dict[str, list[Any]]]:
    """Forward hooks on the named submodules of ``model`` (looked up by :func:`get_layer`):
    yields ``{name: [outputs of each call]}``, filled while the block runs; hooks removed on
    exit.

    A tensor output (or an e2cnn GeometricTensor's tensor) is recorded as a copy (``clone``,
    which keeps the autograd graph): a later in-place operation such as ``ReLU(inplace=True)``
    would otherwise change the record into the next layer's output."""
    modules = {name: get_layer(model, name) for name in layers}
    captured: dict[str, list[Any]] = {name: [] for name in modules}

    def hook_for(name: str):
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            captured[name].append(_snapshot(output))

        return hook

    handles = [module.register_forward_hook(hook_for(n)) for n, module in modules.items()]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def _snapshot(output: Any) -> Any:
    """A copy of a layer's output that later in-place operations cannot change."""
    if isinstance(output, Tensor):
        return output.clone()
    if isinstance(getattr(output, "tensor", None), Tensor) and hasattr(output, "type"):
        return type(output)(output.tensor.clone(), output.type)  # an e2cnn GeometricTensor
    return output


def layer_output(captured: dict[str, list[Any]], name: str) -> tuple[Tensor, Any]:
    """The one output of layer ``name`` in :func:`capture_layers`' record, as ``(tensor,
    field type)`` (``None`` for a plain tensor, the ``FieldType`` of an e2cnn
    ``GeometricTensor``); ``ValueError`` unless the layer ran exactly once."""
    outputs = captured[name]
    if len(outputs) != 1:
        raise ValueError(
            f"layer {name!r} ran {len(outputs)} times in one forward; comparing its orbit needs "
            f"a module that runs exactly once (register a distinct module per use)"
        )
    output = outputs[0]
    return tensor_of(output, f"layer {name!r}"), None if isinstance(output, Tensor) else output.type


def tensor_of(output: Any, what: str) -> Tensor:
    """``output`` itself, or the tensor of an e2cnn ``GeometricTensor``."""
    if isinstance(output, Tensor):
        return output
    tensor = getattr(output, "tensor", None)  # e2cnn GeometricTensor
    if isinstance(tensor, Tensor) and hasattr(output, "type"):
        return tensor
    raise ValueError(
        f"{what} returned {type(output).__name__}; expected a Tensor or an e2cnn GeometricTensor"
    )


#: activation bytes per forward that ``chunk_size=None`` aims at, per device type. CPU: about a
#: last-level cache (measured, ``benchmarks/bench_metrics.py``: a small CNN, 427 KiB of module
#: outputs per input, ran 2.3× slower on 2048 inputs per forward than on 64–128; an MLP at
#: 10 KiB per input runs as fast at 256 inputs as at 2048). Other devices (CUDA): wide batches
#: fill the device, so the bound only caps memory.
AUTO_CHUNK_BYTES = {"cpu": 32 * 2**20}
AUTO_CHUNK_BYTES_DEFAULT = 2**30


def auto_chunk_size(bytes_per_unit: int, device: torch.device | str = "cpu") -> int:
    """Units per forward for the automatic chunking of :func:`orbit_forward` (a unit: one
    sample's orbit) and :func:`~invreg.functional.saliency` (one input): ``budget //
    bytes_per_unit`` (at least 1), the budget :data:`AUTO_CHUNK_BYTES` of ``device``'s type.

    ``bytes_per_unit``: the bytes of every module output in a forward of one unit (measured
    with :func:`count_output_bytes` on the first one).

    >>> auto_chunk_size(427 * 2**10), auto_chunk_size(10 * 2**10)  # a small CNN, an MLP
    (76, 3276)
    """
    kind = torch.device(device).type
    budget = AUTO_CHUNK_BYTES.get(kind, AUTO_CHUNK_BYTES_DEFAULT)
    return max(1, budget // max(int(bytes_per_unit), 1))


def couples_samples(model: nn.Module) -> bool:
    """Whether a forward of ``model`` mixes the samples of its batch: a BatchNorm in training
    mode normalises with batch statistics, so chunking the batch would change its outputs."""
    return any(
        isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training for m in model.modules()
    )


@contextmanager
def count_output_bytes(model: nn.Module) -> Iterator[list[int]]:
    """Forward hooks on every module of ``model``: yields a one-item list that sums the bytes
    of their tensor outputs (e2cnn ``GeometricTensor``s included) while the block runs."""
    total = [0]

    def hook(module: nn.Module, args: Any, output: Any) -> None:
        items = output if isinstance(output, (tuple, list)) else (output,)
        for item in items:
            tensor = item if isinstance(item, Tensor) else getattr(item, "tensor", None)
            if isinstance(tensor, Tensor):
                total[0] += tensor.numel() * tensor.element_size()

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        yield total
    finally:
        for handle in handles:
            handle.remove()


def orbit_forward(
    model: nn.Module,
    x: Tensor,
    group: Group | str,
    elements: Tensor | None = None,
    chunk_size: int | None = None,
    layers: Sequence[str] = (),
    *,
    num_samples: int | None = None,
    generator: torch.Generator | None = None,
) -> OrbitFeatures:
    """Batched forwards of every orbit element of every sample, with the outputs of ``layers``.

    The ``B·N`` transformed inputs go through ``model`` in forwards of ``chunk_size`` samples'
    whole orbits (``chunk_size·N`` inputs, sample-major); ``chunk_size=B`` is one forward. The
    default ``None`` sizes the forwards from the model's activation memory: the first sample's
    orbit runs alone while hooks add up the bytes of every module output, then the other samples
    run in chunks of :func:`auto_chunk_size` orbits: ``32 MiB`` of activations per forward on
    a CPU, where a forward that outgrows the cache runs up to 2× slower per input,
    ``1 GiB`` elsewhere. A model whose forward couples samples (a BatchNorm in training mode)
    runs one forward of all ``B·N`` inputs instead, so the default never changes its batch
    statistics; for every other model chunks change results only by float rounding. The named
    ``layers`` (``dict(model.named_modules())``; ``""`` is the model itself) are captured with
    forward hooks during the same forwards, so hidden orbits use exactly the input orbit's
    elements; each must run once per forward. An empty batch (``B = 0``) runs one forward on the
    empty ``[0, *D]`` input to learn the output shapes; a model that cannot run on 0 inputs
    gets a ``ValueError`` ("empty batch").

    Args:
        model: any module; its output (or a layer's) may be an e2cnn ``GeometricTensor``.
        x: inputs ``[B, *D]`` that ``group`` acts on.
        group: the transformations: a :class:`~invreg.groups.Group` or its name (``"c4"``).
        elements: the orbit elements ``[N]`` (identity first); default
            ``group.elements(num_samples, generator)``: the whole group when it is finite,
            identity plus ``num_samples − 1`` sampled elements when it is continuous. Every
            sample sees the same elements.
        chunk_size: samples (whole orbits) per forward; ``None`` chosen automatically (above).
        layers: names of submodules whose outputs to keep.

    Returns:
        :class:`OrbitFeatures`: ``logits`` ``[B, N, ...]``, ``features[name]`` ``[B, N, ...]``,
        the layers' e2cnn field types and the elements used.

    >>> from invreg.groups import Rotations
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    >>> out = orbit_forward(model, torch.randn(5, 1, 2, 2), Rotations(4), layers=["0"])
    >>> out.logits.shape, out.features["0"].shape
    (torch.Size([5, 4, 3]), torch.Size([5, 4, 4]))
    """
    if chunk_size is not None and (
        isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
    ):
        raise ValueError(
            f"chunk_size: expected a positive integer or None (automatic), got {chunk_size!r}"
        )
    layers = [layers] if isinstance(layers, str) else list(layers)
    group = get_group(group)
    group.check_input(x)
    elems = resolve_elements(group, x, num_samples, generator, elements)
    logits: list[Tensor] = []
    features: dict[str, list[Tensor]] = {name: [] for name in layers}
    field_types: dict[str, Any] = dict.fromkeys(layers)
    batch = x.shape[0]
    with capture_layers(model, layers) as captured:

        def run(inputs: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
            for outputs in captured.values():
                outputs.clear()
            out = tensor_of(forward_batch(model, inputs), "the model")
            hidden = {}
            for name in layers:
                hidden[name], field_types[name] = layer_output(captured, name)
            return out, hidden

        def forward_orbit(start: int, stop: int) -> None:
            """One forward of the chunk's whole orbit, ``[b·N, *D]``, sample-major."""
            chunk = group.orbit_from_elements(x[start:stop], elems)
            b, n = chunk.shape[:2]
            out, hidden = run(chunk.reshape(b * n, *chunk.shape[2:]))
            logits.append(out.reshape(b, n, *out.shape[1:]))
            for name, tensor in hidden.items():
                features[name].append(tensor.reshape(b, n, *tensor.shape[1:]))

        first, step = 0, batch if chunk_size is None else chunk_size
        if chunk_size is None and batch > 1 and not couples_samples(model):
            with count_output_bytes(model) as measured:
                forward_orbit(0, 1)
            first, step = 1, auto_chunk_size(measured[0], x.device)  # samples' orbits
        # an empty batch still takes one (empty) forward: it tells the output shapes
        for start in range(first, max(batch, first + 1), max(step, 1)):
            forward_orbit(start, start + step)
    return OrbitFeatures(
        logits=torch.cat(logits, dim=0),
        features={name: torch.cat(chunks, dim=0) for name, chunks in features.items()},
        field_types=field_types,
        elements=elems,
    )


def orbit_logits(
    model: nn.Module,
    x: Tensor,
    group: Group | str,
    chunk_size: int | None = None,
    num_samples: int | None = None,
    generator: torch.Generator | None = None,
    elements: Tensor | None = None,
) -> Tensor:
    """Outputs of ``model`` on every orbit element of every sample: ``[B, N, C]``.

    The ``logits`` of :func:`orbit_forward` (batched forwards of ``chunk_size`` samples' orbits,
    chosen from the model's activation memory by default; an empty batch gives ``[0, N, C]``).
    ``N`` is the group's order, or ``num_samples`` (identity plus sampled elements) for a
    continuous group; every sample sees the same elements. ``elements`` (shape ``[N]``, identity
    first) fixes the elements explicitly and overrides ``num_samples``. ``group`` is a
    :class:`~invreg.groups.Group` or its name.

    >>> from invreg.groups import Rotations
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    >>> orbit_logits(model, torch.randn(5, 1, 2, 2), Rotations(4)).shape
    torch.Size([5, 4, 3])
    >>> orbit_logits(model, torch.randn(5, 1, 2, 2), "c4").shape
    torch.Size([5, 4, 3])
    """
    return orbit_forward(
        model, x, group, elements, chunk_size, num_samples=num_samples, generator=generator
    ).logits


def forward_batch(model: nn.Module, inputs: Tensor) -> Tensor:
    """``model(inputs)``; on an empty batch a failing forward becomes a clear ``ValueError``."""
    if inputs.shape[0] > 0:
        return model(inputs)
    try:
        return model(inputs)
    except Exception as err:  # any failure on 0 inputs is a limitation of the model
        raise ValueError(
            f"x: empty batch (0 samples) and {type(model).__name__} cannot run on 0 inputs "
            f"({type(err).__name__}: {err}); skip empty batches"
        ) from err


def resolve_elements(
    group: Group | str,
    x: Tensor,
    num_samples: int | None = None,
    generator: torch.Generator | None = None,
    elements: Tensor | None = None,
) -> Tensor:
    """The orbit elements ``[N]`` (identity first) on ``x``'s device: ``elements`` if given,
    else ``group.elements(num_samples, generator)``."""
    group = get_group(group)
    if elements is None:
        return group.elements(num_samples, generator=generator, device=x.device)
    if not isinstance(elements, Tensor) or elements.ndim != 1 + len(group.element_shape):
        expected = "".join(f", {d}" for d in group.element_shape)
        got = tuple(elements.shape) if isinstance(elements, Tensor) else type(elements).__name__
        raise ValueError(
            f"elements: expected a tensor of shape [N{expected}] (N group elements, identity "
            f"first), got {got}"
        )
    identity = group.identity(1, device=elements.device).to(elements.dtype)[0]
    if elements.shape[0] < 1 or not torch.equal(elements[0], identity):
        raise ValueError(
            f"elements: the first element must be the identity {identity.tolist()}, got "
            f"{elements[:1].tolist()}"
        )
    return elements.to(x.device)


def orbit_pair_errors(
    orbit: Tensor, error: str = "logit_l2", *, allow_nonfinite: bool = False
) -> Tensor:
    """Per-pair errors ``[B, N - 1]`` (at least float32) between ``orbit[:, 0]`` and each
    ``orbit[:, j]``; ``error`` a key of :data:`PAIR_ERRORS`, over the last axis of ``orbit``
    ``[B, N, C]``. ``allow_nonfinite=True`` lets NaN / Inf propagate into the errors instead
    of raising (what a training loss wants: a gradient scaler must see the overflow)."""
    check_orbit(orbit, allow_nonfinite=allow_nonfinite)
    if error not in PAIR_ERRORS:
        raise ValueError(f"error must be one of {sorted(PAIR_ERRORS)}, got {error!r}")
    reference = orbit[:, :1].expand_as(orbit[:, 1:])
    return PAIR_ERRORS[error](reference, orbit[:, 1:])


def logit_invariance(
    orbit: Tensor, normalized: bool = False, reduction: Reduction = "mean"
) -> Tensor:
    """Logit invariance error LI.

    ``LI = mean_{i, g≠e} ½‖f(x_i) − f(g·x_i)‖²``; with ``normalized=True``,
    ``mean_{i, g≠e} ‖f(x_i) − f(g·x_i)‖² / ‖f(x_i)‖²``.

    Args:
        orbit: ``[B, N, C]`` outputs over orbits, identity first (``N >= 2``), finite, any
            floating dtype (computed in at least float32).
        normalized: use the scale-free variant (denominator clamped at ``1e-12``).
        reduction: ``"mean"`` | ``"sum"`` over samples and non-identity elements, or ``"none"``
            (``[B, N − 1]``). ``"mean"`` of an empty batch raises ``ValueError``.

    Returns:
        a float32 tensor (float64 for a float64 orbit).

    >>> orbit = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]])
    >>> logit_invariance(orbit)
    tensor(0.5000)
    """
    name = "normalized_logit_l2" if normalized else "logit_l2"
    return _reduce(orbit_pair_errors(orbit, name), reduction)


def predictive_kl_invariance(orbit: Tensor, reduction: Reduction = "mean") -> Tensor:
    """Predictive-distribution invariance error DI.

    ``DI = mean_{i, g≠e} KL(softmax f(x_i) ‖ softmax f(g·x_i))`` (natural log), computed in
    at least float32; ``orbit`` and ``reduction`` as in :func:`logit_invariance`.

    >>> orbit = torch.zeros(2, 4, 3)
    >>> predictive_kl_invariance(orbit)
    tensor(0.)
    """
    return _reduce(orbit_pair_errors(orbit, "predictive_kl"), reduction)


def orbit_consistency(orbit: Tensor, reduction: Reduction = "mean") -> Tensor:
    """Fraction of samples whose predicted class (argmax) is the same on the whole orbit.

    ``orbit``: ``[B, N, C]``, ``N >= 1``, finite. ``reduction="none"`` gives a bool per sample
    ``[B]``; ``"sum"`` the count (float32); ``"mean"`` the fraction (float32; ``ValueError`` on
    an empty batch). Ties go to the first maximal class.

    >>> orbit = torch.tensor([[[2.0, 1.0], [3.0, 0.0]], [[2.0, 1.0], [0.0, 3.0]]])
    >>> orbit_consistency(orbit)
    tensor(0.5000)
    """
    check_orbit(orbit, min_elements=1)
    pred = orbit.argmax(dim=-1)
    per_sample = (pred == pred[:, :1]).all(dim=1)
    return _reduce(per_sample, reduction)


def orbit_accuracy(orbit: Tensor, target: Tensor, reduction: Reduction = "mean") -> Tensor:
    """Fraction of samples classified correctly on every orbit element.

    Args:
        orbit: ``[B, N, C]`` outputs, ``N >= 1``, finite.
        target: ``[B]`` integer class indices in ``[0, C)`` (``TypeError`` for another dtype,
            ``ValueError`` out of range: an impossible label would otherwise count as wrong).
        reduction: as in :func:`orbit_consistency`.

    >>> orbit = torch.tensor([[[2.0, 1.0], [3.0, 0.0]], [[2.0, 1.0], [0.0, 3.0]]])
    >>> orbit_accuracy(orbit, torch.tensor([0, 0]))
    tensor(0.5000)
    """
    check_orbit(orbit, min_elements=1)
    check_target(target, orbit.shape[0], orbit.shape[2])
    return _reduce(_correct_on_orbit(orbit, target), reduction)


def _correct_on_orbit(orbit: Tensor, target: Tensor) -> Tensor:
    """``[B]`` bool: ``argmax_c orbit[i, j, c] = target[i]`` for every ``j`` (checked inputs)."""
    return (orbit.argmax(dim=-1) == target.unsqueeze(1)).all(dim=1)


def accuracy(orbit: Tensor, target: Tensor, reduction: Reduction = "mean") -> Tensor:
    """Fraction of samples classified correctly on the untransformed input: the
    :func:`orbit_accuracy` of the identity element ``orbit[:, :1]`` (micro-averaged; ties go
    to the first maximal class).

    Args:
        orbit: ``[B, N, C]`` outputs, identity first (``N >= 1``; ``[B, 1, C]`` for plain
            logits ``logits.unsqueeze(1)``), finite.
        target: ``[B]`` integer class indices in ``[0, C)``.
        reduction: as in :func:`orbit_consistency`.

    >>> orbit = torch.tensor([[[2.0, 1.0], [0.0, 3.0]], [[0.0, 1.0], [0.0, 3.0]]])
    >>> accuracy(orbit, torch.tensor([0, 0]))
    tensor(0.5000)
    """
    check_orbit(orbit, min_elements=1)
    return orbit_accuracy(orbit[:, :1], target, reduction)


def logits_accuracy(logits: Tensor, target: Tensor, reduction: Reduction = "mean") -> Tensor:
    """Fraction of samples classified correctly from plain logits (no orbit): ``mean_i
    [argmax_c logits_ic = target_i]``, micro-averaged, ties to the first maximal class; the
    :func:`accuracy` of the one-element orbit ``logits.unsqueeze(1)``.

    Args:
        logits: ``[B, C]`` scores (``C >= 1``), floating: logits, probabilities or
            log-probabilities. ``-inf`` is accepted (the log of a probability that underflowed
            to 0, e.g. the log of averaged softmaxes, still ranks below every other class);
            NaN and ``+inf`` are rejected (``ValueError``).
        target: ``[B]`` integer class indices in ``[0, C)``.
        reduction: as in :func:`orbit_consistency` (``"sum"``: the count of correct samples,
            float32, exact up to ``2^24`` samples).

    >>> logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 1.0]])
    >>> logits_accuracy(logits, torch.tensor([0, 0, 0]))
    tensor(0.6667)
    >>> logits_accuracy(logits, torch.tensor([0, 1, 1]), reduction="sum")
    tensor(2.)
    """
    if not isinstance(logits, Tensor):
        raise TypeError(f"logits: expected a Tensor, got {type(logits).__name__}")
    if not logits.is_floating_point():
        raise TypeError(f"logits: expected floating-point outputs, got dtype {logits.dtype}")
    if logits.ndim != 2 or logits.shape[1] < 1:
        raise ValueError(
            f"logits: expected shape [B, C] (samples, C >= 1 classes), got {tuple(logits.shape)}"
            f"; for an orbit [B, N, C] use accuracy or orbit_accuracy"
        )
    if torch.isnan(logits).any() or (logits == float("inf")).any():
        raise ValueError(
            "logits: contains NaN or +Inf values; the model's outputs are not finite (only "
            "-inf, a log-probability of 0, is accepted)"
        )
    check_target(target, logits.shape[0], logits.shape[1])
    return _reduce(_correct_on_orbit(logits.unsqueeze(1), target), reduction)


# --------------------------------------------------------------------------- checks
def check_orbit(orbit: Tensor, min_elements: int = 2, allow_nonfinite: bool = False) -> None:
    """Validate an orbit tensor ``[B, N, C]``: a floating dtype, at least ``min_elements`` on
    dim 1 and one output on dim 2, finite (NaN / Inf are rejected, not propagated, unless
    ``allow_nonfinite``)."""
    if not isinstance(orbit, Tensor):
        raise TypeError(f"orbit: expected a Tensor, got {type(orbit).__name__}")
    if not orbit.is_floating_point():
        raise TypeError(f"orbit: expected floating-point outputs (logits), got dtype {orbit.dtype}")
    if orbit.ndim != 3 or orbit.shape[2] < 1:
        raise ValueError(
            f"orbit: expected shape [B, N, C] (samples, orbit elements, C >= 1 outputs), got "
            f"{tuple(orbit.shape)}"
        )
    if orbit.shape[1] < min_elements:
        raise ValueError(
            f"orbit: expected at least {min_elements} orbit elements (identity first) on dim 1, "
            f"got shape {tuple(orbit.shape)}"
        )
    if not allow_nonfinite:
        check_finite(orbit, "orbit", "the model's outputs are not finite")


def check_finite(values: Tensor, name: str, hint: str) -> None:
    """``ValueError`` naming the argument ``name`` if floating ``values`` hold NaN or Inf
    (one ``isfinite`` reduction); ``hint`` says what that means or how to fix it."""
    if values.is_floating_point() and not torch.isfinite(values).all():
        raise ValueError(f"{name}: contains NaN or Inf values; {hint}")


def check_target(target: Tensor, batch: int, num_classes: int | None) -> None:
    """Validate class indices ``[batch]``: an integer dtype, every value in ``[0, num_classes)``
    (the range is not checked when ``num_classes`` is ``None``)."""
    if not isinstance(target, Tensor):
        raise TypeError(f"target: expected a Tensor of class indices, got {type(target).__name__}")
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise TypeError(
            f"target: expected integer class indices (e.g. torch.long), got dtype {target.dtype}"
        )
    if target.shape != (batch,):
        raise ValueError(
            f"target: expected class indices of shape ({batch},), got {tuple(target.shape)}"
        )
    if num_classes is None or not target.numel():
        return
    if target.min() < 0 or target.max() >= num_classes:
        raise ValueError(
            f"target: class indices must lie in [0, {num_classes}), got values in "
            f"[{target.min().item()}, {target.max().item()}]"
        )


def _check_pair(reference: Tensor, transformed: Tensor) -> tuple[Tensor, Tensor]:
    """Same shapes, floating dtypes; both returned in their common :func:`working_dtype`."""
    for name, value in (("reference", reference), ("transformed", transformed)):
        if not isinstance(value, Tensor) or not value.is_floating_point():
            got = value.dtype if isinstance(value, Tensor) else type(value).__name__
            raise TypeError(f"{name}: expected a floating-point Tensor, got {got}")
    if reference.shape != transformed.shape:
        raise ValueError(
            f"reference and transformed outputs must have the same shape, got "
            f"{tuple(reference.shape)} and {tuple(transformed.shape)}"
        )
    dtype = working_dtype(torch.promote_types(reference.dtype, transformed.dtype))
    return reference.to(dtype), transformed.to(dtype)


def _reduce(values: Tensor, reduction: Reduction) -> Tensor:
    """Sum or mean over all entries, accumulated in at least float32 (bool counts included)."""
    if reduction == "none":
        return values
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    values = values.to(working_dtype(values.dtype) if values.is_floating_point() else torch.float32)
    if reduction == "sum":
        return values.sum()
    if values.numel() == 0:
        raise ValueError(
            "empty batch: the mean over 0 samples is undefined; pass at least one sample, or "
            "use reduction='sum' or 'none'"
        )
    # scaled by a power of two (exact): a mean of values near the dtype's largest is finite
    scale = power_of_two_scale(values.detach().abs().amax())
    return scale * (values / scale).mean()

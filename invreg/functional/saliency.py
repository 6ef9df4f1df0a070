"""Saliency maps and the saliency invariance similarity SI.

A *saliency map* ``m(x)`` attributes the logit of one target class to the input's entries; it
has the shape of the input. SI asks whether the *decision process* is invariant: does the
model look at the same (transformed) evidence when the input is transformed?

``SI = mean_{i, g≠e} cos( m(x_i), g⁻¹·m(g·x_i) )``

averaged over samples **and** over the ``N − 1`` non-identity orbit elements. The group undoes
its own action (``group.act(m, group.inverse(g))``), so the maps are compared in the frame of
``x``. Every orbit element is explained for the **same target class** as its original sample
(the label, or the class predicted on the untransformed input).

Methods (``c`` the target class, ``f_c`` its logit, ``x'`` the baseline, ``S`` steps):

* ``"gradient"``: ``∂f_c/∂x``;
* ``"gradient_x_input"``: ``x ⊙ ∂f_c/∂x``;
* ``"integrated_gradients"``: ``(x − x') ⊙ Σ_{s=1..S} w_s ∂f_c/∂x (x' + α_s (x − x'))``
  (Sundararajan et al. 2017), the path integral ``∫₀¹ ∂f_c/∂x (x' + α(x − x')) dα`` by the
  recipe's ``quadrature`` (:data:`QUADRATURES`, :func:`quadrature_rule`): ``"riemann_right"``
  (default, ``α_s = s/S``, ``w_s = 1/S``), ``"trapezoid"`` or ``"gauss_legendre"``;
  :func:`ig_completeness_error` measures how far a rule is from ``f_c(x) − f_c(x')``;
* any `Captum <https://captum.ai>`_ attribution (optional: ``pip install invreg[captum]``):
  a ``captum.attr`` class (``IntegratedGradients``, ``Saliency``, ``InputXGradient``,
  ``GuidedBackprop``, ...), built on the model of each call, an instance built on that model,
  or its name ``"captum.attr.<Name>"`` (for configs). Its ``attribute`` runs over all orbit
  inputs in calls of at most ``max_batch_size`` inputs, for the same target class; the recipe's
  ``steps`` is its ``n_steps`` and the recipe's baseline its ``baselines`` where it takes them
  (the baseline transforms with its sample, as for the built-in methods), and
  ``attribution_kwargs`` holds its other options (``{"method": "riemann_right"}``: Captum's
  integrated gradients then equal the built-in ones; its default is Gauss-Legendre, the
  built-in ``quadrature="gauss_legendre"``).

**Which baseline a result used matters.** Integrated gradients attribute ``f_c(x) − f_c(x')``;
every entry where ``x`` differs from ``x'`` can get attribution. These functions know no data,
so their default ``baseline=0.0`` is zero *in the units of x*: on standardised images that is a
grey image at the train mean (raw 0.0795 for the zero-padded 36×36 MNIST), not the empty
background (−0.32 there after standardising), and every background pixel is attributed. Pass
the data's background value (``datamodule.background``) to explain against an empty image; the
run-level APIs do this by default (``baseline="background"`` of
:class:`~invreg.metrics.SaliencyInvarianceSimilarity`, :class:`~invreg.callbacks.SaliencyCallback`
and :class:`~invreg.callbacks.OrbitConsistencyCallback`). Report the baseline with an SI value.

Post-processing (Moskalev et al. 2023, the *paper's recipe* and :func:`saliency_invariance`'s
default): absolute value, then values below ``threshold·max`` (``threshold = 0.9``, the max
per sample) set to zero, then a Gaussian blur (kernel 3, σ = 1, zero padding, per channel).

Precision: the gradients come in the model's dtype; attributions (the integrated-gradients
average included), post-processing and cosines run in at least float32, so maps are float32
for a float16 / bfloat16 model (float64 for a float64 one).

Empty batches (``B = 0``) give empty maps and per-pair similarities without calling the model;
``reduction="mean"`` of an empty batch raises ``ValueError`` ("empty batch"). Targets must be
integer class indices in ``[0, C)`` (``TypeError`` / ``ValueError`` otherwise); NaN or Inf
logits or maps raise ``ValueError``.

Gradients are taken with ``torch.autograd.grad`` with respect to the inputs only (parameter
``.grad`` is untouched), inside ``torch.inference_mode(False)`` and ``torch.enable_grad()``, so
these functions also work inside a validation loop. Put the model in ``eval()`` mode first:
batch statistics (BatchNorm in training mode) would couple the batched inputs.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from types import ModuleType
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from invreg.functional.invariance import (
    Reduction,
    _reduce,
    auto_chunk_size,
    check_target,
    count_output_bytes,
    couples_samples,
    resolve_elements,
    upcast,
    working_dtype,
)
from invreg.groups import Group, get_group

SaliencyMethod = Literal["gradient", "gradient_x_input", "integrated_gradients"]
SALIENCY_METHODS = ("gradient", "gradient_x_input", "integrated_gradients")
Quadrature = Literal["riemann_right", "trapezoid", "gauss_legendre"]
#: the rules of integrated gradients' path integral (:func:`quadrature_rule`)
QUADRATURES = ("riemann_right", "trapezoid", "gauss_legendre")
#: a saliency method: a built-in name (:data:`SALIENCY_METHODS`), or a Captum attribution — a
#: ``captum.attr`` class, an instance of one, or its name ``"captum.attr.<Name>"``
AttributionMethod = SaliencyMethod | str | type | Any
#: the prefix of a Captum attribution named by a string
CAPTUM_PREFIX = "captum.attr."
CAPTUM_INSTALL = "pip install invreg[captum]"
#: ``attribute()`` arguments that the call sets, and the option to use instead
CAPTUM_RESERVED = {
    "inputs": "the inputs x",
    "target": "the target argument",
    "baselines": "the recipe's baseline",
    "n_steps": "the recipe's steps",
    "internal_batch_size": "max_batch_size",
}

#: eps of the cosine similarity (torch's convention: an all-zero map has cosine 0)
COSINE_EPS = 1e-8


# --------------------------------------------------------------------------- Captum methods
def is_captum_method(method: AttributionMethod) -> bool:
    """Whether ``method`` is a Captum attribution (anything but a built-in method name)."""
    return not (isinstance(method, str) and method in SALIENCY_METHODS)


def import_captum_attr() -> ModuleType:
    """``captum.attr``, or ``ImportError`` saying how to install it (Captum is optional)."""
    try:
        import captum.attr
    except ImportError as exc:
        raise ImportError(
            f"Captum attribution methods need the captum package: {CAPTUM_INSTALL}"
        ) from exc
    return captum.attr


def _looks_like_attribution(method: Any) -> bool:
    """A class, or an object with an ``attribute`` method: a Captum attribution candidate
    (checked against ``captum.attr.Attribution`` only then, so captum stays optional)."""
    return isinstance(method, type) or callable(getattr(method, "attribute", None))


def _captum_class(name: str) -> type:
    attr = import_captum_attr()
    cls = getattr(attr, name[len(CAPTUM_PREFIX):], None)
    if not (isinstance(cls, type) and issubclass(cls, attr.Attribution)):
        raise ValueError(
            f"method: {name!r} is not a captum.attr attribution; e.g. "
            f"'captum.attr.IntegratedGradients'"
        )
    return cls


def _check_method(method: Any) -> None:
    """``ValueError`` / ``TypeError`` / ``ImportError`` unless ``method`` is a built-in name
    or a Captum attribution (class, instance or ``"captum.attr.<Name>"``)."""
    if isinstance(method, str):
        if method in SALIENCY_METHODS:
            return
        if method.startswith(CAPTUM_PREFIX):
            _captum_class(method)
            return
        raise ValueError(
            f"method must be one of {SALIENCY_METHODS} or a Captum attribution (a captum.attr "
            f"class, an instance or 'captum.attr.<Name>'), got {method!r}"
        )
    if not _looks_like_attribution(method):
        raise TypeError(
            f"method: expected a method name or a Captum attribution (captum.attr class or "
            f"instance), got {type(method).__name__}"
        )
    attr = import_captum_attr()
    cls = method if isinstance(method, type) else type(method)
    if not issubclass(cls, attr.Attribution):
        raise TypeError(
            f"method: expected a captum.attr.Attribution subclass or instance, got "
            f"{cls.__module__}.{cls.__qualname__}"
        )


def _attribute_parameters(method: Any) -> set[str] | None:
    """The keyword names ``method.attribute`` takes, or ``None`` when it takes any (``**kwargs``
    not forwarded to a known inner attribution). NoiseTunnel passes its ``**kwargs`` to the
    attribution it wraps, so that one's names count too."""
    names: set[str] = set()
    while method is not None:
        parameters = inspect.signature(method.attribute).parameters.values()
        names |= {p.name for p in parameters if p.kind is not p.VAR_KEYWORD}
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            return names - {"self"}
        method = getattr(method, "attribution_method", None)  # NoiseTunnel's inner method
    return None


def _check_attribution_kwargs(method: Any, kwargs: Any) -> dict[str, Any] | None:
    """``kwargs`` as a fresh dict (``None`` stays), checked against ``method``."""
    if kwargs is None:
        return None
    if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
        raise TypeError(
            f"attribution_kwargs: expected a dict of keyword arguments, got "
            f"{type(kwargs).__name__}"
        )
    if not kwargs:
        return {}
    if not is_captum_method(method):
        raise ValueError(
            f"attribution_kwargs: only Captum methods take them; method={method!r} has none"
        )
    reserved = [name for name in CAPTUM_RESERVED if name in kwargs]
    if reserved:
        instead = ", ".join(f"{name}: {CAPTUM_RESERVED[name]}" for name in reserved)
        raise ValueError(f"attribution_kwargs: {reserved} are set by the call; use {instead}")
    cls = _captum_class(method) if isinstance(method, str) else method
    accepted = _attribute_parameters(cls)
    unknown = sorted(set(kwargs) - accepted) if accepted is not None else []
    if unknown:
        name = cls.__name__ if isinstance(cls, type) else type(cls).__name__
        raise TypeError(
            f"attribution_kwargs: {name}.attribute() takes no argument(s) {unknown}; it takes "
            f"{sorted(accepted - set(CAPTUM_RESERVED))}"
        )
    return dict(kwargs)


def captum_attribution(method: AttributionMethod, model: nn.Module) -> Any:
    """The Captum attribution that explains ``model``: a class (or ``"captum.attr.<Name>"``)
    built as ``method(model)``; an instance returned as it is, if it was built on ``model``
    (``ValueError`` otherwise: it would explain another model)."""
    _check_method(method)
    if isinstance(method, str):
        method = _captum_class(method)
    if isinstance(method, type):
        try:
            return method(model)
        except (TypeError, AssertionError) as exc:
            raise TypeError(
                f"method: {method.__name__}(model) failed ({exc}); build the attribution on "
                f"the model yourself and pass the instance"
            ) from exc
    forward = getattr(method, "forward_func", None)
    if forward is not model and getattr(forward, "__self__", None) is not model:
        name = type(method).__name__
        raise ValueError(
            f"method: this {name} instance was built on another model than `model`; build it "
            f"on this model, or pass the class {name} (built on each model)"
        )
    return method


# --------------------------------------------------------------------------- quadrature
def _check_quadrature(quadrature: Any, steps: int) -> None:
    if quadrature not in QUADRATURES:
        raise ValueError(f"quadrature must be one of {QUADRATURES}, got {quadrature!r}")
    if quadrature == "trapezoid" and steps < 2:
        raise ValueError(
            f"steps: the trapezoid rule needs at least 2 path points (both ends), got {steps}"
        )


def quadrature_rule(quadrature: Quadrature, steps: int) -> tuple[Tensor, Tensor]:
    """Nodes ``α_s`` in ``[0, 1]`` and weights ``w_s`` (summing to 1) of a rule with ``S =
    steps`` points for ``∫₀¹ g(α) dα ≈ Σ_s w_s g(α_s)``, float64 ``[S]`` each.

    * ``"riemann_right"``: ``α_s = s/S``, ``w_s = 1/S``, ``s = 1..S``; error ``O(1/S)``;
    * ``"trapezoid"``: ``α_s = s/(S − 1)``, ``s = 0..S − 1``, ``w_s = 1/(S − 1)`` halved at both
      ends (``S ≥ 2``); error ``O(1/S²)`` for a smooth ``g``;
    * ``"gauss_legendre"``: ``numpy.polynomial.legendre.leggauss(S)`` mapped from ``[−1, 1]``:
      ``α_s = (t_s + 1)/2``, ``w_s = v_s/2``; exact for polynomials of degree ``< 2S``.

    The same nodes and weights as Captum's ``"riemann_right"`` and ``"gausslegendre"``;
    Captum's ``"riemann_trapezoid"`` has these nodes but weights ``1/S`` (halved at the ends),
    which sum to ``(S − 1)/S``. Integrated gradients cast the nodes to the input's dtype (the path
    points live there) and the weights to the dtype the gradients are summed in (at least
    float32); ``"riemann_right"`` sums the gradients and divides by ``S`` once, as it always has.

    >>> quadrature_rule("trapezoid", 3)
    (tensor([0.0000, 0.5000, 1.0000], dtype=torch.float64), \
tensor([0.2500, 0.5000, 0.2500], dtype=torch.float64))
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    _check_quadrature(quadrature, steps)
    if quadrature == "riemann_right":
        nodes = torch.arange(1, steps + 1, dtype=torch.float64) / steps
        return nodes, torch.full((steps,), 1.0 / steps, dtype=torch.float64)
    if quadrature == "trapezoid":
        nodes = torch.arange(steps, dtype=torch.float64) / (steps - 1)
        weights = torch.full((steps,), 1.0 / (steps - 1), dtype=torch.float64)
        weights[[0, -1]] /= 2
        return nodes, weights
    from numpy.polynomial.legendre import leggauss

    points, weights = leggauss(steps)  # float64 on [-1, 1], ascending
    return torch.from_numpy((points + 1) / 2), torch.from_numpy(weights / 2)


# --------------------------------------------------------------------------- the recipe
@dataclass(frozen=True)
class SaliencyRecipe:
    """How a saliency map is made; the defaults are the paper's recipe (Moskalev et al. 2023).

    Attributes:
        method: ``"integrated_gradients"`` (default), ``"gradient"`` or ``"gradient_x_input"``
            (formulas: the module docstring), or a Captum attribution: a ``captum.attr`` class
            (built on the model of each call: ``IntegratedGradients(model)``), an instance
            built on the model it explains, or ``"captum.attr.<Name>"``.
        steps: integrated gradients' path points ``S`` (default 50; at least 2 for
            ``"trapezoid"``); a Captum method's ``n_steps`` where its ``attribute`` takes one.
        absolute: take ``|m|`` (default ``True``).
        threshold: entries below ``threshold · max`` set to 0 (default 0.9; ``None`` off).
        blur: Gaussian blur (default ``True``) with ``blur_kernel_size`` (3) and
            ``blur_sigma`` (1.0).
        baseline: integrated gradients' reference input ``x'``: a number in the units of ``x``
            (default 0.0: grey on standardised images), a tensor broadcastable to ``x``, or
            ``"background"`` — the data module's empty-pixel value, which only the run-level
            APIs (metric, callbacks) can resolve; the functions here need a value. A Captum
            method that takes ``baselines`` gets it.
        attribution_kwargs: further keyword arguments of a Captum method's ``attribute`` (e.g.
            ``{"method": "riemann_right"}`` for ``IntegratedGradients``); not ``inputs``,
            ``target``, ``baselines``, ``n_steps`` or ``internal_batch_size``, which the
            recipe and the call set. Only for Captum methods.
        quadrature: the rule of the built-in integrated gradients' path integral, one of
            :data:`QUADRATURES` (:func:`quadrature_rule`): ``"riemann_right"`` (default, the
            paper's and every recorded result's), ``"trapezoid"`` or ``"gauss_legendre"``
            (Captum's default; far smaller completeness error for the same ``S`` on smooth
            models, see docs/metrics.md). Not for Captum methods: they take their rule in
            ``attribution_kwargs`` (``{"method": "gausslegendre"}``).

    Every function, metric and callback that makes saliency maps takes one ``recipe``; their
    keyword arguments of the same names (``steps=8``) replace those fields of it.

    >>> SaliencyRecipe(steps=8)
    SaliencyRecipe(method='integrated_gradients', steps=8, absolute=True, threshold=0.9, \
blur=True, blur_kernel_size=3, blur_sigma=1.0, baseline=0.0, attribution_kwargs=None, \
quadrature='riemann_right')
    """

    method: AttributionMethod = "integrated_gradients"
    steps: int = 50
    absolute: bool = True
    threshold: float | None = 0.9
    blur: bool = True
    blur_kernel_size: int = 3
    blur_sigma: float = 1.0
    baseline: float | Tensor | Literal["background"] = 0.0
    # not hashed: a dict is not hashable (equality still compares it)
    attribution_kwargs: dict[str, Any] | None = field(default=None, hash=False)
    # last: recipes built positionally keep their meaning
    quadrature: Quadrature = "riemann_right"

    def __post_init__(self) -> None:
        _check_method(self.method)
        kwargs = _check_attribution_kwargs(self.method, self.attribution_kwargs)
        object.__setattr__(self, "attribution_kwargs", kwargs)  # a copy: frozen for the caller
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"steps must be a positive integer, got {self.steps!r}")
        _check_quadrature(self.quadrature, self.steps)
        if self.quadrature != "riemann_right" and is_captum_method(self.method):
            raise ValueError(
                f"quadrature={self.quadrature!r} is the built-in integrated gradients' rule; a "
                f"Captum method takes its own in attribution_kwargs (IntegratedGradients: "
                f"{{'method': 'gausslegendre'}})"
            )
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ValueError(
                f"threshold must be a fraction of the max in [0, 1], got {self.threshold}"
            )
        if self.blur_kernel_size < 1 or self.blur_kernel_size % 2 == 0:
            raise ValueError(
                f"blur_kernel_size must be a positive odd integer, got {self.blur_kernel_size}"
            )
        if self.blur_sigma <= 0:
            raise ValueError(f"blur_sigma must be positive, got {self.blur_sigma}")
        baseline = self.baseline
        if isinstance(baseline, str):
            if baseline != BACKGROUND:
                raise ValueError(
                    f"baseline: expected a number, a tensor or {BACKGROUND!r} (the data "
                    f"module's empty-pixel value), got {baseline!r}"
                )
        elif not isinstance(baseline, Tensor):
            if isinstance(baseline, bool) or not isinstance(baseline, int | float):
                raise TypeError(
                    f"baseline: expected a number, a tensor or {BACKGROUND!r}, got "
                    f"{type(baseline).__name__}"
                )
            if not math.isfinite(baseline):
                raise ValueError(f"baseline: expected a finite number, got {baseline!r}")

    def postprocess(self, maps: Tensor) -> Tensor:
        """:func:`postprocess_saliency` with this recipe's steps."""
        return postprocess_saliency(
            maps, self.absolute, self.threshold, self.blur, self.blur_kernel_size, self.blur_sigma
        )


#: integrated gradients' baseline ``"background"``: the data module's value of an empty pixel
BACKGROUND = "background"
RECIPE_FIELDS = tuple(f.name for f in fields(SaliencyRecipe))
#: :func:`saliency`'s default: raw attributions, no post-processing
RAW_RECIPE = SaliencyRecipe(absolute=False, threshold=None, blur=False)


def make_recipe(
    recipe: SaliencyRecipe | AttributionMethod | None,
    default: SaliencyRecipe,
    options: dict[str, Any],
) -> SaliencyRecipe:
    """``recipe`` (``default`` when ``None``; a method — a name, a Captum attribution class or
    instance — is ``default`` with that method) with the fields named in ``options`` replaced;
    ``TypeError`` for any other option."""
    if recipe is None:
        recipe = default
    elif isinstance(recipe, str) or _looks_like_attribution(recipe):
        # a Captum method replaces the built-in one: the default steps stay, its options go
        recipe = replace(default, method=recipe)
    elif not isinstance(recipe, SaliencyRecipe):
        raise TypeError(
            f"recipe: expected a SaliencyRecipe, a method name or a Captum attribution "
            f"(captum.attr class or instance), got {type(recipe).__name__}"
        )
    unknown = sorted(set(options) - set(RECIPE_FIELDS))
    if unknown:
        raise TypeError(
            f"unexpected keyword argument(s) {unknown}; saliency options are the SaliencyRecipe "
            f"fields {list(RECIPE_FIELDS)}"
        )
    return replace(recipe, **options) if options else recipe


def _baseline_value(recipe: SaliencyRecipe) -> float | Tensor:
    if isinstance(recipe.baseline, str):
        raise ValueError(
            f"baseline={BACKGROUND!r} needs the data: pass its value (e.g. "
            f"datamodule.background), or use SaliencyInvarianceSimilarity / the callbacks, "
            f"which read it from the data module"
        )
    return recipe.baseline


# --------------------------------------------------------------------------- post-processing
def gaussian_blur(maps: Tensor, kernel_size: int = 3, sigma: float = 1.0) -> Tensor:
    """Separable Gaussian blur over the spatial axes of ``[B, C, *spatial]`` (1-D or 2-D),
    each channel separately, zero padding (output has the input's shape).

    The kernel is ``exp(−d²/2σ²)`` at integer offsets ``d ∈ [−k//2, k//2]``, normalised to sum 1.
    """
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"blur_kernel_size must be a positive odd integer, got {kernel_size}")
    if sigma <= 0:
        raise ValueError(f"blur_sigma must be positive, got {sigma}")
    if maps.ndim not in (3, 4):
        raise ValueError(
            f"gaussian_blur: expected maps of shape [B, C, L] or [B, C, H, W], got "
            f"{tuple(maps.shape)}"
        )
    offsets = torch.arange(kernel_size, dtype=maps.dtype, device=maps.device) - kernel_size // 2
    kernel = torch.exp(-offsets.pow(2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = maps.shape[1]
    pad = kernel_size // 2
    out = maps
    if maps.ndim == 3:
        weight = kernel.view(1, 1, -1).expand(channels, 1, -1)
        return F.conv1d(out, weight, padding=pad, groups=channels)
    weight_h = kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1)
    weight_w = kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1)
    out = F.conv2d(out, weight_h, padding=(pad, 0), groups=channels)
    return F.conv2d(out, weight_w, padding=(0, pad), groups=channels)


def postprocess_saliency(
    maps: Tensor,
    absolute: bool = False,
    threshold: float | None = None,
    blur: bool = False,
    blur_kernel_size: int = 3,
    blur_sigma: float = 1.0,
) -> Tensor:
    """The paper's post-processing of saliency maps ``[B, ...]``, each step optional.

    1. ``absolute``: ``|m|``;
    2. ``threshold``: entries below ``threshold · max(m)`` set to 0 (``max`` per sample over all
       entries; the paper uses 0.9);
    3. ``blur``: :func:`gaussian_blur` with ``blur_kernel_size`` and ``blur_sigma`` (paper: 3, 1);
       needs maps ``[B, C, L]`` or ``[B, C, H, W]``.

    >>> m = torch.tensor([[[-2.0, 1.0, 0.5]]])
    >>> postprocess_saliency(m, absolute=True, threshold=0.9)
    tensor([[[2., 0., 0.]]])
    """
    if absolute:
        maps = maps.abs()
    if threshold is not None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be a fraction of the max in [0, 1], got {threshold}")
        peak = maps.flatten(1).amax(dim=1).view(-1, *([1] * (maps.ndim - 1)))
        maps = torch.where(maps < threshold * peak, torch.zeros_like(maps), maps)
    if blur:
        maps = gaussian_blur(maps, blur_kernel_size, blur_sigma)
    return maps


# --------------------------------------------------------------------------- attributions
def saliency(
    model: nn.Module,
    x: Tensor,
    target: Tensor | None = None,
    recipe: SaliencyRecipe | AttributionMethod | None = None,
    *,
    max_batch_size: int | None = None,
    **options: Any,
) -> Tensor:
    """Saliency maps ``[B, *x.shape[1:]]`` of ``model``'s logit for the target class.

    Args:
        model: maps ``[B, *D]`` inputs to ``[B, C]`` logits.
        x: inputs ``[B, *D]``.
        target: class per sample ``[B]`` (labels), or ``None`` for the class ``model``
            predicts on ``x`` (argmax of the logits).
        recipe: a :class:`SaliencyRecipe` or a method (a built-in name or a Captum
            attribution: class, instance built on ``model``, or ``"captum.attr.<Name>"``;
            see the module docstring); default :data:`RAW_RECIPE`,
            integrated gradients (50 steps from the baseline 0.0) without post-processing
            (raw attributions). A tensor baseline is broadcast to ``x`` (in
            :func:`orbit_saliency` it is transformed with its sample: ``g·x'`` is the baseline
            of ``g·x``). The baseline 0.0 is zero in ``x``'s units (grey, not the background,
            on standardised images; see the module docstring): pass ``datamodule.background``
            for an empty image.
        max_batch_size: at most this many model inputs per forward + backward pass of the
            ``B`` (``B·S`` for integrated gradients) inputs. ``None``: chosen from the model's
            activation memory, as :func:`~invreg.functional.orbit_forward` does: the first
            input runs alone while hooks add up its activation bytes, then passes of
            :func:`~invreg.functional.invariance.auto_chunk_size` inputs, each counted twice
            (a backward holds activations and their gradients) against the 32 MiB budget of a
            CPU (measured: an MLP's SI ran 1.4× faster with passes of ~1200 inputs than of
            ~2500, a small CNN's 1.3× faster with 38 than with 70); one pass for a model that
            couples samples (BatchNorm in training mode).
            Path points are built per pass, so memory stays bounded by the pass.
            A Captum method's ``attribute`` runs over at most this many inputs per call (all
            in one call when they fit) and gets it as ``internal_batch_size`` where it takes
            one (integrated gradients: passes of at most this many path points); methods
            that evaluate several noisy or sampled points per input in one pass
            (``NoiseTunnel``, ``GradientShap``) multiply it by their number of samples.
        options: fields of the recipe to replace (``steps=8``, ``baseline=...``, ...).

    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3, 2, bias=False))
    >>> with torch.no_grad():
    ...     _ = model[1].weight.copy_(torch.tensor([[1.0, -2.0, 0.0], [0.0, 0.0, 1.0]]))
    >>> x = torch.tensor([[[1.0, 1.0, 1.0]]])
    >>> saliency(model, x, torch.tensor([0]), "gradient")
    tensor([[[ 1., -2.,  0.]]])
    >>> saliency(model, x, torch.tensor([0]), "integrated_gradients", absolute=True)
    tensor([[[1., 2., 0.]]])
    """
    recipe = make_recipe(recipe, RAW_RECIPE, options)
    baseline = _baseline_value(recipe)
    _check_max_batch_size(max_batch_size)
    if not isinstance(x, Tensor) or x.ndim < 2:
        raise ValueError(
            f"x: expected a batch of inputs [B, ...], got "
            f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}"
        )
    if x.shape[0] == 0:  # nothing to explain: no forward, empty maps
        if target is not None:
            check_target(target, 0, None)
        _broadcast_baseline(baseline, x)
        maps = torch.zeros(x.shape, dtype=working_dtype(x.dtype), device=x.device)
    else:
        with torch.inference_mode(False), torch.enable_grad():
            x = x.clone()  # an inference tensor cannot take part in autograd
            target = resolve_target(model, x, target)
            base = _broadcast_baseline(baseline, x)
            maps = _attributions(model, x, target, recipe, base, max_batch_size)
    return recipe.postprocess(maps)


def ig_completeness_error(
    model: nn.Module,
    x: Tensor,
    target: Tensor | None = None,
    recipe: SaliencyRecipe | AttributionMethod | None = None,
    *,
    max_batch_size: int | None = None,
    **options: Any,
) -> Tensor:
    """How far integrated gradients are from complete: ``|Σ_d IG_d(x) − (f_c(x) − f_c(x'))|``
    per sample, ``[B]``.

    Exact integrated gradients sum over the input's entries ``d`` to ``f_c(x) − f_c(x')``
    (completeness, Sundararajan et al. 2017); the path integral's quadrature (the recipe's
    ``quadrature`` and ``steps``) leaves this error. ``c`` is ``target`` or the class predicted
    on ``x``, ``x'`` the recipe's baseline. Attributions are the recipe's raw ones (its
    ``absolute``, ``threshold`` and ``blur`` are not applied); sums and differences run in at
    least float32 (:func:`~invreg.functional.working_dtype`), the logits in the model's dtype.

    Args:
        model, x, target, max_batch_size: as for :func:`saliency`.
        recipe: a :class:`SaliencyRecipe` or a method (default :data:`RAW_RECIPE`: built-in
            integrated gradients, 50 steps, baseline 0.0); ``options`` replace its fields
            (``steps=64, quadrature="gauss_legendre"``). A Captum method is measured as it is
            (``IntegratedGradients``; ``DeepLift`` is complete too); ``"gradient"`` and
            ``"gradient_x_input"`` are refused (no completeness to measure).

    >>> _ = torch.manual_seed(0)
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3, 2), nn.Tanh()).double()
    >>> x = torch.randn(4, 1, 3, dtype=torch.float64)
    >>> rough = ig_completeness_error(model, x, steps=8)
    >>> fine = ig_completeness_error(model, x, steps=8, quadrature="gauss_legendre")
    >>> rough.shape, bool((fine < 1e-6).all()), bool((fine < rough).all())
    (torch.Size([4]), True, True)
    """
    recipe = make_recipe(recipe, RAW_RECIPE, options)
    if recipe.method in ("gradient", "gradient_x_input"):
        raise ValueError(
            f"recipe: completeness holds for integrated gradients, not method="
            f"{recipe.method!r}; use 'integrated_gradients' (or a Captum IntegratedGradients)"
        )
    recipe = replace(recipe, absolute=False, threshold=None, blur=False)
    if not isinstance(x, Tensor) or x.ndim < 2 or x.shape[0] == 0:
        # saliency's input checks; an empty batch gives empty maps without a forward
        return saliency(model, x, target, recipe, max_batch_size=max_batch_size).flatten(1).sum(1)
    with torch.inference_mode(False):
        x = x.clone()  # an inference tensor cannot take part in autograd
        target = resolve_target(model, x, target)
        maps = saliency(model, x, target, recipe, max_batch_size=max_batch_size)
        base = _broadcast_baseline(_baseline_value(recipe), x).expand_as(x)
        with torch.no_grad():
            ends = model(torch.cat([x, base]))
    _check_logits(ends, 2 * x.shape[0])
    ends = upcast(ends.gather(1, target.repeat(2).view(-1, 1)).view(2, -1))
    return (maps.flatten(1).sum(1) - (ends[0] - ends[1])).abs()


def orbit_saliency(
    model: nn.Module,
    x: Tensor,
    target: Tensor | None,
    group: Group | str,
    recipe: SaliencyRecipe | AttributionMethod | None = None,
    *,
    max_batch_size: int | None = None,
    num_samples: int | None = None,
    generator: torch.Generator | None = None,
    elements: Tensor | None = None,
    **options: Any,
) -> Tensor:
    """Saliency maps of every orbit element, mapped back to ``x``'s frame: ``[B, N, *D]``.

    ``out[:, j] = P( g_j⁻¹ · a(g_j·x) )`` with ``a`` the raw attribution of ``method`` for the
    **same** target class as the untransformed sample (``target``, or the class predicted on
    ``x`` when ``None``), ``g_j⁻¹`` applied by ``group.act(a, group.inverse(g_j))``, and ``P``
    the post-processing of ``recipe`` (default :class:`SaliencyRecipe`: the paper's recipe,
    |IG|, 0.9·max threshold, 3×3 σ=1 blur; ``options`` replace its fields, as in
    :func:`saliency`).
    ``out[:, 0]`` is ``P(a(x))``. The orbit elements are ``group.elements(num_samples)`` (or
    ``elements``), identity first.

    All ``B·N`` (``B·N·S`` for integrated gradients) attributions come from batched forward and
    backward passes of at most ``max_batch_size`` inputs (``None``: chosen automatically, see
    :func:`saliency`).

    Post-processing is applied *after* mapping back, so both maps of a pair are processed in
    the same frame. For exact actions (rotations by 90°, flips, dihedral groups) this equals
    processing each map in its own frame and then mapping back, because |·|, the per-sample max
    and the symmetric blur commute with those actions; for cyclic shifts it avoids the blur's
    zero padding meeting the wrapped-around edge differently in the two frames.
    """
    group = get_group(group)
    recipe = make_recipe(recipe, SaliencyRecipe(), options)
    baseline = _baseline_value(recipe)
    _check_max_batch_size(max_batch_size)
    group.check_input(x)
    if x.shape[0] == 0:  # nothing to explain: no forward, empty maps [0, N, *D]
        if target is not None:
            check_target(target, 0, None)
        _broadcast_baseline(baseline, x)
        elems = resolve_elements(group, x, num_samples, generator, elements)
        shape = (0, elems.shape[0], *x.shape[1:])
        return torch.zeros(shape, dtype=working_dtype(x.dtype), device=x.device)
    with torch.inference_mode(False), torch.enable_grad():
        x = x.clone()  # an inference tensor cannot take part in autograd
        target = resolve_target(model, x, target)
        elems = resolve_elements(group, x, num_samples, generator, elements)
        batch, n = x.shape[0], elems.shape[0]
        orbit = group.orbit_from_elements(x, elems)  # [B, N, *D]
        inputs = orbit.reshape(batch * n, *x.shape[1:])
        base = _broadcast_baseline(baseline, x)
        if base.ndim:  # a baseline image per sample transforms with its sample
            base = group.orbit_from_elements(base, elems).reshape_as(inputs)
        maps = _attributions(
            model, inputs, target.repeat_interleave(n), recipe, base, max_batch_size
        )
        maps = maps.detach().reshape(batch, n, *x.shape[1:])
    # undo each transformation: maps[:, j] := g_j⁻¹ · maps[:, j]
    inverses = group.inverse(elems)[1:]  # [N - 1, *element_shape]
    per_sample = inverses.unsqueeze(0).expand(batch, *inverses.shape)
    aligned = group.act(
        maps[:, 1:].reshape(batch * (n - 1), *x.shape[1:]),
        per_sample.reshape(batch * (n - 1), *group.element_shape),
    ).reshape(batch, n - 1, *x.shape[1:])
    maps = torch.cat([maps[:, :1], aligned], dim=1)
    processed = recipe.postprocess(maps.reshape(batch * n, *x.shape[1:]))
    return processed.reshape(batch, n, *x.shape[1:])


def orbit_saliency_stages(
    model: nn.Module,
    x: Tensor,
    target: Tensor | None,
    group: Group | str,
    recipe: SaliencyRecipe | AttributionMethod | None = None,
    *,
    max_batch_size: int | None = None,
    num_samples: int | None = None,
    generator: torch.Generator | None = None,
    elements: Tensor | None = None,
    **options: Any,
) -> tuple[Tensor, Tensor]:
    """:func:`orbit_saliency`'s maps before and after thresholding and blur, from one batched
    backward: ``(raw, maps)``, both ``[B, N, *D]``.

    ``raw`` are the attributions mapped back (``g_j⁻¹ · a(g_j·x)``), ``|·|`` when
    ``recipe.absolute``, without threshold or blur; ``maps`` are ``raw`` thresholded and
    blurred as the recipe says, equal to :func:`orbit_saliency`'s output with the same
    arguments (the same operations). A figure of the raw maps and SI of the processed ones
    thus need one backward. Arguments as for :func:`orbit_saliency`.
    """
    recipe = make_recipe(recipe, SaliencyRecipe(), options)
    raw = orbit_saliency(
        model, x, target, group, replace(recipe, threshold=None, blur=False),
        max_batch_size=max_batch_size, num_samples=num_samples, generator=generator,
        elements=elements,
    )
    maps = postprocess_saliency(
        raw.flatten(0, 1), threshold=recipe.threshold, blur=recipe.blur,
        blur_kernel_size=recipe.blur_kernel_size, blur_sigma=recipe.blur_sigma,
    ).reshape_as(raw)
    return raw, maps


def saliency_invariance(
    model: nn.Module,
    x: Tensor,
    target: Tensor | None,
    group: Group | str,
    recipe: SaliencyRecipe | AttributionMethod | None = None,
    *,
    reduction: Reduction = "mean",
    max_batch_size: int | None = None,
    num_samples: int | None = None,
    generator: torch.Generator | None = None,
    elements: Tensor | None = None,
    **options: Any,
) -> Tensor:
    """Saliency invariance similarity SI (higher is more invariant; 1 for an invariant model).

    ``SI = mean_{i, g≠e} cos( m(x_i), g⁻¹·m(g·x_i) )``, the mean over samples **and** over the
    ``N − 1`` non-identity orbit elements; ``m`` the post-processed saliency map of the target
    class (the same class for every orbit element of a sample), cosine over all entries of
    the maps (``eps = 1e-8``: an all-zero map has cosine 0). Maps come from
    :func:`orbit_saliency` (one batched backward); the defaults are the paper's recipe.

    Args:
        model: maps ``[B, *D]`` inputs to ``[B, C]`` logits (in ``eval()`` mode).
        x: inputs ``[B, *D]`` that ``group`` acts on.
        target: classes ``[B]``, or ``None`` for the class predicted on ``x``.
        group: the transformations: a :class:`~invreg.groups.Group` or its name (``"c4"``).
        recipe: a :class:`SaliencyRecipe` (default: the paper's) or a method (a built-in
            name or a Captum attribution, see :func:`saliency`); ``options`` replace its
            fields (``steps=8``, ``attribution_kwargs={...}``). Methods that sample noise
            (``NoiseTunnel``, ``GradientShap``) draw it independently per orbit element, so
            even an invariant model scores below 1 with them.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (per-pair similarities ``[B, N − 1]``).
        max_batch_size: see :func:`saliency`.
        num_samples, generator, elements: orbit elements, as in
            :func:`~invreg.functional.orbit_logits`.

    >>> from invreg.groups import Rotations
    >>> class RotationInvariant(nn.Module):  # sum of squares: invariant to every rotation
    ...     def forward(self, x):
    ...         s = x.pow(2).flatten(1).sum(1)
    ...         return torch.stack([s, -s], dim=1)
    >>> x = torch.randn(3, 1, 6, 6)
    >>> saliency_invariance(RotationInvariant(), x, None, Rotations(4)).item() > 0.999
    True
    """
    maps = orbit_saliency(
        model,
        x,
        target,
        group,
        make_recipe(recipe, SaliencyRecipe(), options),
        max_batch_size=max_batch_size,
        num_samples=num_samples,
        generator=generator,
        elements=elements,
    )
    return saliency_similarity(maps, reduction)


def saliency_similarity(maps: Tensor, reduction: Reduction = "mean") -> Tensor:
    """SI from aligned orbit maps ``[B, N, *D]`` (:func:`orbit_saliency`'s output): the cosine
    between ``maps[:, 0]`` and each ``maps[:, j]``, ``j ≥ 1``, over all entries (``eps = 1e-8``),
    reduced over samples and non-identity elements (``"none"``: ``[B, N − 1]``), in at least
    float32. Lets a caller
    that already has the maps (e.g. to plot them) get SI without a second backward.

    >>> maps = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]])
    >>> saliency_similarity(maps)
    tensor(0.5000)
    """
    if not isinstance(maps, Tensor) or not maps.is_floating_point():
        got = maps.dtype if isinstance(maps, Tensor) else type(maps).__name__
        raise TypeError(f"maps: expected a floating-point Tensor, got {got}")
    if maps.ndim < 3 or maps.shape[1] < 2:
        raise ValueError(
            f"maps: expected [B, N, ...] with N >= 2 (identity first), got {tuple(maps.shape)}"
        )
    if not torch.isfinite(maps).all():
        raise ValueError("maps: contain NaN or Inf; the saliency maps are not finite")
    flat = upcast(maps.flatten(2))
    similarity = F.cosine_similarity(
        flat[:, :1].expand_as(flat[:, 1:]), flat[:, 1:], dim=-1, eps=COSINE_EPS
    )
    return _reduce(similarity, reduction)


# --------------------------------------------------------------------------- helpers
def resolve_target(model: nn.Module, x: Tensor, target: Tensor | None) -> Tensor:
    """``target`` validated as classes ``[B]``, or the class ``model`` predicts on ``x``."""
    if target is None:
        with torch.no_grad():
            logits = model(x)
        _check_logits(logits, x.shape[0])
        return logits.argmax(dim=-1)
    # the range [0, C) is checked against the logits in the gradient pass
    check_target(target, x.shape[0], num_classes=None)
    return target.to(device=x.device, dtype=torch.long)


def _check_logits(logits: Tensor, batch: int) -> None:
    if not isinstance(logits, Tensor) or logits.ndim != 2 or logits.shape[0] != batch:
        got = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(
            f"saliency needs a model returning logits [B, C] = [{batch}, C], got {got}"
        )


def _check_max_batch_size(max_batch_size: int | None) -> None:
    if max_batch_size is not None and max_batch_size < 1:
        raise ValueError(f"max_batch_size must be a positive integer or None, got {max_batch_size}")


def _broadcast_baseline(baseline: float | Tensor, x: Tensor) -> Tensor:
    """A number as a 0-dim tensor; a tensor expanded to ``x``'s shape (one baseline per sample)."""
    base = torch.as_tensor(baseline, dtype=x.dtype, device=x.device)
    if base.ndim == 0:
        return base
    try:
        return base.expand_as(x)
    except RuntimeError:
        raise ValueError(
            f"baseline: expected a number or a tensor broadcastable to x {tuple(x.shape)}, got "
            f"shape {tuple(base.shape)}"
        ) from None


def _attributions(
    model: nn.Module,
    inputs: Tensor,
    target: Tensor,
    recipe: SaliencyRecipe,
    baseline: Tensor,
    max_batch_size: int | None,
) -> Tensor:
    """Raw attributions ``[M, *D]`` of ``inputs`` ``[M, *D]`` (grad mode on, no post-processing)."""
    if is_captum_method(recipe.method):
        return _captum_attributions(model, inputs, target, recipe, baseline, max_batch_size)
    if recipe.method != "integrated_gradients":
        grads = _summed_gradients(
            model, inputs, target, 1, lambda _, rows, out: out.copy_(inputs[rows].detach()),
            max_batch_size,
        )
        return grads if recipe.method == "gradient" else upcast(inputs) * grads
    # the S path points of the M inputs, step-major (row k: step k // M, input k % M), built
    # pass by pass; their gradients summed per input in at least float32 (S half-precision
    # gradients would lose bits), weighted by the rule (the right Riemann sum: summed, then
    # divided by S once, as recorded results were computed)
    steps = recipe.steps
    delta = inputs - baseline
    if recipe.quadrature == "riemann_right":
        nodes, weights = [(step + 1) / steps for step in range(steps)], None
    else:
        rule = quadrature_rule(recipe.quadrature, steps)
        nodes = rule[0].to(inputs.dtype).tolist()
        weights = rule[1].to(working_dtype(inputs.dtype)).tolist()

    def path(step: int, rows: slice, out: Tensor) -> Tensor:
        base = baseline[rows] if baseline.ndim else baseline
        # detached: the points are leaves of their pass (and out= takes no autograd inputs)
        return torch.add(base.detach(), delta[rows].detach(), alpha=nodes[step], out=out)

    sums = _summed_gradients(model, inputs, target, steps, path, max_batch_size, weights)
    return upcast(delta) * (sums / steps if weights is None else sums)


def _captum_attributions(
    model: nn.Module,
    inputs: Tensor,
    target: Tensor,
    recipe: SaliencyRecipe,
    baseline: Tensor,
    max_batch_size: int | None,
) -> Tensor:
    """A Captum method's attributions ``[M, *D]`` (in at least float32) of ``inputs``, in calls
    of ``attribute`` over at most ``size`` inputs each (one call when all fit), where ``size``
    is ``max_batch_size`` or, for ``None``, :func:`auto_chunk_size` of twice the activation
    bytes of one input (one pass for a model that couples samples). Methods with an
    ``internal_batch_size`` (integrated gradients) also get ``size``, so each forward +
    backward holds at most ``size`` path points."""
    explainer = captum_attribution(recipe.method, model)
    accepted = _attribute_parameters(explainer)

    def takes(name: str) -> bool:
        return accepted is None or name in accepted

    options = dict(recipe.attribution_kwargs or {})
    if takes("n_steps"):
        options["n_steps"] = recipe.steps
    total = inputs.shape[0]
    one_pass = max_batch_size is None and couples_samples(model)
    if max_batch_size is not None:
        size = max_batch_size
    elif one_pass:  # batch statistics: every input (and path point) in one forward
        size = total
    else:
        with torch.no_grad(), count_output_bytes(model) as measured:
            model(inputs[:1].detach())
        # a backward holds the activations and their gradients: count each input twice
        size = auto_chunk_size(2 * measured[0], inputs.device)
    if takes("internal_batch_size") and not one_pass:
        options["internal_batch_size"] = size
    maps = torch.empty(inputs.shape, dtype=working_dtype(inputs.dtype), device=inputs.device)
    for start in range(0, total, size):
        rows = slice(start, min(start + size, total))
        # a leaf that requires grad: Captum would otherwise set it (and warn)
        chunk = inputs[rows].detach().requires_grad_(True)
        if takes("baselines"):
            base = baseline[rows] if baseline.ndim else baseline.expand_as(chunk)
            options["baselines"] = base.detach()
        out = explainer.attribute(chunk, target=target[rows], **options)
        if not isinstance(out, Tensor) or out.shape != chunk.shape:
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(
                f"method: {type(explainer).__name__}.attribute returned {got} for inputs "
                f"{tuple(chunk.shape)}; SI needs one attribution per input entry (no layer "
                f"attribution, no convergence delta)"
            )
        if not torch.isfinite(out).all():
            raise ValueError(
                f"saliency: {type(explainer).__name__}'s attributions contain NaN or Inf"
            )
        maps[rows] = out.detach()
    return maps


def _summed_gradients(
    model: nn.Module,
    inputs: Tensor,
    target: Tensor,
    steps: int,
    point: Any,
    max_batch_size: int | None,
    weights: list[float] | None = None,
) -> Tensor:
    """``Σ_s w_s ∂ f_{target_i}(z_{s,i}) / ∂ z`` (``w_s = weights[s]``, 1 for ``None``) for the
    ``steps·M`` model inputs ``z_{s, i} = point(s, rows, out)[i]``, written into ``out``
    (``M = inputs.shape[0]``; step-major rows ``k = s·M + i``),
    one forward + backward per pass of at most ``max_batch_size`` rows (``None``: sized from
    the first row's activation bytes), in at least float32."""
    total = inputs.shape[0]
    count = steps * total
    sums = torch.zeros(inputs.shape, dtype=working_dtype(inputs.dtype), device=inputs.device)
    first, size = 0, count if max_batch_size is None else max_batch_size
    if max_batch_size is None and count > 1 and not couples_samples(model):
        with count_output_bytes(model) as measured:
            _gradient_pass(model, point, 0, 1, total, target, sums, inputs.dtype, weights)
        # a backward holds the activations and their gradients: count each input twice
        first, size = 1, auto_chunk_size(2 * measured[0], inputs.device)
    for start in range(first, count, max(size, 1)):
        stop = min(start + size, count)
        _gradient_pass(model, point, start, stop, total, target, sums, inputs.dtype, weights)
    return sums


def _gradient_pass(
    model: nn.Module,
    point: Any,
    start: int,
    stop: int,
    total: int,
    target: Tensor,
    sums: Tensor,
    dtype: torch.dtype,
    weights: list[float] | None = None,
) -> None:
    """One forward + backward of rows ``start:stop``; each row's gradient (times its step's
    weight, when ``weights`` are given) added to its input's entry of ``sums``. A pass spans
    whole or partial path steps, each a contiguous slice of inputs, so points are built and
    gradients added slice by slice (no gather, no scatter)."""
    segments = []  # (step, input slice, slice of the pass)
    row = start
    while row < stop:
        step, index = divmod(row, total)
        end = min(stop, (step + 1) * total)
        segments.append((step, slice(index, index + end - row), slice(row - start, end - start)))
        row = end
    # the pass's inputs, written segment by segment (no concatenation copy)
    chunk = torch.empty((stop - start, *sums.shape[1:]), dtype=dtype, device=sums.device)
    for step, rows, part in segments:
        point(step, rows, chunk[part])
    chunk.requires_grad_(True)
    logits = model(chunk)
    _check_logits(logits, chunk.shape[0])
    if not torch.isfinite(logits).all():
        raise ValueError("saliency: the model's logits contain NaN or Inf")
    classes = torch.cat([target[rows] for _, rows, _ in segments])
    if classes.numel() and (classes.min() < 0 or classes.max() >= logits.shape[1]):
        raise ValueError(
            f"target: class indices must lie in [0, {logits.shape[1]}), got values in "
            f"[{classes.min().item()}, {classes.max().item()}]"
        )
    selected = logits.gather(1, classes.view(-1, 1)).sum()
    (grad,) = torch.autograd.grad(selected, chunk)
    for step, rows, part in segments:
        if weights is None:
            sums[rows] += grad[part]
        else:  # in sums' dtype: a half-precision gradient is upcast before it is weighted
            sums[rows].add_(grad[part], alpha=weights[step])


__all__ = [
    "CAPTUM_INSTALL",
    "QUADRATURES",
    "RAW_RECIPE",
    "SALIENCY_METHODS",
    "SaliencyRecipe",
    "captum_attribution",
    "gaussian_blur",
    "ig_completeness_error",
    "import_captum_attr",
    "is_captum_method",
    "orbit_saliency",
    "orbit_saliency_stages",
    "postprocess_saliency",
    "quadrature_rule",
    "resolve_target",
    "saliency",
    "saliency_invariance",
    "saliency_similarity",
]

"""Which layer breaks the symmetry: the output Lie derivative split into one term per layer
(the chain-rule decomposition of Gruver et al. 2023, "The Lie derivative for measuring learned
equivariance", section 6).

For a network ``f = f_L ∘ … ∘ f_1`` with activations ``h_0 = x`` and ``h_i = f_i(h_{i−1})``,
each activation carries a representation of the one-parameter family ``g_t``
(:func:`~invreg.functional.lie.lie_generator`) with tangent ``T_i(h) = d/dt g_t·h`` at ``t = 0``:

- an image feature map ``[B, C, H, W]`` is transformed spatially, every channel alike: the same
  transformation of the frame as the input's (the generator's affine map for the input's
  ``H × W``, in normalised coordinates, so a half-resolution map is rotated, scaled or shifted
  with the image; a shift of ``t`` input pixels moves it ``t/2`` of its own pixels), with the
  symmetric bilinear tangent of :func:`~invreg.functional.lie.lie_tangent` (zeros outside the
  frame; the input uses ``fill``);
- any other tensor (features ``[B, C]``, logits) is invariant: ``T_i = 0``.

The layer's own equivariance error, its Lie derivative on its input, is

    e_i = J_{f_i}(h_{i−1}) · T_{i−1}(h_{i−1}) − T_i(h_i)        (shaped like h_i)

(0 for a layer equivariant under that representation), and its term is that error pushed
through the rest of the network, a single Jacobian-vector product:

    term_i = J_{>i}(h_i) · e_i,      J_{>i} the Jacobian of f_L ∘ … ∘ f_{i+1} (identity for i = L)

The sum telescopes: ``Σ_i term_i = J_f(x)·T_0(x) − T_L(h_L) = L f(x)``, the model's output Lie
derivative (:func:`~invreg.functional.lie.lie_derivative`) when its output is invariant
(``T_L = 0``), exactly for any choice of the hidden representations. The share of layer ``i``
in the Lie derivative error ``‖L f(x)‖²`` is ``⟨term_i, L f(x)⟩``; the shares sum to it.

Exactness. The tangent is a central difference, linear and channel-wise, so it commutes
exactly with channel-mixing linear maps (a 1×1 convolution without bias): their error is 0 to
rounding. A pointwise nonlinearity (ReLU) or a bias is equivariant in the continuum but not
under the discrete tangent (a central difference of ``σ(h)`` is not ``σ'(h)`` times that of
``h``; a constant bias has a tangent at the zero-filled border): their terms are small for
smooth feature maps, not 0. Global mean pooling is invariant exactly when its input is 0 on
the border rows and columns (content leaving the frame otherwise changes the mean).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import jvp, vjp, vmap

from invreg.functional.invariance import get_layer
from invreg.functional.lie import GeneratorLike, LieGenerator, _model_tensor, check_lie_input


class LieAttribution(NamedTuple):
    """The result of :func:`lie_attribution`, for ``B`` samples and ``C`` outputs.

    Attributes:
        terms: ``{layer: term_i}``, each ``[B, C]``, in the order of the layers.
        errors: ``{layer: e_i}``, each layer's own equivariance error, shaped like its output.
        derivative: ``L f(x) = Σ_i term_i``, ``[B, C]``.
        shares: ``{layer: ⟨term_i, L f(x)⟩}``, each ``[B]``; they sum to ``‖L f(x)‖²``.
    """

    terms: dict[str, Tensor]
    errors: dict[str, Tensor]
    derivative: Tensor
    shares: dict[str, Tensor]


def lie_attribution(
    model: nn.Module,
    x: Tensor,
    generator: GeneratorLike,
    layers: Sequence[str] | None = None,
    fill: float = 0.0,
) -> LieAttribution:
    """Each layer's term in the output Lie derivative ``L f(x) = Σ_i term_i`` (module
    docstring), batched over the samples of ``x``.

    Args:
        model: the network; its named submodules ``layers`` are applied in order, so the
            model must compute ``layers[-1](… layers[0](x))`` (e.g. :class:`~invreg.models.
            SmallCNN` with ``["blocks.0", "blocks.1", "blocks.2", "pool", "head"]``).
        x: floating images ``[B, C_in, H, W]``.
        generator: the family ``g_t`` (:func:`~invreg.functional.lie.lie_generator`).
        layers: names of ``model.named_modules()``; default the children of an
            ``nn.Sequential`` model.
        fill: the input plane's value outside the frame (hidden feature maps use 0).

    Cost: ``L`` layer Jacobian-vector products for the errors and one product through the
    rest of the network per layer (``torch.func.jvp``), no full Jacobian. Measure in
    ``model.eval()`` (batch norm in training mode couples the samples).

    Raises:
        ValueError: a name is not a module of ``model`` (the message lists its modules), or
            no layers are given for a model that is not an ``nn.Sequential``; as
            :func:`~invreg.functional.lie.lie_derivative` for ``x`` and ``generator``.

    >>> model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Flatten(), nn.Linear(32, 2))
    >>> result = lie_attribution(model, torch.randn(3, 1, 4, 4), "rotation")
    >>> list(result.terms), result.derivative.shape
    (['0', '1', '2'], torch.Size([3, 2]))
    """
    names, modules, activations, errors = _layer_errors(model, x, generator, layers, fill)
    terms: dict[str, Tensor] = {}
    for i, name in enumerate(names):
        _, term = jvp(_tail(modules[i + 1:]), (activations[i + 1],), (errors[name],))
        terms[name] = term.detach().reshape(x.shape[0], math.prod(term.shape[1:]))
    derivative = torch.stack(list(terms.values())).sum(0)
    shares = {name: (term * derivative).sum(-1) for name, term in terms.items()}
    return LieAttribution(terms, errors, derivative, shares)


def lie_attribution_shares(
    model: nn.Module,
    x: Tensor,
    generator: GeneratorLike,
    layers: Sequence[str] | None = None,
    fill: float = 0.0,
    probes: int = 100,
    seed: int = 0,
) -> dict[str, Tensor]:
    """Hutchinson estimate of each layer's share ``⟨term_i, L f(x)⟩`` of ``‖L f(x)‖²``
    (:func:`lie_attribution`), ``{layer: [B]}``, without forming the terms.

    With ``P = probes`` Rademacher vectors ``v`` (``[B, C]``, entries ±1, ``E[v vᵀ] = I``):

        share_i ≈ mean_v (vᵀ J_{>i}(h_i) · e_i) (vᵀ L f(x))

    an unbiased estimate; one reverse-mode product ``vᵀ J_{>i}`` serves every layer at once
    (vectorised over the probes), and ``L f(x) = J_f(x)·T_0(x)`` is one forward-mode product.
    Its standard deviation falls as ``1/√P``. ``seed`` fixes the probes (a private
    ``torch.Generator``: the global random state is untouched). Arguments otherwise as
    :func:`lie_attribution`.

    >>> model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Flatten(), nn.Linear(32, 2))
    >>> shares = lie_attribution_shares(model, torch.randn(3, 1, 4, 4), "rotation", probes=8)
    >>> shares["0"].shape
    torch.Size([3])
    """
    if isinstance(probes, bool) or not isinstance(probes, int) or probes < 1:
        raise ValueError(f"probes: expected a positive integer, got {probes!r}")
    names, modules, activations, errors = _layer_errors(model, x, generator, layers, fill)
    tangent = _tangent(x, check_lie_input(x, generator), x.shape[-2:], fill)
    _, derivative = jvp(_tail(modules), (x,), (tangent,))
    derivative = derivative.detach()
    rng = torch.Generator(device="cpu").manual_seed(seed)
    signs = torch.randint(0, 2, (probes, *derivative.shape), generator=rng)
    v = (2 * signs - 1).to(dtype=derivative.dtype, device=derivative.device)  # [P, B, *D]
    along = (v * derivative).flatten(2).sum(-1)  # vᵀ L f(x), [P, B]
    shares: dict[str, Tensor] = {}
    for i, name in enumerate(names):
        _, pull = vjp(_tail(modules[i + 1:]), activations[i + 1])
        cotangents = vmap(pull)(v)[0]  # vᵀ J_{>i}, [P, *h_i.shape]
        projected = (cotangents * errors[name]).flatten(2).sum(-1)  # [P, B]
        shares[name] = (projected * along).mean(0).detach()
    return shares


def _layer_errors(
    model: nn.Module,
    x: Tensor,
    generator: GeneratorLike,
    layers: Sequence[str] | None,
    fill: float,
) -> tuple[list[str], list[nn.Module], list[Tensor], dict[str, Tensor]]:
    """The layer names and modules, the activations ``[h_0 = x, h_1, …, h_L]`` and the errors
    ``{layer: e_i}`` (module docstring)."""
    resolved = check_lie_input(x, generator)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected an nn.Module, got {type(model).__name__}")
    names = _layer_names(model, layers)
    modules = [get_layer(model, name) for name in names]
    frame = x.shape[-2:]
    activations = [x.detach()]
    with torch.no_grad():
        for module in modules:
            activations.append(_model_tensor(module(activations[-1]), module))
    tangents = [
        _tangent(h, resolved, frame, fill if i == 0 else 0.0) for i, h in enumerate(activations)
    ]
    errors: dict[str, Tensor] = {}
    for i, (name, module) in enumerate(zip(names, modules, strict=True)):
        _, pushed = jvp(_tail([module]), (activations[i],), (tangents[i],))
        errors[name] = (pushed - tangents[i + 1]).detach()
    return names, modules, activations, errors


def _tail(rest: Sequence[nn.Module]) -> Callable[[Tensor], Tensor]:
    """``h ↦ f_L ∘ … (h)`` over the modules ``rest`` (the identity for none)."""

    def apply(h: Tensor) -> Tensor:
        for module in rest:
            h = _model_tensor(module(h), module)
        return h

    return apply


def _layer_names(model: nn.Module, layers: Sequence[str] | None) -> list[str]:
    """The layer names, each checked against ``model.named_modules()``."""
    if layers is None:
        if not isinstance(model, nn.Sequential):
            raise ValueError(
                f"layers: give the names of {type(model).__name__}'s layers in the order they "
                f"run (model.named_modules()), e.g. ['blocks.0', 'pool', 'head']; only an "
                f"nn.Sequential model has a default"
            )
        return [name for name, _ in model.named_children()]
    if isinstance(layers, str) or not all(isinstance(name, str) for name in layers):
        raise TypeError(f"layers: expected a sequence of module names, got {layers!r}")
    names = list(layers)
    if not names:
        raise ValueError("layers: expected at least one module name, got none")
    if len(set(names)) != len(names):
        raise ValueError(f"layers: each layer runs once; got repeated names in {names}")
    for name in names:
        get_layer(model, name)  # ValueError listing the model's modules
    return names


def _tangent(h: Tensor, generator: LieGenerator, frame: Sequence[int], fill: float) -> Tensor:
    """``d/dt g_t·h`` at 0 for an activation ``h``: the symmetric bilinear tangent of the
    input frame's transformation for a feature map ``[B, C, H', W']``, else 0 (invariant)."""
    if h.ndim != 4 or not h.is_floating_point():
        return torch.zeros_like(h)
    _, _, height, width = h.shape
    zero = torch.zeros((), dtype=h.dtype, device=h.device)
    # the frame's affine map (the input's size): the same transformation at any resolution
    _, velocity = jvp(
        lambda t: F.affine_grid(
            generator.theta(t, *frame)[None], [1, 1, height, width], align_corners=False
        ),
        (zero,),
        (torch.ones_like(zero),),
    )
    padded = F.pad(h - fill, (1, 1, 1, 1))
    slope_x = (padded[..., 1:-1, 2:] - padded[..., 1:-1, :-2]) * (width / 4)
    slope_y = (padded[..., 2:, 1:-1] - padded[..., :-2, 1:-1]) * (height / 4)
    return slope_x * velocity[..., 0] + slope_y * velocity[..., 1]

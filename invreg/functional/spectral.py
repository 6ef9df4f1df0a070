"""Spectra of a model: σ_max of the input→output Jacobian per sample, and weight singular values.

*Spectral decay* (Moskalev et al. 2023, Fig. 5): a network trained with an invariance error
loses sensitivity to **all** input perturbations, not only to the group's. Two measurements:

* ``σ_max(J_i)``, the largest singular value of the Jacobian ``J_i = ∂f(x_i)/∂x_i`` of the
  outputs (``C`` logits) with respect to one input (``D`` entries), per sample;
* the largest singular values of each weight matrix (for a linear net trained on LI alone,
  ``W(t) = W(0)·exp(−Σt)`` with ``Σ = εεᵀ``, ``ε = x − g·x``, so ``σ_max(W(t)) ≤ σ_max(W(0))``).

:func:`jacobian_spectral_norm` never builds a Jacobian. It runs a batched iteration on the
``C × C`` Gram operator ``u ↦ J_i J_iᵀ u``, whose largest eigenvalue is ``σ_max(J_i)²``: one
``torch.func.vjp`` (``Jᵀu``, reusing one linearisation of the forward) and one
``torch.func.jvp`` (``J v``) per step, for all samples at once. Because the samples of a batch
do not interact (put the model in ``eval()`` mode: BatchNorm in training mode couples them),
the Jacobian of the batched forward is block diagonal and each sample runs its own iteration.

* ``method="auto"`` (default): ``"exact"`` when the model has ``C ≤ iters`` outputs per sample,
  ``"lanczos"`` otherwise (rule below).
* ``method="exact"``: the Jacobian itself, ``C`` rows per sample, then its largest singular
  value (the square root of the largest eigenvalue of ``J Jᵀ``, eigenvalues in float64). One
  forward, then one reverse-mode pass per output ``c``: the pullback of the basis cotangent
  ``e_c`` (every sample at once) gives row ``c`` of every sample's Jacobian, because the
  batched Jacobian is block diagonal (the same assumption as the iterations: no cross-sample
  operations, BatchNorm in ``eval()`` mode). The ``C`` pullbacks run as one ``torch.func.vmap``
  over the cotangents; a model that vmap cannot batch (a custom autograd function, an in-place
  op vmap refuses) falls back to a Python loop of ``C`` pullbacks, which gives the same rows.
  Exact to float rounding, no random start.
* ``method="lanczos"``: Lanczos with full re-orthogonalisation. The Krylov space of a
  ``C × C`` operator has at most ``C`` dimensions, so ``iters ≥ C`` gives σ_max to float
  precision (10 logits: 10 steps); fewer steps give a lower bound that is usually already tight.
* ``method="power"``: power iteration, ``σ ≈ ‖Jᵀu‖`` with ``u ← JJᵀu/‖JJᵀu‖``; converges like
  ``(σ₂/σ₁)^{2k}``, a lower bound at every step.

Precision: the forward and its derivatives run in the model's dtype; the iteration vectors,
their inner products and norms run in at least float32 (float64 for a float64 model), so a
half-precision model does not also lose its Lanczos basis to rounding.

Cost: Lanczos and power iteration run ``min(iters, C)`` (``iters``) forward-mode plus
reverse-mode passes over the batch and one forward; memory: one batch's activations and
``[B, iters, C]`` Lanczos vectors. ``"exact"`` runs one forward and ``C`` reverse-mode passes
(no forward-mode pass, no ``C × C`` iteration); memory: the Jacobians ``[B, C, D]`` and, under
vmap, ``C`` copies of the backward's intermediates (``chunk_size`` bounds both).

The ``"auto"`` rule ``C ≤ iters``, measured (``benchmarks/bench_spectral.py``, CPU, 64 samples
of 36×36): for ``C ≤ iters`` Lanczos runs ``C`` steps of one reverse plus one forward-mode pass,
the exact path ``C`` reverse passes only, so it is never slower and needs no random start (the
paper's MLP, 9 logits: 3.5× faster; the small CNN: 1.2–1.5×). Above ``iters`` Lanczos stops
after ``iters`` steps (a lower bound) while the exact path keeps paying per output: the crossover
is at ``C ≈ 5·iters`` for the MLP but ``C ≈ 1.5·iters`` for the CNN, whose reverse passes are
dearer, so the rule keeps to the bound that holds for both.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor, nn
from torch.func import jvp, vjp, vmap

SpectralMethod = Literal["auto", "exact", "lanczos", "power"]
SPECTRAL_METHODS = ("auto", "exact", "lanczos", "power")

#: a Lanczos step whose residual is below this fraction of ‖J Jᵀ‖ ends that sample's Krylov space
BREAKDOWN_TOL = 1e-6


def jacobian_spectral_norm(
    model: nn.Module | Callable[[Tensor], Tensor],
    x: Tensor,
    iters: int = 20,
    method: SpectralMethod = "auto",
    *,
    chunk_size: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """σ_max of the Jacobian ``∂f(x_i)/∂x_i`` of each sample: ``[B]``, without forming it.

    Args:
        model: maps ``[B, *D]`` to ``[B, *C]`` (logits ``[B, C]`` for a classifier); the outputs
            of sample ``i`` may only depend on input ``i`` (``eval()`` mode for BatchNorm).
        x: inputs ``[B, *D]``.
        iters: iteration steps (Lanczos uses ``min(iters, C)``; it is exact for ``iters ≥ C``);
            ignored by ``"exact"``.
        method: ``"auto"`` (exact for ``C ≤ iters`` outputs, else Lanczos), ``"exact"``,
            ``"lanczos"`` or ``"power"`` (module docstring).
        chunk_size: at most this many samples per pass (``None``: all ``B`` at once).
        generator: for the iterations' random start vectors (``None``: torch's global
            generator); the exact path draws none.

    Returns:
        ``σ_max(J_i)`` for each sample, a detached float tensor ``[B]`` on ``x``'s device.

    Gradients flow only to the inputs, never to ``model``'s parameters; works inside
    ``torch.no_grad()`` and ``torch.inference_mode()`` (e.g. a validation loop).

    >>> model = nn.Linear(3, 2, bias=False)
    >>> with torch.no_grad():
    ...     _ = model.weight.copy_(torch.tensor([[3.0, 0.0, 0.0], [0.0, 4.0, 0.0]]))
    >>> jacobian_spectral_norm(model, torch.randn(5, 3)).round(decimals=4)
    tensor([4., 4., 4., 4., 4.])
    """
    if not isinstance(x, Tensor) or x.ndim < 2:
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"x: expected a batch of inputs [B, ...], got {got}")
    if isinstance(iters, bool) or not isinstance(iters, int) or iters < 1:
        raise ValueError(f"iters must be a positive integer, got {iters!r}")
    if method not in SPECTRAL_METHODS:
        raise ValueError(f"method must be one of {SPECTRAL_METHODS}, got {method!r}")
    if chunk_size is not None and (isinstance(chunk_size, bool) or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")
    if x.shape[0] == 0:
        return torch.zeros(0, device=x.device)
    step = x.shape[0] if chunk_size is None else chunk_size
    results = []
    # torch.func differentiates with respect to x only; no_grad keeps parameters out of it
    with torch.inference_mode(False), torch.no_grad():
        for start in range(0, x.shape[0], step):
            chunk = x[start : start + step].clone()  # an inference tensor cannot be linearised
            results.append(_chunk_spectral_norm(model, chunk, iters, method, generator))
    return torch.cat(results)


def _chunk_spectral_norm(
    model: Callable[[Tensor], Tensor],
    x: Tensor,
    iters: int,
    method: str,
    generator: torch.Generator | None,
) -> Tensor:
    outputs, pullback = vjp(model, x)
    if not isinstance(outputs, Tensor) or outputs.ndim < 1 or outputs.shape[0] != x.shape[0]:
        got = tuple(outputs.shape) if isinstance(outputs, Tensor) else type(outputs).__name__
        raise ValueError(
            f"model: expected outputs [B, ...] with B = {x.shape[0]} (one row per input), got {got}"
        )
    batch, out_shape = x.shape[0], outputs.shape[1:]
    width = outputs[0].numel()

    work = torch.promote_types(outputs.dtype, torch.float32)

    def gram(u: Tensor) -> tuple[Tensor, Tensor]:
        """``(J Jᵀ u, Jᵀ u)`` per sample in ``work`` dtype, ``u`` of shape ``[B, width]``."""
        (pulled,) = pullback(u.reshape(batch, *out_shape).to(outputs.dtype))
        _, pushed = jvp(model, (x,), (pulled,))
        return pushed.reshape(batch, width).to(work), pulled.to(work)

    if method == "exact" or (method == "auto" and width <= iters):
        return _exact(pullback, outputs, work)
    start = torch.randn(batch, width, generator=generator, dtype=work)
    start = start.to(outputs.device)
    start = start / start.norm(dim=1, keepdim=True)
    if method == "power":
        return _power(gram, start, iters)
    return _lanczos(gram, start, min(iters, width))


def _exact(
    pullback: Callable[[Tensor], tuple[Tensor, ...]], outputs: Tensor, work: torch.dtype
) -> Tensor:
    """σ_max of each sample's full Jacobian ``[B, C, D]``, one pullback per output ``c``."""
    batch, width = outputs.shape[0], outputs[0].numel()
    # basis[c] is the cotangent e_c for every sample: its pullback is row c of every J_i
    basis = torch.eye(width, dtype=outputs.dtype, device=outputs.device)
    basis = basis[:, None, :].expand(width, batch, width).reshape(width, *outputs.shape)
    try:
        (rows,) = vmap(pullback)(basis)  # [C, B, *D]
    except (RuntimeError, NotImplementedError):
        # vmap cannot batch some op of this model: the same rows, one pullback at a time
        rows = torch.stack([pullback(cotangent)[0] for cotangent in basis])
    jacobians = rows.reshape(width, batch, -1).transpose(0, 1).to(work)  # [B, C, D]
    # σ_max(J)² is the largest eigenvalue of the smaller Gram matrix (J Jᵀ or Jᵀ J): the same
    # value as matrix_norm(J, ord=2) to float rounding, ~10× faster than its SVD for C = 100
    if jacobians.shape[1] <= jacobians.shape[2]:
        gram = jacobians @ jacobians.transpose(1, 2)
    else:
        gram = jacobians.transpose(1, 2) @ jacobians
    largest = torch.linalg.eigvalsh(gram.double())[:, -1]
    return largest.clamp_min(0).sqrt().detach().float()


def _power(gram, u: Tensor, iters: int) -> Tensor:
    sigma = u.new_zeros(u.shape[0])
    for _ in range(iters):
        image, pulled = gram(u)
        sigma = pulled.flatten(1).norm(dim=1)  # ‖Jᵀu‖ for unit u: a lower bound on σ_max
        norm = image.norm(dim=1, keepdim=True)
        u = torch.where(norm > 0, image / norm.clamp_min(torch.finfo(u.dtype).tiny), u)
    return sigma.detach().float()


def _lanczos(gram, u: Tensor, steps: int) -> Tensor:
    batch = u.shape[0]
    basis = [u]  # orthonormal Lanczos vectors, each [B, width]
    alphas, betas = [], []
    scale = u.new_zeros(batch)  # running estimate of ‖J Jᵀ‖ for the breakdown test
    for j in range(steps):
        w, _ = gram(basis[-1])
        alpha = (w * basis[-1]).sum(dim=1)
        alphas.append(alpha)
        scale = torch.maximum(scale, alpha.abs())
        if j == steps - 1:
            break
        q = torch.stack(basis, dim=1)  # [B, j + 1, width]
        for _ in range(2):  # full re-orthogonalisation, twice is enough (Kahan–Parlett)
            w = w - torch.einsum("bk,bkw->bw", torch.einsum("bkw,bw->bk", q, w), q)
        beta = w.norm(dim=1)
        alive = beta > BREAKDOWN_TOL * scale.clamp_min(torch.finfo(u.dtype).tiny)
        # an exhausted Krylov space decouples: zero coupling, zero vector from here on
        beta = torch.where(alive, beta, torch.zeros_like(beta))
        betas.append(beta)
        basis.append(torch.where(alive[:, None], w / beta.clamp_min(1e-30)[:, None], 0.0))
    tridiagonal = torch.diag_embed(torch.stack(alphas, dim=1).double())
    if betas:
        off = torch.stack(betas, dim=1).double()
        tridiagonal = tridiagonal + torch.diag_embed(off, 1) + torch.diag_embed(off, -1)
    largest = torch.linalg.eigvalsh(tridiagonal)[:, -1]
    return largest.clamp_min(0).sqrt().float()


def weight_matrices(model: nn.Module) -> OrderedDict[str, Tensor]:
    """Every parameter with at least two dimensions, as a matrix ``[out, in·…]``, in
    ``named_parameters()`` order (so the first layer comes first).

    A convolution kernel ``[out, in, k, k]`` becomes ``[out, in·k·k]`` (the usual proxy; the
    operator norm of the convolution itself also depends on the input size).
    """
    return OrderedDict(
        (name, p.detach().reshape(p.shape[0], -1))
        for name, p in model.named_parameters()
        if p.ndim >= 2
    )


def weight_singular_values(model: nn.Module, k: int = 3) -> OrderedDict[str, Tensor]:
    """The ``k`` largest singular values of each weight matrix, largest first.

    Returns an ordered dict ``{parameter name: Tensor[min(k, rank bound)]}`` in
    ``named_parameters()`` order: the first entry is the first layer. Exact (``svdvals``);
    weight matrices are small next to a per-sample Jacobian.

    >>> model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    >>> {name: s.shape for name, s in weight_singular_values(model, k=2).items()}
    {'0.weight': torch.Size([2]), '2.weight': torch.Size([2])}
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    with torch.no_grad():
        return OrderedDict(
            (name, torch.linalg.svdvals(matrix.float())[:k].cpu())
            for name, matrix in weight_matrices(model).items()
        )


__all__ = [
    "SPECTRAL_METHODS",
    "jacobian_spectral_norm",
    "weight_matrices",
    "weight_singular_values",
]

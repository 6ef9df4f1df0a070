"""Make e2cnn 0.2.3 build reflection-group kernels under NumPy 2.

e2cnn's kernel sampling (``e2cnn.kernels.utils.psi / chi / psichi``) calls
``np.array(value, copy=False)`` on Python scalars. NumPy 1 read ``copy=False`` as "copy only if
needed"; NumPy 2 raises ``ValueError: Unable to avoid copy`` instead. Rotation groups never pass
scalars there, but every reflection group does (``FlipRot2dOnR2``, ``Flip2dOnR2``), so building
any D_n layer fails. :func:`patch_e2cnn` wraps the three functions so that their arguments
arrive as 1-D arrays, which NumPy 2 accepts without copying; the numbers computed are the same.

On NumPy >= 2.3, where ``ndarray.tostring`` is gone, it also replaces the ``__hash__`` of the
kernel-basis classes that call it by the same formula written with ``tobytes``.

It also makes ``GroupPooling`` keep its input's dtype (e2cnn writes the pooled features
into a float32 buffer, so a float64 model returned float32 features), and gives every
``R2Conv`` its own copy of e2cnn's cached kernel-basis module (shared, ``model.double()`` cast
every other model's basis).

The patch is applied once, on first use of :class:`~invreg.models.E2CNN`, and only when
NumPy's ``copy=False`` semantics need it; importing invreg does not touch e2cnn.
"""

from __future__ import annotations

import copy
import functools

import numpy as np
import torch

_PATCHED = False


def _needs_copy_patch() -> bool:
    try:
        np.array(0.0, copy=False)
    except ValueError:
        return True
    return False


def _array_args(func, positions: tuple[int, ...], names: tuple[str, ...]):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        args = list(args)
        for i in positions:
            if i < len(args):
                args[i] = np.atleast_1d(args[i])
        for name in names:
            if name in kwargs:
                kwargs[name] = np.atleast_1d(kwargs[name])
        return func(*args, **kwargs)

    wrapper.__invreg_patched__ = True
    return wrapper


def _hash_with_tobytes(self) -> int:
    parts = (self.in_irrep, self.out_irrep, self.mu, self.gamma)
    return sum(hash(p.tobytes() if isinstance(p, np.ndarray) else p) for p in parts)


def patch_e2cnn() -> None:
    """Apply the NumPy 2 fixes to e2cnn (idempotent, no-op where not needed)."""
    global _PATCHED
    if _PATCHED:
        return
    import e2cnn.kernels
    import e2cnn.kernels.irreps_basis as irreps_basis
    import e2cnn.kernels.utils as kernel_utils

    if _needs_copy_patch() and not getattr(kernel_utils.psi, "__invreg_patched__", False):
        # psi(theta, k, gamma, out), chi(s, out), psichi(theta, s, k, gamma, out)
        psi = _array_args(kernel_utils.psi, (1, 2), ("k", "gamma"))
        chi = _array_args(kernel_utils.chi, (0,), ("s",))
        psichi = _array_args(kernel_utils.psichi, (1, 2, 3), ("s", "k", "gamma"))
        # the functions are imported by name into these modules, so rebind them everywhere
        for module in (kernel_utils, irreps_basis, e2cnn.kernels):
            module.psi, module.chi, module.psichi = psi, chi, psichi
    if not hasattr(np.ndarray, "tostring"):
        for name in (
            "R2FlipsSolution",
            "R2ContinuousRotationsSolution",
            "R2FlipsDiscreteRotationsSolution",
            "R2FlipsContinuousRotationsSolution",
        ):
            getattr(irreps_basis, name).__hash__ = _hash_with_tobytes
    from e2cnn.nn import GroupPooling
    from e2cnn.nn.modules.r2_conv import basisexpansion_blocks

    if not getattr(GroupPooling.forward, "__invreg_patched__", False):
        GroupPooling.forward = _group_pooling_forward
    expansion = basisexpansion_blocks.block_basisexpansion
    if not getattr(expansion, "__invreg_patched__", False):
        basisexpansion_blocks.block_basisexpansion = _own_copy(expansion)
    _PATCHED = True


def _own_copy(block_basisexpansion):
    """e2cnn caches one basis-expansion module per kernel basis and hands the *same* module to
    every ``R2Conv`` that uses it, so ``model.double()`` on one model cast the basis of all the
    others (a float32 model built later failed with a dtype mismatch). Keep the cache (the
    sampling is the slow part) but give each layer its own copy of the module."""

    @functools.wraps(block_basisexpansion)
    def wrapper(*args, **kwargs):
        return copy.deepcopy(block_basisexpansion(*args, **kwargs))

    wrapper.__invreg_patched__ = True
    return wrapper


def _group_pooling_forward(self, input):
    """``GroupPooling.forward`` with the output in the input's dtype (e2cnn 0.2.3 writes into a
    float32 buffer, which rounds float64 features); otherwise e2cnn's code unchanged."""
    from e2cnn.nn import GeometricTensor

    assert input.type == self.in_type
    tensor = input.tensor
    b, _, h, w = tensor.shape
    shape = self.evaluate_output_shape(tensor.shape)
    output = torch.empty(shape, device=tensor.device, dtype=tensor.dtype)
    for s, contiguous in self._contiguous.items():
        in_indices = getattr(self, f"in_indices_{s}")
        out_indices = getattr(self, f"out_indices_{s}")
        if contiguous:
            fm = tensor[:, in_indices[0] : in_indices[1], ...]
        else:
            fm = tensor[:, in_indices, ...]
        max_activations = fm.view(b, -1, s, h, w).amax(dim=2)  # max over each field
        if contiguous:
            output[:, out_indices[0] : out_indices[1], ...] = max_activations
        else:
            output[:, out_indices, ...] = max_activations
    return GeometricTensor(output, self.out_type)


_group_pooling_forward.__invreg_patched__ = True

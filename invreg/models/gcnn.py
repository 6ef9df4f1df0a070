"""Group-equivariant CNNs (e2cnn) that are invariant to rotations C_n or dihedral groups D_n."""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import NoReturn

import torch
from torch import Tensor, nn

from invreg.groups import Dihedral, Group, Rotations, get_group
from invreg.groups.e2cnn import gspace_of, missing_gspace
from invreg.models.base import Backbone, GlobalMeanPool, check_activation, check_widths

E2CNN_ACTIVATIONS = ("elu", "relu", "sigmoid", "tanh")

_SUPPORTED = (
    "rotations C_n ('c<n>' or Rotations(n)) and dihedral groups D_n with n = 1 or even n "
    "('d<n>' or Dihedral(n))"
)


@contextmanager
def _quiet_e2cnn() -> Iterator[None]:
    """Silence e2cnn's torch uint8-indexing UserWarning (emitted while building kernel bases)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*uint8.*", category=UserWarning)
        yield


def e2cnn_group(group: str | Group | None) -> Rotations | Dihedral:
    """``group`` checked to be one that :class:`E2CNN` can be built for: a :class:`Rotations`
    C_n or a :class:`Dihedral` D_n with n = 1 or even; ``ValueError`` naming these otherwise."""
    if group is None:
        raise ValueError(
            f"E2CNN: group is missing; pass the group it is invariant to, one of {_SUPPORTED} "
            f"(in a config, model.init_args.group is passed to the backbone)"
        )
    try:
        resolved = get_group(group)
    except ValueError as err:
        raise ValueError(f"E2CNN supports {_SUPPORTED}; got {group!r}") from err
    if not isinstance(resolved, Rotations | Dihedral):
        raise ValueError(f"E2CNN supports {_SUPPORTED}; got {resolved!r}")
    reason = missing_gspace(resolved)
    if reason is not None:
        raise ValueError(f"E2CNN supports {_SUPPORTED}; got {resolved!r}: {reason}")
    return resolved


def make_gspace(group: Rotations | Dihedral) -> NoReturn:
    """Moved: :func:`invreg.groups.e2cnn.gspace_of` (any group with an e2cnn gspace)."""
    raise TypeError(
        "invreg.models.gcnn.make_gspace moved to invreg.groups.e2cnn.gspace_of(group): "
        "from invreg.groups.e2cnn import gspace_of"
    )


class E2CNN(Backbone):
    """An e2cnn G-CNN, invariant to a rotation group C_n or a dihedral group D_n.

    Every hidden layer carries ``channels[i]`` *regular* feature fields (``|G|`` channels each,
    so ``channels[i]·|G|`` tensor channels); the input is ``C`` trivial (scalar) fields::

        x [B, C, H, W]
          → per block: R2Conv (kernel_size, "same" padding) → InnerBatchNorm → activation
                       → PointwiseMaxPool (stride 2; not after the last block)
          → GroupPooling (max over the |G| channels of each field)  [B, channels[-1], H', W']
          → mean over all positions                                  [B, channels[-1]]
          → Linear head                                              [B, num_classes]

    The convolutions are G-equivariant, group pooling makes each field invariant to the
    group's action on the fibre, and the global spatial mean removes the remaining spatial
    permutation, so the logits are invariant. For rotations by multiples of 90° and for
    mirrors this is exact up to float error, on any (square) image size: each max pool uses
    kernel 3 on odd and kernel 2 on even sides, so its windows tile the map symmetrically and
    commute with ``rot90`` and flips. For other angles (``c8``: 45°) the kernels are only
    approximately steerable on the pixel grid and :class:`~invreg.groups.Rotations` resamples
    the image bilinearly, so invariance is approximate.

    Submodule names: ``blocks.<i>`` with ``.conv``, ``.norm``, ``.activation``, ``.pool`` (e2cnn
    modules: forward hooks see ``e2cnn.nn.GeometricTensor``; use ``.tensor``), ``group_pool``,
    ``pool`` (the spatial mean: the features), ``head``.

    Eval mode, compared with a bare e2cnn model: e2cnn caches each ``R2Conv``'s expanded
    filter in eval mode (so eval mode means frozen convolution weights). Here that cache is

    * detached: input gradients (saliency, Jacobians) work any number of times — with the bare
      cache the second backward fails; the conv ``weights`` get no gradient in eval mode;
    * left out of ``state_dict()`` and ignored when loading, so checkpoints do not depend on
      the mode they were saved in, and rebuilt after ``load_state_dict`` in eval mode.

    Args:
        input_shape: ``(C, H, W)`` with ``H == W``.
        num_classes: number of logits.
        group: ``"c<n>"`` / ``"d<n>"`` or a :class:`~invreg.groups.Rotations` /
            :class:`~invreg.groups.Dihedral` object; D_n needs ``n = 1`` or even ``n``.
            Required: ``None`` (the default) is an error, except in a config, where the CLI
            sets it to the run's group (``model.init_args.group``).
        channels: number of regular fields per block (at least one block).
        kernel_size: odd size of the convolution kernels.
        activation: one of ``elu, relu, sigmoid, tanh`` (pointwise, so equivariant on regular
            fields).
        batch_norm: add ``InnerBatchNorm`` after each convolution.

    Evaluate invariance in ``eval()`` mode: in training mode batch norm normalises with the
    batch's own statistics, which couples the samples of a batch.

    >>> import torch
    >>> model = E2CNN((1, 9, 9), num_classes=3, group="c4", channels=(2, 4)).eval()
    >>> model(torch.zeros(2, 1, 9, 9)).shape
    torch.Size([2, 3])
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        group: str | Group | None = None,
        channels: Sequence[int] = (8, 16, 32),
        kernel_size: int = 5,
        activation: str = "relu",
        batch_norm: bool = True,
    ) -> None:
        super().__init__(input_shape, num_classes)
        channels = check_widths("channels", channels)
        if len(self.input_shape) != 3 or self.input_shape[1] != self.input_shape[2]:
            raise ValueError(
                f"E2CNN: input_shape must be (C, H, W) with H == W so that rotations keep the "
                f"image shape, got {self.input_shape}"
            )
        if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            # an even kernel has no centre pixel: "same" padding would be asymmetric
            raise ValueError(f"kernel_size: expected a positive odd integer, got {kernel_size!r}")
        activation = check_activation(activation, E2CNN_ACTIVATIONS)
        self.group = e2cnn_group(group)
        self.channels = channels

        with _quiet_e2cnn():
            self.gspace = gspace_of(self.group)  # ImportError naming the fix without e2cnn
        from e2cnn import nn as enn

        from invreg.models._e2cnn_compat import patch_e2cnn

        patch_e2cnn()
        with _quiet_e2cnn():
            self.in_type = enn.FieldType(
                self.gspace, self.input_shape[0] * [self.gspace.trivial_repr]
            )
            field_type = self.in_type
            size = self.input_shape[1]
            blocks = []
            for i, fields in enumerate(channels):
                out_type = enn.FieldType(self.gspace, fields * [self.gspace.regular_repr])
                layers: OrderedDict[str, nn.Module] = OrderedDict(
                    conv=enn.R2Conv(field_type, out_type, kernel_size, padding=kernel_size // 2)
                )
                if batch_norm:
                    layers["norm"] = enn.InnerBatchNorm(out_type)
                layers["activation"] = _equivariant_activation(activation, out_type)
                pool_kernel = 3 if size % 2 else 2
                if i < len(channels) - 1 and size >= pool_kernel:
                    # (size - kernel) % stride == 0: the windows mirror onto windows
                    layers["pool"] = enn.PointwiseMaxPool(out_type, pool_kernel, stride=2)
                    size = (size - pool_kernel) // 2 + 1
                blocks.append(enn.SequentialModule(layers))
                field_type = out_type
            self.blocks = nn.Sequential(*blocks)
            self.group_pool = enn.GroupPooling(field_type)
        self.pool = GlobalMeanPool()
        self.head = nn.Linear(channels[-1], num_classes)
        for module in self.modules():
            if isinstance(module, enn.R2Conv):
                module.register_state_dict_post_hook(_drop_filter_cache)
                module.register_load_state_dict_pre_hook(_skip_filter_cache)
                module.register_load_state_dict_post_hook(_rebuild_filter_cache)

    def _features(self, x: Tensor) -> Tensor:
        from e2cnn.nn import GeometricTensor

        h = GeometricTensor(x, self.in_type)
        for block in self.blocks:
            h = block(h)
        invariant = self.group_pool(h).tensor  # [B, channels[-1], H', W']
        return self.pool(invariant)

    def train(self, mode: bool = True) -> E2CNN:
        # R2Conv.train(False) expands its filter once, as a buffer still attached to the graph
        # of `weights`: the first backward in eval mode frees that graph and the second fails
        # ("backward through the graph a second time"), e.g. a second saliency map. Detach it.
        with _quiet_e2cnn():
            super().train(mode)
        if not mode:
            for module in self.modules():
                _detach_filter_cache(module)
        return self

    def extra_repr(self) -> str:
        return f"group={self.group!r}"


def _equivariant_activation(name: str, field_type) -> nn.Module:
    from e2cnn import nn as enn

    if name == "relu":
        return enn.ReLU(field_type, inplace=True)
    if name == "elu":
        return enn.ELU(field_type, inplace=True)
    return enn.PointwiseNonLinearity(field_type, f"p_{name}")


# --------------------------------------------------------------- mode-independent state dicts
_FILTER_CACHE = ("filter", "expanded_bias")


def _detach_filter_cache(module: nn.Module) -> None:
    for name in _FILTER_CACHE:
        cached = module._buffers.get(name)
        if cached is not None and cached.requires_grad:
            module.register_buffer(name, cached.detach())


def _drop_filter_cache(module, state_dict, prefix, local_metadata) -> None:
    """state_dict post-hook: leave out the eval-mode filter cache (derived from ``weights``)."""
    for name in _FILTER_CACHE:
        state_dict.pop(prefix + name, None)


def _skip_filter_cache(module, state_dict, prefix, *args) -> None:
    """load pre-hook: ignore a stored cache; feed the module its own so no key is missing."""
    for name in _FILTER_CACHE:
        current = module._buffers.get(name)
        if current is None:
            state_dict.pop(prefix + name, None)
        else:
            state_dict[prefix + name] = current


def _rebuild_filter_cache(module, incompatible_keys) -> None:
    """load post-hook: in eval mode, rebuild the cache from the weights just loaded."""
    if module.training:
        return
    with torch.no_grad(), _quiet_e2cnn():
        weight_filter, bias = module.expand_parameters()
    module.register_buffer("filter", weight_filter)
    if bias is not None:
        module.register_buffer("expanded_bias", bias)

"""invreg's groups in e2cnn: the gspace of a group, the fibre element of a group element, and
the action of a group element on an e2cnn ``GeometricTensor``.

This is the one place that knows how the two libraries line up:

* **gspaces** (:func:`gspace_of`): ``Rotations(n)`` ↔ ``Rot2dOnR2(n)`` (``TrivialOnR2`` for
  ``n = 1``); ``Dihedral(n)`` ↔ ``FlipRot2dOnR2(n)`` (``Flip2dOnR2`` for ``n = 1``) with ``n = 1``
  or even; one-axis ``Flips`` ↔ ``Flip2dOnR2``; ``Flips`` along both axes ↔ ``FlipRot2dOnR2(2)``
  (a top–bottom mirror is a left–right mirror followed by a half turn).
* **the mirror axis**: e2cnn names a reflection by the angle of its mirror line.
  :data:`MIRROR_AXIS` ``= π/2`` (a vertical line) is the left–right mirror that ``Dihedral``
  and ``Flips("horizontal")`` apply (it reverses the width axis); ``0`` is the top–bottom
  mirror of ``Flips("vertical")``. ``FlipRot2dOnR2`` reflects about ``π/2``.
* **fibre elements** (:func:`fibre_element`): rotation ``g`` of ``Rotations(n)`` (``360·g/n``
  degrees counter-clockwise) ↔ ``g·N/n`` of ``C_N`` (a multiple of ``360/N`` degrees), or the
  angle in radians for ``SO(2)``; element ``r + n·s`` of ``Dihedral(n)`` (mirror if ``s``, then
  rotate by ``r``) ↔ ``(s, r·N/n)`` of ``D_N``. Both act on the pixel grid as the invreg group
  does (checked against :meth:`~invreg.groups.Group.act` in the tests).
* **the action** (:func:`act`): ``g`` acts on a ``GeometricTensor`` as its field type says —
  the gspace's ``featurefield_action``: the pixels move and each field's channels transform by
  its representation — in the tensor's own dtype (e2cnn's ``transform`` returns float32).

e2cnn is optional here: importing this module does not import it; the functions that need it
raise ``ImportError`` naming the fix when it is missing.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from invreg.groups.base import Group
from invreg.groups.flips import Flips
from invreg.groups.rotations import ContinuousRotations, Dihedral, Rotations

#: e2cnn's angle of the mirror line of invreg's left–right mirror (a vertical line: π/2)
MIRROR_AXIS = math.pi / 2
#: e2cnn's mirror-line angle of each ``Flips`` axis
FLIP_AXES = {"horizontal": MIRROR_AXIS, "vertical": 0.0}

E2CNN_MISSING = (
    "e2cnn is not installed; it is needed for e2cnn gspaces and G-CNNs: pip install e2cnn"
)

GSPACE_GROUPS = "Rotations(n), Dihedral(n) with n = 1 or even n, and Flips (one axis or both)"


def require_e2cnn() -> Any:
    """The ``e2cnn`` package, imported on first use; ``ImportError`` naming the fix if missing."""
    try:
        import e2cnn
        import e2cnn.gspaces
        import e2cnn.nn  # noqa: F401  (GeometricTensor, FieldType)
    except ImportError as err:
        raise ImportError(E2CNN_MISSING) from err
    return e2cnn


def missing_gspace(group: Group) -> str | None:
    """Why ``group`` has no e2cnn gspace, or ``None`` if :func:`gspace_of` maps it onto one
    (decided without importing e2cnn)."""
    if isinstance(group, Dihedral) and group.n > 1 and group.n % 2:
        # e2cnn's D_n (n > 1) mirrors top-bottom whatever its `axis` argument; invreg's
        # Dihedral mirrors left-right. Both mirrors belong to D_n only when n is even.
        return (
            "for odd n > 1, e2cnn's reflection is not the left-right mirror that Dihedral(n) "
            "applies"
        )
    if isinstance(group, Rotations | Dihedral | Flips):
        return None
    return f"e2cnn gspaces exist for {GSPACE_GROUPS}"


def gspace_of(group: Group) -> Any:
    """The e2cnn ``GSpace`` whose fibre group acts on the plane as ``group`` acts on images.

    ``ValueError`` for a group with no such gspace (:func:`missing_gspace` says why);
    ``ImportError`` if e2cnn is missing.

    >>> type(gspace_of(Dihedral(4))).__name__, type(gspace_of(Flips("vertical"))).__name__
    ('FlipRot2dOnR2', 'Flip2dOnR2')
    """
    if not isinstance(group, Group):
        raise TypeError(f"group: expected an invreg Group, got {type(group).__name__}")
    reason = missing_gspace(group)
    if reason is not None:
        raise ValueError(f"{group!r} has no e2cnn gspace: {reason}")
    gspaces = require_e2cnn().gspaces
    if isinstance(group, Rotations):
        return gspaces.Rot2dOnR2(N=group.n) if group.n > 1 else gspaces.TrivialOnR2()
    if isinstance(group, Dihedral):
        return gspaces.FlipRot2dOnR2(N=group.n) if group.n > 1 else gspaces.Flip2dOnR2(MIRROR_AXIS)
    if len(group.axes) == 1:
        return gspaces.Flip2dOnR2(FLIP_AXES[group.axes[0]])
    return gspaces.FlipRot2dOnR2(N=2)


def fibre_element(group: Group, g: Tensor | int | float, gspace: Any) -> Any:
    """The element of ``gspace``'s fibre group that acts on images like ``group``'s element ``g``.

    Supported: ``Rotations`` / ``ContinuousRotations`` on rotation gspaces (``Rot2dOnR2(N)``:
    the rotation must be a multiple of 360°/N; ``SO(2)``: any angle), ``Dihedral`` on
    ``FlipRot2dOnR2(N)`` or ``Flip2dOnR2`` reflecting about :data:`MIRROR_AXIS`, and ``Flips``
    on the gspace :func:`gspace_of` gives it. Another pair raises ``NotImplementedError``; a
    rotation the fibre group lacks raises ``ValueError``.

    >>> fibre_element(Dihedral(4), 5, gspace_of(Dihedral(4)))  # mirror, then a quarter turn
    (1, 1)
    """
    fiber = gspace.fibergroup
    kind = type(fiber).__name__
    axis = getattr(gspace, "axis", None)
    g = torch.as_tensor(g)
    if isinstance(group, Rotations | ContinuousRotations):
        degrees = float(group.angles(g)) if isinstance(group, Rotations) else float(g)
        if kind == "CyclicGroup" and axis is None:
            return _to_multiple(degrees, fiber.order(), group, gspace)
        if kind == "SO2":
            return math.radians(degrees)
    if isinstance(group, Dihedral) and axis is not None and math.isclose(axis, MIRROR_AXIS):
        r, s = int(g) % group.n, int(g) // group.n
        if kind == "DihedralGroup":
            return (s, _to_multiple(360.0 * r / group.n, fiber.rotation_order, group, gspace))
        if kind == "CyclicGroup":  # Flip2dOnR2: the mirror alone
            _to_multiple(360.0 * r / group.n, 1, group, gspace)
            return s
    if isinstance(group, Flips) and axis is not None:
        if len(group.axes) == 1 and kind == "CyclicGroup":
            if math.isclose(axis, FLIP_AXES[group.axes[0]]):
                return int(g)
        elif len(group.axes) == 2 and kind == "DihedralGroup" and fiber.rotation_order == 2:
            if math.isclose(axis, MIRROR_AXIS):
                bits = {name: int(g) >> i & 1 for i, name in enumerate(group.axes)}
                # top-bottom = half turn ∘ left-right, so both mirrors make the half turn
                return (bits["horizontal"] ^ bits["vertical"], bits["vertical"])
    raise NotImplementedError(
        f"no mapping from {group!r} to the fibre group {fiber} of {gspace}. Supported: "
        f"Rotations/ContinuousRotations on Rot2dOnR2, Dihedral on FlipRot2dOnR2 or Flip2dOnR2 "
        f"(mirror axis π/2), Flips on the gspace gspace_of(group) gives."
    )


def _to_multiple(degrees: float, order: int, group: Group, gspace: Any) -> int:
    steps = degrees * order / 360.0
    if not math.isclose(steps, round(steps), abs_tol=1e-6):
        raise ValueError(
            f"{group!r}: a rotation by {degrees:g}° is not an element of {gspace}'s fibre group "
            f"(multiples of {360.0 / order:g}°)"
        )
    return int(round(steps)) % order


def is_geometric_tensor(value: Any) -> bool:
    """Whether ``value`` is an e2cnn ``GeometricTensor`` (checked without importing e2cnn)."""
    return type(value).__name__ == "GeometricTensor" and hasattr(value, "type")


def act(group: Group, tensor: Any, g: Tensor | int | float) -> Any:
    """``g·tensor`` for an e2cnn ``GeometricTensor``: its gspace's ``featurefield_action`` by the
    fibre element of ``g`` (:func:`fibre_element`), in the tensor's dtype and on its device.

    For a field of trivial representations this is ``group.act`` on the underlying image
    (exactly, for the groups that permute pixels); a regular field also permutes its channels.
    The tensor is read detached: no gradient flows through the action.
    """
    gspace = tensor.type.gspace
    values = tensor.tensor
    moved = gspace.featurefield_action(
        values.detach().cpu().numpy(), tensor.type.representation, fibre_element(group, g, gspace)
    )
    moved = torch.from_numpy(np.ascontiguousarray(moved)).to(values.device, values.dtype)
    return type(tensor)(moved, tensor.type)


__all__ = [
    "E2CNN_MISSING",
    "FLIP_AXES",
    "GSPACE_GROUPS",
    "MIRROR_AXIS",
    "act",
    "fibre_element",
    "gspace_of",
    "is_geometric_tensor",
    "missing_gspace",
    "require_e2cnn",
]

"""Group names, so a YAML config can say ``group: c4``, and a constructor's group argument."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from typing import Any

from invreg.config import build
from invreg.groups.base import Group
from invreg.groups.flips import Flips
from invreg.groups.rotations import ContinuousRotations, Dihedral, Rotations
from invreg.groups.shifts import CyclicShifts

# pattern -> (factory taking the regex match, description shown in errors)
_PATTERNS: list[tuple[str, Callable[[re.Match], Group], str]] = [
    (r"[cr](\d+)", lambda m: Rotations(int(m[1])), "c<n> or r<n>: Rotations(n), e.g. c4, r4"),
    (r"d(\d+)", lambda m: Dihedral(int(m[1])), "d<n>: Dihedral(n), e.g. d4"),
    (
        r"tx?(\d+)",
        lambda m: CyclicShifts(int(m[1]), dim=-1),
        "t<n> or tx<n>: CyclicShifts(n) along x, e.g. t3",
    ),
    (r"ty(\d+)", lambda m: CyclicShifts(int(m[1]), dim=-2), "ty<n>: CyclicShifts(n) along y"),
    (r"h?flip", lambda m: Flips(("horizontal",)), "flip or hflip: left-right mirror"),
    (r"vflip", lambda m: Flips(("vertical",)), "vflip: top-bottom mirror"),
    (r"flips", lambda m: Flips(("horizontal", "vertical")), "flips: both mirrors"),
    (r"so2", lambda m: ContinuousRotations(180.0), "so2: ContinuousRotations(180)"),
]

_EXAMPLES = ["c4", "r4", "c8", "d4", "t3", "tx3", "ty3", "flip", "hflip", "vflip", "flips", "so2"]


def group_names() -> list[str]:
    """Descriptions of the accepted group names."""
    return [desc for _, _, desc in _PATTERNS]


def get_group(group: str | Group) -> Group:
    """Resolve a group name (case-insensitive) to a :class:`Group`; a Group passes through.

    >>> get_group("c4")
    Rotations(n=4)
    >>> get_group("t3")
    CyclicShifts(n=3, shift=None, dim=-1)
    """
    if isinstance(group, Group):
        return group
    if not isinstance(group, str):
        raise TypeError(f"group: expected a name or a Group, got {type(group).__name__}")
    key = group.strip().lower()
    for pattern, factory, _ in _PATTERNS:
        match = re.fullmatch(pattern, key)
        if match:
            return factory(match)
    close = difflib.get_close_matches(key, _EXAMPLES, n=3)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(
        f"Unknown group name {group!r}.{hint} Valid names: " + "; ".join(group_names())
    )


def group_argument(argument: str, group: str | Group | Mapping[str, Any] | None) -> Group | None:
    """The group that a constructor's ``argument`` stands for; ``None`` stays ``None``.

    ``group`` is a :class:`Group`, a name (:func:`get_group`) or the ``class_path`` /
    ``init_args`` mapping a checkpoint or config stores (:func:`invreg.config.build`). A bad
    value raises ``ValueError`` naming ``argument`` (``TypeError`` from ``build`` for a mapping
    whose class is not a Group).

    >>> group_argument("augment_group", "c4")
    Rotations(n=4)
    >>> group_argument("augment_group", {"class_path": "invreg.groups.Dihedral",
    ...                                  "init_args": {"n": 2}})
    Dihedral(n=2)
    """
    if group is None:
        return None
    group = build(group, Group, argument)
    if not isinstance(group, str | Group):
        raise ValueError(
            f"{argument}: expected a group name such as 'c4', a Group or a class_path/init_args "
            f"mapping, got {type(group).__name__}"
        )
    try:
        return get_group(group)
    except ValueError as err:
        raise ValueError(f"{argument}: {err}") from err

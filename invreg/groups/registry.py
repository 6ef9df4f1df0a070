"""Short names for groups, so a YAML config can say ``group: c4``."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable

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

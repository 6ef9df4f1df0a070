"""Group actions on inputs: the only code in invreg that transforms a tensor."""

from invreg.groups.affine import Scalings, Translations
from invreg.groups.base import Group, LieGenerator
from invreg.groups.custom import FiniteGroup
from invreg.groups.flips import Flips
from invreg.groups.product import Product
from invreg.groups.registry import get_group, group_argument, group_names
from invreg.groups.rotations import ContinuousRotations, Dihedral, Rotations, rotate
from invreg.groups.shifts import CyclicShifts

__all__ = [
    "ContinuousRotations",
    "CyclicShifts",
    "Dihedral",
    "FiniteGroup",
    "Flips",
    "Group",
    "LieGenerator",
    "Product",
    "Rotations",
    "Scalings",
    "Translations",
    "get_group",
    "group_argument",
    "group_names",
    "rotate",
]

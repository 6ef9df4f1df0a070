"""One function per job for a group argument: ``invreg.groups.group_argument`` reads a
constructor's argument (data modules use it), ``E2CNN`` checks its group with
``invreg.models.gcnn.e2cnn_group``, a callback picks its group with
``invreg.callbacks.base.measured_group``. (All three were called ``resolve_group``.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from invreg.callbacks.base import measured_group
from invreg.data import DigitsDataModule
from invreg.groups import Dihedral, Rotations, group_argument
from invreg.models.gcnn import e2cnn_group

PACKAGE = Path(__file__).resolve().parents[2] / "invreg"


def test_group_argument_takes_none_a_name_a_group_and_a_config_mapping():
    assert group_argument("augment_group", None) is None
    assert group_argument("augment_group", "c4") == Rotations(4)
    d4 = Dihedral(4)
    assert group_argument("augment_group", d4) is d4
    stored = {"class_path": "invreg.groups.Rotations", "init_args": {"n": 2}}
    assert group_argument("augment_group", stored) == Rotations(2)


def test_group_argument_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"^transform_group: Unknown group name 'c5x'"):
        group_argument("transform_group", "c5x")
    with pytest.raises(ValueError, match=r"^transform_group: expected a group name such as 'c4', "
                                         r"a Group or a class_path/init_args mapping, got int"):
        group_argument("transform_group", 4)
    with pytest.raises(TypeError, match=r"^transform_group: 'builtins.int' is not a Group"):
        group_argument("transform_group", {"class_path": "builtins.int"})


def test_data_modules_read_their_groups_with_it():
    dm = DigitsDataModule(transform_group="c4", augment_group={
        "class_path": "invreg.groups.Rotations", "init_args": {"n": 2}})
    assert dm.transform_group == Rotations(4) and dm.augment_group == Rotations(2)
    with pytest.raises(ValueError, match=r"^augment_group: Unknown group name 'c5x'"):
        DigitsDataModule(augment_group="c5x")


def test_e2cnn_group_keeps_the_groups_e2cnn_supports():
    assert e2cnn_group("c8") == Rotations(8) and e2cnn_group("d2") == Dihedral(2)
    with pytest.raises(ValueError, match="E2CNN: group is missing"):
        e2cnn_group(None)
    with pytest.raises(ValueError, match=r"E2CNN supports rotations .*; got Dihedral\(n=3\)"):
        e2cnn_group("d3")
    with pytest.raises(ValueError, match=r"E2CNN supports rotations .*; got CyclicShifts\(n=3"):
        e2cnn_group("t3")


def test_measured_group_prefers_the_callbacks_own_group():
    class Module:
        group = Rotations(4)

    assert measured_group("so2", Module(), "OrbitConsistencyCallback") != Module.group
    assert measured_group(None, Module(), "OrbitConsistencyCallback") is Module.group
    with pytest.raises(ValueError, match="^DriftCallback: pass group="):
        measured_group(None, object(), "DriftCallback")


def test_no_two_functions_share_the_name_resolve_group():
    defining = [str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py")
                if "def resolve_group(" in path.read_text()]
    assert not defining, f"name the job instead (group_argument, e2cnn_group, ...): {defining}"

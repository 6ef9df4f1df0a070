"""Backbones: MLP, CNN, the weight-tied invariant MLP, e2cnn G-CNNs; invariance deviations;
``Augerino``, a wrapper averaging any classifier over rotations in a learned range.

Every backbone maps ``[B, *input_shape]`` to logits ``[B, num_classes]``, checks the input
shape, and exposes ``features(x)`` (the head's input) and named submodules for hooks.

``assert_invariant`` moved to :func:`invreg.testing.assert_invariant` (``model, group, x``);
the old name here raises ``TypeError`` naming it, for one release.
"""

from invreg.models.augerino import Augerino
from invreg.models.base import ACTIVATIONS, Backbone
from invreg.models.checks import assert_invariant as assert_invariant  # removed (docstring)
from invreg.models.checks import invariance_deviations, max_invariance_deviation
from invreg.models.cnn import SmallCNN
from invreg.models.gcnn import E2CNN
from invreg.models.hyper import HyperCNN, InvarianceDescriptor
from invreg.models.mlp import MLP
from invreg.models.tied import OrbitPool, TiedMLP

__all__ = [
    "ACTIVATIONS",
    "Augerino",
    "E2CNN",
    "MLP",
    "Backbone",
    "HyperCNN",
    "InvarianceDescriptor",
    "OrbitPool",
    "SmallCNN",
    "TiedMLP",
    "invariance_deviations",
    "max_invariance_deviation",
]

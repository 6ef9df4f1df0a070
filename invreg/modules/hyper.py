"""Amortised invariance learning (HyperInvariances) in two modules, one per step.

Chavhan, Gouk, Stühmer, Hospedales (2022, arXiv 2207.08304). See :mod:`invreg.models.hyper`
for the hyper-network and the meaning of a descriptor, and ``docs/hyper.md`` for a walkthrough.

1. :class:`HyperUpstreamModule` (:mod:`invreg.modules.hyper_upstream`) pre-trains a
   :class:`~invreg.models.hyper.HyperCNN` over randomly sampled descriptors, with an
   invariance penalty between two augmentations of each input, and saves it in a checkpoint;
2. :class:`HyperDownstreamModule` (:mod:`invreg.modules.hyper_downstream`) loads that
   checkpoint by path, freezes the hyper-network, and learns a descriptor and a new head for a
   task; :class:`~invreg.callbacks.DescriptorTrajectoryCallback` logs how the descriptor moves.

What both share (logged metrics, step plumbing, the optimiser, reading an upstream checkpoint)
is in :mod:`invreg.modules.hyper_common`.
"""

from invreg.modules.hyper_common import load_upstream_backbone
from invreg.modules.hyper_downstream import HyperDownstreamModule
from invreg.modules.hyper_sensitivity import HyperSensitivityUpstreamModule
from invreg.modules.hyper_upstream import HyperUpstreamModule

__all__ = [
    "HyperDownstreamModule",
    "HyperSensitivityUpstreamModule",
    "HyperUpstreamModule",
    "load_upstream_backbone",
]

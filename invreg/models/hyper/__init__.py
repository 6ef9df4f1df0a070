"""Hyper-network backbones for amortised invariance learning (HyperInvariances).

Chavhan, Gouk, Stühmer, Hospedales (2022, arXiv 2207.08304): a hyper-network, conditioned on
a low-dimensional *invariance descriptor* ``d ∈ [0, 1]^k``, generates the weights of a feature
extractor. Pre-trained once over many descriptors (upstream), it spans a family of feature
extractors with different invariances; a new task then fits only ``d`` and a linear head.

Three files, read in this order:

* :mod:`~invreg.models.hyper.descriptor` — :class:`InvarianceDescriptor`, what the ``k``
  components of ``d`` mean (named transformations with a strength, sampled by the groups);
* :mod:`~invreg.models.hyper.layers` — :class:`HyperConv2d`, a convolution whose kernel is
  generated from an embedding of ``d``, and the block around it;
* :mod:`~invreg.models.hyper.cnn` — :class:`HyperCNN`, the assembly: embedding MLP, blocks,
  head.
"""

from invreg.models.hyper.cnn import FixedDescriptorCNN, HyperCNN
from invreg.models.hyper.descriptor import (
    DESCRIPTOR_COMPONENTS,
    DescriptorComponent,
    FlipComponent,
    InvarianceDescriptor,
    RotationComponent,
    ScaleComponent,
    TranslationComponent,
)
from invreg.models.hyper.layers import HyperBlock, HyperConv2d, StaticConv2d

__all__ = [
    "DESCRIPTOR_COMPONENTS",
    "DescriptorComponent",
    "FixedDescriptorCNN",
    "FlipComponent",
    "HyperBlock",
    "HyperCNN",
    "HyperConv2d",
    "InvarianceDescriptor",
    "RotationComponent",
    "ScaleComponent",
    "StaticConv2d",
    "TranslationComponent",
]

"""invreg: measure and enforce invariance of neural networks to groups of transformations."""

__version__ = "0.1.0"

"""The trajectory of a learned invariance descriptor, logged through whatever loggers a run has."""

from __future__ import annotations

import pytorch_lightning as pl
from torch import Tensor

from invreg.plotting import log_line_series


class DescriptorTrajectoryCallback(pl.Callback):
    """Follow the descriptor ``d ∈ [0, 1]^k`` that a
    :class:`~invreg.modules.HyperDownstreamModule` learns.

    * :attr:`history` — ``(global_step, [d_1, ..., d_k])`` after every training step of the
      current fit, in memory (any logger or none);
    * ``descriptor/<name>`` — every component at the end of every training epoch, through
      ``LightningModule.log``: one row per epoch in a CSV logger, a scalar per epoch in
      TensorBoard and W&B, and ``trainer.callback_metrics`` without a logger;
    * ``descriptor/trajectory`` — at the end of training, a W&B line plot of every component
      against the step, over the whole :attr:`history` (W&B loggers only, with
      ``step=trainer.global_step``).

    The module needs a ``descriptor`` tensor ``[k]`` and ``descriptor_names`` (``k`` names).
    """

    def __init__(self) -> None:
        self.history: list[tuple[int, list[float]]] = []
        self._names: tuple[str, ...] = ()

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        descriptor = getattr(pl_module, "descriptor", None)
        names = tuple(getattr(pl_module, "descriptor_names", ()))
        if not isinstance(descriptor, Tensor) or descriptor.ndim != 1 or (
            len(names) != descriptor.shape[0]
        ):
            raise TypeError(
                f"DescriptorTrajectoryCallback: expected a module with a learned descriptor "
                f"[k] and k descriptor_names (e.g. HyperDownstreamModule), got "
                f"{type(pl_module).__name__}"
            )
        self._names = names

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.history = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        values = pl_module.descriptor.detach().cpu().tolist()
        self.history.append((trainer.global_step, values))

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        values = pl_module.descriptor.detach()
        for name, value in zip(self._names, values.unbind(), strict=True):
            pl_module.log(f"descriptor/{name}", value, on_step=False, on_epoch=True)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.history:
            return
        steps = [step for step, _ in self.history]
        series = {name: [values[k] for _, values in self.history]
                  for k, name in enumerate(self._names)}
        log_line_series(trainer, "descriptor/trajectory", steps, series, trainer.global_step,
                        title="invariance descriptor", xname="step")

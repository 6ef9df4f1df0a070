"""A LightningModule's own random draws, reproducible and identical after resuming.

Lightning does not put the global RNG in checkpoints, and the global RNG is shared with
everything else in the process. A module that inherits :class:`RandomStreams` draws from
:attr:`~RandomStreams.random_generator` instead, a CPU ``torch.Generator`` reseeded before
every batch from

* training: ``(random_seed, rank, epoch, batch_idx)``: a fresh stream per batch and per
  distributed process, the same in a run resumed from a checkpoint (even mid-epoch);
* validation / test: ``(random_seed, rank, dataloader_idx, batch_idx)``: the same draws at
  every evaluation, so epochs are compared on the same transformed inputs, and the sanity
  check before training consumes nothing.

``random_seed`` is fixed at the first draw from ``torch.initial_seed()`` (the seed of
``seed_everything``) and saved in checkpoints. Draw on the CPU and move the result
(``group.sample(n, generator=g, device=x.device)``); one generator serves every device.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

import torch

from invreg.data.augment import derive_seed

#: checkpoint key of the module's stream state
CHECKPOINT_KEY = "invreg_random_streams"


class _Purpose(IntEnum):
    # leading key of the module's streams, apart from the data module's ``Stream`` keys
    UNBOUND = 16
    TRAIN = 17
    VALIDATION = 18
    TEST = 19


class RandomStreams:
    """Mixin for a LightningModule: the module's random draws as seeded, resumable streams.

    Put it before ``pl.LightningModule`` in the bases and draw from
    :attr:`random_generator`::

        class MyModule(RandomStreams, pl.LightningModule):
            def training_step(self, batch, batch_idx):
                g = self.group.sample(len(batch[0]), generator=self.random_generator)

    A subclass that overrides one of the hooks below calls ``super()`` to keep the streams.
    """

    _random_seed: int | None = None
    _random_generator: torch.Generator | None = None

    @property
    def random_seed(self) -> int:
        """The seed of every stream of this module (fixed at first use, kept in checkpoints)."""
        if self._random_seed is None:
            self._random_seed = torch.initial_seed()
        return self._random_seed

    @property
    def random_generator(self) -> torch.Generator:
        """The CPU generator of the current batch's draws.

        Outside a Trainer (no batch hooks) it is one stream that advances with each draw.
        """
        if self._random_generator is None:
            self._random_generator = torch.Generator()
            self._reseed(_Purpose.UNBOUND)
        return self._random_generator

    def _reseed(self, *key: int) -> None:
        self.random_generator.manual_seed(derive_seed(self.random_seed, *key))

    def _rank(self) -> int:
        trainer = getattr(self, "_trainer", None)
        return trainer.global_rank if trainer is not None else 0

    # ------------------------------------------------------------------ Lightning hooks
    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        epoch = self.current_epoch  # type: ignore[attr-defined]
        self._reseed(_Purpose.TRAIN, self._rank(), epoch, batch_idx)
        super().on_train_batch_start(batch, batch_idx)  # type: ignore[misc]

    def on_validation_batch_start(
        self, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self._reseed(_Purpose.VALIDATION, self._rank(), dataloader_idx, batch_idx)
        super().on_validation_batch_start(batch, batch_idx, dataloader_idx)  # type: ignore[misc]

    def on_test_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._reseed(_Purpose.TEST, self._rank(), dataloader_idx, batch_idx)
        super().on_test_batch_start(batch, batch_idx, dataloader_idx)  # type: ignore[misc]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = {"seed": self.random_seed}
        super().on_save_checkpoint(checkpoint)  # type: ignore[misc]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get(CHECKPOINT_KEY)
        if state is not None:  # checkpoints written before the streams existed have none
            self._random_seed = int(state["seed"])
            self._random_generator = None
        super().on_load_checkpoint(checkpoint)  # type: ignore[misc]

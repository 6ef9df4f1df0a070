"""The ``invreg`` command: ``invreg fit|validate|test|predict --config configs/X.yaml``."""

from __future__ import annotations

import os

import pytorch_lightning as pl
from pytorch_lightning.cli import LightningCLI


class InvregCLI(LightningCLI):
    """LightningCLI in subclass mode, with the data module's ``num_classes`` linked to the model.

    Any LightningModule / LightningDataModule can be named by ``class_path`` in the YAML. The
    config of each run is saved to its log directory (overwriting a previous one).
    """

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments(
            "data.num_classes", "model.init_args.num_classes", apply_on="instantiate"
        )


def main(args: list[str] | None = None, run: bool = True) -> InvregCLI:
    """Entry point; ``args`` lets tests and notebooks drive the CLI in-process."""
    # W&B stays on the local disk unless the user chooses otherwise
    os.environ.setdefault("WANDB_MODE", "offline")
    return InvregCLI(
        pl.LightningModule,
        pl.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
        auto_configure_optimizers=False,
    )


if __name__ == "__main__":
    main()

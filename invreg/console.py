"""What the ``invreg`` console script shows while it runs: Lightning's and W&B's messages that
say something to an invreg user, and no noise.

Applied by :func:`invreg.cli.main` only (importing invreg, or calling
:func:`invreg.cli.run_cli` from a notebook, changes no warning filter and no logger):

* :func:`quiet_console` drops these exact messages, for the duration of the command: Lightning's
  "💡 Tip" adverts (litlogger, litmodels); torch's ``isinstance(treespec, LeafSpec)``
  deprecation, raised inside Lightning; Lightning's "number of training batches is smaller
  than the logging interval" (invreg reports epoch values; ``train/…_step`` values are logged
  every ``log_every_n_steps`` steps, whatever the epoch's length); in ``validate``/``test``,
  ``ModelCheckpoint``'s "The dirpath has changed" (the evaluation has a run folder of its
  own and writes no checkpoint). Every other warning stays.
* :func:`use_line_progress`: when stdout is not a terminal (a log file, a pipe, CI), Lightning's
  TQDM bar (a ``\\r`` redraw per batch) is replaced by :class:`EpochLinePrinter`, one plain line
  per epoch. In a terminal the bar stays. A ``RichProgressBar`` or a subclass of
  ``TQDMProgressBar`` named in the config is kept as it is.
* :func:`finish_wandb_run`: the W&B run is finished before the process exits, so that W&B's
  closing lines (``wandb sync ...``) come without ANSI colour codes in a log file (W&B colours
  them when it finishes the run at exit).

The W&B "anonymous setting has no effect" warning and "git root ... does not exist" are not
filtered: :class:`invreg.cli.InvregCLI` stops their cause (:func:`prepare_wandb_logger`).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ProgressBar, TQDMProgressBar

#: ``(message regex, category)`` of the Python warnings :func:`quiet_console` drops
NOISY_WARNINGS: tuple[tuple[str, type[Warning]], ...] = (
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning),
    (r"The number of training batches \(\d+\) is smaller than the logging interval", Warning),
)
#: the same, for ``validate``, ``test`` and ``predict``: a checkpoint's ``ModelCheckpoint`` state
#: names the folder of the fit that wrote it, and the evaluation's run folder is a new one
#: (nothing is lost: an evaluation writes no checkpoint)
NOISY_EVALUATION_WARNINGS: tuple[tuple[str, type[Warning]], ...] = (
    (r"The dirpath has changed from .* won't be reloaded", Warning),
)
#: start of the Lightning log messages :func:`quiet_console` drops
NOISY_LOG_PREFIXES: tuple[str, ...] = ("💡 Tip:",)
# the loggers Lightning's rank_zero_info writes through (which one depends on import order)
_LIGHTNING_LOGGERS = ("pytorch_lightning.utilities.rank_zero",
                      "lightning_fabric.utilities.rank_zero",
                      "lightning_utilities.core.rank_zero")


class _DropMessages(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(NOISY_LOG_PREFIXES)


@contextlib.contextmanager
def quiet_console(subcommand: str | None = None) -> Iterator[None]:
    """Drop :data:`NOISY_WARNINGS` (and for ``subcommand`` ``validate``, ``test`` or ``predict``
    :data:`NOISY_EVALUATION_WARNINGS`) and :data:`NOISY_LOG_PREFIXES` inside the block; the
    warning filters and the loggers are as before afterwards."""
    noisy = NOISY_WARNINGS
    if subcommand in ("validate", "test", "predict"):
        noisy += NOISY_EVALUATION_WARNINGS
    drop = _DropMessages()
    loggers = {logging.getLogger(name) for name in _LIGHTNING_LOGGERS}
    rank_zero = sys.modules.get("lightning_utilities.core.rank_zero")
    if isinstance(getattr(rank_zero, "log", None), logging.Logger):
        loggers.add(rank_zero.log)  # the logger rank_zero_info uses now
    with warnings.catch_warnings():
        for message, category in noisy:
            warnings.filterwarnings("ignore", message=message, category=category)
        for logger in loggers:
            logger.addFilter(drop)
        try:
            yield
        finally:
            for logger in loggers:
                logger.removeFilter(drop)


def is_terminal(stream=None) -> bool:
    """Whether ``stream`` (default ``sys.stdout``) is a terminal."""
    stream = sys.stdout if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class EpochLinePrinter(ProgressBar):
    """The progress display for a log file: one line per training epoch on stdout, no ``\\r``
    and no colours, e.g. ``epoch 3/20  train/loss_epoch 0.41  train/acc_epoch 0.88  val/loss
    0.39  val/acc 0.9  (1.4 s)``: the values the module shows on a progress bar (its
    ``prog_bar=True`` epoch values), under their logged names. Nothing for validate, test and
    predict (their results table follows).

    An epoch's line is printed when the next epoch starts (or training ends): Lightning runs
    the callbacks' ``on_train_epoch_end`` before the module's, which logs the epoch's values.
    """

    def __init__(self) -> None:
        super().__init__()
        self._enabled = True
        self._epoch: int | None = None
        self._started = 0.0

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._print_epoch(trainer)
        self._epoch, self._started = trainer.current_epoch, time.perf_counter()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._print_epoch(trainer)

    def _print_epoch(self, trainer: pl.Trainer) -> None:
        if self._epoch is None:
            return
        epoch, self._epoch = self._epoch, None
        if not (self._enabled and trainer.is_global_zero):
            return
        print(epoch_line(epoch, trainer.max_epochs, trainer.progress_bar_metrics,
                         time.perf_counter() - self._started), flush=True)


def epoch_line(epoch: int, max_epochs: int | None, metrics: dict, seconds: float) -> str:
    """``epoch 3/20  train/loss_epoch 0.41  val/acc 0.9  (1.4 s)``: ``epoch`` counted from 0,
    the values of ``metrics`` except per-step ones (``…_step``), ``train/`` first.

    >>> epoch_line(2, 20, {"val/acc": 0.9, "train/loss_step": 0.5, "train/loss_epoch": 0.41}, 1.4)
    'epoch 3/20  train/loss_epoch 0.41  val/acc 0.9  (1.4 s)'
    """
    total = f"/{max_epochs}" if max_epochs is not None and max_epochs > 0 else ""
    names = sorted((name for name in metrics if not name.endswith("_step")),
                   key=lambda name: not name.startswith("train/"))
    values = "".join(f"  {name} {float(metrics[name]):.4g}" for name in names)
    return f"epoch {epoch + 1}{total}{values}  ({seconds:.1f} s)"


def use_line_progress(trainer: pl.Trainer, stream=None) -> bool:
    """Replace the trainer's TQDM progress bar by an :class:`EpochLinePrinter` when ``stream``
    (default ``sys.stdout``, where the bar writes) is not a terminal; return whether it did.
    A disabled bar (``enable_progress_bar: false``), a ``RichProgressBar`` and a subclass of
    ``TQDMProgressBar`` are left alone."""
    bar = trainer.progress_bar_callback
    if type(bar) is not TQDMProgressBar or is_terminal(stream):
        return False
    callbacks = trainer.callbacks
    callbacks[callbacks.index(bar)] = EpochLinePrinter()
    return True



def prepare_wandb_logger(logger: object, console: bool = False) -> None:
    """Before a ``WandbLogger`` starts its run: Lightning passes ``anonymous=None`` to
    ``wandb.init`` whatever the config says, and W&B warns "The anonymous setting has no effect"
    for any value passed, so an unset ``anonymous`` is not passed (one the config sets is, and
    W&B's warning about it stays); the logger's ``save_dir`` is created, else W&B warns that the
    "git root ... does not exist". With ``console=True`` (the console script) W&B's end-of-run
    panel of sparklines and summary values is off (``max_end_of_run_history_metrics`` and
    ``max_end_of_run_summary_metrics`` 0, unless the config's ``settings`` set them): invreg's
    table shows the run's metrics; W&B's ``wandb sync`` lines stay."""
    from pytorch_lightning.loggers import WandbLogger

    if not isinstance(logger, WandbLogger) or logger._experiment is not None:
        return
    init = getattr(logger, "_wandb_init", None)  # the keyword arguments of wandb.init
    if not isinstance(init, dict):
        return
    if "anonymous" in init and init["anonymous"] is None:
        del init["anonymous"]
    if logger.save_dir:
        Path(logger.save_dir).mkdir(parents=True, exist_ok=True)
    if console:
        if init.get("settings") is None:  # the CLI passes every wandb.init argument
            init["settings"] = {}
        settings = init["settings"]
        if isinstance(settings, dict):  # a wandb.Settings of the config's own is left alone
            for name in ("max_end_of_run_history_metrics", "max_end_of_run_summary_metrics"):
                settings.setdefault(name, 0)


def finish_wandb_run(exit_code: int = 0) -> None:
    """Finish the W&B run this process started, if any (``wandb.finish``)."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish(exit_code=exit_code)

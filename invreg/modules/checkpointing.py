"""Hyper-parameters that rebuild a module from its checkpoint alone, and finite-loss checks.

A LightningModule's checkpoint stores its constructor arguments (``hyper_parameters``);
``load_from_checkpoint`` calls the constructor with them. invreg modules take objects
(a backbone, a group, an invariance loss), which are stored as their plain
``class_path``/``init_args`` description (:mod:`invreg.config`) so that

* the checkpoint loads with ``torch.load(weights_only=True)`` (no pickled objects), and
* ``Module.load_from_checkpoint(path)`` rebuilds them in a fresh process, without the config.

A checkpoint written by the ``invreg`` CLI already holds the config's description; it is kept.
An object with no plain description (a user's own ``nn.Module`` that does not inherit
:class:`~invreg.config.RecordsInit`, a :class:`~invreg.groups.FiniteGroup` built from
functions, a custom loss) is stored as a mark (:data:`NOT_SAVED` and its ``repr``), never
replaced by the constructor's default: loading without it raises :func:`restored`'s error,
which says to pass it: ``InvarianceModule.load_from_checkpoint(path, group=my_group)``.

:class:`CheckedCheckpoints`, a base of every invreg LightningModule, checks a checkpoint file
whole before it is used (:func:`invreg.checkpoints.verify_checkpoint`: empty, truncated or
corrupted files are refused) and refuses to resume training from a checkpoint saved in the
middle of an epoch (:func:`check_epoch_end`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from numbers import Real
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.trainer.states import TrainerFn
from torch import Tensor

from invreg.checkpoints import verify_ckpt_path
from invreg.config import try_config

#: the start of the hyper-parameter stored for an object with no plain description
NOT_SAVED = "<not saved in the checkpoint>"


def not_saved(value: object) -> str | None:
    """What a :data:`NOT_SAVED` mark stands for (``"a MyNet"``), or ``None`` when ``value`` is
    not such a mark."""
    if isinstance(value, str) and value.startswith(NOT_SAVED):
        return value[len(NOT_SAVED):].strip()
    return None


def restored(name: str, value: object) -> object:
    """``value``, unless it is the :data:`NOT_SAVED` mark of an object the checkpoint could not
    describe: then ``ValueError`` naming the argument, the object and the fix."""
    what = not_saved(value)
    if what is not None:
        raise ValueError(
            f"{name}: the checkpoint could not store {what} (it has no plain description); "
            f"pass it again: load_from_checkpoint(path, {name}=...)"
        )
    return value


def save_plain_hyperparameters(module: pl.LightningModule, objects: tuple[str, ...]) -> None:
    """``module.save_hyperparameters()`` with each argument in ``objects`` stored as its plain
    description, or as the :data:`NOT_SAVED` mark when it has none (so loading never falls
    back to the default silently). Call it from the module's ``__init__``."""
    with warnings.catch_warnings():
        # the objects are replaced by descriptions right below, never pickled
        warnings.filterwarnings("ignore", message=r".*is an instance of `nn.Module`.*")
        module.save_hyperparameters(frame=_caller_frame())
    for name in objects:
        value = module.hparams.get(name)
        if value is None or isinstance(value, str | Real | Mapping | list):
            continue  # a name, a number or the CLI's own description: already plain
        config = try_config(value)
        module.hparams[name] = config if config is not None else f"{NOT_SAVED} {_short(value)}"


def _short(value: object) -> str:
    """A one-line name for an object: a module's class (its ``repr`` spans lines), else the
    ``repr`` cut to 80 characters."""
    if isinstance(value, torch.nn.Module):
        return f"a {type(value).__name__}"
    text = " ".join(repr(value).split())
    return text if len(text) <= 80 else text[:77] + "..."


def _caller_frame():
    import inspect

    frame = inspect.currentframe()
    assert frame is not None and frame.f_back is not None and frame.f_back.f_back is not None
    return frame.f_back.f_back


class CheckedCheckpoints:
    """Mixin for a LightningModule (before ``pl.LightningModule`` in the bases): checkpoint
    files are verified before they are used, and training resumes only at an epoch's end.

    * ``Module.load_from_checkpoint(path)`` checks the file whole first
      (:func:`invreg.checkpoints.verify_checkpoint`);
    * ``trainer.fit / validate / test / predict(ckpt_path=...)`` check the file too, before
      the first batch (Lightning has read it by then, but ``torch.load`` does not check the
      archive's CRCs, so changed weight bytes would load without a word);
    * ``trainer.fit(ckpt_path=...)`` refuses a checkpoint saved in the middle of an epoch
      (:func:`check_epoch_end`).

    * a checkpoint saved from Python (``trainer.save_checkpoint``, ``ModelCheckpoint`` in a
      script) names the classes of the module and of the trainer's data module
      (``_class_path`` beside their stored arguments, as ``invreg fit`` writes them), so
      ``invreg report`` rebuilds both from the file alone.

    A subclass that overrides ``on_load_checkpoint`` or ``on_save_checkpoint`` calls
    ``super()``.
    """

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        trainer = getattr(self, "_trainer", None)
        datamodule = getattr(trainer, "datamodule", None) if trainer is not None else None
        for key, owner in (("hyper_parameters", self),
                           ("datamodule_hyper_parameters", datamodule)):
            stored = checkpoint.get(key)
            if owner is not None and isinstance(stored, dict) and "_class_path" not in stored:
                stored["_class_path"] = f"{type(owner).__module__}.{type(owner).__qualname__}"
        super().on_save_checkpoint(checkpoint)  # type: ignore[misc]

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path, *args, **kwargs):
        """Lightning's ``load_from_checkpoint``, after :func:`~invreg.checkpoints.verify_checkpoint`
        of a local ``checkpoint_path``."""
        verify_ckpt_path(checkpoint_path, "checkpoint_path")
        return super().load_from_checkpoint(checkpoint_path, *args, **kwargs)  # type: ignore[misc]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        trainer = getattr(self, "_trainer", None)
        if trainer is not None:
            verify_ckpt_path(trainer.ckpt_path)
            if trainer.state.fn == TrainerFn.FITTING:
                check_epoch_end(checkpoint, trainer.ckpt_path)
        super().on_load_checkpoint(checkpoint)  # type: ignore[misc]


def check_epoch_end(checkpoint: Mapping[str, Any], ckpt_path: object = None) -> None:
    """``ValueError`` if ``checkpoint`` was saved in the middle of a training epoch (e.g. by
    ``ModelCheckpoint(every_n_train_steps=...)``, ``val_check_interval < 1`` or an interrupt)
    and its training loader cannot resume there.

    Resuming such a checkpoint is not exact: Lightning restarts the epoch's data from its first
    batch while counting batches from where the checkpoint stopped, so the rest of the epoch
    trains on other batches than the uninterrupted run (and other random draws for them).
    A checkpoint saved at an epoch's end resumes bit for bit. A loader that saves its position
    (``state_dict`` / ``load_state_dict``, kept by Lightning under the fit loop's
    ``combined_loader``) is let through; so is a checkpoint with no loop state.
    """
    fit_loop = (checkpoint.get("loops") or {}).get("fit_loop") or {}
    progress = fit_loop.get("epoch_loop.batch_progress")
    if not isinstance(progress, Mapping):
        return
    batches = (progress.get("current") or {}).get("ready", 0)
    if not batches or progress.get("is_last_batch", True):
        return
    if (fit_loop.get("state_dict") or {}).get("combined_loader"):
        return
    where = f"{str(ckpt_path)!r}" if ckpt_path is not None else "the checkpoint"
    # the epoch of those batches (``checkpoint["epoch"]`` already counts it as done when the
    # run stopped at max_steps)
    started = ((fit_loop.get("epoch_progress") or {}).get("current") or {}).get("started")
    epoch = started - 1 if isinstance(started, int) and started > 0 else checkpoint.get("epoch")
    raise ValueError(
        f"ckpt_path: {where} was saved in the middle of epoch {epoch} (after "
        f"{batches} of its training batches), where training cannot resume exactly; resume from "
        f"a checkpoint saved at an epoch's end (ModelCheckpoint's default, or "
        f"every_n_epochs=1 / save_on_train_epoch_end=True instead of every_n_train_steps)"
    )


def check_weight(name: str, value: object) -> float:
    """A finite number ``>= 0`` as a float, else ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f"{name} must be a number >= 0, got {value!r} ({type(value).__name__})")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def check_nonfinite_policy(value: object) -> str:
    """``on_nonfinite_loss``: ``"raise"`` or ``"skip"``, else ``ValueError``."""
    if value not in ("raise", "skip"):
        raise ValueError(f"on_nonfinite_loss must be 'raise' or 'skip', got {value!r}")
    return value


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or infinite: the run diverged."""


def check_finite_inputs(inputs: Tensor, stage: str) -> None:
    """``ValueError`` if a floating-point batch holds NaN or Inf, whatever the loss does with
    them (a max-pool or a clamp can hide them from the loss).

    The batch is screened by its sum (NaN and Inf survive a sum; one reduction, about 3 % of a
    full ``isfinite`` scan) and scanned element by element only when the sum is not finite,
    which a large finite batch can also cause by overflow.
    """
    if not inputs.is_floating_point():
        return
    total = inputs.sum(dtype=torch.float32 if inputs.element_size() < 4 else None)
    if bool(torch.isfinite(total)) or bool(torch.isfinite(inputs).all()):
        return
    raise ValueError(
        f"{stage} batch contains NaN or Inf inputs: clean or filter the data (e.g. "
        f"torch.nan_to_num) before training"
    )


def check_finite_loss(module: pl.LightningModule, stage: str, batch_idx: int,
                      terms: dict[str, Tensor]) -> bool:
    """``True`` if every loss term is finite; otherwise, by ``module.on_nonfinite_loss``,
    raise :class:`NonFiniteLossError` naming the step and every term's value (``"raise"``)
    or warn and return ``False`` so the caller skips the batch (``"skip"``, training only).

    One host synchronisation per call: the price of not training on NaN.
    """
    values = torch.stack([t.detach().float() for t in terms.values()])
    if bool(torch.isfinite(values).all()):
        return True
    trainer = module._trainer
    where = (f"epoch {module.current_epoch}, global step {module.global_step}, "
             f"{stage} batch {batch_idx}") if trainer is not None else f"{stage} batch {batch_idx}"
    listed = ", ".join(f"{name}={value:.6g}" for name, value in
                       zip(terms, values.tolist(), strict=True))
    message = f"non-finite loss at {where}: {listed}"
    if stage == "train" and module.on_nonfinite_loss == "skip":
        warnings.warn(f"skipping the batch: {message}", RuntimeWarning, stacklevel=2)
        return False
    raise NonFiniteLossError(
        f"{message}. The run diverged: lower the learning rate or invariance_weight, or pass "
        f"on_nonfinite_loss='skip' to skip such training batches"
    )

"""The weight ν of the invariance term in ``loss = task loss + ν · I``.

* :class:`FixedWeight` — ν stays as given; a plain number passed as ``invariance_weight``
  means one.
* :class:`DualAscentWeight` — ν learned: the Lagrange multiplier of the constraint ``I ≤ ε``,
  updated after every training batch from that batch's measured ``I``
  (``docs/target.md``: the update rules, their defaults and how they were measured).

:func:`as_invariance_weight` reads the module's ``invariance_weight`` argument. Checkpoints
written when the target took four arguments of the module (``invariance_target``,
``target_metric``, ``target_update``, ``target_lr``) are rewritten by
:func:`upgrade_checkpoint` as they load.
"""

from __future__ import annotations

import inspect
import io
import math
import os
import warnings
from collections.abc import Callable, Mapping
from numbers import Real
from typing import Any, Literal

import torch
from torch import Tensor, nn

from invreg.checkpoints import verify_ckpt_path
from invreg.config import RecordsInit, build
from invreg.functional.invariance import orbit_pair_errors
from invreg.losses import InvarianceLoss, ModelInvarianceLoss
from invreg.modules.checkpointing import check_weight

#: ``metric`` names: the orbit metric's name -> its pair error on the training logits
#: (:data:`invreg.functional.PAIR_ERRORS`); ``"loss"`` is the invariance loss term itself
TARGET_METRICS = {"LI": "logit_l2", "LI_normalized": "normalized_logit_l2",
                  "DI": "predictive_kl", "loss": None}
#: ``update`` -> the default ``lr`` η
DEFAULT_TARGET_LR = {"multiplicative": 0.02, "additive": 1.0}
#: the multiplicative update's ``|log(I/ε)|`` is clipped here: one batch moves ν by at most a
#: factor ``exp(η·3)`` (1.06 at η = 0.02), also when ``I = 0`` exactly
LOG_RATIO_CLIP = 3.0


class InvarianceWeight(nn.Module, RecordsInit):
    """ν, the weight of the invariance error. ``float(weight)`` is its current value.

    A subclass that learns ν sets :attr:`learned`: the training step then measures the
    invariance error (:meth:`measure`) and passes it to :meth:`step` after the batch.
    """

    #: whether ν changes during training (the step measures ``I`` and calls :meth:`step`)
    learned: bool = False

    def current(self) -> float | Tensor:
        """The ν a training batch is weighted with."""
        raise NotImplementedError

    def __float__(self) -> float:
        return float(self.current())

    def check_loss(self, loss: InvarianceLoss) -> None:
        """``ValueError`` when ν cannot be used with ``loss`` (default: any loss serves)."""

    def measure(self, loss_value: Tensor, loss: InvarianceLoss, orbit_logits: Tensor) -> Tensor:
        """The batch's invariance error that :meth:`step` reads (learned weights only)."""
        raise NotImplementedError

    def step(self, measured: Tensor) -> None:
        """Update ν after a training batch from its measured error (learned weights only)."""
        raise NotImplementedError


class FixedWeight(InvarianceWeight):
    """ν fixed at ``value ≥ 0``; ``invariance_weight=0.5`` means ``FixedWeight(0.5)``.

    >>> float(FixedWeight(0.5))
    0.5
    """

    def __init__(self, value: float = 1.0) -> None:
        super().__init__()
        self.value = check_weight("invariance_weight", value)

    def current(self) -> float:
        return self.value

    def extra_repr(self) -> str:
        return f"{self.value:g}"


class DualAscentWeight(InvarianceWeight):
    """ν learned by dual ascent so that the invariance error ``I`` settles at ``target``.

    ν is the Lagrange multiplier of ``I ≤ ε``, starting at ``initial`` and updated after every
    training batch from that batch's ``I`` (detached; the mean over processes under DDP):

    * ``update="multiplicative"`` (default): ``ν ← ν·exp(η·clip(log(I/ε), ±3))``;
    * ``update="additive"`` (plain dual ascent): ``ν ← max(0, ν + η·(I − ε))``.

    Args:
        target: ``ε > 0``.
        metric: the ``I`` held at ε: ``"LI"`` (default), ``"LI_normalized"`` or ``"DI"`` —
            orbit metrics on the training step's logits and transformed copies — or
            ``"loss"``, the invariance loss term itself (what a
            :class:`~invreg.losses.ModelInvarianceLoss` needs: it forms no orbit of logits).
        update: ``"multiplicative"`` or ``"additive"``.
        lr: the dual step size ``η > 0``; default 0.02 multiplicative, 1.0 additive.
        initial: ``ν₀``; the multiplicative update needs ``ν₀ > 0``.

    ν is the buffer ``value``, saved in checkpoints. An ``lr`` whose largest multiplicative
    factor ``exp(3η)`` overflows ν's dtype is refused; an update that leaves the dtype's finite
    range is clamped to it and a non-finite ``I`` leaves ν as it is, each with a
    ``RuntimeWarning``.

    >>> weight = DualAscentWeight(target=0.5, update="additive", lr=0.2)
    >>> weight.step(torch.tensor(1.5))  # 1 + 0.2·(1.5 − 0.5)
    >>> round(float(weight), 6)
    1.2
    """

    learned = True
    value: Tensor

    def __init__(
        self,
        target: float,
        metric: Literal["LI", "LI_normalized", "DI", "loss"] = "LI",
        update: Literal["multiplicative", "additive"] = "multiplicative",
        lr: float | None = None,
        initial: float = 1.0,
    ) -> None:
        super().__init__()
        if metric not in TARGET_METRICS:
            raise ValueError(f"DualAscentWeight.metric: expected one of {list(TARGET_METRICS)}, "
                             f"got {metric!r}")
        if update not in DEFAULT_TARGET_LR:
            raise ValueError(f"DualAscentWeight.update: expected one of "
                             f"{list(DEFAULT_TARGET_LR)}, got {update!r}")
        if isinstance(target, bool) or not isinstance(target, Real):
            raise ValueError(f"DualAscentWeight.target: expected a number > 0, got {target!r} "
                             f"({type(target).__name__})")
        if not math.isfinite(target) or target <= 0:
            raise ValueError(
                f"DualAscentWeight.target: expected a finite number > 0, got {target!r}")
        initial = check_weight("DualAscentWeight.initial", initial)
        if update == "multiplicative" and initial <= 0:
            raise ValueError(
                f"DualAscentWeight.initial: the multiplicative update scales ν, so it must start "
                f"> 0, got {initial!r}; pass e.g. initial=1.0, or update='additive'")
        self.target, self.metric, self.update = float(target), metric, update
        self.lr = check_target_lr(lr, update)
        self.register_buffer("value", torch.tensor(initial))

    def current(self) -> Tensor:
        # a copy: the update after the batch must not change a tensor its backward pass needs
        return self.value.clone()

    def check_loss(self, loss: InvarianceLoss) -> None:
        if self.metric != "loss" and isinstance(loss, ModelInvarianceLoss):
            raise ValueError(
                f"DualAscentWeight.metric: {type(loss).__name__} forms no orbit of logits to "
                f"measure {self.metric!r} on; pass metric='loss' to hold the loss term itself "
                f"at the target")

    def measure(self, loss_value: Tensor, loss: InvarianceLoss, orbit_logits: Tensor) -> Tensor:
        """The batch's ``I`` (a detached scalar): the invariance loss term ``loss_value`` for
        ``metric="loss"`` or when ``loss`` is that metric's error on the logits; otherwise the
        named orbit metric on ``orbit_logits`` ``[B, 1 + K, C]`` (identity first)."""
        pair_error = TARGET_METRICS[self.metric]
        if pair_error is None or (loss.layer is None and loss.pair_error == pair_error):
            measured = loss_value.detach()
            if measured.numel() != 1:
                raise ValueError(
                    f"invariance_loss: DualAscentWeight(metric={self.metric!r}) needs one number "
                    f"per batch, but {type(loss).__name__} returned shape "
                    f"{tuple(measured.shape)}; reduce it to a scalar or pick an orbit metric")
            return measured.reshape(())
        return orbit_pair_errors(orbit_logits.detach(), pair_error, allow_nonfinite=True).mean()

    @torch.no_grad()
    def step(self, measured: Tensor) -> None:
        """One dual-ascent update of ν from the batch's ``measured`` error (the caller averages
        it over processes, so every process keeps the same ν)."""
        measured = measured.detach().float()
        weight, target = self.value, self.target
        if not bool(torch.isfinite(measured)):
            warnings.warn(
                f"DualAscentWeight: the measured invariance error ({self.metric}) is "
                f"{float(measured)}; ν stays at {float(weight):.6g} for this batch. A non-finite "
                f"error means the logits overflow: lower the module's lr, or pick another metric",
                RuntimeWarning, stacklevel=2,
            )
            return
        if self.update == "additive":
            updated = (weight + self.lr * (measured - target)).clamp_min(0.0)
        else:
            log_ratio = torch.log(measured / target).clamp(-LOG_RATIO_CLIP, LOG_RATIO_CLIP)
            updated = weight * torch.exp(self.lr * log_ratio)
        info = torch.finfo(weight.dtype)
        low = 0.0 if self.update == "additive" else info.tiny  # never frozen at 0
        if not bool((updated >= low) & (updated <= info.max)):  # inf, or below tiny
            clamped = updated.nan_to_num(posinf=info.max).clamp(low, info.max)
            warnings.warn(
                f"DualAscentWeight: the {self.update} update moved ν from {float(weight):.6g} to "
                f"{float(updated):.6g}, outside the finite range of {weight.dtype}; clamped to "
                f"{float(clamped):.6g}. lr={self.lr:g} is too large for the measured error "
                f"{float(measured):.6g} (target {target:g}): lower DualAscentWeight's lr",
                RuntimeWarning, stacklevel=2,
            )
            updated = clamped
        weight.copy_(updated)

    def extra_repr(self) -> str:
        return (f"target={self.target:g}, metric={self.metric!r}, update={self.update!r}, "
                f"lr={self.lr:g}")


def check_target_lr(lr: object, update: str, dtype: torch.dtype | None = None) -> float:
    """The dual step ``lr`` η as a float (``None``: the update's default); ``ValueError``
    unless a finite number > 0 and, for the multiplicative update, small enough that one
    step's largest factor ``exp(3·η)`` is finite in ``dtype`` (ν's dtype; default: the default
    dtype): ``η < log(max) / 3``, 29.5 in float32."""
    if lr is None:
        return DEFAULT_TARGET_LR[update]
    if isinstance(lr, bool) or not isinstance(lr, Real):
        raise ValueError(f"DualAscentWeight.lr: expected a number > 0, got {lr!r} "
                         f"({type(lr).__name__})")
    if not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"DualAscentWeight.lr: expected a finite number > 0, got {lr!r}")
    if update == "multiplicative":
        dtype = torch.get_default_dtype() if dtype is None else dtype
        limit = math.log(torch.finfo(dtype).max) / LOG_RATIO_CLIP
        if lr >= limit:
            raise ValueError(
                f"DualAscentWeight.lr: the multiplicative update moves ν by up to a factor "
                f"exp({LOG_RATIO_CLIP:g}·η) per batch, and exp({LOG_RATIO_CLIP:g}·{lr:g}) "
                f"overflows {dtype} (ν's dtype); pass lr < {limit:.4g} (the default "
                f"{DEFAULT_TARGET_LR['multiplicative']} changes ν by at most 6 % per batch)")
    return float(lr)


def as_invariance_weight(value: object) -> InvarianceWeight:
    """The module's ``invariance_weight``: an :class:`InvarianceWeight`, its
    ``class_path``/``init_args`` description, or a number ``ν ≥ 0`` (a :class:`FixedWeight`)."""
    value = build(value, InvarianceWeight, "invariance_weight")
    if isinstance(value, InvarianceWeight):
        return value
    if isinstance(value, Real):
        return FixedWeight(value)  # type: ignore[arg-type]
    raise ValueError(
        f"invariance_weight must be a number >= 0 or an InvarianceWeight such as "
        f"DualAscentWeight(target=0.05), got {value!r} ({type(value).__name__})")


# ---------------------------------------------------------------- the earlier argument layout
#: the module's arguments of a learned ν before it became :class:`DualAscentWeight`, and the
#: argument of :class:`DualAscentWeight` each one became
REMOVED_ARGUMENTS = {"invariance_target": "target", "target_metric": "metric",
                     "target_update": "update", "target_lr": "lr"}
#: the state-dict key of ν before it became the buffer of :class:`DualAscentWeight`
REMOVED_STATE_KEY = "learned_invariance_weight"


def reject_arguments(given: Mapping[str, Any]) -> None:
    """The module's ``**removed``: a ``TypeError`` naming the replacement of each earlier
    argument of a learned ν, as Python's own for any other unexpected keyword."""
    unknown = [name for name in given if name not in REMOVED_ARGUMENTS]
    if unknown:
        raise TypeError(f"InvarianceModule.__init__() got an unexpected keyword argument "
                        f"{unknown[0]!r}")
    if given:
        replaced = ", ".join(f"{name} -> {REMOVED_ARGUMENTS[name]}" for name in given)
        raise TypeError(
            f"InvarianceModule: {', '.join(given)} became invariance_weight="
            f"DualAscentWeight(target=ε, metric=..., update=..., lr=..., initial=ν₀) "
            f"({replaced}, invariance_weight -> initial); in a config: invariance_weight: "
            f"{{class_path: invreg.modules.DualAscentWeight, init_args: {{target: ε}}}}")


def upgrade_hparams(hparams: Mapping[str, Any]) -> dict[str, Any]:
    """Stored hyper-parameters of the earlier layout in today's: ``invariance_target=ε`` (with
    ``target_metric``, ``target_update``, ``target_lr`` and ν₀ = ``invariance_weight``)
    becomes ``invariance_weight`` = the description of that :class:`DualAscentWeight`; a
    ``None`` target leaves ``invariance_weight`` as it was. Others pass unchanged."""
    upgraded = {k: v for k, v in hparams.items() if k not in REMOVED_ARGUMENTS}
    target = hparams.get("invariance_target")
    if target is not None:
        init_args = {new: hparams[old] for old, new in REMOVED_ARGUMENTS.items() if old in hparams}
        init_args["initial"] = hparams.get("invariance_weight", 1.0)
        upgraded["invariance_weight"] = {
            "class_path": f"{DualAscentWeight.__module__}.{DualAscentWeight.__qualname__}",
            "init_args": init_args}
    return upgraded


def upgrade_state_dict(state_dict: dict[str, Any], prefix: str = "") -> None:
    """Rename ν's earlier key (``<prefix>learned_invariance_weight``) in ``state_dict`` to the
    buffer of the module's weight, ``<prefix>weighting.value`` (in place)."""
    old = prefix + REMOVED_STATE_KEY
    if old in state_dict:
        state_dict[f"{prefix}weighting.value"] = state_dict.pop(old)


def upgrade_state_dict_hook(module: nn.Module, state_dict: dict[str, Any], prefix: str,
                            *_: Any) -> None:
    """The module's load-state-dict pre-hook: :func:`upgrade_state_dict` (a resumed fit, the
    experiments' cached models)."""
    upgrade_state_dict(state_dict, prefix)


def is_earlier_layout(checkpoint: Mapping[str, Any]) -> bool:
    """Whether a checkpoint stores the earlier arguments of a learned ν or its earlier key."""
    hparams = checkpoint.get("hyper_parameters") or {}
    return bool(set(REMOVED_ARGUMENTS) & set(hparams)) or (
        REMOVED_STATE_KEY in (checkpoint.get("state_dict") or {}))


def upgrade_checkpoint(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """``checkpoint`` with its hyper-parameters (:func:`upgrade_hparams`) and ν's state-dict
    key (:func:`upgrade_state_dict`) in today's layout (in place; returned)."""
    if isinstance(checkpoint.get("hyper_parameters"), Mapping):
        checkpoint["hyper_parameters"] = upgrade_hparams(checkpoint["hyper_parameters"])
    if isinstance(checkpoint.get("state_dict"), dict):
        upgrade_state_dict(checkpoint["state_dict"])
    return checkpoint


def upgraded_checkpoint(checkpoint_path: Any) -> Any:
    """``checkpoint_path``, or for a local checkpoint file of the earlier layout the same
    checkpoint upgraded (:func:`upgrade_checkpoint`), as an in-memory file on the CPU; the
    file itself is left as it is."""
    if not isinstance(checkpoint_path, str | os.PathLike) or not os.path.isfile(checkpoint_path):
        return checkpoint_path
    try:  # the stored arguments only: the tensors stay on disk
        stored = torch.load(checkpoint_path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - Lightning reads it next and reports what is wrong
        return checkpoint_path
    if not is_earlier_layout(stored):
        return checkpoint_path
    verify_ckpt_path(checkpoint_path, "checkpoint_path")
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    upgraded = io.BytesIO()
    torch.save(upgrade_checkpoint(checkpoint), upgraded)
    upgraded.seek(0)
    return upgraded


def hide_removed_arguments(init: Callable[..., None]) -> None:
    """Give ``init`` (a constructor with ``**removed``, :func:`reject_arguments`) the signature
    without it: the CLI and Lightning's checkpoint loading read the signature, and accept no
    argument there that is not a real one."""
    signature = inspect.signature(init)
    init.__signature__ = signature.replace(parameters=[  # type: ignore[attr-defined]
        p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD])

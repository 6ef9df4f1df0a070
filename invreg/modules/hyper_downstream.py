"""HyperInvariances step 2 (downstream): fit a descriptor and a head on a frozen hyper-network.

* :class:`HyperDownstreamModule` — descriptor and head on the training loss, through Lightning;
* :func:`bilevel_descriptor_fit` — the descriptor on a validation loss, the head refitted in
  closed form on the training images at every step (:func:`ridge_readout`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from invreg.models.hyper import HyperCNN
from invreg.modules.checkpointing import check_weight, save_plain_hyperparameters
from invreg.modules.hyper_common import HyperModuleBase, load_upstream_backbone


class HyperDownstreamModule(HyperModuleBase):
    """Learn an invariance descriptor and a linear head on top of a frozen, pre-trained
    :class:`~invreg.models.hyper.HyperCNN`.

    Loads the hyper-network of an upstream checkpoint
    (:class:`~invreg.modules.HyperUpstreamModule`), freezes all of it (embedding, generators,
    norms; kept in eval mode), and learns a descriptor ``d`` (an ``nn.Parameter`` of shape
    ``[k]``, clamped to ``[0, 1]`` after every optimiser step) together with a new head::

        loss = cross_entropy(head(h(x; d)), y)

    ``h(x; d)`` are the frozen network's features ``[B, feature_dim]``; ``d`` gets its gradient
    through the generated weights. ``learn_descriptor=False`` keeps ``d = descriptor_init``
    fixed (the fixed-descriptor baselines). No augmentation.

    Logged: ``{train,val,test}/loss`` and ``/acc``. The trajectory of ``d`` is logged by
    :class:`~invreg.callbacks.DescriptorTrajectoryCallback`. The checkpoint carries the
    frozen network's architecture (``backbone_config``) and weights:
    ``HyperDownstreamModule.load_from_checkpoint(path)`` needs no upstream file.

    Args:
        upstream_checkpoint: path of an upstream ``.ckpt``.
        num_classes: the task's number of classes (sizes the new head); the CLI links it from
            the data module.
        descriptor_init: starting descriptor: a number (every component), a list, or
            ``{name: strength}``.
        learn_descriptor: learn ``d`` (else keep ``descriptor_init``).
        descriptor_lr: Adam learning rate of the descriptor.
        descriptor_warmup_epochs: keep ``d`` at ``descriptor_init`` for this many epochs while
            the head fits: early on, with a random head, the gradient in ``d`` says little about
            which invariance suits the task.
        lr: Adam learning rate of the head.
        weight_decay: Adam weight decay of the head (never applied to the descriptor).
        backbone_config: the frozen network's architecture, instead of ``upstream_checkpoint``,
            when loading a downstream checkpoint (the weights come from its ``state_dict``);
            :meth:`load_from_checkpoint` passes it.
        on_nonfinite_loss: ``"raise"`` (default) or ``"skip"`` non-finite training batches.
    """

    def __init__(
        self,
        upstream_checkpoint: str | None = None,
        num_classes: int | None = None,
        descriptor_init: float | list[float] | dict[str, float] = 0.5,
        learn_descriptor: bool = True,
        descriptor_lr: float = 0.05,
        descriptor_warmup_epochs: int = 0,
        lr: float = 3e-3,
        weight_decay: float = 0.0,
        backbone_config: dict | None = None,
        on_nonfinite_loss: Literal["raise", "skip"] = "raise",
    ) -> None:
        super().__init__(lr, weight_decay, on_nonfinite_loss)
        warmup = descriptor_warmup_epochs
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
            raise ValueError(f"descriptor_warmup_epochs must be an integer >= 0, got {warmup!r}")
        descriptor_lr = check_weight("descriptor_lr", descriptor_lr)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(
                f"num_classes: expected the task's number of classes (an integer >= 2), got "
                f"{num_classes!r}"
            )
        if backbone_config is not None and upstream_checkpoint is not None:
            raise ValueError(
                "HyperDownstreamModule takes upstream_checkpoint (training) or backbone_config "
                "(loading a downstream checkpoint), not both"
            )
        if backbone_config is not None:
            backbone = HyperCNN(**backbone_config)
        elif not upstream_checkpoint:
            raise ValueError("HyperDownstreamModule needs upstream_checkpoint (a .ckpt path)")
        else:
            backbone = load_upstream_backbone(upstream_checkpoint)
        save_plain_hyperparameters(self, ())
        self.hparams["backbone_config"] = backbone.config
        self.backbone = backbone
        self.backbone.requires_grad_(False)
        self.backbone.eval()
        self.head = nn.Linear(self.backbone.feature_dim, num_classes)
        initial = self.backbone.descriptor.as_tensor(descriptor_init)
        if initial.ndim != 1:
            raise ValueError(f"descriptor_init: expected one descriptor, got {descriptor_init!r}")
        self.descriptor = nn.Parameter(initial.clone(), requires_grad=learn_descriptor)
        self.learn_descriptor = learn_descriptor
        self.descriptor_lr = descriptor_lr
        self.descriptor_warmup_epochs = descriptor_warmup_epochs
        self._build_metrics(num_classes)

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path, *args, **kwargs):
        """Lightning's ``load_from_checkpoint``: the module is rebuilt from the checkpoint's own
        ``backbone_config`` and weights, without the upstream file it was trained from."""
        kwargs.setdefault("upstream_checkpoint", None)
        return super().load_from_checkpoint(checkpoint_path, *args, **kwargs)

    def forward(self, x: Tensor, descriptor=None) -> Tensor:
        """Logits ``[B, num_classes]`` under the learned descriptor, unless one is given."""
        return self.head(self.backbone.features(x, self.descriptor if descriptor is None
                                                else descriptor))

    def step(self, batch: tuple[Tensor, Tensor], split: str, batch_idx: int) -> Tensor | None:
        x, y = batch
        logits = self(x)
        return self._log_metrics(split, batch_idx, logits, y,
                                 dict(loss=F.cross_entropy(logits, y)))

    # ------------------------------------------------------------------ optimisation
    def parameter_groups(self) -> list[dict[str, Any]]:
        groups = [dict(params=self.head.parameters(), lr=self.lr, weight_decay=self.weight_decay)]
        if self.learn_descriptor:
            groups.append(dict(params=[self.descriptor], lr=self.descriptor_lr, weight_decay=0.0))
        return groups

    def on_before_optimizer_step(self, optimizer) -> None:
        if self.learn_descriptor and self.current_epoch < self.descriptor_warmup_epochs:
            self.descriptor.grad = None  # Adam skips a parameter without a gradient

    def optimizer_step(self, *args, **kwargs) -> None:
        super().optimizer_step(*args, **kwargs)
        with torch.no_grad():
            self.descriptor.clamp_(0.0, 1.0)

    def train(self, mode: bool = True):
        super().train(mode)
        self.backbone.eval()  # frozen: norms and any dropout behave as at inference
        return self


# ---------------------------------------------------------------------------- bilevel fit
def ridge_readout(features: Tensor, targets: Tensor, ridge: float = 1e-2
                  ) -> tuple[Tensor, Tensor]:
    """The least-squares linear read-out of ``targets`` from ``features``, in closed form::

        F_c = F − mean(F),  Y_c = Y − mean(Y),  λ = ridge · tr(F_cᵀ F_c) / p
        W = (F_cᵀ F_c + λ·I)⁻¹ F_cᵀ Y_c,        b = mean(Y) − mean(F) · W

    ``features`` ``[N, p]`` and ``targets`` ``[N, c]`` give ``(W [p, c], b [c])``, so that
    ``features @ W + b`` predicts ``targets``. The penalty is relative to the mean eigenvalue of
    ``F_cᵀ F_c``, so it does not depend on the scale of the features. Differentiable in
    ``features`` (through ``torch.linalg.solve``): a gradient reaches whatever made them.

    >>> f = torch.tensor([[0.0], [1.0], [2.0]])
    >>> w, b = ridge_readout(f, 3 * f + 1, ridge=0.0)
    >>> [round(v, 4) for v in (w.item(), b.item())]
    [3.0, 1.0]
    """
    if features.ndim != 2 or targets.ndim != 2 or features.shape[0] != targets.shape[0]:
        raise ValueError(
            f"features, targets: expected [N, p] and [N, c], got {tuple(features.shape)} and "
            f"{tuple(targets.shape)}"
        )
    if isinstance(ridge, bool) or not isinstance(ridge, int | float) or not ridge >= 0:
        raise ValueError(f"ridge: expected a number >= 0, got {ridge!r}")
    feature_mean, target_mean = features.mean(0), targets.mean(0)
    centred = features - feature_mean
    gram = centred.T @ centred
    penalty = ridge * gram.diagonal().sum() / gram.shape[0]
    identity = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
    weight = torch.linalg.solve(gram + penalty * identity, centred.T @ (targets - target_mean))
    return weight, target_mean - feature_mean @ weight


def validation_objective(backbone: HyperCNN, train: tuple[Tensor, Tensor],
                         validation: tuple[Tensor, Tensor], num_classes: int,
                         ridge: float = 1e-2):
    """The outer loss of the bilevel descriptor fit, as a function of the descriptor ``d``
    ``[k]``: the ridge read-out (:func:`ridge_readout`) of the one-hot labels is fitted on the
    ``train`` images' features ``h(x; d)``, and scored by its mean squared error on the
    ``validation`` images::

        W(d), b(d) = ridge_readout(h(x_train; d), onehot(y_train))
        L_val(d)   = mean_i ‖h(x_val,i; d) W(d) + b(d) − onehot(y_val,i)‖²

    The head is the exact minimiser of the inner (train) problem for every ``d``, so
    ``∂L_val/∂d`` is the exact hyper-gradient; the training labels reach ``d`` only through
    the head. Returns ``objective(d) -> (loss, accuracy)``, the accuracy being that of the
    read-out's arg-max on the validation images (a float, not differentiated).
    """
    (x_train, y_train), (x_val, y_val) = train, validation
    for name, (x, y) in (("train", train), ("validation", validation)):
        if x.ndim != 4 or y.shape != x.shape[:1]:
            raise ValueError(
                f"{name}: expected images [N, C, H, W] and labels [N], got {tuple(x.shape)} "
                f"and {tuple(y.shape)}"
            )
    targets = F.one_hot(y_train.long(), num_classes).to(x_train.dtype)
    val_targets = F.one_hot(y_val.long(), num_classes).to(x_val.dtype)

    def objective(descriptor: Tensor) -> tuple[Tensor, float]:
        weight, bias = ridge_readout(backbone.features(x_train, descriptor), targets, ridge)
        prediction = backbone.features(x_val, descriptor) @ weight + bias
        accuracy = (prediction.detach().argmax(1) == y_val).float().mean().item()
        return (prediction - val_targets).pow(2).sum(1).mean(), accuracy

    return objective


@dataclass
class DescriptorFit:
    """The result of :func:`descriptor_descent`: the final ``descriptor`` ``[k]``; its
    ``trajectory`` (the start, then ``d`` after every step: ``steps + 1`` lists of ``k``
    values, the format of :attr:`~invreg.callbacks.DescriptorTrajectoryCallback.history`
    without the step numbers), and the objective's ``losses`` and ``accuracies`` at each
    point of the trajectory but the last (the values each step started from)."""

    descriptor: Tensor
    trajectory: list[list[float]]
    losses: list[float]
    accuracies: list[float]


def descriptor_descent(objective, size: int, steps: int, lr: float = 0.05,
                       init: float = 0.5) -> DescriptorFit:
    """Minimise ``objective(d) -> (loss, accuracy)`` over descriptors ``d ∈ (0, 1)^size`` by
    Adam on the logits ``θ``, ``d = sigmoid(θ)``, starting from ``d = init`` everywhere.

    The parametrisation keeps ``d`` inside the open cube without a clamp: a clamp stops a
    component at the bound while the gradient keeps pushing it there, whereas ``θ`` can always
    come back, and the ends are only approached as far as the loss keeps falling.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps: expected an integer >= 0, got {steps!r}")
    if not 0.0 < float(init) < 1.0:
        raise ValueError(f"init: expected a strength strictly inside (0, 1), got {init!r}")
    lr = check_weight("descriptor lr", lr)
    logits = torch.full((size,), math.log(init / (1.0 - init)), requires_grad=True)
    optimiser = torch.optim.Adam([logits], lr=lr)
    trajectory, losses, accuracies = [torch.sigmoid(logits).tolist()], [], []
    for _ in range(steps):
        loss, accuracy = objective(torch.sigmoid(logits))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
        accuracies.append(accuracy)
        trajectory.append(torch.sigmoid(logits.detach()).tolist())
    return DescriptorFit(torch.sigmoid(logits.detach()), trajectory, losses, accuracies)


def bilevel_descriptor_fit(backbone: HyperCNN, train: tuple[Tensor, Tensor],
                           validation: tuple[Tensor, Tensor], num_classes: int,
                           steps: int = 100, lr: float = 0.05, ridge: float = 1e-2,
                           init: float = 0.5) -> DescriptorFit:
    """Fit the descriptor of a frozen hyper-network on held-out data: the head is refitted in
    closed form on ``train`` at every step and ``d`` descends the ``validation`` loss
    (:func:`validation_objective`, :func:`descriptor_descent`). Full batch, so the fit is
    deterministic. ``backbone`` is put in eval mode and gets no gradient."""
    backbone.eval()
    backbone.requires_grad_(False)
    objective = validation_objective(backbone, train, validation, num_classes, ridge)
    return descriptor_descent(objective, backbone.descriptor.size, steps, lr, init)

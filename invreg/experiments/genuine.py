"""Genuine invariance without weight-tying (Moskalev et al. 2023): Table 1 and Fig. 4.

``genuine-table1``: WT / DA / IR for R4 and T3 on MNIST (digit 9 removed, padded to 36×36),
the paper's MLP (5×128), Adam 8e-4, batch 512, every model trained with random group
augmentation, best validation epoch kept. ν for IR: the smallest ν of a 1-2-5 grid whose
*validation* SI ≥ 0.95, else the ν with the highest validation SI, chosen on the first seed
and reused (:func:`choose_invariance_weight`). Every ν tried is recorded with its validation SI
and accuracy (``invariance_weights.csv`` and a table in ``results.md``). The tables give
accuracy on upright images and orbit accuracy (correct on every orbit element).

The row ``IR-target`` ("IR, ν learned") trains the IR model once per seed with
``invariance_target=ε`` (ν learned by dual ascent from ν₀ = 1, the module's default η, no grid;
:class:`~invreg.modules.InvarianceModule`). The rule for ε: the validation LI (full orbits) of
the model the ν search chose, on the first seed — the invariance that reached SI ≥ 0.95
(:func:`target_from_choice`). ``train_s`` gives each model's training time and, for IR,
``search_s`` the time of every training of the ν search: the cost a target replaces.

``genuine-drift``: DI and accuracy ratio Acc(β)/Acc(0) of WT / DA / IR on inputs blended
``(1 − β)·x + β·x_drift``; FashionMNIST is not available offline, so the drift source is
patches of scikit-learn's bundled photographs (``natural_images``), matched to the data's
mean and std.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np
import torch

from invreg.data import MNISTDataModule
from invreg.data.drift import get_drift_source, match_statistics
from invreg.evaluation import evaluate_invariance
from invreg.experiments.configs import config_path, from_config, scale_overrides
from invreg.experiments.core import (
    Results,
    Settings,
    Table,
    held_out_tensors,
    invariance_report,
    mean_std,
    model_key,
    train,
    training_description,
)
from invreg.functional.drift import check_betas
from invreg.groups import get_group
from invreg.metrics import DriftMetrics, SaliencyInvarianceSimilarity
from invreg.modules import InvarianceModule

GROUPS = {"R4": "c4", "T3": "t3"}
#: a group's name in the file names of ``configs/genuine``
CONFIG_GROUPS = {"c4": "r4", "t3": "t3"}
KINDS = ("WT", "DA", "IR")
#: Table 1's row of the IR model trained with ``invariance_target`` (ν learned)
LEARNED = "IR-target"
#: ν₀ of the learned row: the dual ascent starts here
LEARNED_INITIAL_WEIGHT = 1.0
SI_TARGET = 0.95
PAPER_TABLE1 = {  # acc %, LI, DI, SI (Moskalev et al. 2023, Table 1)
    ("R4", "WT"): (94.6, 0.00, 0.0, 1.00), ("R4", "DA"): (94.0, 98.6, 0.3, 0.17),
    ("R4", "IR"): (87.9, 0.02, 0.0, 0.95), ("T3", "WT"): (96.6, 0.0, 0.0, 1.00),
    ("T3", "DA"): (96.2, 50.8, 0.1, 0.57), ("T3", "IR"): (93.1, 0.01, 0.0, 0.95),
}


def config_file(kind: str, group: str) -> Path:
    """``configs/genuine/<kind>_<group>.yaml``: the config of model ``kind`` (``"WT"``,
    ``"DA"``, ``"IR"``) for ``group`` (``"c4"`` is R4, ``"t3"`` is T3)."""
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {KINDS}, got {kind!r}")
    if group not in CONFIG_GROUPS:
        raise ValueError(f"group: expected one of {sorted(CONFIG_GROUPS)}, got {group!r}")
    return config_path(f"genuine/{kind.lower()}_{CONFIG_GROUPS[group]}.yaml")


def config_overrides(kind: str, settings: Settings, seed: int, weight: float = 0.0,
                     loss: str = "logit_l2", target: float | None = None) -> list[str]:
    """The ``invreg fit`` arguments that turn a ``configs/genuine`` config into the model the
    experiment trains: seeds, epochs and data sizes of ``settings``, IR's weight ν (with
    ``target``: ν₀, and ``invariance_target=target``), the loss."""
    args = [*scale_overrides(settings, seed), "--model.init_args.invariance_loss", loss]
    if kind == "IR" and target is not None:  # ν learned from ν₀ = weight
        args += ["--model.init_args.invariance_weight", "DualAscentWeight",
                 "--model.init_args.invariance_weight.initial", repr(float(weight)),
                 "--model.init_args.invariance_weight.target", repr(float(target))]
    elif kind == "IR":  # WT and DA keep the config's weight 0
        args += ["--model.init_args.invariance_weight", repr(float(weight))]
    return args


def build(kind: str, group: str, settings: Settings, seed: int, weight: float = 0.0,
          loss: str = "logit_l2", target: float | None = None
          ) -> tuple[InvarianceModule, MNISTDataModule]:
    """The paper's model ``kind`` (WT, DA, IR) for ``group`` and its data, from
    ``configs/genuine/<kind>_<group>.yaml`` (:func:`config_file`) with
    :func:`config_overrides`: every model trains with random group augmentation, IR adds
    ``weight`` · ``loss`` (with ``target``: ν learned from ``weight`` by dual ascent to hold
    the invariance error at ``target``). The initial weights are a function of ``seed`` (the
    config's ``seed_everything``): a cached model is keyed by seed."""
    return from_config(config_file(kind, group),
                       config_overrides(kind, settings, seed, weight, loss, target))


def mnist(settings: Settings, seed: int) -> MNISTDataModule:
    """The experiments' MNIST data module for ``seed`` (the data section of the
    ``configs/genuine`` configs, which is the same in each)."""
    return build("DA", "c4", settings, seed)[1]


#: the file beside a cached model that keeps the seconds its training took
TRAIN_SECONDS = "train_seconds.txt"


def timed_train(module: InvarianceModule, data: MNISTDataModule, settings: Settings, name: str,
                seed: int) -> tuple[InvarianceModule, float]:
    """:func:`~invreg.experiments.core.train` and the seconds the model's training took.

    With a model cache the seconds are kept beside the model (:data:`TRAIN_SECONDS`), so a
    model loaded from the cache reports the cost of its training, not of the load (``nan`` for
    a model cached before training times were kept).
    """
    folder = None
    if settings.cache is not None:
        folder = settings.cache / model_key(training_description(module, data, settings, seed))
    cached = folder is not None and (folder / "model.ckpt").is_file()
    start = time.perf_counter()
    model = train(module, data, settings, name, seed)
    seconds = time.perf_counter() - start
    if folder is None:
        return model, seconds
    record = folder / TRAIN_SECONDS
    if cached:
        return model, float(record.read_text()) if record.is_file() else math.nan
    if folder.is_dir() and not record.is_file():
        record.write_text(f"{seconds!r}\n")
    return model, seconds


def validation_li(model, data: MNISTDataModule, group: str) -> float:
    """LI of ``model`` over full orbits of the validation split."""
    data.setup("validate")
    return evaluate_invariance(model, [tuple(data.val_dataset.tensors)], group)["LI"]


def validation_si(model, data: MNISTDataModule, group: str, settings: Settings) -> float:
    """SI of ``model`` on the first ``eval_samples`` validation samples: integrated gradients
    (``ig_steps`` steps) from the data's empty pixel, the paper's post-processing."""
    data.setup("validate")
    x, y = data.val_dataset.tensors
    n = settings.scale.eval_samples
    metric = SaliencyInvarianceSimilarity(group, "integrated_gradients",
                                          steps=settings.scale.ig_steps, baseline=data.background,
                                          max_batch_size=1024)
    metric.update(model, x[:n], y[:n])
    return metric.compute().item()


@dataclass(frozen=True)
class WeightChoice:
    """The outcome of :func:`choose_invariance_weight`.

    ``weight``: the chosen ν; ``trials``: every ``(ν, SI)`` measured, in the order tried;
    ``reached``: whether the chosen ν reaches the target.
    """

    weight: float
    trials: tuple[tuple[float, float], ...]
    reached: bool


def one_two_five(low: float, high: float) -> list[float]:
    """The values ``m·10^k`` (``m`` in 1, 2, 5) strictly between ``low`` and ``high``, ascending.

    >>> one_two_five(1, 10)
    [2.0, 5.0]
    >>> one_two_five(0.01, 1)
    [0.02, 0.05, 0.1, 0.2, 0.5]
    """
    values = []
    for exponent in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1):
        for mantissa in (1, 2, 5):
            value = float(f"{mantissa}e{exponent}")  # exact decimal, no 0.30000000000000004
            if low * (1 + 1e-9) < value < high * (1 - 1e-9):
                values.append(value)
    return values


def choose_invariance_weight(
    measure: Callable[[float], float],
    grid: Sequence[float],
    target: float = SI_TARGET,
) -> WeightChoice:
    """The smallest ν whose validation SI reaches ``target`` on a 1-2-5 grid; else the best SI.

    ``measure(ν)`` trains a model with invariance weight ν and returns its validation SI (here:
    any number; the rule needs nothing else). ``grid`` is the scale's coarse grid (increasing,
    positive; decades such as ``0.01, 0.1, …, 100``). The fine grid is the 1-2-5 values
    (``1, 2, 5, 10, 20, …``) between the coarse grid's ends. Searched coarse to fine:

    1. the coarse grid in increasing ν, stopping at the first ν with ``SI ≥ target``;
    2. if one reached it, the 1-2-5 values between it and the coarse ν before it, in
       increasing ν, stopping at the first that reaches: that ν is chosen (else the coarse one);
    3. if none reached it, the 1-2-5 values between the best-SI coarse ν and its two coarse
       neighbours, in increasing ν, stopping at the first that reaches; when none does, the ν
       with the highest SI of all measured (the smaller ν on a tie).

    If SI grows with ν, step 2 finds what measuring every 1-2-5 value would (the smallest ν
    that reaches the target): every value below the bracket has SI ≤ the failed coarse ν's.
    SI need not grow with ν (when ν outweighs the task the model can learn a near-constant
    function whose saliency is noise): step 3 then refines around the best coarse ν rather than
    taking the largest. Cost: at most ``len(grid) + 4`` measurements with decades (4 fine values
    around the best; ``len(grid) + 2`` when the target is reached), against ``len(grid)`` for a
    coarse-only search and 3·(decades) + 1 for measuring every 1-2-5 value.

    >>> curve = {0.1: 0.5, 0.2: 0.7, 0.5: 0.96, 1.0: 0.97, 2.0: 0.97, 5.0: 0.98, 10.0: 0.99}
    >>> choice = choose_invariance_weight(curve.__getitem__, [0.1, 1, 10])
    >>> choice.weight, choice.reached, [nu for nu, _ in choice.trials]
    (0.5, True, [0.1, 1.0, 0.2, 0.5])
    """
    grid = [float(nu) for nu in grid]
    if not grid or any(nu <= 0 or not math.isfinite(nu) for nu in grid):
        raise ValueError(f"grid: expected positive finite invariance weights, got {grid}")
    if any(b <= a for a, b in pairwise(grid)):
        raise ValueError(f"grid: expected increasing invariance weights, got {grid}")
    trials: dict[float, float] = {}

    def first_reaching(candidates: Sequence[float]) -> float | None:
        for nu in candidates:
            if nu not in trials:
                trials[nu] = float(measure(nu))
            if trials[nu] >= target:
                return nu
        return None

    coarse = first_reaching(grid)
    if coarse is not None:
        index = grid.index(coarse)
        below = one_two_five(grid[index - 1], coarse) if index > 0 else []
        chosen = first_reaching(below) or coarse
    else:
        index = max(range(len(grid)), key=lambda i: (trials[grid[i]], -i))
        around = grid[max(index - 1, 0) : index + 2]
        fine = [nu for a, b in pairwise(around) for nu in one_two_five(a, b)]
        chosen = first_reaching(fine)
        if chosen is None:
            chosen = max(trials, key=lambda nu: (trials[nu], -nu))
    return WeightChoice(chosen, tuple(trials.items()), trials[chosen] >= target)


def bisect_invariance_weight(
    measure: Callable[[float], float],
    grid: Sequence[float],
    target: float = SI_TARGET,
) -> WeightChoice:
    """The smallest ν of the 1-2-5 grid spanning ``grid`` whose SI reaches ``target``, found by
    bisection; else the best SI measured.

    The same rule as :func:`choose_invariance_weight`, searched in ``⌈log2(n + 1)⌉``
    measurements for ``n`` grid values (4 for 0.01…100 instead of 5–9) under the assumption
    that SI grows with ν: each measurement halves the values that can still be the smallest
    reaching one. When SI does not grow with ν the choice can differ from an exhaustive search;
    every measurement is recorded, so the record shows it.

    >>> curve = {0.1: 0.5, 0.2: 0.7, 0.5: 0.96, 1.0: 0.97, 2.0: 0.97, 5.0: 0.98, 10.0: 0.99}
    >>> choice = bisect_invariance_weight(curve.__getitem__, [0.1, 10])
    >>> choice.weight, choice.reached, [nu for nu, _ in choice.trials]
    (0.5, True, [1.0, 0.2, 0.5])
    """
    grid = [float(nu) for nu in grid]
    if not grid or any(nu <= 0 or not math.isfinite(nu) for nu in grid):
        raise ValueError(f"grid: expected positive finite invariance weights, got {grid}")
    values = sorted({grid[0], grid[-1], *one_two_five(grid[0], grid[-1])})
    trials: dict[float, float] = {}
    low, high = -1, len(values)  # values[high] is the smallest known to reach the target
    while high - low > 1:
        middle = (low + high) // 2
        nu = values[middle]
        trials[nu] = float(measure(nu))
        if trials[nu] >= target:
            high = middle
        else:
            low = middle
    if high < len(values):
        return WeightChoice(values[high], tuple(trials.items()), True)
    best = max(trials, key=lambda nu: (trials[nu], -nu))
    return WeightChoice(best, tuple(trials.items()), False)


SEARCHES = {"coarse-to-fine": choose_invariance_weight, "bisect": bisect_invariance_weight}


def _coarse_to_fine_rounds(grid: list[float], target: float):
    """The rounds of :func:`choose_invariance_weight` with every candidate of a step at once:
    the coarse grid, then the 1-2-5 values of the step that follows from its SI."""
    measured = yield list(grid)
    reached = [nu for nu in grid if measured[nu] >= target]
    if reached:
        index = grid.index(reached[0])
        fine = one_two_five(grid[index - 1], reached[0]) if index > 0 else []
    else:
        index = max(range(len(grid)), key=lambda i: (measured[grid[i]], -i))
        around = grid[max(index - 1, 0) : index + 2]
        fine = [nu for a, b in pairwise(around) for nu in one_two_five(a, b)]
    if fine:
        yield fine


def _bisect_rounds(grid: list[float], target: float):
    """The rounds of :func:`bisect_invariance_weight`, two halvings per round: the middle
    and both middles that can follow it (3 trainings for 2 steps)."""
    values = sorted({grid[0], grid[-1], *one_two_five(grid[0], grid[-1])})
    measured: dict[float, float] = {}
    while True:
        low, high = -1, len(values)
        while high - low > 1:
            middle = (low + high) // 2
            if values[middle] not in measured:
                break
            low, high = (low, middle) if measured[values[middle]] >= target else (middle, high)
        else:
            return
        candidates = [values[middle]] + [values[(a + b) // 2]
                                         for a, b in ((low, middle), (middle, high)) if b - a > 1]
        measured = yield [nu for nu in candidates if nu not in measured]


def search_rounds(search: str, grid: Sequence[float], target: float = SI_TARGET):
    """The ν search ``search`` (a key of :data:`SEARCHES`) in rounds whose candidates train at
    once: a generator that yields each round's ν and receives ``{ν: SI}`` of every ν measured
    so far. Applying the sequential rule to what the rounds measured
    (:func:`parallel_choice`) chooses the same ν, with the same record, as the sequential
    search: every ν it would measure is measured.

    Cost against the sequential search: coarse-to-fine runs in 2 rounds (1 when the first
    coarse ν reaches the target or no fine value follows) and trains every coarse ν, then
    every fine ν of the step, where the sequential search stops at the first ν that reaches
    the target: up to ``len(grid) − 1`` more in round 1 and 1 more in round 2 (0.01…100:
    7 trainings where it needs 3–7 when the target is reached, 9 as it does when not).
    Bisection runs two halvings per round with 3 trainings (0.01…100: 2 rounds and 6
    trainings against 4 steps and 4 trainings).

    >>> curve = {0.1: 0.5, 0.2: 0.7, 0.5: 0.96, 1.0: 0.97, 2.0: 0.97, 5.0: 0.98, 10.0: 0.99}
    >>> rounds = search_rounds("coarse-to-fine", [0.1, 1, 10])
    >>> first = next(rounds); first
    [0.1, 1.0, 10.0]
    >>> rounds.send({nu: curve[nu] for nu in first})
    [0.2, 0.5]
    """
    if search not in SEARCHES:
        raise ValueError(f"search: expected one of {sorted(SEARCHES)}, got {search!r}")
    grid = [float(nu) for nu in grid]
    if not grid or any(nu <= 0 or not math.isfinite(nu) for nu in grid):
        raise ValueError(f"grid: expected positive finite invariance weights, got {grid}")
    rounds = _bisect_rounds if search == "bisect" else _coarse_to_fine_rounds
    return rounds(grid, target)


def parallel_choice(search: str, grid: Sequence[float], measure: Callable[[list[float]], list],
                    target: float = SI_TARGET, log: Callable[[str], None] | None = None
                    ) -> tuple[WeightChoice, dict[float, float], int]:
    """Run :func:`search_rounds` with ``measure(candidates) -> their SI`` (one round at once)
    and apply the sequential rule to the result. Returns ``(choice, {ν: SI} measured,
    rounds)``; ``choice`` equals ``SEARCHES[search](...)`` with the same SI curve."""
    measured: dict[float, float] = {}
    rounds, count = search_rounds(search, grid, target), 0
    try:
        candidates = next(rounds)
        while True:
            count += 1
            measured.update(zip(candidates, (float(si) for si in measure(candidates)),
                                strict=True))
            if log is not None:
                log(f"ν search round {count}: " + ", ".join(
                    f"{nu:g}→{measured[nu]:.3f}" for nu in candidates))
            candidates = rounds.send(dict(measured))
    except StopIteration:
        pass
    return SEARCHES[search](measured.__getitem__, grid, target), measured, count


def choose_weight(group_name: str, settings: Settings, seed: int, loss: str = "logit_l2",
                  search: str = "coarse-to-fine", seconds: dict[float, float] | None = None):
    """The ν rule (``search``: ``"coarse-to-fine"``, :func:`choose_invariance_weight`, or
    ``"bisect"``, :func:`bisect_invariance_weight`) with ``measure`` = train IR with ``loss``,
    then validation SI.

    Returns ``(choice, model trained with the chosen ν, rows)``; one row per ν tried:
    ``nu``, validation SI, validation accuracy (%) on upright images and on whole orbits.
    ``seconds``, if given, receives each ν's training time (:func:`timed_train`).
    """
    group = GROUPS[group_name]
    models, rows = {}, {}
    tag = "" if loss == "logit_l2" else f"-{loss}"

    def measure(weight: float) -> float:
        module, data = build("IR", group, settings, seed, weight, loss)
        model, trained_in = timed_train(module, data, settings,
                                        f"table1/{group_name}/IR{tag}-nu{weight:g}", seed)
        if seconds is not None:
            seconds[weight] = trained_in
        si = validation_si(model, data, group, settings)
        x, y = data.val_dataset.tensors
        scores = evaluate_invariance(model, [(x, y)], group)
        models[weight] = model
        rows[weight] = {"group": group_name, "nu": weight, "val_SI": si,
                        "val_acc": 100 * scores["accuracy"],
                        "val_orbit_acc": 100 * scores["orbit_accuracy"]}
        settings.progress(f"  {group_name} IR ν={weight:g}: validation SI {si:.3f}, "
                          f"accuracy {rows[weight]['val_acc']:.1f} %")
        return si

    choice = SEARCHES[search](measure, settings.scale.invariance_weights)
    table = [dict(rows[nu], chosen=nu == choice.weight) for nu in sorted(rows)]
    return choice, models[choice.weight], table


def choice_note(label: str, choice: WeightChoice, tried: Sequence[dict], seed: int,
                search: str = "coarse-to-fine") -> str:
    """One line of ``results.md`` on a ν search: the ν chosen, every (ν, validation SI)
    measured, and whether the target was reached (:func:`choose_weight`'s ``rows``)."""
    how = "" if search == "coarse-to-fine" else f"{search} search, "
    return (f"{label}: ν = {choice.weight:g} ({how}validation SI by ν, seed {seed}: "
            + ", ".join(f"{r['nu']:g}→{r['val_SI']:.3f}" for r in tried)
            + ("" if choice.reached else
               f"; no ν reached SI ≥ {SI_TARGET}, the highest SI is used")
            + ")")


def selected_groups(settings: Settings) -> dict[str, str]:
    names = settings.extra.get("groups") or list(GROUPS)
    unknown = [n for n in names if n not in GROUPS]
    if unknown:
        raise ValueError(f"groups: unknown {unknown}; choose from {list(GROUPS)}")
    return {n: GROUPS[n] for n in names}


TABLE1_LEGEND = {
    "group": "R4: rotations by multiples of 90°; T3: cyclic x-shifts by 12 of 36 pixels",
    "model": "WT weight-tied (invariant by construction), DA augmentation only, "
             "IR augmentation + ν·LI, IR-target the same with ν learned by dual ascent "
             "(invariance_target = target_LI, ν₀ = 1, no grid)",
    "seeds": "number of seeds averaged",
    "nu": "invariance weight ν of IR (chosen on the first seed's validation SI; 0 for WT, DA; "
          "IR-target: the learned ν at the kept epoch, mean over seeds)",
    "acc": "test accuracy (%) on upright (untransformed) images",
    "orbit_acc": "test orbit accuracy (%): images classified correctly on every orbit element",
    "LI": "logit invariance error, mean ½‖f(x) − f(g·x)‖² over test images and g ≠ e (0 best)",
    "DI": "predictive invariance error, mean KL(p(x) ‖ p(g·x)) over test images, g ≠ e (0 best)",
    "SI": "saliency invariance similarity, mean cosine(m(x), g⁻¹·m(g·x)) (1 best); m: "
          "|integrated gradients| from the data's background (an empty image), ≥ 0.9·max, "
          "blurred",
    "SI_grey": "SI with integrated gradients from 0 in standardised units (a grey image), "
               "the baseline of earlier results",
    "consistency": "orbit consistency: fraction of test images with one predicted class on "
                   "the whole orbit",
    "train_s": "seconds to train one model (mean over seeds; for a model from the cache, its "
               "recorded training time)",
    "search_s": "IR: seconds of every training of the ν search (first seed), the cost "
                "IR-target's one training replaces (nan for the other rows)",
    "target_LI": "IR-target: ε, the validation LI of the model the ν search chose (first seed; "
                 "nan for the other rows)",
    "paper_acc": "Moskalev et al. 2023, Table 1: accuracy (%)",
    "paper_LI": "Moskalev et al. 2023, Table 1: LI",
    "paper_DI": "Moskalev et al. 2023, Table 1: DI",
    "paper_SI": "Moskalev et al. 2023, Table 1: SI",
}
WEIGHT_LEGEND = {
    "group": "the group",
    "nu": "invariance weight ν of the IR model",
    "val_SI": f"validation SI (the rule's criterion: the smallest ν with SI ≥ {SI_TARGET})",
    "val_acc": "validation accuracy (%) on upright images",
    "val_orbit_acc": "validation orbit accuracy (%): correct on every orbit element",
    "chosen": "the ν used for IR in the table above",
}


def table1_models(group_name: str, settings: Settings, on_choice=None, learned: bool = True,
                  timings: dict | None = None):
    """Table 1's models of one group: yields ``(seed, data, kind, ν, model)``.

    Seed by seed, WT, DA and IR; IR's ν is chosen on the first seed (:func:`choose_weight`),
    which calls ``on_choice(choice, rows, seed)`` with the search's record. With ``learned``
    (default; ``--jobs`` trains what this yields), then :data:`LEARNED` (IR with
    ``invariance_target`` from :func:`target_from_choice`; its ν is the learned one). Every
    model comes from :func:`~invreg.experiments.core.train`, so with a cache each is trained
    once, for every experiment that asks for it. ``timings``, if given, receives
    ``(kind, seed)`` -> training seconds and ``("search", seed)`` -> the seconds of every
    training of the ν search.
    """
    group, chosen, target = GROUPS[group_name], None, None
    timings = {} if timings is None else timings
    kinds = ("WT", "DA", "IR", LEARNED) if learned else ("WT", "DA", "IR")
    for seed in range(settings.seeds):
        data = mnist(settings, seed)
        for kind in kinds:
            if kind == "IR" and chosen is None:
                searched: dict[float, float] = {}
                choice, model, tried = choose_weight(group_name, settings, seed, seconds=searched)
                chosen = choice.weight
                timings["search", seed] = sum(searched.values())
                timings[kind, seed] = searched[chosen]
                if learned:
                    target = target_from_choice(model, data, group)
                if on_choice is not None:
                    on_choice(choice, tried, seed)
            else:
                built = ("IR", LEARNED_INITIAL_WEIGHT, target) if kind == LEARNED else (
                    kind, chosen or 0.0, None)
                module, kind_data = build(built[0], group, settings, seed, built[1],
                                          target=built[2])
                model, timings[kind, seed] = timed_train(
                    module, kind_data, settings, f"table1/{group_name}/{kind}", seed)
            nu = {"IR": chosen, LEARNED: model.invariance_weight}.get(kind, 0.0)
            yield seed, data, kind, nu, model


def _search_candidate(settings: Settings, group_name: str, weight: float) -> float:
    """One training of the ν search (IR with ``weight`` on the first seed, into the model
    cache) and its validation SI: a task of :func:`table1_chains`."""
    group = GROUPS[group_name]
    module, data = build("IR", group, settings, 0, weight)
    model, _ = timed_train(module, data, settings, f"table1/{group_name}/IR-nu{weight:g}", 0)
    return validation_si(model, data, group, settings)


def _table1_model(settings: Settings, group_name: str, kind: str, seed: int, weight: float,
                  target: float | None) -> float:
    """One of Table 1's models (``kind``: WT, DA, IR with ``weight``, or :data:`LEARNED` with
    ``target``) into the model cache; returns its training seconds: a task of
    :func:`table1_chains`."""
    built = ("IR", LEARNED_INITIAL_WEIGHT, target) if kind == LEARNED else (kind, weight, None)
    module, data = build(built[0], GROUPS[group_name], settings, seed, built[1], target=built[2])
    return timed_train(module, data, settings, f"table1/{group_name}/{kind}", seed)[1]


def chosen_target(group_name: str, settings: Settings, weight: float) -> float:
    """ε of the learned row from the cached model the ν search chose (first seed), computed as
    :func:`table1_models` computes it, in this process."""
    group = GROUPS[group_name]
    module, data = build("IR", group, settings, 0, weight)
    model = train(module, data, settings, f"table1/{group_name}/IR-nu{weight:g}", 0)
    return target_from_choice(model, mnist(settings, 0), group)


def table1_chains(group_name: str, settings: Settings, learned: bool = True) -> list:
    """Table 1's trainings of one group as chains of rounds
    (:mod:`invreg.experiments.executor`): WT and DA of every seed, independent of the rest;
    and the ν search's rounds (:func:`search_rounds`, first seed), then IR with the chosen ν
    on the other seeds and, with ``learned``, :data:`LEARNED` on every seed (ε from the chosen
    model, :func:`chosen_target`). :func:`table1_models` then finds every model in the cache."""
    from invreg.experiments.executor import Training

    def independent():
        yield [Training(f"table1/{group_name}/{kind}", seed, 0.0, _table1_model,
                        (group_name, kind, seed, 0.0, None), stage="WT, DA")
               for seed in range(settings.seeds) for kind in ("WT", "DA")]

    def searched():
        grid = settings.scale.invariance_weights
        rounds = search_rounds("coarse-to-fine", grid)
        measured: dict[float, float] = {}
        before: list[str] = []
        candidates, count = next(rounds), 0
        while candidates is not None:
            count += 1
            stage = f"{group_name} ν search round {count}"
            round_ = [Training(f"table1/{group_name}/IR-nu{nu:g}", 0, nu, _search_candidate,
                               (group_name, nu), after=tuple(before), stage=stage)
                      for nu in candidates]
            values = yield round_
            measured.update(zip(candidates, values, strict=True))
            before += [t.label for t in round_]
            settings.progress(f"{stage}: validation SI by ν " + ", ".join(
                f"{nu:g}→{measured[nu]:.3f}" for nu in candidates))
            try:
                candidates = rounds.send(dict(measured))
            except StopIteration:
                candidates = None
        choice = choose_invariance_weight(measured.__getitem__, grid)
        settings.progress(f"{group_name} ν search: ν = {choice.weight:g} after {count} "
                          f"round{'s' * (count > 1)} of {len(measured)} trainings (one at a "
                          f"time: {len(choice.trials)})")
        chosen = f"table1/{group_name}/IR-nu{choice.weight:g} seed 0"
        later = [Training(f"table1/{group_name}/IR", seed, choice.weight, _table1_model,
                          (group_name, "IR", seed, choice.weight, None), after=(chosen,),
                          stage=f"{group_name} chosen ν")
                 for seed in range(1, settings.seeds)]
        if learned:
            target = chosen_target(group_name, settings, choice.weight)
            later += [Training(f"table1/{group_name}/{LEARNED}", seed, LEARNED_INITIAL_WEIGHT,
                               _table1_model, (group_name, LEARNED, seed, 0.0, target),
                               after=(chosen,), stage=f"{group_name} chosen ν")
                      for seed in range(settings.seeds)]
        if later:
            yield later

    return [searched(), independent()]  # the longest chain first: it starts first


def target_from_choice(model: InvarianceModule, data: MNISTDataModule, group: str) -> float:
    """ε of the learned row: the validation LI (full orbits) of the model the ν search chose,
    the invariance that reached the SI target (validation data only, never the test split)."""
    return validation_li(model, data, group)


def table1(settings: Settings) -> Results:
    rows, notes, weight_rows = [], [], []
    seconds: dict[tuple[str, str], list[float]] = {}
    searches: dict[str, float] = {}
    for group_name, group in selected_groups(settings).items():

        def record(choice, tried, seed, group_name=group_name):
            weight_rows.extend(tried)
            notes.append(choice_note(group_name, choice, tried, seed))

        timings: dict = {}
        for seed, data, kind, nu, model in table1_models(group_name, settings, record,
                                                         timings=timings):
            x, y = held_out_tensors(data)
            report = invariance_report(model, x, y, get_group(group), settings.scale.eval_samples,
                                       settings.scale.ig_steps, background=data.background)
            settings.progress(f"{group_name} {kind} seed {seed}: " + ", ".join(
                f"{k} {v:.4g}" for k, v in report.items()))
            target = {"target_LI": model.weighting.target} if kind == LEARNED else {}
            rows.append({"group": group_name, "model": kind, "seed": seed, "nu": nu, **report,
                         **target})
            # times stay out of the per-seed rows: those are equal for equal configurations
            seconds.setdefault((group_name, kind), []).append(timings[kind, seed])
            if kind == "IR" and ("search", seed) in timings:
                searches[group_name] = timings["search", seed]
    summary = mean_std(rows, ["acc", "orbit_acc", "LI", "DI", "SI", "SI_grey", "consistency"],
                       ["group", "model"])
    for entry in summary:
        key = (entry["group"], entry["model"])
        members = [r for r in rows if (r["group"], r["model"]) == key]
        # IR's ν is the same on every seed; the learned ν differs: its mean
        entry["nu"] = sum(r["nu"] for r in members) / len(members)
        # every row has every column (nan where it does not apply): the CSV reads as numbers
        entry["train_s"] = sum(seconds[key]) / len(seconds[key])
        paper = PAPER_TABLE1.get(key, (math.nan,) * 4)
        entry.update({"paper_acc": paper[0], "paper_LI": paper[1], "paper_DI": paper[2],
                      "paper_SI": paper[3]})
        entry["search_s"] = searches[entry["group"]] if entry["model"] == "IR" else math.nan
        entry["target_LI"] = members[0].get("target_LI", math.nan)
    summary = [{"group": e.pop("group"), "model": e.pop("model"), "seeds": e.pop("seeds"),
                "nu": e.pop("nu"), **e} for e in summary]
    tables = {"invariance_weights": Table(
        f"Choice of ν (validation set, {settings.scale.name} scale)", weight_rows, WEIGHT_LEGEND
    )}
    return Results(summary, notes=notes, per_seed=rows, legend=TABLE1_LEGEND, tables=tables)


#: β of the drift experiment: the paper's ten blends, 0 (no drift) to 0.9
DRIFT_BETAS = tuple(round(0.1 * i, 1) for i in range(10))


#: the name ``genuine-drift`` results used for ``accuracy_ratio`` before it was unified
#: (recorded ``results.csv`` files still have it; :func:`drift_figure` reads both)
LEGACY_RATIO_KEY = "acc_ratio"


def drift(settings: Settings) -> Results:
    """DI and ``accuracy_ratio`` = Acc(β)/Acc(0) of Table 1's models (same ν, same weights) on
    drifted inputs, measured by :class:`~invreg.metrics.DriftMetrics`; the β grid
    (``extra["betas"]``) is checked by :func:`~invreg.functional.check_betas` (sorted, in
    ``[0, 1]``, ``β = 0`` added when missing, so the ratio is always relative to clean
    inputs)."""
    betas = check_betas(settings.extra.get("betas", DRIFT_BETAS))
    source = get_drift_source(settings.extra.get("drift_source", "natural_images"))
    rows, weights = [], {}
    for group_name, group in selected_groups(settings).items():
        for seed, data, kind, nu, model in table1_models(group_name, settings, learned=False):
            x, y = held_out_tensors(data, settings.scale.eval_samples * 4)
            gen = torch.Generator().manual_seed(seed)
            x_drift = match_statistics(source.sample(x.shape[0], x.shape[1:], gen), x)
            if kind == "IR":
                weights[group_name] = nu
            metrics = DriftMetrics(get_group(group), betas)
            metrics.update_from_model(model, x, x_drift, y)
            rows += [{"group": group_name, "model": kind, "seed": seed, "beta": row["beta"],
                      "DI": row["DI"], "accuracy_ratio": row["accuracy_ratio"]}
                     for row in metrics.rows()]
            settings.progress(f"drift {group_name} {kind} seed {seed} done")
    summary = mean_std(rows, ["DI", "accuracy_ratio"], ["group", "model", "beta"])
    figure = drift_figure(summary)
    return Results(summary, {"drift": figure}, per_seed=rows, notes=[
        f"Drift source: {source!r}, matched to the test data's mean and std. The models are "
        "Table 1's (same configuration, weights and ν: "
        + ", ".join(f"{g} IR ν = {nu:g}" for g, nu in weights.items())
        + "), loaded from the model cache when Table 1 ran first."
    ])


def drift_figure(summary):
    """DI (symmetric-log scale: WT's exact 0 prints as ±1e-10, IR sits 2–3 decades below DA)
    and Acc(β)/Acc(0) against β, one column per group in ``summary`` (rows of
    :func:`~invreg.experiments.core.mean_std`: ``group``, ``model``, ``beta``, ``seeds``,
    ``DI``, ``DI_std``, ``accuracy_ratio``, ``accuracy_ratio_std``, or the older names
    ``acc_ratio``, ``acc_ratio_std`` of recorded results); a shaded band of mean ± std over
    the seeds where a row has more than one seed."""
    from invreg.plotting import new_figure

    groups = list(dict.fromkeys(e["group"] for e in summary))
    figure = new_figure(5 * len(groups), 7.2)
    axes = figure.subplots(2, len(groups), sharex=True, squeeze=False)
    seeds = max(int(e.get("seeds", 1)) for e in summary)
    for col, group_name in enumerate(groups):
        for index, kind in enumerate(("WT", "DA", "IR")):
            pts = [e for e in summary if e["group"] == group_name and e["model"] == kind]
            if not pts:
                continue
            betas = [e["beta"] for e in pts]
            ratio = "accuracy_ratio" if "accuracy_ratio" in pts[0] else LEGACY_RATIO_KEY
            for row, key in enumerate(("DI", ratio)):
                mean = np.array([e[key] for e in pts], dtype=float)
                axes[row, col].plot(betas, mean, marker="o", color=f"C{index}", label=kind)
                if any(int(e.get("seeds", 1)) > 1 for e in pts):
                    std = np.array([e.get(f"{key}_std", 0.0) for e in pts], dtype=float)
                    axes[row, col].fill_between(betas, mean - std, mean + std, alpha=0.2,
                                                color=f"C{index}", linewidth=0)
        axes[0, col].set_yscale("symlog", linthresh=1e-4)
        # DI ≥ 0: no empty negative decades (WT's ±1e-10 sits on the lower edge)
        axes[0, col].set_ylim(bottom=-3e-5)
        axes[0, col].set_title(f"{group_name}: DI under drift (symlog below 1e-4)")
        axes[1, col].set_title(f"{group_name}: Acc(β) / Acc(0)")
        axes[1, col].set_xlabel("β (weight of the drift image)")
        axes[0, col].set_ylabel("DI, mean KL(p(x) ‖ p(g·x))")
        axes[1, col].set_ylabel("accuracy relative to β = 0")
        axes[1, col].set_ylim(0.0, 1.05)
    spread = f"\nbands: mean ± std over {seeds} seeds" if seeds > 1 else ""
    figure.suptitle(f"MNIST MLPs (WT / DA / IR) under input drift, group{'s' * (len(groups) > 1)} "
                    f"{', '.join(groups)}{spread}")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncols=len(labels),
                  title="model")
    return figure

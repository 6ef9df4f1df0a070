"""Speed of an invreg training epoch against a plain PyTorch loop doing the same work.

``python benchmarks/bench_train.py [--repeats 5] [--epochs 3] [--tiny] [--profile]``

For each model (the paper's setup: MLP 5×128 on 1×36×36 inputs, 10 classes, C4, batch 512):

* **IR** — ``InvarianceModule(augment=True, orbit_mode="sample", invariance_loss="logit_l2",
  invariance_weight=10)``: every step rotates the batch by a random element (augmentation),
  rotates it again by one random non-identity element, runs one forward over both, and adds
  ν·LI to the cross-entropy;
* **DA** — the same with ``invariance_weight=0``: the module then forwards the augmented batch
  alone (a term weighted 0 cannot change the gradient), and so does the floor;
* **WT** — the weight-tied MLP (``TiedMLP``, C4-pooled first layer), ν = 0, likewise.

**invreg**: one epoch of ``pl.Trainer.fit`` (no logger, no checkpointing, no progress bar,
validation off) over an :class:`~invreg.data.base.InvarianceDataModule` of the same tensors.
**floor**: a plain loop over the preloaded tensors — ``randperm`` order, ``x[idx]`` batches,
``torch.rot90`` on the masked samples of each quarter turn, the same backbone, the same loss
(cross-entropy + ν·½‖f(x) − f(g·x)‖² averaged), ``Adam``, ``zero_grad``/``backward``/``step`` —
and nothing else. The ratio of the medians (``--repeats`` epochs of each, interleaved after
one warm-up epoch, in one process; process CPU time, and wall time beside it) is the figure
reported; target ≤ 1.10×.

The last column runs the plain loop's step inside a minimal ``LightningModule`` under the same
trainer, against the plain loop again: the part of the ratio that is Lightning's own per-step
cost (hooks, closure, progress tracking), which invreg does not control.

``--with-validation`` adds a validation pass over 2,000 samples to both (the module's full-orbit
validation metrics; the floor runs the same orbit forward and the same three numbers).
``--tiny`` runs a small size once (a correctness check for CI: both paths train and the ratio
is printed). ``--profile`` prints the top items of ``torch.profiler`` for one invreg epoch.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
import warnings

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from invreg.data.base import InvarianceDataModule
from invreg.models import MLP, TiedMLP
from invreg.modules import InvarianceModule

NU = 10.0


class TensorDataModule(InvarianceDataModule):
    """An :class:`~invreg.data.base.InvarianceDataModule` over given tensors (no files)."""

    def __init__(self, x: Tensor, y: Tensor, val: Tensor | None, batch_size: int) -> None:
        self._x, self._y, self._val = x, y, val
        super().__init__(batch_size=batch_size, seed=0, standardize=False)

    def _source_shape(self) -> tuple[int, ...]:
        return tuple(self._x.shape[1:])

    def _load_splits(self, generator: torch.Generator) -> dict:
        val = self._val if self._val is not None else self._x[:1]
        val_y = self._y[: val.shape[0]]
        index = torch.arange(self._x.shape[0])
        return {"train": (self._x, self._y, index), "val": (val, val_y, index[: len(val)]),
                "test": (val, val_y, index[: len(val)])}


def make_data(n: int, classes: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 36, 36, generator=generator)
    y = torch.randint(0, classes, (n,), generator=generator)
    return x, y


def backbone(kind: str, classes: int, widths: list[int]) -> nn.Module:
    torch.manual_seed(0)
    if kind == "WT":
        return TiedMLP((1, 36, 36), classes, group="c4", hidden_widths=widths)
    return MLP((1, 36, 36), classes, hidden_widths=widths)


# --------------------------------------------------------------------------- the floor
def rotate_quarters(x: Tensor, turns: Tensor) -> Tensor:
    """``x[i]`` rotated by ``turns[i]`` quarter turns: ``rot90`` on each turn's samples."""
    out = torch.empty_like(x)
    for k in range(4):
        mask = turns == k
        out[mask] = torch.rot90(x[mask], k, dims=(-2, -1))
    return out


def plain_loss(model: nn.Module, x: Tensor, y: Tensor, nu: float,
               generator: torch.Generator) -> Tensor:
    """The module's training work written plainly: augment by a random quarter turn, one random
    non-identity turn more, one forward over both, cross-entropy + ν·½‖f(x) − f(g·x)‖²; with
    ν = 0, cross-entropy on the augmented batch alone."""
    n = y.shape[0]
    x = rotate_quarters(x, torch.randint(0, 4, (n,), generator=generator))
    if nu == 0:
        return F.cross_entropy(model(x), y)
    copies = rotate_quarters(x, torch.randint(1, 4, (n,), generator=generator))
    logits = model(torch.cat([x, copies]))
    reference, moved = logits[:n], logits[n:]
    invariance = 0.5 * (reference - moved).pow(2).sum(-1).mean()
    return F.cross_entropy(reference, y) + nu * invariance


class PlainLoop:
    """The same training work as the module, written as a bare PyTorch loop."""

    def __init__(self, model: nn.Module, x: Tensor, y: Tensor, val: Tensor | None,
                 batch_size: int, nu: float) -> None:
        self.model, self.x, self.y, self.val = model, x, y, val
        self.batch_size, self.nu = batch_size, nu
        self.optimizer = torch.optim.Adam(model.parameters(), lr=8e-4)
        self.generator = torch.Generator().manual_seed(0)

    def epoch(self) -> None:
        model, generator, b = self.model, self.generator, self.batch_size
        model.train()
        order = torch.randperm(self.x.shape[0], generator=generator)
        for start in range(0, len(order), b):
            idx = order[start : start + b]
            loss = plain_loss(model, self.x[idx], self.y[idx], self.nu, generator)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
        if self.val is not None:
            self.validate()

    @torch.no_grad()
    def validate(self) -> None:
        """Full C4 orbit of every validation sample: accuracy, DI, LI and consistency."""
        self.model.eval()
        for start in range(0, self.val.shape[0], self.batch_size):
            x = self.val[start : start + self.batch_size]
            orbit = torch.stack([torch.rot90(x, k, dims=(-2, -1)) for k in range(4)], 1)
            logits = self.model(orbit.flatten(0, 1)).view(x.shape[0], 4, -1)
            log_p = logits.log_softmax(-1)
            _ = (log_p[:, :1].exp() * (log_p[:, :1] - log_p[:, 1:])).sum(-1).mean()
            _ = 0.5 * (logits[:, :1] - logits[:, 1:]).pow(2).sum(-1).mean()
            _ = (logits.argmax(-1) == logits[:, :1].argmax(-1)).all(1).float().mean()
        self.model.train()


# --------------------------------------------------------------------------- invreg
def invreg_module(model: nn.Module, nu: float) -> InvarianceModule:
    return InvarianceModule(model, group="c4", invariance_loss="logit_l2", invariance_weight=nu,
                            orbit_mode="sample", augment=True, lr=8e-4)


class BareModule(pl.LightningModule):
    """The floor's training step inside a minimal LightningModule: what Lightning itself
    costs, apart from invreg (no metrics, no logging, no checks)."""

    def __init__(self, model: nn.Module, nu: float) -> None:
        super().__init__()
        self.model, self.nu = model, nu
        self.generator = torch.Generator().manual_seed(0)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return plain_loss(self.model, x, y, self.nu, self.generator)

    def validation_step(self, batch, batch_idx):
        x, _ = batch
        orbit = torch.stack([torch.rot90(x, k, dims=(-2, -1)) for k in range(4)], 1)
        self.model(orbit.flatten(0, 1))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=8e-4)


def invreg_trainer(epochs: int, with_validation: bool, callbacks: list) -> pl.Trainer:
    return pl.Trainer(
        max_epochs=epochs, accelerator="cpu", devices=1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, limit_val_batches=1.0 if with_validation else 0,
        callbacks=callbacks,
    )


def clocks() -> tuple[float, float]:
    """(wall, CPU) seconds; the process's CPU time is what the ratio is computed from: on a
    busy machine it moves far less than the wall time (one thread: OMP_NUM_THREADS=1)."""
    return time.perf_counter(), time.process_time()


class Interleave(pl.Callback):
    """Times each invreg epoch (one ``on_train_epoch_end`` to the next, validation included)
    and runs one floor epoch, timed, after each: both measured side by side in one run."""

    def __init__(self, floor: PlainLoop) -> None:
        self.floor = floor
        self.invreg: list[tuple[float, float]] = []
        self.plain: list[tuple[float, float]] = []
        self._mark = (0.0, 0.0)

    def on_train_start(self, trainer, pl_module) -> None:
        self._mark = clocks()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.invreg.append(since(self._mark))
        start = clocks()
        self.floor.epoch()
        self.plain.append(since(start))
        self._mark = clocks()


def since(mark: tuple[float, float]) -> tuple[float, float]:
    now = clocks()
    return now[0] - mark[0], now[1] - mark[1]


def run(kind: str, args: argparse.Namespace, bare: bool = False) -> dict[str, float]:
    """``repeats + 1`` epochs of one ``fit``, a floor epoch after each; the first pair is the
    warm-up and is dropped; medians of the rest. ``bare``: :class:`BareModule` instead of
    ``InvarianceModule``."""
    x, y = make_data(args.samples, 10)
    val = make_data(args.val_samples, 10, seed=1)[0] if args.with_validation else None
    nu = 0.0 if kind in ("DA", "WT") else NU
    widths = [args.width] * args.depth
    floor = PlainLoop(backbone(kind, 10, widths), x, y, val, args.batch_size, nu)
    timer = Interleave(floor)
    trainer = invreg_trainer(args.repeats + 1, args.with_validation, [timer])
    model = backbone(kind, 10, widths)
    module = BareModule(model, nu) if bare else invreg_module(model, nu)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, TensorDataModule(x, y, val, args.batch_size))
    result = {}
    for clock, column in (("wall", 0), ("cpu", 1)):
        invreg = statistics.median(t[column] for t in timer.invreg[1:] or timer.invreg)
        plain = statistics.median(t[column] for t in timer.plain[1:] or timer.plain)
        result |= {f"invreg_{clock}": invreg, f"floor_{clock}": plain,
                   f"ratio_{clock}": invreg / plain}
    return result


def profile(args: argparse.Namespace) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    x, y = make_data(args.samples, 10)
    val = make_data(args.val_samples, 10, seed=1)[0] if args.with_validation else None
    module = invreg_module(backbone("IR", 10, [args.width] * args.depth), NU)
    data = TensorDataModule(x, y, val, args.batch_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        invreg_trainer(1, args.with_validation, []).fit(module, data)  # warm-up
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            invreg_trainer(2, args.with_validation, []).fit(module, data)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--val-samples", type=int, default=2_000)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--depth", type=int, default=5)
    parser.add_argument("--models", nargs="+", default=["IR", "DA", "WT"],
                        choices=["IR", "DA", "WT"])
    parser.add_argument("--with-validation", action="store_true")
    parser.add_argument("--tiny", action="store_true", help="a small size, once (CI)")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)
    if args.tiny:
        args.samples, args.val_samples, args.batch_size = 256, 64, 64
        args.width, args.depth, args.repeats = 16, 2, 1
    if args.profile:
        profile(args)
        return
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; {args.samples} samples, batch {args.batch_size}, "
          f"MLP {args.depth}x{args.width}, C4, validation "
          f"{'on' if args.with_validation else 'off'}")
    print("| model | invreg epoch CPU (s) | plain loop epoch CPU (s) | ratio (CPU) | "
          "ratio (wall) | bare Lightning ÷ plain loop (CPU) |")
    print("|---|---|---|---|---|---|")
    for kind in args.models:
        r = run(kind, args)
        bare = run(kind, args, bare=True)
        print(f"| {kind} | {r['invreg_cpu']:.4f} | {r['floor_cpu']:.4f} | {r['ratio_cpu']:.3f} "
              f"| {r['ratio_wall']:.3f} | {bare['ratio_cpu']:.3f} |", flush=True)


if __name__ == "__main__":
    main()

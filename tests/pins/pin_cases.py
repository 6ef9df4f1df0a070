"""The pinned cases: each function runs one small, seeded measurement and returns its numbers
as a flat ``{key: float}`` (plus, for printed output, ``{key: str}``).

``regenerate.py`` writes what these return into the ``*.json`` files next to this module; the
``test_pins_*.py`` files run them again and compare. Everything a case depends on (data, model
sizes, settings) is defined here, so a change to another test helper cannot move a pin.

Result keys that were renamed (``acc`` → ``accuracy``, ``orbit_acc`` → ``orbit_accuracy``,
``acc_ratio`` → ``accuracy_ratio``) are stored under the new name: :func:`canonical` spells
the word ``acc`` of every key as ``accuracy``, so a case reads either spelling.
"""

from __future__ import annotations

import csv
import io
import math
import re
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

NUM_CLASSES = 3
SHAPE = (1, 8, 8)

#: the quickstart test's tiny config: an MLP on the bundled digits, 1 epoch of 2 batches
TINY_CONFIG = """\
seed_everything: 0
trainer:
  max_epochs: 1
  limit_train_batches: 2
  limit_val_batches: 1
  limit_test_batches: 1
  accelerator: cpu
  enable_progress_bar: false
  enable_model_summary: false
  logger:
    class_path: pytorch_lightning.loggers.CSVLogger
    init_args:
      save_dir: {root}
model:
  class_path: invreg.modules.InvarianceModule
  init_args:
    backbone:
      class_path: invreg.models.MLP
      init_args:
        input_shape: [1, 8, 8]
        num_classes: 10
        hidden_widths: [16]
    group: {group}
    invariance_weight: 1.0
data:
  class_path: invreg.data.DigitsDataModule
  init_args:
    batch_size: 64
"""


def canonical(key: str) -> str:
    """``key`` with the word ``acc`` spelled ``accuracy`` (``train/acc_step`` →
    ``train/accuracy_step``, ``orbit_acc`` → ``orbit_accuracy``); other keys unchanged."""
    return re.sub(r"(?<![A-Za-z])acc(?![A-Za-z])", "accuracy", key)


def flat(values: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Nested ``{name: {key: value}}`` as ``{"name/key": float}``, keys :func:`canonical`."""
    out: dict[str, float] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat(value, f"{name}/"))
        else:
            out[canonical(name)] = float(value.item() if torch.is_tensor(value) else value)
    return out


def tiny_config(root: Path, group: str = "t4") -> Path:
    path = root / "tiny.yaml"
    path.write_text(TINY_CONFIG.format(root=root / "runs", group=group))
    return path


# --------------------------------------------------------------------------- fixed inputs
def seeded_mlp():
    """An untrained MLP on 8×8 inputs, 3 classes, seeded."""
    from invreg.models import MLP

    torch.manual_seed(0)
    return MLP(SHAPE, NUM_CLASSES, hidden_widths=[16]).eval()


def seeded_batch(n: int = 12, seed: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *SHAPE, generator=generator)
    return x, torch.randint(0, NUM_CLASSES, (n,), generator=generator)


class TinyData(pl.LightningDataModule):
    """Random 8×8 images; the label is the quadrant of the brightest pixel (mod 3)."""

    def __init__(self, n: int = 96, batch_size: int = 32, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(n, *SHAPE, generator=gen)
        brightest = x.flatten(1).argmax(dim=1)
        y = ((brightest // 8 >= 4).long() * 2 + (brightest % 8 >= 4).long()) % NUM_CLASSES
        self.datasets = {name: TensorDataset(x[i::3].clone(), y[i::3].clone())
                         for i, name in enumerate(("train", "val", "test"))}
        self.batch_size = batch_size

    def train_dataloader(self):
        return DataLoader(self.datasets["train"], batch_size=self.batch_size, shuffle=True,
                          generator=torch.Generator().manual_seed(0))

    def val_dataloader(self):
        return DataLoader(self.datasets["val"], batch_size=self.batch_size)

    def test_dataloader(self):
        return DataLoader(self.datasets["test"], batch_size=self.batch_size)


# --------------------------------------------------------------------------- cases
def quickstart_case(root: Path) -> dict[str, Any]:
    """``invreg.quickstart.run`` on the tiny config (group t4): every model's test values at
    full precision, and the printed table's cells as text."""
    from invreg import quickstart

    buffer = io.StringIO()
    with redirect_stdout(buffer):
        results = quickstart.run(tiny_config(root), out=root / "out")
    printed = buffer.getvalue()
    table = printed[printed.index("Test split"):].splitlines()
    cells = {}
    for line in table:
        if line[:2] in results and line[2:4] == " (":
            name = line[:2]
            for label, cell in zip(("accuracy_percent", "DI", "LI", "consistency"),
                                   line.rsplit(maxsplit=4)[1:], strict=True):
                cells[f"{name}/{label}"] = cell
    return {"values": flat(results), "text": cells}


#: Table 1 columns that are wall-clock seconds, not measurements
TIMINGS = ("train_s", "search_s")


def table1_case(root: Path, scale: str, groups: list[str]) -> dict[str, float]:
    """``invreg-experiment genuine-table1`` at ``scale``: every number of every result row,
    keyed ``group/model/column``."""
    from invreg.experiments.runner import run

    results = run("genuine-table1", scale=scale, out=root / "table1", groups=groups)
    values = {}
    for row in results.rows:
        for key, value in row.items():
            if key in ("group", "model") or key in TIMINGS or isinstance(value, str):
                continue
            values[canonical(f"{row['group']}/{row['model']}/{key}")] = float(value)
    return values


def callbacks_case(root: Path) -> dict[str, float]:
    """A tiny InvarianceModule (MLP, c4, ν = 1) trained 2 epochs of 2 batches with the orbit,
    spectral, saliency and drift callbacks; every number its CSV logger wrote, keyed
    ``column@step``, and every number of each callback's ``history``."""
    from pytorch_lightning.loggers import CSVLogger

    from invreg.callbacks import (
        DriftCallback,
        OrbitConsistencyCallback,
        SaliencyCallback,
        SpectralDecayCallback,
    )
    from invreg.functional import SaliencyRecipe
    from invreg.models import MLP
    from invreg.modules import InvarianceModule

    torch.manual_seed(0)
    backbone = MLP(SHAPE, NUM_CLASSES, hidden_widths=[16])
    module = InvarianceModule(backbone, group="c4", invariance_weight=1.0, lr=1e-2)
    callbacks = [
        OrbitConsistencyCallback(num_samples=16, saliency_samples=4, saliency_steps=4,
                                 save_local=False),
        SpectralDecayCallback(num_samples=8, iters=4, save_local=False),
        SaliencyCallback(num_samples=2, recipe=SaliencyRecipe(steps=4, baseline="background"),
                         save_local=False),
        DriftCallback(betas=(0.0, 0.5), source="noise", num_samples=16, save_local=False),
    ]
    logger = CSVLogger(str(root), name="tiny")
    trainer = pl.Trainer(max_epochs=2, limit_train_batches=2, accelerator="cpu", devices=1,
                         logger=logger, callbacks=callbacks, num_sanity_val_steps=0,
                         log_every_n_steps=1, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         deterministic=True, default_root_dir=str(root))
    trainer.fit(module, TinyData())
    with open(Path(logger.log_dir) / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    values = {}
    for row in rows:
        for key, cell in row.items():
            if key in ("epoch", "step") or cell in ("", None):
                continue
            name = f"{canonical(key)}@{row['step']}"
            if name in values and values[name] != float(cell):
                raise AssertionError(f"{name}: logged twice with different values")
            values[name] = float(cell)
    for callback in callbacks:  # what each evaluation returned (SaliencyCallback logs no scalar)
        for index, record in enumerate(callback.history):
            values.update(numbers(record, f"history/{type(callback).__name__}/{index}/",
                                  skip=("step", "seconds")))
    return values


def numbers(record: Any, prefix: str, skip: tuple[str, ...] = ()) -> dict[str, float]:
    """The numbers of a callback's history record (nested dicts and lists of rows), keyed
    ``prefix`` + path; booleans, text and ``skip`` keys (wall time, step) left out."""
    items = record.items() if isinstance(record, dict) else enumerate(record)
    out: dict[str, float] = {}
    for key, value in items:
        if key in skip or isinstance(value, bool | str):
            continue
        name = canonical(f"{prefix}{key}")
        if isinstance(value, dict | list | tuple):
            out.update(numbers(value, f"{name}/"))
        elif isinstance(value, int | float):
            out[name] = float(value)
    return out


def metrics_case() -> dict[str, float]:
    """The metric classes on a seeded untrained MLP and a seeded batch: OrbitMetrics (c4, t4),
    SaliencyInvarianceSimilarity (c4), DriftMetrics (c4) and layer-wise G-EED (c4)."""
    from invreg.metrics import (
        DriftMetrics,
        LayerInvariance,
        OrbitMetrics,
        SaliencyInvarianceSimilarity,
    )

    model = seeded_mlp()
    x, y = seeded_batch()
    values: dict[str, Any] = {}
    for group in ("c4", "t4"):
        metrics = OrbitMetrics(group, NUM_CLASSES)
        metrics.update_from_model(model, x, y)
        values[f"orbit/{group}"] = dict(metrics.compute())
    si = SaliencyInvarianceSimilarity("c4", steps=4, baseline=0.0)
    si.update(model, x, y)
    values["SI/c4"] = si.compute()
    drift = seeded_batch(seed=4)[0]
    drift_metrics = DriftMetrics("c4", (0.0, 0.25, 0.5), NUM_CLASSES)
    drift_metrics.update_from_model(model, x, drift, y)
    values["drift/c4"] = {f"beta_{beta:.2f}": row
                          for beta, row in drift_metrics.compute().items()}
    layers = ["flatten", "hidden.0", "head"]
    for normalize in (False, True):
        torch.manual_seed(5)  # the normalisation's random pairs
        geed = LayerInvariance("c4", layers, normalize=normalize)
        geed.update(model, x)
        values[f"geed/c4/{'normalized' if normalize else 'raw'}"] = dict(geed.compute())
    return flat(values)


def evaluation_case() -> dict[str, float]:
    """``evaluate_invariance`` of the seeded MLP on 40 seeded samples in batches of 16: c4
    (whole orbits), t4 with a chunk size, and so2 with 4 sampled elements (seeded)."""
    from invreg.evaluation import evaluate_invariance

    model = seeded_mlp()
    x, y = seeded_batch(40, seed=6)
    batches = [(x[i:i + 16], y[i:i + 16]) for i in range(0, 40, 16)]
    values = {"c4": evaluate_invariance(model, batches, "c4"),
              "t4": evaluate_invariance(model, batches, "t4", chunk_size=5)}
    torch.manual_seed(7)
    values["so2"] = evaluate_invariance(model, batches, "so2", num_samples=4)
    return flat(values)


REPORT_OPTIONS = ["--samples", "24", "--bootstrap", "200", "--saliency_steps", "4",
                  "--betas", "[0.0, 0.5]", "--batch_size", "16", "--drift_source", "noise",
                  "--progress", "false", "--device", "cpu"]


def report_case(root: Path) -> dict[str, Any]:
    """``invreg report`` (through the console script's entry point, in-process) on the
    checkpoint of a tiny run of the tiny config (group c4): the numbers of ``report.md``'s
    tables as text, and the same measurements at full precision."""
    from invreg.cli import main, run_cli
    from invreg.report import write_report

    config = tiny_config(root, group="c4")
    run_cli(["fit", "--config", str(config), "--trainer.logger", "false",
             "--trainer.default_root_dir", str(root / "IR"), "--trainer.callbacks",
             "[{class_path: pytorch_lightning.callbacks.ModelCheckpoint, "
             "init_args: {filename: best}}]"])
    ckpt = root / "IR" / "version_0" / "checkpoints" / "best.ckpt"
    captured = []
    scope = write_report.__globals__  # the report's measurement, wherever it is defined
    measure = scope["measure"]

    def capture(*args, **kwargs):
        captured.append(measure(*args, **kwargs))
        return captured[-1]

    scope["measure"] = capture
    try:
        status = main(["report", "--ckpt_path", str(ckpt), "--name", "IR",
                       "--report_dir", str(root / "report"), *REPORT_OPTIONS])
    finally:
        scope["measure"] = measure
    if status != 0:
        raise AssertionError(f"invreg report exited {status}")
    (report,) = captured
    values = flat({"metrics": report.metrics, "geed": report.geed,
                   "drift": {f"beta_{row['beta']:.2f}": {k: v for k, v in row.items()
                                                        if k != "beta"}
                             for row in report.drift}})
    return {"values": values, "text": markdown_numbers(root / "report" / "report.md")}


NUMBER = re.compile(r"^-?\d[\d.]*(?:e[-+]?\d+)?(?: \[.*\])?$|^n/a$")


def markdown_numbers(path: Path) -> dict[str, str]:
    """Every numeric cell of the markdown's tables, keyed ``table<i>/<row label>/<column>``
    (row label: the first cell; cells as written)."""
    cells, table, header = {}, -1, None
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("|"):
            header = None
            continue
        row = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if header is None:
            header, table = row, table + 1
            continue
        if set("".join(row)) <= set("-: "):
            continue
        for column, cell in zip(header[1:], row[1:], strict=False):
            if NUMBER.match(cell):
                cells[f"table{table}/{row[0]}/{canonical(column)}"] = cell
    return cells


# --------------------------------------------------------------------------- comparison
#: float32 unit roundoff
U = 2.0 ** -24
#: the cases: name → (function of a work folder, terms, slow). ``terms`` bounds the float32
#: summation behind a value: the sum of the lengths of the sums along its computation (the
#: dot products of each layer, the terms of a loss, the samples × group elements of a mean),
#: rounded up to a power of two; see :func:`tolerances`.
CASES: dict[str, tuple[Any, int, bool]] = {
    # 12 samples × 4 elements = 48 terms per mean, layers of 64 and 16 inputs, a cosine over
    # 64 pixels, 4 integrated-gradients steps, a 3×3 blur: 48 + 64 + 16 + 64 + 4 + 9 = 205
    "metrics": (lambda root: metrics_case(), 256, False),
    # 40 samples × 4 elements = 160 terms per mean, layers of 64 and 16 inputs, 3 classes
    "evaluation": (lambda root: evaluation_case(), 256, False),
    # 4 training steps on batches of 32 samples × 4 elements (a loss of 128 terms), layers of
    # 64 and 16 inputs; measured on 32 validation samples × 4 elements
    "callbacks": (callbacks_case, 256, False),
    # the digits' 270 test samples × 4 elements = 1080 terms per mean, layers of 64 and 16
    # inputs, 10 classes, trained 2 steps on batches of 64 × 4 elements
    "quickstart": (quickstart_case, 2048, False),
    # the same model and test split, SI's bootstrap over 24 samples, drift on 24
    "report": (report_case, 2048, False),
    # 128 test images × 4 elements = 512 terms per mean, 36 × 36 = 1296 inputs per pixel sum
    "table1_smoke": (lambda root: table1_case(root, "smoke", ["R4", "T3"]), 2048, False),
    # 2,000 test images × 4 elements = 8000 terms per mean, 1296 inputs, 1,264 steps
    "table1_quick": (lambda root: table1_case(root, "quick", ["R4", "T3"]), 16384, True),
}

#: a measured value at or below this is the float32 residue of an exactly invariant model
#: (weight-tied DI and LI come out ~1e-9 and ~1e-16 where the exact value is 0)
RESIDUE = 1e-6


def tolerances(terms: int, values: dict[str, float]) -> tuple[float, float]:
    """``(rtol, atol)`` of a case.

    ``rtol = 8·u·terms`` (``u = 2⁻²⁴``): a sum of ``n`` float32 terms of one sign, added in
    any order, is within ``(n − 1)·u`` relative of the exact sum, and the errors of the
    successive sums of a computation add up; 8 leaves room for the few roundings of each
    term (an exponential, a logarithm, a division). ``atol = 8 × `` the largest residue
    (a value ≤ :data:`RESIDUE`, the rounding noise of a quantity that is exactly 0): such a
    residue has no relative precision, and a new summation order moves it by about its own
    size. Every other value of these cases is orders of magnitude above it.
    """
    numbers = [abs(v) for v in values.values() if isinstance(v, float) and not math.isnan(v)]
    residues = [v for v in numbers if v <= RESIDUE]
    return 8 * U * terms, 8 * max(residues, default=0.0) or 1e-30


def mismatches(measured: dict[str, Any], pinned: dict[str, Any], rtol: float,
               atol: float) -> list[str]:
    """A line per key missing on either side and per value not within ``(rtol, atol)``
    (``math.isclose``; NaN equals NaN; text must be equal)."""
    lines = [f"{key}: pinned, not measured" for key in sorted(set(pinned) - set(measured))]
    lines += [f"{key}: measured {measured[key]!r}, not pinned"
              for key in sorted(set(measured) - set(pinned))]
    for key in sorted(set(pinned) & set(measured)):
        got, want = measured[key], pinned[key]
        if isinstance(want, str) or isinstance(got, str):
            same = got == want
        elif math.isnan(want) or math.isnan(got):
            same = math.isnan(want) and math.isnan(got)
        else:
            same = math.isclose(got, want, rel_tol=rtol, abs_tol=atol)
        if not same:
            change = (f" (relative {abs(got - want) / abs(want):.3g})"
                      if not isinstance(want, str) and want else "")
            lines.append(f"{key}: measured {got!r}, pinned {want!r}{change}")
    return lines

"""Drift numbers of the three consumers pinned on tiny seeded cases.

DI and the accuracy ratio were once measured three times (``DriftCallback``, the drift section
of ``invreg report`` and the ``genuine-drift`` experiment); they now share
:class:`invreg.metrics.DriftMetrics`. The values below were recorded from the three separate
implementations before they were merged; the merged code must reproduce them. DI is a mean of
float32 KL terms, so a changed summation order may move it by a few float32 ulps of its
magnitude: ``rel = 64·eps(float32)``. Accuracies are counts over a handful of samples and are
compared exactly (their ratio is a float64 division of the float32 accuracies, as before).
"""

from __future__ import annotations

import types

import pytest
import torch
from callback_helpers import TinyData, make_trainer, tiny_module

from invreg import report
from invreg.callbacks import DriftCallback
from invreg.experiments import genuine
from invreg.experiments.core import Settings
from invreg.groups import get_group
from invreg.report.measuring import _drift

EPS = torch.finfo(torch.float32).eps
DI_REL = 64 * EPS


def close(value: float, pinned: float) -> bool:
    return value == pytest.approx(pinned, rel=DI_REL, abs=DI_REL * 1e-2)


# beta, DI, LI, accuracy, accuracy_ratio, consistency
CALLBACK_ROWS = [
    [0.0, 0.0193241648375988, 0.1426326036453247, 0.3333333432674408, 1.0, 0.1666666716337204],
    [0.25, 0.011940543539822102, 0.09602422267198563, 0.3333333432674408, 1.0, 0.25],
    [0.5, 0.00955356378108263, 0.0751691684126854, 0.4166666567325592, 1.2499999329447766,
     0.3333333432674408],
]


def test_callback_rows_are_the_pinned_ones(tmp_path):
    callback = DriftCallback(betas=(0.5, 0.25), source="noise", num_samples=12, seed=1,
                             save_local=False)
    make_trainer(tmp_path, [callback]).fit(tiny_module(), TinyData())
    rows = callback.history[-1]["table"]
    assert [row[0] for row in rows] == [row[0] for row in CALLBACK_ROWS]
    for row, pinned in zip(rows, CALLBACK_ROWS, strict=True):
        assert close(row[1], pinned[1]) and close(row[2], pinned[2])
        assert row[3:] == pinned[3:]


def tiny_inputs():
    module = tiny_module().eval()
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(10, 1, 8, 8, generator=generator)
    return module, x, torch.randint(0, 3, (10,), generator=generator)


REPORT_ROWS = [
    {"beta": 0.0, "DI": 0.015961192548274994, "accuracy": 0.10000000149011612,
     "accuracy_ratio": 1.0},
    {"beta": 0.1, "DI": 0.012888663448393345, "accuracy": 0.10000000149011612,
     "accuracy_ratio": 1.0},
    {"beta": 0.3, "DI": 0.010801523923873901, "accuracy": 0.30000001192092896,
     "accuracy_ratio": 3.000000074505805},
]


def test_report_drift_rows_are_the_pinned_ones():
    module, x, y = tiny_inputs()
    settings = report.ReportSettings(betas=(0.3, 0.1), drift_source="noise", seed=2,
                                     batch_size=4, progress=False, device="cpu")
    group = get_group("c4")
    result = report.CheckpointReport("tiny", {}, {}, {})
    _drift(module, group, group.fixed_elements(settings.orbit_size, settings.seed), x, y,
           result, settings, "tiny")
    assert [list(row) for row in result.drift] == [list(row) for row in REPORT_ROWS]
    for row, pinned in zip(result.drift, REPORT_ROWS, strict=True):
        assert close(row["DI"], pinned["DI"])
        assert {k: row[k] for k in ("beta", "accuracy", "accuracy_ratio")} == {
            k: pinned[k] for k in ("beta", "accuracy", "accuracy_ratio")}
    assert result.figures["drift"]


#: the per-seed key of Acc(β)/Acc(0) in ``genuine-drift``'s results (``acc_ratio`` before)
RATIO = "accuracy_ratio"
# model, seed, beta, DI, accuracy ratio
GENUINE_ROWS = [
    ("WT", 0, 0.0, 0.015961192548274994, 1.0),
    ("WT", 0, 0.2, 0.01044417079538107, 0.6666666501098215),
    ("WT", 0, 0.6, 0.011120537295937538, 0.6666666501098215),
    ("DA", 0, 0.0, 0.07698099315166473, 1.0),
    ("DA", 0, 0.2, 0.05230163037776947, 0.8333333002196431),
    ("DA", 0, 0.6, 0.05600440502166748, 0.8333333002196431),
    ("IR", 0, 0.0, 0.2210572063922882, 1.0),
    ("IR", 0, 0.2, 0.15806512534618378, 0.8333333002196431),
    ("IR", 0, 0.6, 0.16728074848651886, 0.6666666501098215),
    ("WT", 1, 0.0, 0.2210572063922882, 1.0),
    ("WT", 1, 0.2, 0.1531532257795334, 0.8333333002196431),
    ("WT", 1, 0.6, 0.138305202126503, 0.5),
    ("DA", 1, 0.0, 0.46870294213294983, 1.0),
    ("DA", 1, 0.2, 0.3458872139453888, 0.8333333002196431),
    ("DA", 1, 0.6, 0.32095667719841003, 0.5),
    ("IR", 1, 0.0, 0.8191974759101868, 1.0),
    ("IR", 1, 0.2, 0.6418155431747437, 0.8333333002196431),
    ("IR", 1, 0.6, 0.6061307191848755, 0.5),
]


def test_genuine_drift_rows_are_the_pinned_ones(tmp_path, monkeypatch):
    module, x, _ = tiny_inputs()
    with torch.no_grad():
        y = module(x).argmax(1)
    y[::3] = (y[::3] + 1) % 3  # some wrong labels, so the ratio is not always 1

    def models(group_name, settings, learned=True):
        """Six untrained tiny MLPs (2 seeds × WT/DA/IR), each scaled differently."""
        for seed in range(2):
            for index, kind in enumerate(("WT", "DA", "IR")):
                model = tiny_module().eval()
                with torch.no_grad():
                    for parameter in model.parameters():
                        parameter.mul_(1.0 + 0.5 * index + seed)
                yield seed, None, kind, 0.5 if kind == "IR" else 0.0, model

    monkeypatch.setattr(genuine, "table1_models", models)
    monkeypatch.setattr(genuine, "held_out_tensors", lambda data, limit: (x, y))
    settings = Settings(scale=types.SimpleNamespace(eval_samples=3), out=tmp_path, seeds=2,
                        epochs=1, progress=lambda message: None,
                        extra={"groups": ["R4"], "drift_source": "noise",
                               "betas": (0.0, 0.2, 0.6)})
    results = genuine.drift(settings)
    got = [(r["model"], r["seed"], r["beta"], r["DI"], r[RATIO]) for r in results.per_seed]
    assert [g[:3] for g in got] == [p[:3] for p in GENUINE_ROWS]
    for row, pinned in zip(got, GENUINE_ROWS, strict=True):
        assert close(row[3], pinned[3]) and row[4] == pinned[4]
    assert list(results.rows[0]) == ["group", "model", "beta", "seeds", "DI", "DI_std", RATIO,
                                      f"{RATIO}_std"]

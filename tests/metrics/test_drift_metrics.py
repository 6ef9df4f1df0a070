"""DriftMetrics, and the drift formulas of invreg.functional.drift (blend, the β grid, the
accuracy ratio) that the drift callback, ``invreg report`` and ``genuine-drift`` share."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
from torch import nn

import invreg
from invreg.functional import accuracy_ratio, blend, check_betas
from invreg.groups import Rotations
from invreg.metrics import DriftMetrics, OrbitMetrics

EPS32 = torch.finfo(torch.float32).eps


def model_and_data(n: int = 12):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(n, 1, 4, 4, generator=generator)
    drift = torch.randn(n, 1, 4, 4, generator=generator)
    with torch.no_grad():
        y = model(x).argmax(1)
    y[::4] = (y[::4] + 1) % 3
    return model, x, drift, y


def test_each_beta_equals_orbit_metrics_on_the_blended_inputs():
    model, x, drift, y = model_and_data()
    metrics = DriftMetrics(Rotations(4), betas=(0.5, 0.2))
    metrics.update_from_model(model, x, drift, y)
    values = metrics.compute()
    assert list(values) == [0.0, 0.2, 0.5]
    for beta, row in values.items():
        reference = OrbitMetrics(Rotations(4))
        reference.update_from_model(model, blend(x, drift, beta), y)
        for key, value in reference.compute().items():
            assert torch.equal(row[key], value), (beta, key)
    clean = values[0.0]["accuracy"].item()
    for row in values.values():
        assert row["accuracy_ratio"].dtype == torch.float64
        assert row["accuracy_ratio"].item() == row["accuracy"].item() / clean  # as floats
    assert values[0.0]["accuracy_ratio"].item() == 1.0
    rows = metrics.rows()
    assert [r["beta"] for r in rows] == [0.0, 0.2, 0.5] and isinstance(rows[1]["DI"], float)


def test_batches_add_up_to_one_batch():
    model, x, drift, y = model_and_data()
    whole, parts = DriftMetrics("c4", betas=[0.3]), DriftMetrics("c4", betas=[0.3])
    whole.update_from_model(model, x, drift, y)
    parts.update_from_model(model, x[:5], drift[:5], y[:5])
    parts.update_from_model(model, x[5:], drift[5:], y[5:])
    for a, b in zip(whole.rows(), parts.rows(), strict=True):
        for key in a:
            # sums of at most 12·3 float32 KL / LI terms in a different order
            assert b[key] == pytest.approx(a[key], rel=64 * EPS32, abs=64 * EPS32), key
    parts.reset()
    with pytest.warns(UserWarning, match="no samples"):
        assert math.isnan(parts.rows()[0]["DI"])


def test_update_with_precomputed_orbits_and_without_targets():
    model, x, drift, _ = model_and_data()
    metrics = DriftMetrics(Rotations(4), betas=[0.5], targets=False)
    metrics.update_from_model(model, x, drift)
    assert "accuracy" not in metrics.rows()[0] and "accuracy_ratio" not in metrics.rows()[0]
    orbits = [invreg.functional.orbit_logits(model, blend(x, drift, b), Rotations(4))
              for b in metrics.betas]
    again = DriftMetrics(Rotations(4), betas=[0.5], targets=False)
    again.update([o.detach() for o in orbits])
    assert again.rows() == metrics.rows()
    with pytest.raises(ValueError, match="orbits: expected one orbit tensor per beta"):
        again.update(orbits[:1])


def test_a_clean_accuracy_of_zero_gives_a_nan_ratio():
    assert math.isnan(accuracy_ratio(torch.tensor(0.5), torch.tensor(0.0)).item())
    assert math.isnan(accuracy_ratio(torch.tensor(0.5), torch.tensor(math.nan)).item())
    ratio = accuracy_ratio(torch.tensor([0.75, 0.25]), torch.tensor(0.5))
    assert ratio.tolist() == [1.5, 0.5] and ratio.dtype == torch.float64


def test_drift_of_another_shape_is_refused():
    model, x, drift, y = model_and_data()
    with pytest.raises(ValueError, match="drift: expected one drift sample per input"):
        DriftMetrics("c4").update_from_model(model, x, drift[:3], y)


def test_the_beta_grid():
    assert check_betas([0.5, 0.1, 0.5]) == (0.0, 0.1, 0.5)
    assert check_betas((0.0, 1.0)) == (0.0, 1.0)
    for bad in ([], [0.2, 1.5], [-0.1], [math.nan], [True], "0.5", 0.5, ["a"]):
        with pytest.raises(ValueError, match="betas: expected"):
            check_betas(bad)
    with pytest.raises(ValueError, match="betas: expected values in"):
        DriftMetrics("c4", betas=[2.0])


def test_blend_checks_beta_and_shape():
    x, drift = torch.zeros(2, 3), torch.ones(2, 3)
    assert blend(x, drift, 0.0) is x
    assert torch.equal(blend(x, drift, 1.0), drift)
    for bad in (-0.1, 1.5, math.nan, True, "0.5"):
        with pytest.raises(ValueError, match="beta must lie in"):
            blend(x, drift, bad)
    with pytest.raises(ValueError, match="drift: expected the shape of x"):
        blend(x, drift[:1], 0.5)



def test_the_drift_formulas_are_written_once():
    """The blend, the β check and the ratio live in invreg/functional/drift.py only."""
    root = Path(invreg.__file__).parent
    patterns = {
        "blend": re.compile(r"\(1(\.0)? - beta\) \*"),
        "beta check": re.compile(r"0\.0 <= b(eta)? <= 1\.0"),
        "ratio": re.compile(r"(acc|accuracy)\w* / (clean|base_acc)"),
    }
    home = root / "functional" / "drift.py"
    for path in root.rglob("*.py"):
        if path == home:
            continue
        text = path.read_text()
        for name, pattern in patterns.items():
            assert not pattern.search(text), f"{name} written again in {path.relative_to(root)}"

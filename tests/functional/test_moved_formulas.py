"""Formulas moved into ``invreg.functional`` (one formula, one place): the relative invariance
error of the HyperSensitivity objective, the bootstrap interval of ``invreg report`` and the
plain ``[B, C]`` accuracy of the hyper experiment.

Each is compared **bit for bit** (``torch.equal`` / ``==`` on floats) with a copy of the code
it replaced, inlined below as it stood, on random inputs in float32 and float64, and checked
against a hand-computed case. A last test keeps the formulas from being written again
elsewhere in the package.
"""

import re
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

import invreg
from invreg.experiments.hyper import Augerino, model_accuracy
from invreg.functional import (
    accuracy,
    bootstrap_interval,
    logits_accuracy,
    relative_invariance_error,
)
from invreg.testing import parametrize_dtypes


# ------------------------------------------------------------- the replaced code, verbatim
def old_relative_invariance_error(features: Tensor, transformed: Tensor) -> Tensor:
    # invreg/modules/hyper_sensitivity.py before the move
    if features.ndim != 2 or features.shape != transformed.shape or features.shape[0] < 2:
        raise ValueError("shape")
    spread = (features - features.mean(dim=0)).pow(2).sum()
    change = (features - transformed).pow(2).sum()
    return change / spread.clamp_min(torch.finfo(features.dtype).tiny)


def old_bootstrap_interval(values: Tensor, resamples: int = 2000, confidence: float = 0.95,
                           seed: int = 0) -> tuple[float, float]:
    # invreg/report.py before the move
    values = values.detach().double().flatten().cpu()
    if values.numel() == 0:
        raise ValueError("values: expected at least one value, got an empty tensor")
    generator = torch.Generator().manual_seed(seed)
    means = []
    block = max(1, 2**22 // values.numel())  # bounds the index matrix to ~32 MiB
    for start in range(0, resamples, block):
        count = min(block, resamples - start)
        index = torch.randint(values.numel(), (count, values.numel()), generator=generator)
        means.append(values[index].mean(dim=1))
    alpha = (1.0 - confidence) / 2
    low, high = torch.quantile(torch.cat(means), torch.tensor([alpha, 1.0 - alpha],
                                                              dtype=torch.float64))
    return low.item(), high.item()


@torch.no_grad()
def old_accuracy(model, x: Tensor, y: Tensor) -> float:
    # invreg/experiments/hyper.py before the move
    if isinstance(model, nn.Module):
        model.eval()
    correct = sum(int((model(chunk).argmax(1) == target).sum())
                  for chunk, target in zip(x.split(1024), y.split(1024), strict=True))
    return correct / x.shape[0]


# ------------------------------------------------------------- relative invariance error
@parametrize_dtypes()
@pytest.mark.parametrize("seed", range(4))
def test_relative_invariance_error_is_bit_identical_with_its_gradient(dtype, seed):
    generator = torch.Generator().manual_seed(seed)
    batch, dim = [(2, 1), (7, 3), (64, 16), (128, 40)][seed]
    scale = 10.0 ** (4 * seed - 6)  # magnitudes 1e-6 … 1e6
    h = scale * torch.randn(batch, dim, generator=generator, dtype=dtype)
    moved = h + 0.3 * scale * torch.randn(batch, dim, generator=generator, dtype=dtype)
    inputs = [h.clone().requires_grad_(), moved.clone().requires_grad_()]
    reference = [h.clone().requires_grad_(), moved.clone().requires_grad_()]
    new, old = relative_invariance_error(*inputs), old_relative_invariance_error(*reference)
    assert new.dtype == old.dtype == dtype
    assert torch.equal(new, old)
    new.backward()
    old.backward()
    for mine, theirs in zip(inputs, reference, strict=True):
        assert torch.equal(mine.grad, theirs.grad)
    # identical features: 0 / tiny, exactly 0
    assert torch.equal(relative_invariance_error(h, h), old_relative_invariance_error(h, h))


def test_relative_invariance_error_hand_computed():
    # mean h = (1, 0); spread = 1 + 1 = 2; change = 3² + 0 = 9 → 4.5 exactly
    h = torch.tensor([[0.0, 0.0], [2.0, 0.0]], dtype=torch.float64)
    moved = torch.tensor([[0.0, 3.0], [2.0, 0.0]], dtype=torch.float64)
    assert relative_invariance_error(h, moved).item() == 4.5
    assert relative_invariance_error(h.float(), moved.float()).item() == 4.5


def test_relative_invariance_error_rejects_bad_input_naming_the_argument():
    h = torch.zeros(4, 3)
    with pytest.raises(TypeError, match="features: expected a floating-point Tensor"):
        relative_invariance_error(torch.zeros(4, 3, dtype=torch.long), h)
    with pytest.raises(TypeError, match="transformed: expected a floating-point Tensor"):
        relative_invariance_error(h, [[0.0] * 3] * 4)
    with pytest.raises(ValueError, match=r"B >= 2, got \(1, 3\) and \(1, 3\)"):
        relative_invariance_error(h[:1], h[:1])
    with pytest.raises(ValueError, match=r"got \(4, 3\) and \(4, 2\)"):
        relative_invariance_error(h, h[:, :2])


# ------------------------------------------------------------- bootstrap interval
@parametrize_dtypes()
@pytest.mark.parametrize(("n", "resamples", "confidence", "seed"), [
    (1, 50, 0.95, 0),
    (25, 2000, 0.95, 1),
    (400, 500, 0.9, 7),
    (3000, 2000, 0.99, 3),  # 2^22 // 3000 = 1398 resamples per block: two blocks
])
def test_bootstrap_interval_is_bit_identical(dtype, n, resamples, confidence, seed):
    values = torch.rand(n, generator=torch.Generator().manual_seed(n + seed), dtype=dtype)
    new = bootstrap_interval(values, resamples, confidence, seed)
    assert new == old_bootstrap_interval(values, resamples, confidence, seed)
    assert all(type(v) is float for v in new)


def test_bootstrap_interval_hand_computed():
    # every resample of a constant is that constant; one value is its own interval
    assert bootstrap_interval(torch.full((10,), 0.25)) == (0.25, 0.25)
    assert bootstrap_interval(torch.tensor([3.0]), 10, 0.5, seed=4) == (3.0, 3.0)
    # two values: every resample mean is 0, ½ or 1, so the interval's ends lie in [0, 1]
    low, high = bootstrap_interval(torch.tensor([0.0, 1.0]), 1000, 0.5, seed=0)
    assert 0.0 <= low <= 0.5 <= high <= 1.0


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    (dict(values=[0.5, 0.7]), TypeError, "values: expected a Tensor"),
    (dict(values=torch.tensor([True])), TypeError, "values: expected real numbers"),
    (dict(values=torch.zeros(0)), ValueError, "values: expected at least one value"),
    (dict(resamples=0), ValueError, "resamples: expected a positive integer, got 0"),
    (dict(resamples=2.5), ValueError, "resamples: expected a positive integer"),
    (dict(confidence=1.0), ValueError, r"confidence: expected a level in \(0, 1\)"),
    (dict(confidence=95), ValueError, r"confidence: expected a level in \(0, 1\)"),
    (dict(seed=0.5), TypeError, "seed: expected an integer"),
])
def test_bootstrap_interval_rejects_bad_input_naming_the_argument(kwargs, error, message):
    arguments = dict(values=torch.rand(5), resamples=10, confidence=0.9, seed=0) | kwargs
    with pytest.raises(error, match=message):
        bootstrap_interval(**arguments)


# ------------------------------------------------------------- accuracy of plain logits
@parametrize_dtypes()
@pytest.mark.parametrize("seed", range(3))
def test_model_accuracy_is_bit_identical(dtype, seed):
    torch.manual_seed(seed)
    samples, classes = [50, 1024, 2500][seed], [2, 3, 10][seed]  # 1 / 1 / 3 chunks of 1,024
    x = torch.randn(samples, 6, dtype=dtype)
    y = torch.randint(classes, (samples,))
    model = nn.Linear(6, classes).to(dtype)
    new = model_accuracy(model, x, y)
    assert type(new) is float and new == old_accuracy(model, x, y)
    assert 0.0 < new < 1.0  # a random model: neither all right nor all wrong
    logits = model(x).detach()
    count = logits_accuracy(logits, y, reduction="sum")
    assert count.item() == int((logits.argmax(1) == y).sum())
    # the plain variant is the orbit accuracy of the one-element orbit
    assert torch.equal(logits_accuracy(logits, y), accuracy(logits.unsqueeze(1), y))
    assert torch.equal(logits_accuracy(logits, y, reduction="none"), logits.argmax(1) == y)


def test_model_accuracy_of_log_probabilities_with_minus_inf_is_unchanged():
    # Augerino's evaluation returns the log of averaged softmaxes: a class whose probability
    # underflows to 0 scores -inf, which still ranks last
    torch.manual_seed(0)
    linear = nn.Linear(16, 4)
    with torch.no_grad():
        linear.weight.mul_(1e3)  # logit gaps far beyond float32 softmax's range
    model = Augerino(nn.Sequential(nn.Flatten(), linear), width=0.5, copies=2)
    x = torch.randn(30, 1, 4, 4)
    y = torch.randint(4, (30,))
    torch.manual_seed(1)
    with torch.no_grad():
        assert torch.isneginf(model.eval()(x)).any()
    torch.manual_seed(1)
    new = model_accuracy(model, x, y)
    torch.manual_seed(1)
    assert new == old_accuracy(model, x, y)
    scores = torch.tensor([[0.0, -float("inf")], [-float("inf"), -1.0]])
    assert logits_accuracy(scores, torch.tensor([0, 0])).item() == 0.5


def test_logits_accuracy_hand_computed():
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 1.0]])  # the tie goes to class 0
    assert logits_accuracy(logits, torch.tensor([0, 0, 0]), reduction="sum").item() == 2.0
    assert logits_accuracy(logits, torch.tensor([0, 1, 0])).item() == 1.0
    assert logits_accuracy(logits, torch.tensor([1, 0, 1])).item() == 0.0
    assert logits_accuracy(logits.double(), torch.tensor([0, 0, 1])).item() == pytest.approx(
        1 / 3, rel=1e-7)  # float32 mean of three 0/1 values


@pytest.mark.parametrize(("logits", "target", "error", "message"), [
    ([[1.0, 0.0]], torch.tensor([0]), TypeError, "logits: expected a Tensor"),
    (torch.tensor([[1, 0]]), torch.tensor([0]), TypeError, "logits: expected floating-point"),
    (torch.zeros(2, 1, 3), torch.tensor([0, 0]), ValueError,
     r"logits: expected shape \[B, C\].*use accuracy or orbit_accuracy"),
    (torch.tensor([[float("nan"), 0.0]]), torch.tensor([0]), ValueError, "logits: contains NaN"),
    (torch.tensor([[float("inf"), 0.0]]), torch.tensor([0]), ValueError, r"\+Inf"),
    (torch.zeros(2, 3), torch.tensor([0.0, 1.0]), TypeError, "target: expected integer"),
    (torch.zeros(2, 3), torch.tensor([0, 3]), ValueError, r"target: class indices .*\[0, 3\)"),
    (torch.zeros(2, 3), torch.tensor([0]), ValueError, r"target: expected .* shape \(2,\)"),
])
def test_logits_accuracy_rejects_bad_input_naming_the_argument(logits, target, error, message):
    with pytest.raises(error, match=message):
        logits_accuracy(logits, target)


# ------------------------------------------------------------- one formula, one place
MOVED = ("relative_invariance_error", "bootstrap_interval", "accuracy")


def test_moved_formulas_are_defined_only_in_functional_or_metrics():
    package = Path(invreg.__file__).parent
    definition = re.compile(rf"^\s*def ({'|'.join(MOVED)})\(", re.MULTILINE)
    allowed = (package / "functional", package / "metrics")
    found: dict[str, list[str]] = {name: [] for name in MOVED}
    for path in sorted(package.rglob("*.py")):
        for match in definition.finditer(path.read_text(encoding="utf-8")):
            line = path.read_text(encoding="utf-8").count("\n", 0, match.start()) + 1
            found[match.group(1)].append(f"{path.relative_to(package.parent)}:{line}")
    elsewhere = [where for name in MOVED for where in found[name]
                 if not any((package.parent / where.split(":")[0]).is_relative_to(folder)
                            for folder in allowed)]
    assert not elsewhere, (
        f"defined outside invreg/functional and invreg/metrics: {elsewhere}; import the one "
        f"formula from invreg.functional instead"
    )
    # the scan sees the real definitions (a broken pattern would pass vacuously)
    assert all(found[name] for name in MOVED), found

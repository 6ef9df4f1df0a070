"""OrbitMetrics against the formulas in float64, accumulation, DDP-style merges; the
evaluate_invariance loop and the eval_mode context manager."""

import pytest
import torch
from torch import nn

from invreg.evaluation import eval_mode, evaluate_invariance
from invreg.groups import Rotations
from invreg.metrics import OrbitMetrics

C4 = Rotations(4)
#: float32 states over O(10) float32 terms of magnitude O(1): a few ulps relative each
REL = 64 * torch.finfo(torch.float32).eps


def reference_values(orbit: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """The definitions, written out in float64."""
    orbit = orbit.double()
    ref, other = orbit[:, :1], orbit[:, 1:]
    diff = (ref - other).pow(2).sum(-1)
    log_p, log_q = ref.log_softmax(-1), other.log_softmax(-1)
    pred = orbit.argmax(-1)
    return {
        "DI": (log_p.exp() * (log_p - log_q)).sum(-1).mean().item(),
        "LI": (0.5 * diff).mean().item(),
        "LI_normalized": (diff / ref.pow(2).sum(-1)).mean().item(),
        "consistency": (pred == pred[:, :1]).all(1).double().mean().item(),
        "orbit_accuracy": (pred == target[:, None]).all(1).double().mean().item(),
        "accuracy": (pred[:, 0] == target).double().mean().item(),
    }


def random_orbit(batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    orbit = torch.randn(batch, 4, 3, generator=gen)
    orbit[: batch // 2, 1:] = orbit[: batch // 2, :1]  # some orbits consistent
    return orbit, torch.randint(3, (batch,), generator=gen)


def test_values_equal_the_formulas_in_float64():
    orbit, target = random_orbit(16, 0)
    metrics = OrbitMetrics(C4, num_classes=3)
    metrics.update(orbit, target)
    values = metrics.compute()
    expected = reference_values(orbit, target)
    assert set(values) == set(expected)
    for key, value in expected.items():
        assert values[key].item() == pytest.approx(value, rel=REL, abs=REL), key


def test_accumulating_batches_equals_one_batch_and_empty_batches_change_nothing():
    orbit, target = random_orbit(24, 1)
    whole = OrbitMetrics(C4)
    whole.update(orbit, target)
    parts = OrbitMetrics(C4)
    for start, stop in ((0, 5), (5, 5), (5, 17), (17, 24)):  # (5, 5): an empty batch
        parts.update(orbit[start:stop], target[start:stop])
    for key, value in whole.compute().items():
        assert parts.compute()[key].item() == pytest.approx(value.item(), rel=REL, abs=REL), key


def test_states_of_two_processes_merge_to_the_single_process_value():
    orbit, target = random_orbit(20, 2)
    single, first, second = OrbitMetrics(C4), OrbitMetrics(C4), OrbitMetrics(C4)
    single.update(orbit, target)
    first.update(orbit[:7], target[:7])
    second.update(orbit[7:], target[7:])
    for name, metric in first.items(keep_base=True):
        metric.merge_state(second[name])  # what torchmetrics' sum reduction does under DDP
    merged = first.compute()
    for key, value in single.compute().items():
        assert merged[key].item() == pytest.approx(value.item(), rel=REL, abs=REL), key


def test_update_from_model_is_one_orbit_forward_and_checks_its_inputs():
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    x, y = torch.randn(6, 1, 4, 4), torch.randint(3, (6,))
    metrics = OrbitMetrics("c4", num_classes=3, chunk_size=4)
    orbit = metrics.update_from_model(model, x, y)
    assert orbit.shape == (6, 4, 3)
    expected = reference_values(orbit, y)
    assert metrics.compute()["LI"].item() == pytest.approx(expected["LI"], rel=REL)
    with pytest.raises(ValueError, match="target: required"):
        metrics.update(orbit)
    with pytest.raises(ValueError, match="num_classes"):
        OrbitMetrics(C4, num_classes=5).update(orbit, y)
    unlabelled = OrbitMetrics(C4, targets=False)
    unlabelled.update(orbit)
    assert set(unlabelled.compute()) == {"DI", "LI", "LI_normalized", "consistency"}


def test_compute_without_data_is_nan_with_a_warning():
    with pytest.warns(UserWarning, match="no samples were seen"):
        values = OrbitMetrics(C4).compute()
    assert all(v.isnan() for v in values.values())


class Energy(nn.Module):
    """Invariant to every rotation; a Dropout to see the mode change."""

    def __init__(self) -> None:
        super().__init__()
        self.drop = nn.Dropout(0.5)
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        s = self.drop(self.scale * x.pow(2).flatten(1)).sum(1)
        return torch.stack([s, -s], dim=1)


def test_evaluate_invariance_equals_one_collection_and_restores_the_mode():
    gen = torch.Generator().manual_seed(3)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3), nn.Dropout(0.5))
    x, y = torch.randn(10, 1, 4, 4, generator=gen), torch.randint(3, (10,), generator=gen)
    model.train()
    scores = evaluate_invariance(model, [(x[:3], y[:3]), (x[3:], y[3:])], C4, chunk_size=2)
    assert model.training and model[2].training  # restored
    with torch.no_grad():
        expected = reference_values(model.eval()(C4.orbit(x).flatten(0, 1)).view(10, 4, 3), y)
    assert set(scores) == {"accuracy", "DI", "LI", "consistency", "orbit_accuracy"}
    for key, value in scores.items():
        assert value == pytest.approx(expected[key], rel=REL, abs=REL), key
    # an invariant model in train mode would be random through Dropout: eval mode makes it exact
    energy = Energy().train()
    batches = [(torch.randn(4, 1, 6, 6), torch.zeros(4, dtype=torch.long))]
    assert evaluate_invariance(energy, batches, C4)["consistency"] == 1.0
    assert energy.training
    with pytest.raises(ValueError, match="no samples"):
        evaluate_invariance(model, [], C4)


def test_eval_mode_restores_each_submodule_also_on_error():
    net = nn.Sequential(nn.Dropout(), nn.Sequential(nn.BatchNorm1d(2), nn.Dropout()))
    net[1][0].eval()  # a frozen BatchNorm inside a training model
    before = [m.training for m in net.modules()]
    with pytest.raises(RuntimeError, match="inside"), eval_mode(net):
        assert not any(m.training for m in net.modules())
        raise RuntimeError("inside")
    assert [m.training for m in net.modules()] == before
    with eval_mode(net, enabled=False):
        assert [m.training for m in net.modules()] == before

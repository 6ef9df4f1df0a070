"""Metric classes: an empty batch leaves the state unchanged; bad targets are rejected."""

import pytest
import torch

from invreg.groups import Rotations
from invreg.metrics import (
    LayerInvariance,
    LogitInvariance,
    OrbitAccuracy,
    OrbitConsistency,
    PredictiveDistributionInvariance,
    SaliencyInvarianceSimilarity,
)
from invreg.models import E2CNN, MLP

C4 = Rotations(4)


def states(metric):
    return {name: value.clone() for name, value in metric.metric_state.items()}


def assert_same_states(before, after):
    assert before.keys() == after.keys()
    for name in before:
        assert torch.equal(before[name], after[name]), name


def test_output_metrics_ignore_an_empty_batch():
    orbit = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [2.0, 0.0]]])
    target = torch.tensor([0])
    empty, no_target = torch.zeros(0, 3, 2), torch.zeros(0, dtype=torch.long)
    for metric in (
        LogitInvariance(),
        LogitInvariance(normalized=True),
        PredictiveDistributionInvariance(),
        OrbitConsistency(),
        OrbitAccuracy(),
    ):
        accuracy = isinstance(metric, OrbitAccuracy)
        metric.update(*((orbit, target) if accuracy else (orbit,)))
        before, value = states(metric), metric.compute()
        metric.update(*((empty, no_target) if accuracy else (empty,)))
        assert_same_states(before, states(metric))
        assert torch.equal(metric.compute(), value)


def test_model_metrics_ignore_an_empty_batch():
    torch.manual_seed(0)
    mlp = MLP((1, 9, 9), 5, hidden_widths=(8,)).eval()
    x = torch.randn(4, 1, 9, 9)
    si = SaliencyInvarianceSimilarity(C4, "gradient")
    layers = LayerInvariance(C4, ["hidden.0", "head"])
    si.update(mlp, x)
    layers.update(mlp, x)
    before_si, before_layers = states(si), states(layers)
    si.update(mlp, x[:0], torch.zeros(0, dtype=torch.long))
    layers.update(mlp, x[:0])
    assert_same_states(before_si, states(si))
    assert_same_states(before_layers, states(layers))
    # a model that cannot run on 0 inputs is not asked to
    e2 = E2CNN((1, 9, 9), 3, group="c4", channels=(2,)).eval()
    e2_layers = LayerInvariance(C4, "head")
    e2_layers.update(e2, x[:0])
    SaliencyInvarianceSimilarity(C4).update(e2, x[:0])
    assert e2_layers.metric_state[e2_layers._count_name].item() == 0


@pytest.mark.filterwarnings("ignore:The ``compute`` method of metric")
def test_compute_after_only_empty_batches_is_nan_with_a_warning():
    metric = LogitInvariance()
    metric.update(torch.zeros(0, 3, 2))
    with pytest.warns(UserWarning, match="no samples were seen"):
        assert torch.isnan(metric.compute())


@pytest.mark.parametrize(
    ("target", "error", "match"),
    [
        (torch.tensor([0, 2]), ValueError, r"target: class indices must lie in \[0, 2\)"),
        (torch.tensor([-3, 0]), ValueError, r"target: class indices must lie in \[0, 2\)"),
        (torch.tensor([0.0, 1.0]), TypeError, r"target: expected integer.*float32"),
    ],
)
def test_orbit_accuracy_rejects_bad_targets_and_keeps_its_state(target, error, match):
    metric = OrbitAccuracy()
    orbit = torch.tensor([[[2.0, 1.0], [3.0, 0.0]], [[2.0, 1.0], [0.0, 3.0]]])
    metric.update(orbit, torch.tensor([0, 0]))
    before = states(metric)
    with pytest.raises(error, match=match):
        metric.update(orbit, target)
    assert_same_states(before, states(metric))


def test_saliency_metric_rejects_bad_targets():
    mlp = MLP((1, 4, 4), 3, hidden_widths=(4,)).eval()
    metric = SaliencyInvarianceSimilarity(C4, "gradient")
    x = torch.randn(2, 1, 4, 4)
    with pytest.raises(ValueError, match=r"target: class indices must lie in \[0, 3\)"):
        metric.update(mlp, x, torch.tensor([3, 0]))
    with pytest.raises(TypeError, match="target: expected integer"):
        metric.update(mlp, x, torch.tensor([1.0, 0.0]))

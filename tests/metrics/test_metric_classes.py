"""The torchmetrics classes: values, accumulation, collections, empty state, bad input, plots."""

import math

import matplotlib
import pytest
import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from invreg.functional import (
    geed,
    geed_terms,
    logit_invariance,
    orbit_accuracy,
    orbit_consistency,
    orbit_features,
    orbit_logits,
    predictive_kl_invariance,
    saliency_invariance,
)
from invreg.groups import Rotations
from invreg.metrics import (
    LayerInvariance,
    LogitInvariance,
    OrbitAccuracy,
    OrbitConsistency,
    PredictiveDistributionInvariance,
    SaliencyInvarianceSimilarity,
)
from invreg.models import E2CNN, MLP, TiedMLP

matplotlib.use("Agg")
C4 = Rotations(4)
EPS32 = torch.finfo(torch.float32).eps
#: hand-computed cases: small exact inputs through a few float32 roundings (eps relative each)
HAND = 16 * EPS32
#: the same formula on the same data, batched differently: the float32 sums of the per-pair
#: values (30 pairs here) are reordered, n terms err by at most n·eps relative
BATCHED = (30 + 8) * EPS32


def model_rounding(features, fan_ins, pairs):
    """Absolute difference of a mean of per-pair cosines (or distances ~1) between two float32
    evaluations of the same model in different batch sizes: the features differ by ~fan_ins·eps
    relative, each cosine over D features rounds by ~D·eps, the mean of ``pairs`` by pairs·eps.
    """
    return (features + fan_ins + pairs) * EPS32


def invariant_geed_tolerance(model, x, layer, mode):
    """Normalised cosine G-EED of a layer invariant / equivariant up to rounding: the cosine's
    own rounding (D + 3)·eps, doubled, divided by the random-pair distance R."""
    orbit = orbit_features(model, x, C4, [layer])
    _, random_pairs = geed_terms(orbit, layer, C4, mode)
    return 2 * (orbit.features[layer][0, 0].numel() + 3) * EPS32 / random_pairs.mean().item()


def invariant_logit_tolerances(orbit, fan_ins):
    """(LI, DI) bounds for logits that agree up to float32 rounding d = fan_ins·eps·max|x|:
    LI ≤ ½·C·d²; DI ≤ the log-softmax rounding 4·eps·(2·max|x| + ln C + 3) plus 2·d."""
    classes, top = orbit.shape[2], orbit.abs().max().item()
    d = fan_ins * EPS32 * top
    return 0.5 * classes * d**2, 4 * EPS32 * (2 * top + math.log(classes) + 3) + 2 * d


ORBIT_METRICS = [
    PredictiveDistributionInvariance,
    LogitInvariance,
    lambda: LogitInvariance(normalized=True),
    OrbitConsistency,
]


@pytest.fixture(scope="module")
def data():
    torch.manual_seed(0)
    x = torch.randn(10, 1, 9, 9)
    target = torch.randint(0, 5, (10,))
    mlp = MLP((1, 9, 9), 5, hidden_widths=(16, 16)).eval()
    tied = TiedMLP((1, 9, 9), 5, group="c4", hidden_widths=(16, 16)).eval()
    return x, target, mlp, tied


def test_declared_properties():
    lower = {PredictiveDistributionInvariance, LogitInvariance, LayerInvariance}
    for cls in (
        PredictiveDistributionInvariance,
        LogitInvariance,
        OrbitConsistency,
        OrbitAccuracy,
        SaliencyInvarianceSimilarity,
        LayerInvariance,
    ):
        assert cls.full_state_update is False
        assert cls.is_differentiable is False
        assert cls.higher_is_better is (cls not in lower)


def test_hand_computed_values():
    orbit = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [2.0, 0.0]]])
    li = LogitInvariance()
    li.update(orbit)
    assert li.compute().item() == pytest.approx(0.75, rel=HAND)
    normalized = LogitInvariance(normalized=True)
    normalized.update(orbit)
    assert normalized.compute().item() == pytest.approx(1.5, rel=HAND)
    di = PredictiveDistributionInvariance()
    di.update(torch.tensor([[[0.0, 0.0], [0.0, 0.0], [1.0, -1.0]]]))
    q = 1 / (1 + math.exp(-2))  # softmax([1, -1])[0]
    kl = 0.5 * math.log(0.5 / q) + 0.5 * math.log(0.5 / (1 - q))
    assert di.compute().item() == pytest.approx(kl / 2, rel=HAND)
    consistency, accuracy = OrbitConsistency(), OrbitAccuracy()
    two = torch.tensor([[[2.0, 1.0], [3.0, 0.0]], [[2.0, 1.0], [0.0, 3.0]]])
    consistency.update(two)
    accuracy.update(two, torch.tensor([1, 0]))
    assert consistency.compute().item() == 0.5
    assert accuracy.compute().item() == 0.0


def test_accumulation_equals_the_functional_on_all_data(data):
    x, target, mlp, _ = data
    orbit = orbit_logits(mlp, x, C4)
    expected = {
        "di": predictive_kl_invariance(orbit),
        "li": logit_invariance(orbit),
        "nli": logit_invariance(orbit, normalized=True),
        "consistency": orbit_consistency(orbit),
        "accuracy": orbit_accuracy(orbit, target),
    }
    metrics = {
        "di": PredictiveDistributionInvariance(),
        "li": LogitInvariance(),
        "nli": LogitInvariance(normalized=True),
        "consistency": OrbitConsistency(),
        "accuracy": OrbitAccuracy(),
    }
    for lo, hi in ((0, 3), (3, 4), (4, 10)):  # uneven batches
        for name, metric in metrics.items():
            args = (orbit[lo:hi], target[lo:hi]) if name == "accuracy" else (orbit[lo:hi],)
            metric.update(*args)
    for name, metric in metrics.items():
        assert metric.compute().item() == pytest.approx(expected[name].item(), rel=BATCHED)
        assert all(v.numel() == 1 for v in metric.metric_state.values())  # sums and counts


def test_model_metrics_equal_the_functional(data):
    x, target, mlp, _ = data
    si = SaliencyInvarianceSimilarity(C4, "gradient")
    layers = LayerInvariance(C4, ["hidden.0", "head"], normalize=False)
    for lo, hi in ((0, 4), (4, 10)):
        si.update(mlp, x[lo:hi], target[lo:hi])
        layers.update(mlp, x[lo:hi])
    expected_si = saliency_invariance(mlp, x, target, C4, "gradient")
    tol = model_rounding(81, 81 + 16 + 16, 30)  # 81-pixel maps, fan-ins 81, 16, 16
    assert si.compute().item() == pytest.approx(expected_si.item(), abs=tol)
    values = layers.compute()
    assert set(values) == {"hidden.0", "head"}
    for name, value in values.items():
        expected = geed(mlp, x, C4, name, normalize=False)
        assert value.item() == pytest.approx(expected.item(), abs=tol)
    # normalised: (ΣD/n_D) / (ΣR/n_R) with the random pairs formed inside each batch
    normalized = LayerInvariance(C4, "head")
    normalized.update(mlp, x)
    expected = geed(mlp, x, C4, "head").item()
    assert normalized.compute().item() == pytest.approx(expected, rel=BATCHED)


def test_invariant_models(data):
    x, target, _, tied = data
    e2 = E2CNN((1, 9, 9), 5, group="c4", channels=(2, 4)).eval()
    for model in (tied, e2):
        orbit = orbit_logits(model, x, C4)
        di, li = PredictiveDistributionInvariance(), LogitInvariance()
        consistency = OrbitConsistency()
        si = SaliencyInvarianceSimilarity(C4, steps=8)
        di.update(orbit)
        li.update(orbit)
        consistency.update(orbit)
        si.update(model, x, target)
        # fan-ins summed over both models' layers: 81 (tied input) + 72 (second e2cnn conv)
        # + 16 + 16 + 16 (hidden and heads)
        li_tol, di_tol = invariant_logit_tolerances(orbit, 81 + 72 + 16 + 16 + 16)
        assert di.compute().abs().item() <= di_tol
        assert li.compute().item() <= li_tol
        assert consistency.compute().item() == 1.0
        assert si.compute().item() > 0.999
    layers = LayerInvariance(C4, ["blocks.1", "group_pool"], mode="equivariance")
    layers.update(e2, x)
    for name, value in layers.compute().items():
        assert value.item() < invariant_geed_tolerance(e2, x, name, "equivariance"), name


def test_random_mlp(data):
    x, target, mlp, _ = data
    li, si = LogitInvariance(), SaliencyInvarianceSimilarity(C4, steps=8)
    li.update(orbit_logits(mlp, x, C4))
    si.update(mlp, x, target)
    assert li.compute().item() > 1e-4
    assert si.compute().item() < 0.9


def test_collection_next_to_torchmetrics_accuracy(data):
    x, target, mlp, tied = data
    collection = MetricCollection(
        {
            "acc": MulticlassAccuracy(num_classes=5),
            "di": PredictiveDistributionInvariance(),
            "li": LogitInvariance(),
            "li_norm": LogitInvariance(normalized=True),
            "consistency": OrbitConsistency(),
            "orbit_acc": OrbitAccuracy(),
            "si": SaliencyInvarianceSimilarity(C4, "gradient"),
            "si_ig": SaliencyInvarianceSimilarity(C4, steps=4),
            "geed": LayerInvariance(C4, ["hidden.1", "head"]),
        }
    )
    singles = {name: metric.clone() for name, metric in collection.items()}
    # first batch from an invariant model: DI = LI = 0, consistency = SI = 1 everywhere, so
    # metrics with alike states would be merged into one compute group if their names matched
    for model, lo, hi in ((tied, 0, 5), (mlp, 5, 10)):
        kwargs = dict(
            preds=model(x[lo:hi]),
            target=target[lo:hi],
            orbit=orbit_logits(model, x[lo:hi], C4),
            model=model,
            x=x[lo:hi],
        )
        collection.update(**kwargs)
        for metric in singles.values():
            metric.update(**metric._filter_kwargs(**kwargs))
    result = collection.compute()
    # a dict-valued metric contributes its own keys (torchmetrics prefixes them only on a clash)
    assert set(result) == {
        "acc", "di", "li", "li_norm", "consistency", "orbit_acc", "si", "si_ig",
        "hidden.1", "head",
    }  # fmt: skip
    for name, metric in singles.items():
        value = metric.compute()
        if isinstance(value, dict):
            # the same formulas on the same data: a few roundings apart at most
            for layer, v in value.items():
                assert result[layer].item() == pytest.approx(v.item(), rel=HAND, abs=HAND)
        else:
            assert result[name].item() == pytest.approx(value.item(), rel=HAND, abs=HAND), name


@pytest.mark.filterwarnings("ignore:The ``compute`` method of metric")
def test_empty_compute_warns_and_returns_nan():
    for metric in (
        PredictiveDistributionInvariance(),
        LogitInvariance(),
        OrbitConsistency(),
        OrbitAccuracy(),
        SaliencyInvarianceSimilarity(C4),
        LayerInvariance(C4, "head"),
    ):
        with pytest.warns(UserWarning, match="no samples were seen"):
            assert torch.isnan(metric.compute())
    many = LayerInvariance(C4, ["a", "b"])
    with pytest.warns(UserWarning, match="no samples were seen"):
        assert all(torch.isnan(v) for v in many.compute().values())


def test_normalized_layer_invariance_without_pairs_warns(data):
    x, _, mlp, _ = data
    metric = LayerInvariance(C4, "head")
    metric.update(mlp, x[:1])
    with pytest.warns(UserWarning, match="no random input pairs"):
        assert torch.isnan(metric.compute())
    unnormalized = LayerInvariance(C4, "head", normalize=False)
    unnormalized.update(mlp, x[:1])
    assert torch.isfinite(unnormalized.compute())


def test_bad_input_leaves_the_state_unchanged(data):
    x, target, mlp, _ = data
    li = LogitInvariance()
    with pytest.raises(ValueError, match=r"\[B, N, C\]"):
        li.update(torch.zeros(3, 4))
    bad = torch.zeros(2, 4, 3)
    bad[1, 2, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or Inf"):
        li.update(bad)
    bad[1, 2, 0] = float("inf")
    with pytest.raises(ValueError, match="NaN or Inf"):
        PredictiveDistributionInvariance().update(bad)
    with pytest.raises(ValueError, match="target"):
        OrbitAccuracy().update(torch.zeros(2, 4, 3), torch.zeros(5, dtype=torch.long))
    assert li.metric_state["logit_error_pairs"] == 0
    with pytest.raises(ValueError, match="square"):
        SaliencyInvarianceSimilarity(C4).update(mlp, torch.zeros(2, 1, 9, 8))
    with pytest.raises(ValueError, match="Did you mean 'head'"):
        LayerInvariance(C4, "haed").update(mlp, x)
    with pytest.raises(ValueError, match="method"):
        SaliencyInvarianceSimilarity(C4, "occlusion")
    with pytest.raises(ValueError, match="target_class"):
        SaliencyInvarianceSimilarity(C4, target_class="true")
    with pytest.raises(ValueError, match="distinct"):
        LayerInvariance(C4, ["head", "head"])
    with pytest.raises(ValueError, match="Unknown group name"):
        LayerInvariance("c4x", "head")


def test_target_class_prediction_ignores_labels(data):
    x, target, mlp, _ = data
    by_prediction = SaliencyInvarianceSimilarity("c4", "gradient", target_class="prediction")
    by_prediction.update(mlp, x, target)
    expected = saliency_invariance(mlp, x, None, C4, "gradient")
    assert by_prediction.compute().item() == pytest.approx(expected.item(), rel=HAND)


def test_forward_returns_the_batch_value(data):
    x, target, mlp, _ = data
    orbit = orbit_logits(mlp, x, C4)
    metric = LogitInvariance()
    batch_value = metric(orbit[:4])
    assert batch_value.item() == pytest.approx(logit_invariance(orbit[:4]).item(), rel=BATCHED)
    metric(orbit[4:])
    assert metric.compute().item() == pytest.approx(logit_invariance(orbit).item(), rel=BATCHED)
    si = SaliencyInvarianceSimilarity(C4, "gradient")
    with torch.inference_mode():
        value = si(mlp, x[:3], target[:3])
    assert 0.0 < value.item() < 1.0


def test_plot(data):
    x, _, mlp, _ = data
    li = LogitInvariance()
    li.update(orbit_logits(mlp, x, C4))
    fig, ax = li.plot()
    assert fig is not None
    fig, ax = li.plot([li.compute(), li.compute() / 2])
    layers = LayerInvariance(C4, ["hidden.0", "head"])
    layers.update(mlp, x)
    fig, ax = layers.plot()
    assert len(ax.get_lines()) == 2

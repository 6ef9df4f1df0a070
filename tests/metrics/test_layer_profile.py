"""layer_profile: per-layer G-EED rows through LayerInvariance, at the float floor for an
e2cnn G-CNN, clearly non-zero for a plain CNN under the spatial action."""

import math

import pytest
import torch

from invreg.metrics import LayerInvariance, layer_profile
from invreg.models import E2CNN
from invreg.models.cnn import SmallCNN

FLOOR = 1e-5  # mean deviation / mean feature norm at float32 rounding


def gcnn():
    torch.manual_seed(0)
    # 9 is odd: every max pool uses kernel 3, whose windows commute with quarter turns
    model = E2CNN((1, 9, 9), num_classes=3, group="c4", channels=(2, 3), kernel_size=3)
    return model.eval(), [torch.randn(4, 1, 9, 9), (torch.randn(3, 1, 9, 9), torch.zeros(3))]


def by_key(rows):
    return {(row["layer"], row["mode"]): row for row in rows}


def test_gcnn_hidden_layers_equivariant_and_pooled_invariant_at_float_floor():
    model, batches = gcnn()
    layers = ["blocks.0.conv", "blocks.0", "blocks.1.conv", "blocks.1", "group_pool", "head", ""]
    rows = by_key(layer_profile(model, batches, "c4", layers))
    for name in layers[:5]:  # hidden GeometricTensors: the fibre action of their field type
        row = rows[name, "equivariance"]
        assert row["reason"] is None and row["feature_norm"] > 0.1
        assert row["D"] <= FLOOR * row["feature_norm"], row
    for name in ("head", ""):  # after group pooling and the spatial mean: invariant
        row = rows[name, "invariance"]
        assert row["D"] <= FLOOR * row["feature_norm"], row
        assert row["R"] > 1e3 * row["D"]
    # hidden regular fields are not invariant: their channels move with the input
    assert rows["blocks.0", "invariance"]["ratio"] > 0.1
    # logits [B, K] are nothing the group acts on: a reason instead of a crash
    assert rows["head", "equivariance"]["reason"] is not None
    assert math.isnan(rows["head", "equivariance"]["D"])


def test_plain_cnn_not_equivariant_under_spatial_rotation():
    torch.manual_seed(0)
    model = SmallCNN((1, 8, 8), num_classes=3, channels=(4, 4)).eval()
    batches = [torch.randn(4, 1, 8, 8)]
    rows = by_key(layer_profile(model, batches, "c4", ["blocks.0.conv", "blocks.1.conv"]))
    for name in ("blocks.0.conv", "blocks.1.conv"):
        row = rows[name, "equivariance"]
        assert row["reason"] is None
        assert row["D"] >= 1e-2 * row["feature_norm"], row


@pytest.mark.parametrize("mode", ["invariance", "equivariance"])
def test_numbers_are_those_of_the_layer_metric(mode):
    model, batches = gcnn()
    layers = ["blocks.0", "group_pool"]
    rows = by_key(layer_profile(model, batches, "c4", layers, modes=[mode], distance="cosine"))
    raw = LayerInvariance("c4", layers, mode, "cosine", normalize=False)
    normalised = LayerInvariance("c4", layers, mode, "cosine")
    for x in (batches[0], batches[1][0]):
        raw.update(model, x)
        normalised.update(model, x)
    d, r, ratio = raw.compute(), raw.random_pair_distance(), normalised.compute()
    for name in layers:
        row = rows[name, mode]
        assert row["D"] == d[name].item() and row["R"] == r[name].item()
        assert row["ratio"] == ratio[name].item()
    assert {key[1] for key in rows} == {mode}


def test_default_layers_are_every_module_run_once_in_order():
    model, batches = gcnn()
    rows = layer_profile(model, batches[:1], "c4", modes=["invariance"])
    names = [row["layer"] for row in rows]
    assert names[0] == "blocks.0.conv" and names[-1] == ""
    assert names.index("blocks.0") < names.index("group_pool") < names.index("head")


def test_unknown_layer_name_and_bad_arguments():
    model, batches = gcnn()
    with pytest.raises(ValueError, match=r"'blocks\.9' is not a module of E2CNN"):
        layer_profile(model, batches, "c4", ["blocks.0", "blocks.9"])
    with pytest.raises(ValueError, match="modes"):
        layer_profile(model, batches, "c4", ["blocks.0"], modes=["equivariant"])
    with pytest.raises(ValueError, match="batches is empty"):
        layer_profile(model, [], "c4", ["blocks.0"])


def test_single_sample_batches_give_nan_r_with_a_warning():
    model, batches = gcnn()
    with pytest.warns(UserWarning, match="no random input pairs"):
        rows = layer_profile(model, [batches[0][:1]], "c4", ["group_pool"], modes=["invariance"])
    assert math.isnan(rows[0]["R"]) and math.isnan(rows[0]["ratio"])
    assert rows[0]["D"] >= 0 and rows[0]["feature_norm"] > 0

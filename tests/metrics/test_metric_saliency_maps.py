"""SaliencyInvarianceSimilarity is the one way SI is measured: per-sample values
(``per_sample=True``) and the maps of a figure (``keep_maps=R``) come from the same backward as
SI, and every value is **bit for bit** what the code it replaced computed.

The replaced code is inlined below as it stood (the metric's update and the saliency callback's
raw-maps-then-post-processing path), and compared with ``torch.equal`` on seeded models in
float32 and float64.
"""

import pytest
import torch
from torch import Tensor, nn

from invreg.functional.saliency import (
    SaliencyRecipe,
    orbit_saliency,
    orbit_saliency_stages,
    postprocess_saliency,
    saliency_invariance,
    saliency_similarity,
)
from invreg.groups import ContinuousRotations, get_group
from invreg.metrics import SaliencyInvarianceSimilarity
from invreg.metrics.saliency import SaliencyMaps
from invreg.testing import parametrize_dtypes


# ------------------------------------------------------------- the replaced code, verbatim
def old_metric_sum_count(model, x, target, group, recipe, elements=None) -> tuple[Tensor, int]:
    # invreg/metrics/saliency.py's update before the change (numeric baseline)
    similarity = saliency_invariance(model, x, target, group, recipe, reduction="none",
                                     elements=elements)
    return similarity.sum(), similarity.numel()


def old_callback_path(model, x, y, group, recipe, elements=None):
    # invreg/callbacks/saliency.py's evaluate (and invreg report's _saliency) before the change
    from dataclasses import replace

    raw = orbit_saliency(model, x, y, group,
                         replace(recipe, threshold=None, blur=False), elements=elements)
    maps = postprocess_saliency(
        raw.flatten(0, 1), threshold=recipe.threshold, blur=recipe.blur,
        blur_kernel_size=recipe.blur_kernel_size, blur_sigma=recipe.blur_sigma,
    ).reshape_as(raw)
    similarity = saliency_similarity(maps, reduction="none")
    return raw, maps, similarity


def seeded_model(dtype, shape=(1, 8, 8), classes=3, seed=0):
    torch.manual_seed(seed)
    size = torch.Size(shape).numel()
    return nn.Sequential(nn.Flatten(), nn.Linear(size, 16), nn.Tanh(),
                         nn.Linear(16, classes)).to(dtype).eval()


CASES = [  # group, input shape, orbit elements (None: all of a finite group)
    ("c4", (1, 8, 8), None),
    ("d4", (2, 8, 8), None),
    ("t4", (1, 8, 8), None),
    ("so2", (1, 8, 8), "fixed"),
]


def elements_of(group, fixed):
    if fixed is None:
        return None
    return get_group(group).elements(4, generator=torch.Generator().manual_seed(3))


# ------------------------------------------------------------- bit for bit
@parametrize_dtypes()
@pytest.mark.parametrize(("group", "shape", "fixed"), CASES)
def test_values_per_sample_and_maps_are_bit_identical_to_the_replaced_code(
        dtype, group, shape, fixed):
    model = seeded_model(dtype, shape)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(7, *shape, generator=generator).to(dtype)
    y = torch.randint(3, (7,), generator=generator)
    recipe = SaliencyRecipe(steps=5, baseline=-0.4)
    elements = elements_of(group, fixed)
    metric = SaliencyInvarianceSimilarity(group, recipe, per_sample=True, keep_maps=4)
    for rows in (slice(0, 3), slice(3, 7)):  # two updates, as over batches
        metric.update(model, x[rows], y[rows], elements=elements)

    total, count = torch.zeros(()), 0
    raws, mapses, similarities = [], [], []
    for rows in (slice(0, 3), slice(3, 7)):
        s, n = old_metric_sum_count(model, x[rows], y[rows], group, recipe, elements)
        total, count = total + s.detach().to(total.dtype), count + n
        raw, maps, similarity = old_callback_path(model, x[rows], y[rows], get_group(group),
                                                  recipe, elements)
        raws.append(raw), mapses.append(maps), similarities.append(similarity)
    assert torch.equal(metric.compute(), total / torch.tensor(count))
    similarity = torch.cat(similarities)
    assert torch.equal(metric.per_sample_values(), similarity.mean(dim=1))
    kept = metric.kept_maps()
    assert isinstance(kept, SaliencyMaps)
    assert torch.equal(kept.x, x[:4]) and torch.equal(kept.targets, y[:4])
    assert torch.equal(kept.raw, torch.cat(raws)[:4])
    assert torch.equal(kept.maps, torch.cat(mapses)[:4])
    assert torch.equal(kept.similarity, similarity[:4].mean(dim=1))
    expected_elements = torch.arange(get_group(group).order) if elements is None else elements
    assert torch.equal(kept.elements, expected_elements)
    assert kept.maps.dtype == kept.raw.dtype == dtype
    # one batch: the callback logged the batch's mean, which the metric's sum / count equals
    # (float32; the metric's state is float32, so for a float64 model it is that mean rounded)
    single = SaliencyInvarianceSimilarity(group, recipe)
    single.update(model, x, y, elements=elements)
    logged = old_callback_path(model, x, y, get_group(group), recipe, elements)[2].mean()
    if dtype == torch.float32:
        assert single.compute().item() == logged.item()
    else:
        assert single.compute().item() == logged.float().item()

@parametrize_dtypes()
@pytest.mark.parametrize("fields", [
    {}, {"absolute": False}, {"threshold": None}, {"blur": False}, {"threshold": 0.5},
    {"method": "gradient_x_input", "blur_kernel_size": 5, "blur_sigma": 2.0},
])
def test_both_stages_match_orbit_saliency(dtype, fields):
    model = seeded_model(dtype)
    x = torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(2)).to(dtype)
    recipe = SaliencyRecipe(steps=4, baseline=0.2, **fields)
    raw, maps = orbit_saliency_stages(model, x, None, "c4", recipe)
    assert torch.equal(maps, orbit_saliency(model, x, None, "c4", recipe))
    expected_raw = orbit_saliency(model, x, None, "c4", recipe, threshold=None, blur=False)
    assert torch.equal(raw, expected_raw)
    if recipe.absolute:
        assert (raw >= 0).all()
    else:
        assert (raw < 0).any()  # signed attributions stay signed


def test_signals_and_empty_batches():
    model = seeded_model(torch.float32, shape=(1, 12))
    x = torch.randn(3, 1, 12, generator=torch.Generator().manual_seed(4))
    raw, maps = orbit_saliency_stages(model, x, None, "t3", steps=3)
    assert raw.shape == maps.shape == (3, 3, 1, 12)
    assert torch.equal(maps, orbit_saliency(model, x, None, "t3", steps=3))
    raw, maps = orbit_saliency_stages(model, x[:0], None, "t3", steps=3)
    assert raw.shape == maps.shape == (0, 3, 1, 12)
    metric = SaliencyInvarianceSimilarity("t3", steps=3, baseline=0.0, per_sample=True,
                                          keep_maps=2)
    metric.update(model, x[:0])
    assert metric.per_sample_values().shape == (0,) and metric.kept_maps() is None
    metric.update(model, x)
    assert metric.per_sample_values().shape == (3,) and metric.kept_maps().x.shape[0] == 2


# ------------------------------------------------------------- what is kept, and when
def test_kept_maps_are_the_first_samples_across_updates_and_forward():
    model = seeded_model(torch.float32)
    x = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    whole = SaliencyInvarianceSimilarity("c4", steps=3, baseline=0.0, keep_maps=5)
    whole.update(model, x, y)
    batched = SaliencyInvarianceSimilarity("c4", steps=3, baseline=0.0, keep_maps=5,
                                           per_sample=True)
    for rows in (slice(0, 2), slice(2, 4), slice(4, 6)):
        batched(model, x[rows], y[rows])  # forward resets the state around each batch
    one, many = whole.kept_maps(), batched.kept_maps()
    assert many.x.shape[0] == 5 and torch.equal(many.x, x[:5])
    assert torch.equal(many.targets, y[:5])
    assert torch.allclose(many.maps, one.maps, rtol=1e-5, atol=1e-7)
    assert torch.allclose(many.similarity, batched.per_sample_values()[:5])
    assert batched.per_sample_values().shape == (6,)
    # maps are not metric state
    states = [key.rsplit("_", 1)[0] for key in batched.metric_state]
    assert states == ["similarity_sum", "similarity_pairs", "similarity_per_sample"]
    assert not batched.state_dict()
    batched.reset()
    assert batched.kept_maps() is None and batched.per_sample_values().shape == (0,)


def test_targets_none_when_the_prediction_is_explained():
    model = seeded_model(torch.float32)
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(6))
    y = torch.tensor([0, 1, 2])
    predicted = SaliencyInvarianceSimilarity("c4", steps=3, baseline=0.0, keep_maps=3,
                                             target_class="prediction")
    predicted.update(model, x, y)
    assert predicted.kept_maps().targets is None
    mixed = SaliencyInvarianceSimilarity("c4", steps=3, baseline=0.0, keep_maps=3)
    mixed.update(model, x[:1], y[:1])
    mixed.update(model, x[1:])
    assert mixed.kept_maps().targets is None and mixed.kept_maps().x.shape[0] == 3


def test_an_update_on_other_orbit_elements_is_not_kept():
    group = ContinuousRotations(180)
    model = seeded_model(torch.float32)
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(7))
    first = group.elements(3, generator=torch.Generator().manual_seed(0))
    other = group.elements(3, generator=torch.Generator().manual_seed(1))
    metric = SaliencyInvarianceSimilarity(group, steps=2, baseline=0.0, keep_maps=4)
    metric.update(model, x[:2], elements=first)
    metric.update(model, x[2:], elements=other)
    kept = metric.kept_maps()
    assert kept.x.shape[0] == 2 and torch.equal(kept.elements, first)
    metric.update(model, x[2:], elements=first)
    assert metric.kept_maps().x.shape[0] == 4


def test_options_are_checked_and_name_the_fix():
    with pytest.raises(ValueError, match="keep_maps: expected the number of samples"):
        SaliencyInvarianceSimilarity("c4", keep_maps=-1)
    with pytest.raises(ValueError, match="keep_maps"):
        SaliencyInvarianceSimilarity("c4", keep_maps=True)
    with pytest.raises(TypeError, match="per_sample: expected True or False"):
        SaliencyInvarianceSimilarity("c4", per_sample=1)
    metric = SaliencyInvarianceSimilarity("c4")
    with pytest.raises(ValueError, match="construct it with per_sample=True"):
        metric.per_sample_values()
    with pytest.raises(ValueError, match="construct it with keep_maps=<samples>"):
        metric.kept_maps()

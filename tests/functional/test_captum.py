"""Captum attributions as saliency methods: equal to the built-in ones where they should be,
batched over the orbit, SI = 1 for a weight-tied model, optional captum, clear errors."""

import ast
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

captum_attr = pytest.importorskip("captum.attr")

from invreg.functional import orbit_saliency, saliency, saliency_invariance  # noqa: E402
from invreg.functional.saliency import SaliencyRecipe  # noqa: E402
from invreg.groups import Rotations  # noqa: E402
from invreg.metrics import SaliencyInvarianceSimilarity  # noqa: E402
from invreg.models import MLP, TiedMLP  # noqa: E402

C4 = Rotations(4)
SHAPE = (1, 6, 6)
EPS64 = torch.finfo(torch.float64).eps
EPS32 = torch.finfo(torch.float32).eps
#: Captum's rule that matches invreg's integrated gradients (right Riemann sum)
RIGHT = {"method": "riemann_right"}
PACKAGE = Path(__file__).resolve().parents[2] / "invreg"


def plain_mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return MLP(SHAPE, 4, hidden_widths=(16, 16)).double().eval()


def tied_mlp() -> nn.Module:
    torch.manual_seed(1)
    return TiedMLP(SHAPE, 4, group=C4, hidden_widths=(16,)).double().eval()


def inputs(batch: int = 3) -> torch.Tensor:
    return torch.randn(batch, *SHAPE, generator=torch.Generator().manual_seed(2)).double()


def reorder_tolerance(expected: torch.Tensor, steps: int) -> float:
    """Two float64 evaluations of the same Riemann sum that differ only in the order of their
    sums (S path gradients, reductions over <= 36 entries in the matmuls): each of the
    ~S + 36 terms rounds at most eps relative to the magnitude; 4x margin."""
    return 4 * (steps + 36) * EPS64 * max(expected.abs().max().item(), 1.0)


# --------------------------------------------------------------------------- equal to Captum
def test_builtin_integrated_gradients_equal_captums_right_riemann_sum():
    model, x, steps = plain_mlp(), inputs(), 16
    target = torch.tensor([0, 2, 3])
    for baseline in (-0.3, torch.randn(3, *SHAPE, dtype=torch.float64)):  # number, per sample
        ours = saliency(model, x, target, "integrated_gradients", steps=steps, baseline=baseline)
        base = baseline if isinstance(baseline, torch.Tensor) else torch.full_like(x, baseline)
        captums = captum_attr.IntegratedGradients(model).attribute(
            x, baselines=base, target=target, n_steps=steps, method="riemann_right"
        )
        tol = reorder_tolerance(captums, steps)
        assert tol < 1e-5
        torch.testing.assert_close(ours, captums, rtol=0.0, atol=tol)
        # the same through invreg's Captum path
        through = saliency(
            model, x, target, captum_attr.IntegratedGradients, steps=steps, baseline=baseline,
            attribution_kwargs=RIGHT,
        )
        torch.testing.assert_close(through, captums, rtol=0.0, atol=tol)


def test_orbit_maps_use_the_predicted_class_of_the_untransformed_input():
    """One Captum call over the B·N orbit inputs, each explained for the class predicted on its
    *untransformed* sample, with the baseline image transformed along with its sample."""
    model, x, steps = plain_mlp(), inputs(), 8
    baseline = torch.randn(3, *SHAPE, dtype=torch.float64)
    raw = {"absolute": False, "threshold": None, "blur": False}
    builtin = orbit_saliency(model, x, None, C4, steps=steps, baseline=baseline, **raw)
    captum = orbit_saliency(
        model, x, None, C4, captum_attr.IntegratedGradients, steps=steps, baseline=baseline,
        attribution_kwargs=RIGHT, **raw,
    )
    # by hand: Captum on each transformed input, the untransformed prediction, mapped back
    predicted = model(x).argmax(1)
    elements = C4.elements()
    explainer = captum_attr.IntegratedGradients(model)
    for j, g in enumerate(elements):
        gs = g.expand(3, *g.shape)
        maps = explainer.attribute(
            C4.act(x, gs), baselines=C4.act(baseline, gs), target=predicted, n_steps=steps,
            method="riemann_right",
        )
        expected = C4.act(maps, C4.inverse(gs))
        tol = reorder_tolerance(expected, steps)
        torch.testing.assert_close(captum[:, j], expected, rtol=0.0, atol=tol)
        torch.testing.assert_close(builtin[:, j], expected, rtol=0.0, atol=tol)
    # the orbit changes some predictions, so explaining each element's own class would differ
    transformed = model(C4.orbit_from_elements(x, elements).flatten(0, 1)).argmax(1)
    assert (transformed != predicted.repeat_interleave(len(elements))).any()


# --------------------------------------------------------------------------- SI of a tied model
@pytest.mark.parametrize(
    "method",
    [
        "integrated_gradients",
        "gradient",
        captum_attr.IntegratedGradients,
        captum_attr.Saliency,
        captum_attr.GuidedBackprop,
        "captum.attr.InputXGradient",
    ],
    ids=lambda m: m if isinstance(m, str) else m.__name__,
)
def test_weight_tied_model_scores_one(method):
    """f(g·x) = f(x) exactly up to float64 summation order, so its maps agree after mapping
    back and SI = 1 within 1e-5 (rounding is ~1e-13 here)."""
    si = saliency_invariance(tied_mlp(), inputs(4), None, C4, method, steps=8)
    assert abs(si.item() - 1.0) <= 1e-5


def test_an_instance_built_on_the_model_equals_the_class():
    model, x = plain_mlp(), inputs()
    by_class = saliency_invariance(model, x, None, C4, captum_attr.GuidedBackprop)
    by_instance = saliency_invariance(model, x, None, C4, captum_attr.GuidedBackprop(model))
    assert by_class.item() == pytest.approx(by_instance.item(), abs=4 * EPS64)
    assert by_class.item() < 0.99  # a plain MLP is not invariant: the check can fail


# --------------------------------------------------------------------------- batching
class Counting(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.batches: list[int] = []

    def forward(self, x):
        self.batches.append(x.shape[0])
        return self.net(x)


@pytest.mark.parametrize("method", [captum_attr.IntegratedGradients, captum_attr.Saliency])
def test_passes_hold_at_most_max_batch_size_inputs(method):
    x, steps = inputs(), 4  # 3 samples x 4 rotations = 12 orbit inputs, 48 path points
    model = Counting(plain_mlp())
    whole = saliency_invariance(model, x, None, C4, method, steps=steps, reduction="none")
    points = 12 * steps if method is captum_attr.IntegratedGradients else 12
    # the target forward, the one-input activation measurement, then one pass for everything
    assert model.batches == [3, 1, points]
    model.batches.clear()
    chunked = saliency_invariance(
        model, x, None, C4, method, steps=steps, reduction="none", max_batch_size=5
    )
    assert max(model.batches) == 5 and sum(model.batches[1:]) == points
    torch.testing.assert_close(chunked, whole, rtol=0.0, atol=reorder_tolerance(whole, steps))


# --------------------------------------------------------------------------- the metric
def test_metric_equals_the_functional_and_works_in_a_validation_loop():
    model, x = plain_mlp(), inputs(6)
    options = {"steps": 4, "baseline": -0.3, "attribution_kwargs": RIGHT}
    expected = saliency_invariance(model, x, None, C4, captum_attr.IntegratedGradients, **options)
    metric = SaliencyInvarianceSimilarity(C4, captum_attr.IntegratedGradients, **options)
    with torch.inference_mode():  # as in Lightning's validation
        metric.update(model, x[:4])
        metric.update(model, x[4:])
    # float32 states: a sum of 18 cosines in [-1, 1] rounds at most 18 eps
    assert metric.compute().item() == pytest.approx(expected.item(), abs=18 * EPS32)
    assert expected.item() < 0.99
    # the built-in integrated gradients give the same value
    builtin = saliency_invariance(model, x, None, C4, steps=4, baseline=-0.3)
    assert builtin.item() == pytest.approx(expected.item(), abs=1e-5)


def test_metric_with_an_instance_scores_its_model_only_and_names_states_stably():
    model = plain_mlp()
    first = SaliencyInvarianceSimilarity(C4, captum_attr.Saliency(model), baseline=0.0)
    second = SaliencyInvarianceSimilarity(C4, captum_attr.Saliency(model), baseline=0.0)
    # state names are digested from the configuration, never from a memory address
    assert first._total_name == second._total_name
    first.update(model, inputs())
    assert 0.0 < first.compute().item() < 0.99
    with pytest.raises(ValueError, match="method: this Saliency instance was built on another"):
        first.update(plain_mlp(seed=3), inputs())


# --------------------------------------------------------------------------- captum is optional
def test_no_module_imports_captum_at_import_time():
    """Importing invreg must not need captum: every ``import captum`` sits inside a function."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.parse(path.read_text()).body:  # module level statements only
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "captum"]
    assert not offenders


def test_missing_captum_raises_import_error_with_the_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "captum", None)  # `import captum...` now fails
    monkeypatch.setitem(sys.modules, "captum.attr", None)
    model, x = tied_mlp(), inputs()
    fix = r"pip install invreg\[captum\]"
    with pytest.raises(ImportError, match=fix):
        saliency_invariance(model, x, None, C4, "captum.attr.IntegratedGradients")
    with pytest.raises(ImportError, match=fix):
        SaliencyInvarianceSimilarity(C4, "captum.attr.Saliency")
    with pytest.raises(ImportError, match=fix):  # a class kept from before cannot be checked
        SaliencyRecipe(method=captum_attr.Saliency)
    # the built-in methods need nothing
    assert saliency_invariance(model, x, None, C4, steps=4).item() == pytest.approx(1.0, abs=1e-5)


# --------------------------------------------------------------------------- bad input
def test_bad_methods_and_options():
    model, x = plain_mlp(), inputs()
    with pytest.raises(TypeError, match="method: expected a method name or a Captum"):
        saliency(model, x, None, method=42)
    with pytest.raises(TypeError, match=r"method: expected a captum.attr.Attribution.*Linear"):
        saliency(model, x, None, nn.Linear)
    with pytest.raises(TypeError, match="recipe: expected a SaliencyRecipe, a method name or"):
        saliency(model, x, None, 3.0)
    with pytest.raises(TypeError, match="method: expected a method name or a Captum"):
        SaliencyInvarianceSimilarity(C4, method=object())
    with pytest.raises(ValueError, match="'captum.attr.Nope' is not a captum.attr attribution"):
        saliency(model, x, None, "captum.attr.Nope")
    with pytest.raises(ValueError, match="method must be one of"):
        saliency(model, x, None, "occlusion")
    with pytest.raises(ValueError, match=r"\['n_steps'\] are set by the call; use n_steps: the"):
        saliency(model, x, None, captum_attr.IntegratedGradients, attribution_kwargs={"n_steps": 4})
    with pytest.raises(ValueError, match="baselines: the recipe's baseline"):
        saliency(model, x, None, captum_attr.Saliency, attribution_kwargs={"baselines": 0.0})
    with pytest.raises(TypeError, match=r"Saliency.attribute\(\) takes no argument\(s\) \['n_samp"):
        saliency(model, x, None, captum_attr.Saliency, attribution_kwargs={"n_samples": 4})
    with pytest.raises(ValueError, match="attribution_kwargs: only Captum methods take them"):
        saliency(model, x, None, "gradient", attribution_kwargs={"abs": True})
    with pytest.raises(TypeError, match="attribution_kwargs: expected a dict"):
        saliency(model, x, None, captum_attr.Saliency, attribution_kwargs=["abs"])
    # a method that needs more than the model, or answers in another space than the input
    with pytest.raises(TypeError, match=r"method: LayerGradCam\(model\) failed"):
        saliency(model, x, None, captum_attr.LayerGradCam)
    layer = captum_attr.LayerGradCam(model, model.hidden[0])
    with pytest.raises(ValueError, match="SI needs one attribution per input entry"):
        saliency(model, x, None, layer)
    with pytest.raises(ValueError, match="no convergence delta"):
        saliency(
            model, x, None, captum_attr.IntegratedGradients,
            attribution_kwargs={"return_convergence_delta": True},
        )

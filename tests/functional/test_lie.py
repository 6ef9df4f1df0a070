"""The Lie derivative: functional, metric and training loss.

Comparisons run in float64. The reference is a central finite difference through the groups'
own resampling (``ContinuousRotations``, ``Translations``, ``Scalings``) at ε = 1e-3: its error
is O(ε) relative (the curvature of the model and, for rotation / scale, of the sampling
points), about 1e-3 here, so a 1 % tolerance has a tenfold margin and still catches a wrong
sign, unit or side of the kink (those are O(1) errors).
"""

from __future__ import annotations

import math

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from tiny import tiny_trainer
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from invreg.functional import GENERATORS, lie_derivative, lie_derivative_error, lie_tangent
from invreg.groups import ContinuousRotations, Scalings, Translations
from invreg.losses import LieDerivativeL2, get_loss
from invreg.metrics import LieDerivativeError
from invreg.models import MLP, SmallCNN
from invreg.modules import InvarianceModule

EPS = 1e-3
#: float64 rounding, relative to the magnitudes compared, with room for a few hundred operations
F64_TOL = 1e3 * torch.finfo(torch.float64).eps


def act(generator: str, x: torch.Tensor, t: float, fill: float = 0.0) -> torch.Tensor:
    """``g_t·x`` through the group classes (their units: degrees, pixels, log-factor)."""
    b = x.shape[0]
    if generator == "rotation":
        element = torch.full((b,), math.degrees(t), dtype=torch.float64)
        return ContinuousRotations().act(x, element, fill=fill)
    if generator == "translate_x":
        return Translations().act(x, torch.tensor([[t, 0.0]] * b, dtype=torch.float64), fill=fill)
    if generator == "translate_y":
        return Translations().act(x, torch.tensor([[0.0, t]] * b, dtype=torch.float64), fill=fill)
    return Scalings().act(x, torch.full((b,), t, dtype=torch.float64), fill=fill)


def smooth_images(b: int = 3, size: int = 12, seed: int = 0) -> torch.Tensor:
    """Blurred noise under a centred Gaussian window: digit-like, smooth, dark at the border."""
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(b, 1, size + 4, size + 4, generator=gen, dtype=torch.float64)
    blurred = F.avg_pool2d(noise, 5, stride=1)
    r2 = (torch.arange(size, dtype=torch.float64) - (size - 1) / 2) ** 2
    return blurred * torch.exp(-(r2[:, None] + r2[None, :]) / 20)


def small_models() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {
        "mlp": MLP((1, 12, 12), 5, hidden_widths=(32, 32)).double().eval(),
        "cnn": SmallCNN((1, 12, 12), 5, channels=(4, 8)).double().eval(),
    }


@pytest.mark.parametrize("generator", sorted(GENERATORS))
@pytest.mark.parametrize("model_name", ["mlp", "cnn"])
def test_matches_central_finite_difference(model_name, generator):
    model, x = small_models()[model_name], smooth_images()
    with torch.no_grad():
        fd = (model(act(generator, x, EPS)) - model(act(generator, x, -EPS))) / (2 * EPS)
    derivative = lie_derivative(model, x, generator)
    assert derivative.shape == (3, 5) and derivative.dtype == torch.float64
    assert fd.norm() > 1e-3  # the transformation does change the output
    assert (derivative - fd).norm() <= 0.01 * fd.norm()


@pytest.mark.parametrize("generator", sorted(GENERATORS))
def test_tangent_is_the_symmetric_derivative_of_the_resampling(generator):
    # pixel noise: the one-sided derivatives at the kink differ by O(1)
    x = torch.randn(2, 2, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    tangent = lie_tangent(x, generator)
    central = (act(generator, x, EPS) - act(generator, x, -EPS)) / (2 * EPS)
    one_sided = (act(generator, x, EPS) - x) / EPS
    # translations move every sampling point along a straight line: exact up to rounding
    tol = F64_TOL / EPS if generator.startswith("translate") else 0.01
    assert (tangent - central).norm() <= tol * central.norm()
    assert (tangent - one_sided).norm() > 0.1 * central.norm()


def test_tangent_follows_the_fill_value():
    x, fill = smooth_images(2, 8) + 0.3, -0.5
    central = (act("rotation", x, EPS, fill) - act("rotation", x, -EPS, fill)) / (2 * EPS)
    tangent = lie_tangent(x, "rotation", fill=fill)
    assert (tangent - central).norm() <= 0.01 * central.norm()
    assert (lie_tangent(x, "rotation") - central).norm() > 0.1 * central.norm()


@pytest.mark.parametrize("model_name", ["mlp", "cnn"])
def test_batched_equals_per_sample_loop(model_name):
    model, x = small_models()[model_name], smooth_images(5)
    batched = lie_derivative(model, x, "rotation")
    looped = torch.cat([lie_derivative(model, x[i : i + 1], "rotation") for i in range(5)])
    assert (batched - looped).abs().max() <= 1e-6


class PixelSum(nn.Module):
    """Nonlinear functions of the total intensity: invariant to rotations and translations of
    content that stays inside the frame."""

    def forward(self, x):
        total = x.sum(dim=(1, 2, 3))
        return torch.stack([total, total**2, torch.tanh(total)], dim=1)


@pytest.mark.parametrize("generator", ["rotation", "translate_x", "translate_y"])
def test_invariant_function_has_zero_lie_derivative(generator):
    x = smooth_images(4)
    x[..., 0, :] = x[..., -1, :] = x[..., :, 0] = x[..., :, -1] = 0.0  # content inside the frame
    derivative = lie_derivative(PixelSum(), x, generator)
    scale = x.abs().sum() * (1 + x.abs().sum(dim=(1, 2, 3)).max()) * x.shape[-1]
    assert derivative.abs().max() <= F64_TOL * scale
    # the same images under a model that is not invariant: far from zero
    assert lie_derivative(small_models()["mlp"], x, generator).abs().max() > 1e-3


def test_error_reductions_and_norms():
    model, x = small_models()["mlp"], smooth_images(4)
    derivative = lie_derivative(model, x, "scale")
    squared = derivative.pow(2).sum(dim=1)
    none = lie_derivative_error(model, x, "scale", reduction="none")
    torch.testing.assert_close(none, squared, rtol=F64_TOL, atol=0.0)
    torch.testing.assert_close(lie_derivative_error(model, x, "scale"), squared.mean())
    torch.testing.assert_close(lie_derivative_error(model, x, "scale", "sum"), squared.sum())
    torch.testing.assert_close(
        lie_derivative_error(model, x, "scale", norm="l2"), squared.sqrt().mean()
    )


def test_layer_derivative_is_that_of_the_truncated_model():
    model, x = small_models()["mlp"], smooth_images(3)
    inner = nn.Sequential(model.flatten, model.hidden[0])
    torch.testing.assert_close(
        lie_derivative(model, x, "rotation", layer="hidden.0"),
        lie_derivative(inner, x, "rotation"),
        rtol=F64_TOL,
        atol=F64_TOL,
    )


def test_metric_equals_the_functional_over_batches():
    model, x = small_models()["cnn"], smooth_images(7)
    metric = LieDerivativeError("rotation")
    for batch in (x[:3], x[3:], x[:0]):  # an empty batch adds nothing
        metric.update(model, batch)
    expected = lie_derivative_error(model, x, "rotation")
    # the metric's sum state is float32
    torch.testing.assert_close(
        metric.compute().double(), expected, rtol=10 * torch.finfo(torch.float32).eps, atol=0.0
    )
    layered = LieDerivativeError("rotation", layer="blocks.0", norm="l2")
    layered.update(model, x)
    expected = lie_derivative_error(model, x, "rotation", norm="l2", layer="blocks.0")
    torch.testing.assert_close(
        layered.compute().double(), expected, rtol=10 * torch.finfo(torch.float32).eps, atol=0.0
    )


def test_float32_input_keeps_its_dtype():
    model = small_models()["mlp"].float()
    x = smooth_images().float()
    derivative = lie_derivative(model, x, "translate_x")
    assert derivative.dtype == torch.float32
    reference = lie_derivative(model.double(), x.double(), "translate_x")
    # float32 rounding of inputs, weights and a few hundred accumulations
    assert (derivative.double() - reference).norm() <= 1e3 * torch.finfo(
        torch.float32
    ).eps * reference.norm()


@pytest.mark.parametrize(
    ("call", "error", "names"),
    [
        (lambda m, x: lie_derivative(m, x, "shear"), ValueError, ["generator", "rotation"]),
        (lambda m, x: lie_derivative(m, x[0], "rotation"), ValueError, ["x", "[B, C, H, W]"]),
        (lambda m, x: lie_derivative(m, x.long(), "rotation"), TypeError, ["x", "int64"]),
        (lambda m, x: lie_derivative(m, x[..., :6], "rotation"), ValueError, ["x", "square"]),
        (lambda m, x: lie_derivative_error(m, x, "rotation", "max"), ValueError, ["reduction"]),
        (lambda m, x: lie_derivative_error(m, x, "rotation", norm="l1"), ValueError, ["norm"]),
        (lambda m, x: LieDerivativeError("shear"), ValueError, ["generator", "translate_x"]),
        (lambda m, x: LieDerivativeL2("Rotation"), ValueError, ["generator", "scale"]),
        (lambda m, x: LieDerivativeL2("rotation")(m(x)), TypeError, ["loss(model, x)"]),
        (lambda m, x: get_loss("lie_shear"), ValueError, ["lie_rotation"]),
    ],
)
def test_bad_input_names_the_argument(call, error, names):
    model, x = small_models()["mlp"], smooth_images()
    with pytest.raises(error) as info:
        call(model, x)
    for name in names:
        assert name in str(info.value)


@pytest.mark.parametrize("loss", [LieDerivativeL2("rotation"), "lie_rotation"])
def test_training_step_with_the_lie_loss(loss):
    pl.seed_everything(0)
    backbone = SmallCNN((1, 12, 12), 3, channels=(4, 8))
    module = InvarianceModule(backbone, group=ContinuousRotations(30.0), invariance_loss=loss,
                              invariance_weight=1.0, lr=1e-2)
    assert isinstance(module.invariance_loss, LieDerivativeL2)
    x = smooth_images(8).float()
    y = torch.arange(8) % 3
    loss_value = module.shared_step((x, y), "train")
    lie_term = module.invariance_loss(module.backbone, x)
    grads = torch.autograd.grad(lie_term, list(backbone.parameters()), allow_unused=True)
    assert torch.isfinite(loss_value) and lie_term > 0
    assert all(torch.isfinite(g).all() for g in grads if g is not None)
    assert any(g.abs().max() > 0 for g in grads if g is not None)
    # one optimiser step through Lightning
    before = [p.detach().clone() for p in backbone.parameters()]
    trainer = tiny_trainer(max_steps=1, limit_val_batches=0)
    trainer.fit(module, DataLoader(TensorDataset(x, y), batch_size=4))
    after = list(backbone.parameters())
    assert all(torch.isfinite(p).all() for p in after)
    assert any(not torch.equal(p, q) for p, q in zip(before, after, strict=True))


def test_module_with_the_lie_loss_reloads_from_a_checkpoint(tmp_path):
    module = InvarianceModule(SmallCNN((1, 12, 12), 3, channels=(4, 8)),
                              group=ContinuousRotations(30.0),
                              invariance_loss=LieDerivativeL2("scale"))
    trainer = tiny_trainer(tmp_path, max_steps=1, limit_val_batches=0)
    x, y = smooth_images(4).float(), torch.arange(4) % 3
    trainer.fit(module, DataLoader(TensorDataset(x, y), batch_size=4))
    trainer.save_checkpoint(tmp_path / "lie.ckpt")
    loaded = InvarianceModule.load_from_checkpoint(tmp_path / "lie.ckpt")
    assert isinstance(loaded.invariance_loss, LieDerivativeL2)
    assert loaded.invariance_loss.generator == "scale"

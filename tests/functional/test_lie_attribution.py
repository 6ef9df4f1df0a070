"""The output Lie derivative split into one term per layer (``lie_attribution``) and the
Hutchinson estimate of each layer's share of ``‖L f‖²`` (``lie_attribution_shares``).

Comparisons run in float64; the decomposition is an identity (it telescopes), so it holds to
rounding, a few hundred operations of float64 relative to the magnitudes compared.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from invreg.functional import lie_attribution, lie_attribution_shares, lie_derivative
from invreg.functional.lie import lie_generator, lie_tangent
from invreg.functional.lie_attribution import _tangent
from invreg.models import SmallCNN

#: float64 rounding, relative to the magnitudes compared, with room for a few hundred operations
F64_TOL = 1e3 * torch.finfo(torch.float64).eps
CNN_LAYERS = ["blocks.0", "blocks.1", "blocks.2", "pool", "head"]


def small_cnn() -> SmallCNN:
    torch.manual_seed(0)
    return SmallCNN((2, 12, 12), num_classes=3, channels=(4, 5, 4)).double().eval()


class MeanAndEnergy(nn.Module):
    """``[B, C, H, W] → [B, 2C]``: the spatial mean and mean square of each channel, invariant
    under the discrete rotation and translation tangents: the mean for maps that are 0 on the
    border, the mean square always (``Σ h·(V·∇h)`` cancels in pairs: central differences are
    antisymmetric and ``V``'s x-component is constant along rows, its y-component along
    columns). The mean alone would not do: a convolution's global mean only sees the input's
    mean, so the model would be invariant whatever the kernel."""

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.cat([h.mean((-2, -1)), h.pow(2).mean((-2, -1))], dim=1)


def one_bad_layer() -> nn.Sequential:
    """1×1 convolutions without bias (channel mixing: exactly equivariant under the discrete
    tangent), one 3×3 convolution with a random kernel (not equivariant), invariant pooling
    and a linear head (invariant input and output)."""
    torch.manual_seed(1)
    model = nn.Sequential()
    model.add_module("mix", nn.Conv2d(2, 3, 1, bias=False))
    model.add_module("bad", nn.Conv2d(3, 3, 3, padding=1, bias=False))
    model.add_module("mix2", nn.Conv2d(3, 4, 1, bias=False))
    model.add_module("pool", MeanAndEnergy())
    model.add_module("head", nn.Linear(8, 3))
    with torch.no_grad():  # weights of order 1, so the derivative is too
        model.bad.weight.normal_()
    return model.double().eval()


def bordered_images(batch: int = 4, size: int = 12) -> torch.Tensor:
    """Images that are 0 on a border two pixels wide: after one 3×3 convolution the border
    rows and columns are still 0, so the global mean of every feature map is exactly invariant
    (no content leaves the frame)."""
    torch.manual_seed(2)
    x = torch.zeros(batch, 2, size, size, dtype=torch.float64)
    x[..., 2:-2, 2:-2] = torch.randn(batch, 2, size - 4, size - 4, dtype=torch.float64)
    return x


@pytest.mark.parametrize("generator", ["rotation", "translate_x", "scale"])
def test_terms_sum_to_output_lie_derivative(generator):
    model = small_cnn()
    x = torch.randn(3, 2, 12, 12, dtype=torch.float64)
    result = lie_attribution(model, x, generator, CNN_LAYERS, fill=0.5)
    expected = lie_derivative(model, x, generator, fill=0.5).detach()
    assert list(result.terms) == CNN_LAYERS
    assert all(term.shape == (3, 3) for term in result.terms.values())
    total = torch.stack(list(result.terms.values())).sum(0)
    torch.testing.assert_close(total, expected, rtol=1e-6, atol=F64_TOL * expected.abs().max())
    torch.testing.assert_close(result.derivative, total)
    # several layers break the symmetry: no single term is the whole derivative
    assert sum(term.abs().max() > 1e-3 * expected.abs().max() for term in result.terms.values()) > 1


def test_shares_sum_to_lie_derivative_error():
    model = small_cnn()
    x = torch.randn(3, 2, 12, 12, dtype=torch.float64)
    result = lie_attribution(model, x, "rotation", CNN_LAYERS)
    squared = result.derivative.pow(2).sum(-1)
    total = torch.stack(list(result.shares.values())).sum(0)
    torch.testing.assert_close(total, squared, rtol=F64_TOL, atol=F64_TOL * squared.max())


def test_only_the_non_equivariant_layer_has_a_term():
    model = one_bad_layer()
    x = bordered_images()
    result = lie_attribution(model, x, "rotation")  # an nn.Sequential: its children by default
    scale = result.derivative.abs().max()
    assert scale > 1e-2  # the 3×3 kernel does break the symmetry
    torch.testing.assert_close(result.terms["bad"], result.derivative, rtol=0, atol=F64_TOL * scale)
    for name in ("mix", "mix2", "pool", "head"):
        assert result.terms[name].abs().max() <= F64_TOL * scale, name
        assert result.errors[name].abs().max() <= F64_TOL * result.errors["bad"].abs().max()
    assert result.errors["bad"].shape == (4, 3, 12, 12)


@pytest.mark.parametrize("generator", ["translate_x", "translate_y"])
def test_a_convolution_commutes_with_shifts(generator):
    # the same model under translations: every layer, the 3×3 convolution too, is equivariant
    model = one_bad_layer()
    x = bordered_images()
    rotation = lie_attribution(model, x, "rotation").errors["bad"].abs().max()
    result = lie_attribution(model, x, generator)
    for name, error in result.errors.items():
        assert error.abs().max() <= F64_TOL * rotation, name
    assert result.derivative.abs().max() <= F64_TOL * result.derivative.new_tensor(1.0)


def test_hidden_maps_follow_the_input_frame():
    # a map at half the input's resolution shifts by t/2 of its own pixels when the input
    # shifts by t pixels; rotation is the same in normalised coordinates at any resolution
    h = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    shift = lie_generator("translate_x")
    torch.testing.assert_close(_tangent(h, shift, (12, 12), 0.0), lie_tangent(h, shift) / 2)
    rotation = lie_generator("rotation")
    torch.testing.assert_close(_tangent(h, rotation, (12, 12), 0.0), lie_tangent(h, rotation))
    assert not _tangent(torch.randn(2, 3, dtype=torch.float64), rotation, (12, 12), 0.0).any()


def test_hutchinson_shares_converge_to_exact():
    model = small_cnn()
    x = torch.randn(2, 2, 12, 12, dtype=torch.float64)
    exact = lie_attribution(model, x, "rotation", CNN_LAYERS)
    estimate = lie_attribution_shares(model, x, "rotation", CNN_LAYERS, probes=1000, seed=3)
    squared = exact.derivative.pow(2).sum(-1)  # [B]: the shares add up to it
    for name in CNN_LAYERS:
        error = (estimate[name] - exact.shares[name]).abs()
        assert (error <= 0.05 * squared).all(), (name, error / squared)
    # a few probes are noisy: the test above could fail
    rough = lie_attribution_shares(model, x, "rotation", CNN_LAYERS, probes=1, seed=3)
    assert any(((rough[n] - exact.shares[n]).abs() > 0.05 * squared).any() for n in CNN_LAYERS)


def test_hutchinson_seed_fixes_the_probes_and_leaves_global_rng():
    model = small_cnn()
    x = torch.randn(2, 2, 12, 12, dtype=torch.float64)
    state = torch.random.get_rng_state()
    first = lie_attribution_shares(model, x, "rotation", CNN_LAYERS, probes=4, seed=7)
    assert torch.equal(torch.random.get_rng_state(), state)
    again = lie_attribution_shares(model, x, "rotation", CNN_LAYERS, probes=4, seed=7)
    assert all(torch.equal(first[n], again[n]) for n in CNN_LAYERS)
    with pytest.raises(ValueError, match="probes"):
        lie_attribution_shares(model, x, "rotation", CNN_LAYERS, probes=0)


def test_bad_layer_names_list_the_model_layers():
    model = small_cnn()
    x = torch.randn(1, 2, 12, 12, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"'blocks\.3'.*Did you mean.*blocks\.0"):
        lie_attribution(model, x, "rotation", ["blocks.0", "blocks.3"])
    with pytest.raises(ValueError, match="layers: give the names"):
        lie_attribution(model, x, "rotation")  # not an nn.Sequential: no default
    with pytest.raises(ValueError, match="repeated"):
        lie_attribution(model, x, "rotation", ["blocks.0", "blocks.0"])
    with pytest.raises(ValueError, match="at least one"):
        lie_attribution(model, x, "rotation", [])
    with pytest.raises(TypeError, match="layers"):
        lie_attribution(model, x, "rotation", "head")
    with pytest.raises(ValueError, match="generator"):
        lie_attribution(model, x, "spin", CNN_LAYERS)

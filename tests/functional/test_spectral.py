"""σ_max of the input→logit Jacobian by Lanczos / power iteration against an exact SVD."""

import pytest
import torch
from torch import nn

from invreg.functional.spectral import jacobian_spectral_norm, weight_singular_values
from invreg.models import MLP, SmallCNN

EPS32 = torch.finfo(torch.float32).eps
#: Lanczos with iters ≥ C (power iteration after 100 steps) is exact up to float32 rounding of
#: the Jacobian products (fan-ins of 36 + 32 + 32 terms), amplified by the Gram operator's
#: conditioning (σ_max² / σ_min², up to ~100 for these small nets): 100·100·eps ≈ 1e-3
ITERATIVE = 1e-3


def exact_sigma_max(model, x):
    """Full Jacobian per sample (autograd), then the exact largest singular value."""
    values = []
    for xi in x:
        jac = torch.autograd.functional.jacobian(lambda z: model(z.unsqueeze(0))[0], xi)
        values.append(torch.linalg.svdvals(jac.reshape(jac.shape[0], -1).double())[0])
    return torch.stack(values).float()


@pytest.fixture
def tanh_mlp():
    torch.manual_seed(0)
    return MLP((1, 6, 6), 5, hidden_widths=[32, 32], activation="tanh").eval()


def test_lanczos_matches_exact_svd_of_full_jacobian(tanh_mlp):
    x = torch.randn(12, 1, 6, 6, generator=torch.Generator().manual_seed(1))
    exact = exact_sigma_max(tanh_mlp, x)
    estimate = jacobian_spectral_norm(tanh_mlp, x, iters=20, method="lanczos")
    assert estimate.shape == (12,)
    assert ((estimate - exact).abs() / exact).max() < ITERATIVE
    # the samples differ, so a per-sample estimate must too (not one value for the batch)
    assert exact.std() > 1e-3


def test_power_iteration_matches_exact_svd(tanh_mlp):
    x = torch.randn(6, 1, 6, 6, generator=torch.Generator().manual_seed(2))
    exact = exact_sigma_max(tanh_mlp, x)
    estimate = jacobian_spectral_norm(tanh_mlp, x, iters=100, method="power")
    assert ((estimate - exact).abs() / exact).max() < ITERATIVE


def test_lanczos_is_exact_on_convolutional_relu_net():
    torch.manual_seed(0)
    model = SmallCNN((1, 8, 8), 4, channels=(4, 8)).eval()
    x = torch.randn(4, 1, 8, 8)
    exact = exact_sigma_max(model, x)
    estimate = jacobian_spectral_norm(model, x, iters=4, method="lanczos", chunk_size=3)
    assert ((estimate - exact).abs() / exact).max() < ITERATIVE


def test_linear_model_gives_sigma_max_of_weight_for_every_sample():
    weight = torch.randn(4, 10, generator=torch.Generator().manual_seed(0))
    model = nn.Linear(10, 4, bias=False)
    with torch.no_grad():
        model.weight.copy_(weight)
    estimate = jacobian_spectral_norm(model, torch.randn(7, 10), iters=4, method="lanczos")
    expected = torch.linalg.svdvals(weight)[0]
    # products of 10 and 4 terms, 4 Lanczos steps: a few dozen roundings of eps each
    torch.testing.assert_close(estimate, expected.expand(7), rtol=64 * EPS32, atol=0.0)


def test_fewer_lanczos_steps_give_a_lower_bound(tanh_mlp):
    x = torch.randn(8, 1, 6, 6)
    exact = exact_sigma_max(tanh_mlp, x)
    # a lower bound up to float32 rounding of the products (fan-ins 36 + 32 + 32 + 5)
    slack = 1 + (36 + 32 + 32 + 5) * EPS32
    assert (jacobian_spectral_norm(tanh_mlp, x, iters=2) <= exact * slack).all()


def test_works_in_inference_mode_and_leaves_parameters_alone(tanh_mlp):
    x = torch.randn(3, 1, 6, 6)
    expected = jacobian_spectral_norm(tanh_mlp, x, iters=5)
    with torch.inference_mode():
        got = jacobian_spectral_norm(tanh_mlp, x, iters=5)
    torch.testing.assert_close(got, expected)
    assert all(p.grad is None for p in tanh_mlp.parameters())
    assert not got.requires_grad


def test_rank_deficient_jacobian_does_not_break_lanczos():
    # two identical logits: J has rank 1 (Krylov space exhausted after one step)
    weight = torch.randn(1, 6).repeat(3, 1)
    model = nn.Linear(6, 3, bias=False)
    with torch.no_grad():
        model.weight.copy_(weight)
    estimate = jacobian_spectral_norm(model, torch.randn(2, 6), iters=10, method="lanczos")
    assert torch.isfinite(estimate).all()
    torch.testing.assert_close(estimate, torch.linalg.svdvals(weight)[0].expand(2))


def test_same_generator_same_estimate(tanh_mlp):
    x = torch.randn(4, 1, 6, 6)
    a = jacobian_spectral_norm(tanh_mlp, x, 2, generator=torch.Generator().manual_seed(3))
    b = jacobian_spectral_norm(tanh_mlp, x, 2, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


EPS64 = torch.finfo(torch.float64).eps


class Square(torch.autograd.Function):
    """x² with a hand-written backward that vmap cannot batch (it branches on the data)."""

    @staticmethod
    def forward(x):
        return x * x

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        if not grad.any():  # data-dependent control flow: vmap cannot batch it
            return torch.zeros_like(grad)
        return 2 * x * grad


class SquareNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first, self.second = nn.Linear(36, 16), nn.Linear(16, 5)

    def forward(self, x):
        return self.second(Square.apply(self.first(x.flatten(1))))


def float64_models():
    torch.manual_seed(0)
    batchnorm = nn.Sequential(
        nn.Flatten(), nn.Linear(36, 16), nn.BatchNorm1d(16), nn.Tanh(), nn.Linear(16, 5)
    )
    with torch.no_grad():  # non-trivial running statistics, as after training
        batchnorm[2].running_mean.uniform_(-1, 1)
        batchnorm[2].running_var.uniform_(0.5, 2)
    return {
        "tanh MLP": MLP((1, 6, 6), 5, hidden_widths=[32, 32], activation="tanh"),
        "CNN": SmallCNN((1, 6, 6), 5, channels=(4, 8)),
        "BatchNorm in eval mode": batchnorm,
        "custom autograd function (loop fallback)": SquareNet(),
    }


@pytest.mark.parametrize("name", list(float64_models()))
def test_exact_method_matches_full_jacobian_svd_in_float64(name):
    model = float64_models()[name].double().eval()
    x = torch.randn(6, 1, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    reference = exact_sigma_max(model, x).double()
    got = jacobian_spectral_norm(model, x, method="exact", chunk_size=4)
    # the same Jacobian entries (sums over fan-ins ≤ 36) and σ² from a float64 eigensolver;
    # the result is returned in float32, so its rounding (eps32 / 2) dominates
    torch.testing.assert_close(got.double(), reference, rtol=EPS32, atol=0.0)


def test_custom_function_really_takes_the_loop_fallback():
    from torch.func import vjp, vmap

    model = SquareNet().eval()
    _, pullback = vjp(model, torch.randn(2, 1, 6, 6))
    with pytest.raises(RuntimeError):
        vmap(pullback)(torch.eye(5)[:, None, :].expand(5, 2, 5))


def test_exact_matches_lanczos_in_float32(tanh_mlp):
    x = torch.randn(16, 1, 6, 6, generator=torch.Generator().manual_seed(5))
    exact = jacobian_spectral_norm(tanh_mlp, x, method="exact")
    lanczos = jacobian_spectral_norm(tanh_mlp, x, iters=5, method="lanczos")
    assert ((lanczos - exact).abs() / exact).max() < ITERATIVE


def test_auto_is_exact_up_to_iters_outputs_and_lanczos_above(tanh_mlp):
    x = torch.randn(5, 1, 6, 6)
    # the exact path draws no random numbers; Lanczos starts from the generator's vector
    for iters, chosen in ((5, "exact"), (20, "exact"), (4, "lanczos"), (2, "lanczos")):
        auto = jacobian_spectral_norm(
            tanh_mlp, x, iters, generator=torch.Generator().manual_seed(1)
        )
        same = jacobian_spectral_norm(
            tanh_mlp, x, iters, chosen, generator=torch.Generator().manual_seed(1)
        )
        assert torch.equal(auto, same), (iters, chosen)
    assert jacobian_spectral_norm.__defaults__[1] == "auto"


def test_exact_works_in_inference_mode_and_leaves_parameters_alone(tanh_mlp):
    x = torch.randn(3, 1, 6, 6)
    expected = jacobian_spectral_norm(tanh_mlp, x, method="exact")
    with torch.inference_mode():
        got = jacobian_spectral_norm(tanh_mlp, x, method="exact")
    torch.testing.assert_close(got, expected)
    assert all(p.grad is None for p in tanh_mlp.parameters())
    assert not got.requires_grad


def test_weight_singular_values_first_layer_first():
    torch.manual_seed(0)
    model = MLP((1, 4, 4), 3, hidden_widths=[8, 5])
    values = weight_singular_values(model, k=3)
    assert list(values) == ["hidden.0.linear.weight", "hidden.1.linear.weight", "head.weight"]
    first = model.hidden[0].linear.weight.detach()
    torch.testing.assert_close(values["hidden.0.linear.weight"], torch.linalg.svdvals(first)[:3])
    assert all(v.shape == (3,) for v in values.values())
    assert all((v[:-1] >= v[1:]).all() for v in values.values())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"iters": 0}, "iters"),
        ({"method": "arnoldi"}, "method"),
        ({"chunk_size": 0}, "chunk_size"),
    ],
)
def test_invalid_arguments_are_named(tanh_mlp, kwargs, match):
    with pytest.raises(ValueError, match=match):
        jacobian_spectral_norm(tanh_mlp, torch.randn(2, 1, 6, 6), **kwargs)


def test_input_without_batch_axis_is_rejected(tanh_mlp):
    with pytest.raises(ValueError, match=r"x: expected a batch"):
        jacobian_spectral_norm(tanh_mlp, torch.randn(6))
    with pytest.raises(ValueError, match="k must be"):
        weight_singular_values(tanh_mlp, k=0)

"""The bilevel descriptor fit: the closed-form ridge head, the sigmoid descent from the middle,
and the descriptor moving on the validation loss alone."""

import math

import pytest
import torch
import torch.nn.functional as F

from invreg.models.hyper import HyperCNN
from invreg.modules.hyper_downstream import (
    bilevel_descriptor_fit,
    descriptor_descent,
    ridge_readout,
    validation_objective,
)

NAMES = ["rotation", "flip", "scale"]


def test_ridge_readout_is_least_squares_with_a_relative_penalty():
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(40, 5, generator=generator, dtype=torch.float64)
    targets = torch.randn(40, 3, generator=generator, dtype=torch.float64)
    weight, bias = ridge_readout(features, targets, ridge=0.0)
    design = torch.cat([features, torch.ones(40, 1, dtype=torch.float64)], dim=1)
    solution = torch.linalg.lstsq(design, targets).solution
    assert torch.allclose(weight, solution[:5], atol=1e-10)
    assert torch.allclose(bias, solution[5], atol=1e-10)
    # with a penalty: (F_cᵀF_c + λI) W = F_cᵀY_c, λ = ridge · mean eigenvalue
    weight, bias = ridge_readout(features, targets, ridge=0.5)
    centred = features - features.mean(0)
    gram = centred.T @ centred
    penalty = 0.5 * torch.trace(gram) / 5
    residual = (gram + penalty * torch.eye(5, dtype=torch.float64)) @ weight \
        - centred.T @ (targets - targets.mean(0))
    assert residual.abs().max() < 1e-10
    # the penalty follows the features' scale: scaled features, the same predictions
    scaled_weight, scaled_bias = ridge_readout(10 * features, targets, ridge=0.5)
    assert torch.allclose(10 * features @ scaled_weight + scaled_bias,
                          features @ weight + bias, atol=1e-10)


def test_ridge_readout_checks_its_input():
    with pytest.raises(ValueError, match=r"features, targets: expected \[N, p\] and \[N, c\]"):
        ridge_readout(torch.rand(4, 3), torch.rand(5, 2))
    with pytest.raises(ValueError, match="ridge: expected a number >= 0"):
        ridge_readout(torch.rand(4, 3), torch.rand(4, 2), ridge=-1.0)


def test_descent_starts_in_the_middle_and_finds_an_interior_optimum():
    target = torch.tensor([0.7, 0.2, 0.5])

    def objective(d):
        return (d - target).pow(2).sum(), 0.0

    fit = descriptor_descent(objective, 3, steps=300, lr=0.05)
    assert fit.trajectory[0] == [0.5, 0.5, 0.5] and len(fit.trajectory) == 301
    assert len(fit.losses) == len(fit.accuracies) == 300
    # Adam's steps shrink with the gradient near the optimum: within a few hundredths
    assert torch.allclose(fit.descriptor, target, atol=0.02)
    assert fit.trajectory[-1] == fit.descriptor.tolist()


def test_descent_never_sticks_at_a_bound():
    # an objective that first pulls d to 0 and then wants 0.6: a clamp at 0 would keep the
    # strength at the bound only if the gradient kept pushing; the sigmoid comes back
    calls = []

    def objective(d):
        calls.append(None)
        goal = 0.0 if len(calls) <= 100 else 0.6
        return (d - goal).pow(2).sum(), 0.0

    fit = descriptor_descent(objective, 1, steps=400, lr=0.1)
    lowest = min(values[0] for values in fit.trajectory)
    assert 0.0 < lowest < 0.05  # driven towards the bound, strictly inside it
    assert fit.descriptor.item() == pytest.approx(0.6, abs=0.02)
    # a flat objective leaves the descriptor where it started
    flat = descriptor_descent(lambda d: (0.0 * d.sum(), 0.0), 3, steps=10)
    assert flat.descriptor.tolist() == [0.5, 0.5, 0.5]


def test_descent_checks_its_arguments():
    def objective(d):
        return d.sum(), 0.0

    with pytest.raises(ValueError, match="init: expected a strength strictly inside"):
        descriptor_descent(objective, 3, steps=1, init=0.0)
    with pytest.raises(ValueError, match="steps: expected an integer >= 0"):
        descriptor_descent(objective, 3, steps=-1)


def _problem(seed=0):
    torch.manual_seed(seed)
    net = HyperCNN((1, 10, 10), 3, descriptor=NAMES, channels=(4, 8)).eval()
    generator = torch.Generator().manual_seed(seed)
    train = torch.rand(24, 1, 10, 10, generator=generator), torch.randint(0, 3, (24,),
                                                                          generator=generator)
    val = torch.rand(12, 1, 10, 10, generator=generator), torch.randint(0, 3, (12,),
                                                                        generator=generator)
    return net, train, val


def test_validation_objective_scores_on_validation_a_head_fitted_on_train():
    net, train, val = _problem()
    d = torch.tensor([0.3, 0.6, 0.9])
    loss, accuracy = validation_objective(net, train, val, 3, ridge=0.1)(d)
    with torch.no_grad():
        weight, bias = ridge_readout(net.features(train[0], d), F.one_hot(train[1], 3).float(),
                                     0.1)
        prediction = net.features(val[0], d) @ weight + bias
    expected = (prediction - F.one_hot(val[1], 3)).pow(2).sum(1).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert accuracy == (prediction.argmax(1) == val[1]).float().mean().item()
    with pytest.raises(ValueError, match=r"validation: expected images \[N, C, H, W\]"):
        validation_objective(net, train, (val[0], val[1][:3]), 3)


def test_a_bilevel_step_follows_the_validation_gradient_not_the_training_one():
    net, train, val = _problem()
    logits = torch.zeros(3, requires_grad=True)
    objective = validation_objective(net, train, val, 3, ridge=0.1)
    val_gradient, = torch.autograd.grad(objective(torch.sigmoid(logits))[0], logits)
    # the training loss of the same (train-fitted) head would point elsewhere
    train_gradient, = torch.autograd.grad(
        validation_objective(net, train, train, 3, ridge=0.1)(torch.sigmoid(logits))[0], logits)
    assert (val_gradient.sign() != train_gradient.sign()).any()
    fit = bilevel_descriptor_fit(net, train, val, 3, steps=1, lr=0.01, ridge=0.1)
    assert fit.trajectory[0] == [0.5, 0.5, 0.5]
    # Adam's first step on θ is lr · sign(gradient) (up to its ε); d = sigmoid(θ)
    expected = torch.sigmoid(-0.01 * val_gradient.sign())
    assert torch.allclose(fit.descriptor, expected, atol=1e-6)
    # the upstream network stays frozen
    assert all(not p.requires_grad and p.grad is None for p in net.parameters())
    # only the validation data move the descriptor: other validation labels, another step
    relabelled = val[0], (val[1] + 1) % 3
    other = bilevel_descriptor_fit(net, train, relabelled, 3, steps=1, lr=0.01, ridge=0.1)
    assert not torch.equal(other.descriptor, fit.descriptor)


def test_bilevel_fit_lowers_the_validation_loss():
    net, train, val = _problem(1)
    fit = bilevel_descriptor_fit(net, train, val, 3, steps=30, lr=0.1, ridge=0.1)
    assert fit.losses[-1] < fit.losses[0]
    assert all(0.0 < v < 1.0 for values in fit.trajectory for v in values)
    assert all(math.isfinite(v) for v in fit.losses)

import pytest
import torch

from invreg.losses import FeatureL2, LogitL2, NormalizedLogitL2, PredictiveKL, get_loss

#: hand-computed cases: small exact inputs through a few float32 roundings (eps relative each)
HAND = 16 * torch.finfo(torch.float32).eps


def test_logit_l2_hand_computed():
    ref = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    other = torch.tensor([[1.0, 0.0], [3.0, 4.0]])
    # ½·4 = 2 and ½·25 = 12.5 -> mean 7.25
    assert LogitL2()(ref, other).item() == pytest.approx(7.25, rel=HAND)


def test_normalized_logit_l2_hand_computed():
    ref = torch.tensor([[3.0, 4.0]])
    other = torch.tensor([[0.0, 4.0]])
    assert NormalizedLogitL2()(ref, other).item() == pytest.approx(9 / 25, rel=HAND)
    # scale-free: multiplying both by 10 changes nothing
    assert NormalizedLogitL2()(10 * ref, 10 * other).item() == pytest.approx(9 / 25, rel=HAND)


def test_predictive_kl_hand_computed():
    ref = torch.log(torch.tensor([[0.5, 0.5]]))
    other = torch.log(torch.tensor([[0.25, 0.75]]))
    expected = 0.5 * torch.log(torch.tensor(0.5 / 0.25)) + 0.5 * torch.log(torch.tensor(0.5 / 0.75))
    assert PredictiveKL()(ref, other).item() == pytest.approx(expected.item(), rel=HAND)
    assert PredictiveKL()(ref, ref).item() == 0.0  # log p − log p is exactly 0


def test_several_copies_per_sample_average_over_pairs():
    ref = torch.tensor([[0.0, 0.0]])
    copies = torch.tensor([[[2.0, 0.0], [0.0, 0.0], [0.0, 4.0]]])  # ½·4, 0, ½·16
    assert LogitL2()(ref, copies).item() == pytest.approx((2 + 0 + 8) / 3, rel=HAND)


def test_feature_maps_are_flattened():
    ref = torch.zeros(2, 3, 4, 4)
    other = torch.ones(2, 1, 3, 4, 4)
    assert FeatureL2("hidden.0")(ref, other).item() == pytest.approx(0.5 * 48, rel=HAND)


def test_shape_mismatch_and_names():
    with pytest.raises(ValueError, match=r"transformed outputs must have shape \(2, 3\)"):
        LogitL2()(torch.zeros(2, 3), torch.zeros(2, 4))
    assert isinstance(get_loss("predictive_kl"), PredictiveKL)
    with pytest.raises(ValueError, match="valid names"):
        get_loss("l2")
    with pytest.raises(ValueError, match="name the backbone submodule"):
        FeatureL2("")


def test_loss_is_differentiable():
    ref = torch.randn(4, 5, requires_grad=True)
    LogitL2()(ref, torch.randn(4, 5)).backward()
    assert ref.grad is not None and ref.grad.abs().sum() > 0


def test_orbit_form_equals_pair_form_and_functional_mean():
    """``loss(orbit)`` on ``[B, N, ...]`` is the functional mean over non-identity elements; the
    two-tensor form is the same orbit."""
    from invreg.functional import logit_invariance, predictive_kl_invariance

    orbit = torch.randn(5, 4, 3, dtype=torch.float64)
    assert LogitL2()(orbit).item() == pytest.approx(logit_invariance(orbit).item(), rel=1e-12)
    kl = predictive_kl_invariance(orbit).item()
    assert PredictiveKL()(orbit).item() == pytest.approx(kl, rel=1e-12)
    normalized = logit_invariance(orbit, normalized=True).item()
    assert NormalizedLogitL2()(orbit).item() == pytest.approx(normalized, rel=1e-12)
    assert torch.equal(LogitL2()(orbit), LogitL2()(orbit[:, 0], orbit[:, 1:]))
    with pytest.raises(ValueError, match=r"N >= 2 orbit elements"):
        LogitL2()(orbit[:, :1])


def test_losses_cover_every_pair_error():
    from invreg.functional import PAIR_ERRORS
    from invreg.losses import LOSSES, InvarianceLoss

    assert list(LOSSES) == list(PAIR_ERRORS)
    assert all(LOSSES[name].pair_error == name for name in PAIR_ERRORS)
    with pytest.raises(TypeError, match="pair_error"):
        type("Unknown", (InvarianceLoss,), {"pair_error": "l1"})

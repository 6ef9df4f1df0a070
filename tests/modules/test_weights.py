"""The weight ν of the invariance term (``invreg.modules.weights``): a fixed number, or
:class:`DualAscentWeight`'s update rules against their formulas, its guards and its checks."""

import math
import warnings

import pytest
import torch

from invreg.functional import orbit_pair_errors
from invreg.losses import FeatureL2, InvarianceLoss, LieDerivativeL2, LogitL2
from invreg.modules import DualAscentWeight, FixedWeight
from invreg.modules.weights import (
    DEFAULT_TARGET_LR,
    LOG_RATIO_CLIP,
    as_invariance_weight,
    upgrade_hparams,
)

# ν is a float32 buffer: one update is a few float32 operations, each within half an ulp
FLOAT32_STEP = 8 * torch.finfo(torch.float32).eps


def test_a_number_is_a_fixed_weight():
    assert float(as_invariance_weight(0.5)) == 0.5 and isinstance(as_invariance_weight(2),
                                                                    FixedWeight)
    weight = DualAscentWeight(target=0.1)
    assert as_invariance_weight(weight) is weight
    built = as_invariance_weight({"class_path": "invreg.modules.DualAscentWeight",
                                  "init_args": {"target": 0.1, "lr": 0.5}})
    assert isinstance(built, DualAscentWeight) and (built.target, built.lr) == (0.1, 0.5)
    assert FixedWeight(0.5).current() == 0.5 and not FixedWeight(0.5).learned
    for bad in (-1.0, math.nan, True):
        with pytest.raises(ValueError, match="invariance_weight"):
            as_invariance_weight(bad)
    with pytest.raises(ValueError, match=r"invariance_weight must be a number >= 0 or an "
                                         r"InvarianceWeight such as DualAscentWeight"):
        as_invariance_weight("strong")


def test_additive_update_is_projected_dual_ascent():
    weight = DualAscentWeight(target=0.5, update="additive", lr=0.2, initial=0.3)
    expected = 0.3
    for measured in (1.5, 0.1, 0.0, 0.0, 4.0):
        weight.step(torch.tensor(measured))
        expected = max(0.0, expected + 0.2 * (measured - 0.5))
        assert float(weight) == pytest.approx(expected, rel=FLOAT32_STEP, abs=1e-7)
    assert float(weight) > 0  # came back from the projection at 0


def test_multiplicative_update_is_scale_free_and_clipped():
    weight = DualAscentWeight(target=0.05, lr=0.1, initial=2.0)
    expected = 2.0
    for measured in (0.1, 0.025, 0.05, 50.0, 0.0):
        weight.step(torch.tensor(measured))
        log_ratio = math.log(measured / 0.05) if measured > 0 else -math.inf
        expected *= math.exp(0.1 * min(max(log_ratio, -LOG_RATIO_CLIP), LOG_RATIO_CLIP))
        assert float(weight) == pytest.approx(expected, rel=FLOAT32_STEP)
    # the same relative violation moves ν alike whatever the scale of I
    big = DualAscentWeight(target=50.0, lr=0.1, initial=2.0)
    small = DualAscentWeight(target=0.05, lr=0.1, initial=2.0)
    big.step(torch.tensor(100.0))
    small.step(torch.tensor(0.1))
    assert float(big) == pytest.approx(float(small), rel=FLOAT32_STEP)


def test_the_batch_trains_with_a_copy_of_the_weight():
    weight = DualAscentWeight(target=0.1)
    current = weight.current()
    weight.step(torch.tensor(1.0))
    assert current.item() == 1.0 and float(weight) > 1.0  # the step did not change the copy


@pytest.mark.parametrize("update", ["additive", "multiplicative"])
def test_a_non_finite_measurement_leaves_the_weight_with_a_warning(update):
    weight = DualAscentWeight(target=0.1, update=update)
    for bad in (math.nan, math.inf):
        with pytest.warns(RuntimeWarning, match=r"measured invariance error \(LI\) is (nan|inf); "
                                                r"ν stays at 1 for this batch"):
            weight.step(torch.tensor(bad))
        assert float(weight) == 1.0


def test_an_lr_whose_largest_step_overflows_is_refused():
    # exp(3·50) = inf in float32: every update would be skipped and ν stay at 1.0 without a
    # word (and a batch below the target would set it to 0 for good)
    limit = math.log(torch.finfo(torch.float32).max) / LOG_RATIO_CLIP
    with pytest.raises(ValueError, match=r"DualAscentWeight.lr: .*exp\(3·50\) overflows "
                                         rf"torch.float32 \(ν's dtype\); pass lr < {limit:.4g}"):
        DualAscentWeight(target=0.01, lr=50.0)
    assert DualAscentWeight(target=0.01, lr=0.999 * limit).lr < limit
    # the additive step is linear in η: no such bound
    assert DualAscentWeight(target=0.01, update="additive", lr=50.0).lr == 50.0


@pytest.mark.parametrize(("update", "lr", "target", "high", "low"),
                         [("multiplicative", 29.0, 0.01, 0.5, 0.0),
                          ("additive", 3e38, 0.5, 1.5, 0.0)])
def test_the_weight_is_clamped_to_its_dtype_and_never_freezes(update, lr, target, high, low):
    info = torch.finfo(torch.float32)
    weight = DualAscentWeight(target=target, update=update, lr=lr)
    floor = info.tiny if update == "multiplicative" else 0.0  # additive: the projection at 0
    values = []
    for measured in (high, high, high, low, low, low, low, low, high):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            weight.step(torch.tensor(measured))
        value = float(weight)
        assert math.isfinite(value) and value >= floor
        clamped = [w for w in caught if "outside the finite range" in str(w.message)]
        expected = value == info.max or (update == "multiplicative" and value == info.tiny)
        assert bool(clamped) == expected, (value, [str(w.message) for w in caught])
        values.append(value)
    assert info.max in values  # pinned at the top instead of skipping the update
    assert values[7] == floor  # pinned at the bottom, above 0 for the multiplicative update
    assert values[8] > floor  # and it moves again: never frozen


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"target": 0.0}, "DualAscentWeight.target: expected a finite number > 0, got 0.0"),
        ({"target": -1.0}, "DualAscentWeight.target: expected a finite number > 0"),
        ({"target": math.nan}, "DualAscentWeight.target: expected a finite number > 0"),
        ({"target": True}, "DualAscentWeight.target: expected a number > 0"),
        ({"target": "0.1"}, "DualAscentWeight.target: expected a number > 0"),
        ({"lr": 0.0}, "DualAscentWeight.lr: expected a finite number > 0"),
        ({"lr": math.nan}, "DualAscentWeight.lr: expected a finite"),
        ({"lr": -0.1}, "DualAscentWeight.lr: expected a finite"),
        ({"metric": "SI"}, "DualAscentWeight.metric: expected one of"),
        ({"update": "sgd"}, "DualAscentWeight.update: expected one of"),
        ({"initial": -1.0}, "DualAscentWeight.initial must be a finite number >= 0"),
        ({"initial": 0.0},
         "DualAscentWeight.initial: the multiplicative update scales ν, so it must start > 0"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DualAscentWeight(**{"target": 0.1, **kwargs})


def test_valid_arguments_are_accepted():
    # ν₀ = 0 is fine for the additive update; each update has its default η
    assert float(DualAscentWeight(target=0.1, update="additive", initial=0.0)) == 0.0
    assert DualAscentWeight(target=0.1).lr == DEFAULT_TARGET_LR["multiplicative"] == 0.02
    assert DualAscentWeight(target=0.1, update="additive").lr == DEFAULT_TARGET_LR["additive"]
    assert repr(DualAscentWeight(target=0.1)) == (
        "DualAscentWeight(target=0.1, metric='LI', update='multiplicative', lr=0.02)")


def test_a_model_loss_needs_the_loss_metric():
    lie = LieDerivativeL2("rotation")
    with pytest.raises(ValueError, match="DualAscentWeight.metric: LieDerivativeL2 forms no "
                                         "orbit of logits to measure 'LI' on"):
        DualAscentWeight(target=0.1).check_loss(lie)
    DualAscentWeight(target=0.1, metric="loss").check_loss(lie)
    DualAscentWeight(target=0.1).check_loss(LogitL2())
    FixedWeight(1.0).check_loss(lie)


class _FirstLogitGap(InvarianceLoss):
    """Per-sample errors: not one number per batch."""

    def forward(self, orbit, transformed=None):
        return (orbit[:, 0, 0] - orbit[:, 1, 0]).pow(2)


@pytest.mark.parametrize(
    ("metric", "loss", "expected"),
    [
        ("LI", LogitL2(), "same"),
        ("DI", LogitL2(), "predictive_kl"),
        ("LI_normalized", LogitL2(), "normalized_logit_l2"),
        ("LI", FeatureL2("hidden.0"), "logit_l2"),
        ("loss", FeatureL2("hidden.0"), "same"),
    ],
)
def test_measure_reads_the_named_error(metric, loss, expected):
    orbit = torch.randn(4, 2, 3)
    loss_value = torch.tensor(0.123)
    measured = DualAscentWeight(target=0.1, metric=metric).measure(loss_value, loss, orbit)
    if expected == "same":  # the loss term is that error: no second computation
        assert measured == loss_value
    else:
        reference = orbit_pair_errors(orbit, expected).mean()
        assert torch.equal(measured, reference) and not torch.equal(measured, loss_value)


def test_a_loss_without_one_number_per_batch_cannot_be_the_target():
    weight = DualAscentWeight(target=0.1, metric="loss")
    with pytest.raises(ValueError, match=r"invariance_loss: DualAscentWeight\(metric='loss'\) "
                                         r"needs one number per batch, but _FirstLogitGap "
                                         r"returned shape \(8,\)"):
        weight.measure(torch.ones(8), _FirstLogitGap(), torch.randn(8, 2, 3))


def test_earlier_hyperparameters_become_the_weight_object():
    earlier = {"invariance_weight": 0.5, "invariance_target": 0.01, "target_metric": "DI",
               "target_update": "additive", "target_lr": 0.3, "lr": 1e-3}
    upgraded = upgrade_hparams(earlier)
    assert upgraded == {"lr": 1e-3, "invariance_weight": {
        "class_path": "invreg.modules.weights.DualAscentWeight",
        "init_args": {"target": 0.01, "metric": "DI", "update": "additive", "lr": 0.3,
                      "initial": 0.5}}}
    weight = as_invariance_weight(upgraded["invariance_weight"])
    assert (weight.target, weight.metric, weight.update, weight.lr, float(weight)) == (
        0.01, "DI", "additive", 0.3, 0.5)
    # the defaults of the earlier layout are DualAscentWeight's
    assert as_invariance_weight(upgrade_hparams({"invariance_target": 0.2})[
        "invariance_weight"]).init_args == DualAscentWeight(target=0.2).init_args
    fixed = {"invariance_weight": 2.0, "lr": 1e-3}
    assert upgrade_hparams(fixed) == fixed

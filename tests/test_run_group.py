"""One group per run: the group samples and transforms (with the data's background as fill),
the module, its weight-tied backbone, the data module's augmentation and the callbacks agree
on it, and a config writes it once."""

from pathlib import Path

import pytest
import torch
from tiny import tiny_trainer

from invreg.callbacks.base import measured_group
from invreg.cli import main, run_cli
from invreg.data import DigitsDataModule, background_of
from invreg.groups import (
    ContinuousRotations,
    CyclicShifts,
    Dihedral,
    Flips,
    Product,
    Rotations,
    Translations,
)
from invreg.models import MLP, TiedMLP
from invreg.models.hyper import HyperCNN
from invreg.modules import HyperUpstreamModule, InvarianceModule

ROOT = Path(__file__).resolve().parent.parent
GENUINE = ROOT / "configs" / "genuine"
QUICKSTART = ROOT / "configs" / "quickstart.yaml"
EPS32 = torch.finfo(torch.float32).eps
FINITE = [Rotations(4), CyclicShifts(3), Dihedral(4), Flips(("horizontal", "vertical")),
          Product(Flips("vertical"), CyclicShifts(3))]


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- the group samples
@pytest.mark.parametrize("group", FINITE, ids=repr)
def test_sample_non_identity_never_draws_the_identity_and_covers_the_rest(group):
    g = group.sample_non_identity(4000, gen())
    assert g.dtype == torch.long and g.shape == (4000,)
    assert sorted(g.unique().tolist()) == list(range(1, group.order))


@pytest.mark.parametrize("group", [*FINITE, ContinuousRotations(), Translations(3.0)], ids=repr)
def test_sample_non_identity_is_deterministic_per_generator(group):
    first = group.sample_non_identity(64, gen(1))
    assert torch.equal(first, group.sample_non_identity(64, gen(1)))
    assert not torch.equal(first, group.sample_non_identity(64, gen(2)))


def test_sample_non_identity_keeps_the_draws_of_table_1():
    # the module drew 1 + randint(order - 1) itself: R4 and T3 models train as before
    for group in (Rotations(4), CyclicShifts(3)):
        expected = 1 + torch.randint(group.order - 1, (512,), generator=gen(7))
        assert torch.equal(group.sample_non_identity(512, gen(7)), expected)


def test_sample_non_identity_of_a_continuous_group_is_its_sampling_law():
    group = ContinuousRotations(90)
    assert torch.equal(group.sample_non_identity(256, gen(3)), group.sample(256, gen(3)))
    assert (group.sample_non_identity(256, gen(3)) != 0).all()


def test_sample_non_identity_of_the_trivial_group_is_an_error():
    with pytest.raises(ValueError, match="only the identity"):
        Rotations(1).sample_non_identity(3)


# ---------------------------------------------------------------- the group fills
@pytest.mark.parametrize("fill", ["grey", float("nan"), torch.ones(2)])
def test_a_bad_fill_is_an_error_naming_it(fill):
    with pytest.raises((TypeError, ValueError), match="act\\(fill\\)"):
        ContinuousRotations().act(torch.zeros(1, 1, 5, 5), 30.0, fill=fill)


def test_orbit_fills_pixels_entering_the_frame():
    background = -0.42
    x = torch.full((2, 1, 9, 9), background, dtype=torch.float64)
    group = ContinuousRotations()
    orbit = group.orbit(x, num_samples=6, generator=gen(), fill=background)
    # float64 interpolation of a constant: exact up to a few rounding steps
    atol = 8 * torch.finfo(torch.float64).eps
    torch.testing.assert_close(orbit, x.unsqueeze(1).expand_as(orbit), rtol=0, atol=atol)
    zero_filled = group.orbit(x, num_samples=6, generator=gen())
    assert (zero_filled - background).abs().max() > 0.1
    exact = Rotations(4)
    assert torch.equal(exact.orbit(x, fill=3.0), exact.orbit(x))


# ---------------------------------------------------------------- the module
def tiny_module(group="c4", backbone=None, **kwargs):
    backbone = backbone or MLP((1, 8, 8), num_classes=10, hidden_widths=(8,))
    return InvarianceModule(backbone, group=group, **kwargs)


@pytest.mark.parametrize("group", ["c4", "t4", "flips"])
def test_module_copies_are_the_groups_action(group):
    module = tiny_module(group)
    x = torch.randn(16, 1, 8, 8, generator=gen(1))
    module.random_generator.manual_seed(5)
    copies = module.transformed_copies(x, "sample")
    g = module.group.sample_non_identity(16, gen(5))
    assert torch.equal(copies, module.group.act(x, g).unsqueeze(1))
    assert torch.equal(module.transformed_copies(x, "full"), module.group.orbit(x)[:, 1:])


def validate(module, data):
    trainer = tiny_trainer(limit_val_batches=1)
    trainer.validate(module, datamodule=data, verbose=False)
    return trainer


class RecordInputs(InvarianceModule):
    """Keeps what the backbone was given; a step outside a loop logs nothing."""

    def forward_with_features(self, x):
        self.seen = x.detach().clone()
        return super().forward_with_features(x)

    def log(self, *args, **kwargs):
        pass


def test_module_fills_with_the_data_background_on_a_resampling_group():
    data = DigitsDataModule(batch_size=32, standardize=True)
    module = RecordInputs(MLP((1, 8, 8), num_classes=10, hidden_widths=(8,)), group="so2")
    validate(module, data)
    background = data.background
    assert background < -0.1 and module.fill == background
    # an empty image (every pixel the background), augmented and transformed: pixels that
    # entered the frame must get the background too. float32 bilinear weights sum to 1 up to a
    # few rounding steps, each scaled by |background|
    x = torch.full((32, 1, 8, 8), background)
    module.random_generator.manual_seed(0)
    module.training_step((x, torch.zeros(32, dtype=torch.long)), 0)
    atol = 16 * EPS32 * abs(background)
    assert module.seen.shape == (64, 1, 8, 8)  # the augmented batch, then its copies
    torch.testing.assert_close(module.seen, torch.full_like(module.seen, background),
                               rtol=0, atol=atol)
    # a zero fill would have drawn the frame's corners into the image
    zero_filled = module.group.act(x, module.group.sample_non_identity(32, gen()))
    assert (zero_filled - background).abs().max() > 0.1


def test_background_of_without_a_data_module_is_zero():
    assert background_of(None) == 0.0 == background_of(object())
    assert tiny_module("so2").fill == 0.0


def test_module_and_backbone_with_different_groups_is_an_error():
    backbone = TiedMLP((1, 9, 9), num_classes=3, group="c4", hidden_widths=(4,))
    with pytest.raises(ValueError, match=r"backbone\.group is Rotations\(n=4\).*"
                                         r"module's group is CyclicShifts\(n=3"):
        InvarianceModule(backbone, group="t3")
    assert InvarianceModule(backbone, group=Rotations(4)).group == backbone.group


def test_weight_tied_backbone_needs_its_group():
    with pytest.raises(ValueError, match="TiedMLP: group is missing"):
        TiedMLP((1, 9, 9), num_classes=3)


def test_hyper_upstream_fill_comes_from_the_same_helper():
    backbone = HyperCNN((1, 8, 8), num_classes=10, descriptor=["rotation"], channels=(2,),
                        embedding_dim=4, embedding_hidden=4)
    data = DigitsDataModule(batch_size=32, standardize=True)
    module = HyperUpstreamModule(backbone, num_classes=10)
    validate(module, data)
    assert module.fill_value == data.background < 0
    given = HyperUpstreamModule(backbone, num_classes=10, fill=0.25)
    validate(given, data)
    assert given.fill_value == 0.25


# ---------------------------------------------------------------- callbacks
def test_callbacks_get_the_modules_group():
    module = tiny_module("t4")
    assert measured_group(None, module, "OrbitConsistencyCallback") is module.group
    backbone = HyperCNN((1, 8, 8), num_classes=10, channels=(2,), embedding_dim=4,
                        embedding_hidden=4)
    with pytest.raises(ValueError, match="SaliencyCallback: .*HyperUpstreamModule has none"):
        measured_group(None, HyperUpstreamModule(backbone), "SaliencyCallback")


# ---------------------------------------------------------------- the CLI
def test_config_writes_the_group_once_and_the_backbone_gets_it():
    for path in [*GENUINE.glob("*.yaml"), QUICKSTART]:
        keys = [line for line in path.read_text().splitlines()
                if line.strip().startswith("group:")]
        assert len(keys) == 1, (path.name, keys)
    cli = run_cli(["--config", str(GENUINE / "wt_r4.yaml"), "--model.init_args.group", "t3"],
                  run=False)
    assert cli.model.group == cli.model.backbone.group == CyclicShifts(3)


@pytest.mark.parametrize(
    ("config", "override", "named"),
    [
        (GENUINE / "wt_t3.yaml", ["--model.init_args.backbone.init_args.group", "c4"],
         "model.init_args.backbone.init_args.group is Rotations(n=4)"),
        (GENUINE / "wt_r4.yaml", ["--model.init_args.group", "flip",
                                  "--model.init_args.backbone.init_args.group", "t3"],
         "model.init_args.backbone.init_args.group is CyclicShifts(n=3"),
    ],
    ids=["backbone", "both-overridden"],
)
def test_conflicting_groups_in_a_config_exit_with_one_line_naming_both(
    config, override, named, tmp_path, capsys
):
    code = main(["fit", "--config", str(config), *override,
                 "--trainer.default_root_dir", str(tmp_path)])
    assert code == 1
    err = capsys.readouterr().err
    first = err.splitlines()[0]
    assert first.startswith("invreg: error: ") and named in first, err
    assert "but model.init_args.group is" in first, err
    assert not list(tmp_path.rglob("config.yaml")), "nothing ran"

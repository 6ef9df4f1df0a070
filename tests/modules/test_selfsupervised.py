"""SimCLR's NT-Xent, the self-supervised module (SimCLR and rotation prediction) and the
linear probe."""

import json
import math

import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from invreg.functional import contrastive_accuracy, nt_xent
from invreg.groups import Rotations, Translations
from invreg.models import SmallCNN
from invreg.modules import SelfSupervisedModule, fit_linear_probe

SHAPE = (1, 12, 12)


def small_cnn(batch_norm=False, num_classes=2):
    torch.manual_seed(0)
    return SmallCNN(SHAPE, num_classes, channels=(8, 16), batch_norm=batch_norm)


def trainer(max_steps, **kwargs):
    return pl.Trainer(max_steps=max_steps, enable_progress_bar=False, logger=False,
                      enable_checkpointing=False, enable_model_summary=False,
                      accelerator="cpu", **kwargs)


def blobs(n=32, seed=0):
    """Images with one bright off-centre square each: no image equals a rotation of another."""
    gen = torch.Generator().manual_seed(seed)
    x = 0.1 * torch.randn(n, *SHAPE, generator=gen)
    for i in range(n):
        r, c = torch.randint(0, 5, (2,), generator=gen).tolist()
        x[i, 0, r:r + 3, c:c + 3] += 2.0
    return x


def textures(n=32):
    """Noise images told apart by their level and contrast, which a translation keeps."""
    gen = torch.Generator().manual_seed(0)
    contrast = 2 * torch.rand(n, 1, 1, 1, generator=gen)
    return torch.linspace(-2, 2, n).reshape(n, 1, 1, 1) + contrast * torch.randn(
        n, *SHAPE, generator=gen)


# ------------------------------------------------------------------ NT-Xent
def loop_nt_xent(z1, z2, temperature):
    """NT-Xent written out anchor by anchor, in float64."""
    z = torch.cat([z1, z2]).double()
    n = z1.shape[0]
    total, correct = 0.0, 0
    for k in range(2 * n):
        positive = k + n if k < n else k - n
        sims = {j: float(z[k] @ z[j] / (z[k].norm() * z[j].norm())) for j in range(2 * n)
                if j != k}
        denominator = sum(math.exp(s / temperature) for s in sims.values())
        total += -math.log(math.exp(sims[positive] / temperature) / denominator)
        correct += max(sims, key=sims.get) == positive
    return total / (2 * n), correct / (2 * n)


@pytest.mark.parametrize("temperature", [0.1, 0.5, 2.0])
def test_nt_xent_matches_a_loop(temperature):
    gen = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(5, 3, generator=gen, dtype=torch.float64), \
        torch.randn(5, 3, generator=gen, dtype=torch.float64)
    expected_loss, expected_acc = loop_nt_xent(z1, z2, temperature)
    loss = nt_xent(z1, z2, temperature)
    assert loss.dtype == torch.float64
    assert loss.item() == pytest.approx(expected_loss, rel=1e-12)
    assert contrastive_accuracy(z1, z2).item() == pytest.approx(expected_acc, abs=1e-15)


def test_nt_xent_runs_in_float32_for_half_inputs_and_is_differentiable():
    z1 = torch.randn(4, 3, requires_grad=True)
    loss = nt_xent(z1.half(), torch.randn(4, 3).half())
    assert loss.dtype == torch.float32
    loss.backward()
    assert z1.grad is not None and z1.grad.abs().sum() > 0


def test_identical_separated_pairs_reach_the_closed_form_minimum():
    # z1 = z2 = scaled orthogonal rows: positives at cosine 1, negatives at 0
    n, temperature = 4, 0.5
    z = torch.eye(n, 6, dtype=torch.float64) * torch.arange(1, n + 1).unsqueeze(1)
    expected = math.log(1 + (2 * n - 2) * math.exp(-1 / temperature))
    assert nt_xent(z, z, temperature).item() == pytest.approx(expected, rel=1e-12)
    assert contrastive_accuracy(z, z).item() == 1.0
    # pairing each sample with another sample's view: nobody retrieves the positive
    shuffled = z.roll(1, dims=0)
    assert contrastive_accuracy(z, shuffled).item() == 0.0
    assert nt_xent(z, shuffled, temperature) > nt_xent(z, z, temperature) + 1.0
    # a lower temperature drives the aligned loss towards 0
    assert nt_xent(z, z, 0.01).item() < 1e-30


@pytest.mark.parametrize("z1, z2, message", [
    (torch.randn(4, 3), torch.randn(5, 3), "same shape"),
    (torch.randn(1, 3), torch.randn(1, 3), "N >= 2"),
    (torch.randn(4), torch.randn(4), "N >= 2"),
    (torch.ones(4, 3, dtype=torch.long), torch.ones(4, 3, dtype=torch.long), "floating"),
])
def test_nt_xent_rejects_bad_shapes(z1, z2, message):
    with pytest.raises(ValueError, match=message):
        nt_xent(z1, z2)
    with pytest.raises(ValueError, match=message):
        contrastive_accuracy(z1, z2)


@pytest.mark.parametrize("temperature", [0.0, -1.0, float("nan"), True])
def test_nt_xent_rejects_a_bad_temperature(temperature):
    with pytest.raises(ValueError, match="temperature"):
        nt_xent(torch.randn(3, 2), torch.randn(3, 2), temperature)


# ------------------------------------------------------------------ the module
def fixed_loss(module, x, seed=123):
    """The objective on ``x`` with the same random views every time, in eval mode."""
    module.eval()
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        loss, acc = module.loss_and_accuracy(x)
    module.train()
    return loss.item(), acc.item()


def fit(module, x, steps, seed=0, val=True):
    pl.seed_everything(seed, verbose=False)
    data = DataLoader(TensorDataset(x, torch.zeros(len(x), dtype=torch.long)), batch_size=16,
                      shuffle=True)
    run = trainer(steps, limit_val_batches=1 if val else 0, num_sanity_val_steps=0)
    run.fit(module, data, DataLoader(TensorDataset(x, torch.zeros(len(x))), batch_size=16)
            if val else None)
    return run


def test_simclr_loss_decreases_and_logs_the_monitored_keys():
    x = textures()
    module = SelfSupervisedModule(small_cnn(batch_norm=True), views=("translate",), lr=1e-2)
    before, _ = fixed_loss(module, x)
    run = fit(module, x, steps=60)
    after, _ = fixed_loss(module, x)
    assert after < before - 0.5  # 3.96 -> 2.63 when written
    assert {"train/loss", "train/acc", "val/loss", "val/acc"} <= set(run.callback_metrics)


def test_rotation_prediction_learns_a_trivial_set():
    # a bright top-left corner: which quarter turn was applied is where the corner went
    x = 0.05 * torch.randn(32, *SHAPE, generator=torch.Generator().manual_seed(0))
    x[:, 0, :4, :4] += 2.0
    module = SelfSupervisedModule(small_cnn(), objective="rotation", lr=1e-2)
    before, _ = fixed_loss(module, x)
    fit(module, x, steps=40, val=False)
    after, accuracy = fixed_loss(module, x)
    assert after < before - 0.3
    assert accuracy > 0.9  # chance is 1/4


def test_simclr_views_are_made_by_the_groups_in_order(monkeypatch):
    calls = []
    for group_class in (Translations, Rotations):
        act = group_class.act

        def recording(self, x, g, fill=0.0, _act=act):
            calls.append(type(self).__name__)
            return _act(self, x, g, fill)

        monkeypatch.setattr(group_class, "act", recording)
    module = SelfSupervisedModule(small_cnn(), views=("translate", "c4"))
    module.loss_and_accuracy(blobs(4))
    assert calls == ["Translations", "Rotations"] * 2  # two views


def test_a_c4_view_is_a_rotation_of_its_input():
    x = blobs(16)
    module = SelfSupervisedModule(small_cnn(), views=("c4",))
    torch.manual_seed(0)
    view = module.make_view(x)
    orbit = torch.stack([torch.rot90(x, k, dims=(-2, -1)) for k in range(4)], dim=1)
    matches = (orbit == view.unsqueeze(1)).flatten(2).all(dim=2)
    assert matches.any(dim=1).all()  # every view is one of its input's quarter turns
    assert not matches[:, 0].all()  # and some are not the identity


def test_translate_views_shift_by_at_most_three_pixels():
    module = SelfSupervisedModule(small_cnn(), views=("translate",))
    assert module.view_groups == [Translations(3.0)]
    x = torch.zeros(64, *SHAPE)
    x[:, 0, 6, 6] = 1.0
    torch.manual_seed(0)
    view = module.make_view(x)[:, 0]
    rows, cols = torch.nonzero(view > 1e-6, as_tuple=True)[1:]
    assert not torch.equal(view, x[:, 0])
    assert (rows - 6).abs().max() <= 3 + 1 and (cols - 6).abs().max() <= 3 + 1  # bilinear


def test_noise_is_added_to_the_views():
    module = SelfSupervisedModule(small_cnn(), noise_std=0.5)
    x = torch.zeros(256, *SHAPE)
    view = module.make_view(x)
    assert view.std().item() == pytest.approx(0.5, rel=0.05)  # 36864 draws: ~0.4% error


def test_the_backbone_head_is_not_trained_and_a_seed_repeats_a_run():
    x = blobs()
    runs = []
    for _ in range(2):
        module = SelfSupervisedModule(small_cnn(batch_norm=True), views=("translate", "c4"),
                                      noise_std=0.1)
        head = {k: v.clone() for k, v in module.backbone.head.state_dict().items()}
        conv = module.backbone.blocks[0].conv.weight.clone()
        fit(module, x, steps=4, seed=3)
        for k, v in module.backbone.head.state_dict().items():
            assert torch.equal(v, head[k])
        assert not torch.equal(module.backbone.blocks[0].conv.weight, conv)
        runs.append(module.state_dict())
    for k in runs[0]:
        assert torch.equal(runs[0][k], runs[1][k]), k


def test_bare_input_batches_train():
    x = blobs(16)
    module = SelfSupervisedModule(small_cnn(), objective="rotation")
    run = trainer(2, limit_val_batches=0, num_sanity_val_steps=0)
    run.fit(module, DataLoader(x, batch_size=8))
    assert "train/loss" in run.callback_metrics


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(objective="byol"), ValueError, "objective"),
    (dict(objective="rotation", views=("c4",)), ValueError, "views"),
    (dict(objective="rotation", rotation_group="so2"), ValueError, "finite group"),
    (dict(views=("translate",), temperature=0.0), ValueError, "temperature"),
    (dict(views=("translate",), temperature=-0.5), ValueError, "temperature"),
    (dict(), ValueError, "SimCLR needs augmentations"),
    (dict(views="c4"), ValueError, "sequence"),
    (dict(views=("c5x",)), ValueError, "views"),
    (dict(views=("translate",), lr=0.0), ValueError, "lr"),
    (dict(views=("translate",), noise_std=-1.0), ValueError, "noise_std"),
    (dict(views=("translate",), projection_dim=0), ValueError, "projection_dim"),
])
def test_bad_arguments_are_named(kwargs, error, message):
    with pytest.raises(error, match=message):
        SelfSupervisedModule(small_cnn(), **kwargs)


def test_a_backbone_must_be_a_backbone():
    with pytest.raises(TypeError, match="Backbone"):
        SelfSupervisedModule(nn.Linear(3, 2), views=("translate",))


def test_a_view_group_must_act_on_the_backbone_inputs():
    backbone = SmallCNN((1, 12, 10), 2, channels=(4,))
    with pytest.raises(ValueError, match="cannot act"):
        SelfSupervisedModule(backbone, views=("c4",))


def test_hparams_describe_the_module_as_json():
    module = SelfSupervisedModule(small_cnn(), views=("translate", Rotations(4)),
                                  noise_std=0.1, temperature=0.2)
    described = json.loads(json.dumps(dict(module.hparams), default=repr))
    assert described["views"] == ["translate", {"class_path": "invreg.groups.rotations.Rotations",
                                                "init_args": {"n": 4}}]
    assert described["backbone"]["class_path"] == "invreg.models.cnn.SmallCNN"
    assert (described["objective"], described["noise_std"], described["temperature"]) == \
        ("simclr", 0.1, 0.2)
    rebuilt = SelfSupervisedModule(**described)
    assert rebuilt.view_groups == module.view_groups
    assert dict(rebuilt.hparams) == dict(module.hparams)


@pytest.mark.parametrize("kwargs", [dict(views=("translate", "c4")),
                                    dict(objective="rotation", rotation_group=Rotations(4))])
def test_a_trainer_checkpoint_loads_back(tmp_path, kwargs):
    module = SelfSupervisedModule(small_cnn(batch_norm=True), **kwargs)
    run = fit(module, blobs(16), steps=2, val=False)
    path = tmp_path / "model.ckpt"
    run.save_checkpoint(path)
    loaded = SelfSupervisedModule.load_from_checkpoint(path)
    assert dict(loaded.hparams) == dict(module.hparams)
    state = module.state_dict()
    assert state.keys() == loaded.state_dict().keys()
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, state[k]), k


# ------------------------------------------------------------------ the linear probe
def separable(n=64):
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 2
    x = 0.3 * torch.randn(n, *SHAPE, generator=gen) + (2.0 * y - 1.0).reshape(n, 1, 1, 1)
    return x, y


def test_the_probe_beats_chance_and_trains_only_the_head():
    x, y = separable()
    backbone = small_cnn(batch_norm=True)
    backbone.train()
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    probed = fit_linear_probe(backbone, x, y, epochs=100, batch_size=16)
    assert probed is backbone and not probed.training
    with torch.no_grad():
        accuracy = (probed(x).argmax(dim=1) == y).float().mean().item()
    assert accuracy > 0.9
    for k, v in probed.state_dict().items():
        if k.startswith("head."):
            assert not torch.equal(v, before[k]), k
        else:
            assert torch.equal(v, before[k]), k  # running statistics included
    assert not any(p.requires_grad for p in probed.parameters())


def test_the_probe_is_seeded():
    x, y = separable()
    heads = [fit_linear_probe(small_cnn(), x, y, epochs=3, seed=s).head.weight
             for s in (0, 0, 1)]
    assert torch.equal(heads[0], heads[1]) and not torch.equal(heads[0], heads[2])


@pytest.mark.parametrize("x, y, kwargs, message", [
    (torch.zeros(4, *SHAPE), torch.zeros(3, dtype=torch.long), {}, "shapes"),
    (torch.zeros(4, *SHAPE), torch.tensor([0, 1, 2, 0]), {}, r"\[0, 2\)"),
    (torch.zeros(4, *SHAPE), torch.tensor([0, -1, 1, 0]), {}, r"\[0, 2\)"),
    (torch.zeros(4, *SHAPE), torch.zeros(4), {}, "integer"),
    (torch.zeros(4, *SHAPE), torch.zeros(4, dtype=torch.long), dict(epochs=0), "epochs"),
    (torch.zeros(4, *SHAPE), torch.zeros(4, dtype=torch.long), dict(lr=-1.0), "lr"),
    (torch.zeros(4, *SHAPE), torch.zeros(4, dtype=torch.long), dict(batch_size=0),
     "batch_size"),
])
def test_the_probe_rejects_bad_input(x, y, kwargs, message):
    with pytest.raises(ValueError, match=message):
        fit_linear_probe(small_cnn(), x, y, **kwargs)


def test_num_classes_linked_by_the_cli_is_checked_and_not_recorded():
    # the invreg CLI links the data's num_classes to every model: the backbone's head must
    # match it, and it is no hyper-parameter of its own (load_from_checkpoint rebuilds
    # the module from hparams, and the model cache keys them)
    module = SelfSupervisedModule(SmallCNN((1, 8, 8), 3), "rotation", num_classes=3)
    assert "num_classes" not in module.hparams
    with pytest.raises(ValueError, match="num_classes: the data has 4 classes but the "
                                         "backbone's head"):
        SelfSupervisedModule(SmallCNN((1, 8, 8), 3), "rotation", num_classes=4)

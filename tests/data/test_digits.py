"""DigitsDataModule, and through it the pipeline every InvarianceDataModule shares."""

import pytest
import pytorch_lightning as pl
import torch
from tiny import tiny_trainer
from torch import nn

from invreg.data import DigitsDataModule, InvarianceDataModule
from invreg.data.digits import load_digit_arrays
from invreg.groups import ContinuousRotations, CyclicShifts, Rotations

N_DIGITS = 1797


def make(**kwargs):
    dm = DigitsDataModule(**kwargs)
    dm.setup()
    return dm


def tensors(dm, split):
    return getattr(dm, f"{split}_dataset").tensors


@pytest.fixture(scope="module")
def raw():
    """No standardisation, no padding: the dataset holds the source pixels."""
    return make(standardize=False)


def test_shapes_and_classes_known_before_setup():
    dm = DigitsDataModule(upscale=2, pad=3, remove_classes=[3, 9])
    assert dm.train_dataset is None
    assert dm.input_shape == (1, 22, 22)
    assert dm.num_classes == 8
    assert dm.classes == [0, 1, 2, 4, 5, 6, 7, 8]
    assert DigitsDataModule().input_shape == (1, 8, 8)
    assert DigitsDataModule().num_classes == 10


def test_splits_sizes_dtypes_and_disjointness(raw):
    sizes = {s: len(getattr(raw, f"{s}_dataset")) for s in ("train", "val", "test")}
    assert sizes == {"train": 1257, "val": 270, "test": 270}  # round(0.15 * 1797) = 270
    x, y = tensors(raw, "train")
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.shape == (1257, 1, 8, 8)
    assert 0.0 <= x.min() and x.max() <= 1.0
    index = torch.cat([raw.split_indices[s] for s in ("train", "val", "test")])
    assert sorted(index.tolist()) == list(range(N_DIGITS))
    images, labels = load_digit_arrays()
    for split in ("train", "val", "test"):
        x, y = tensors(raw, split)
        i = raw.split_indices[split].numpy()
        assert torch.equal(x[:, 0], torch.from_numpy(images[i].copy()))
        assert torch.equal(y, torch.from_numpy(labels[i].copy()))


def test_split_sizes_as_counts():
    dm = make(val_size=100, test_size=0.5, standardize=False)
    sizes = (len(dm.train_dataset), len(dm.val_dataset), len(dm.test_dataset))
    assert sizes == (799, 100, 898)  # round(0.5 * 1797) == round(898.5) == 898


def test_remove_classes_relabels_contiguously():
    dm = make(remove_classes=[0, 5], standardize=False)
    assert dm.num_classes == 8 and dm.classes == [1, 2, 3, 4, 6, 7, 8, 9]
    _, labels = load_digit_arrays()
    total = 0
    for split in ("train", "val", "test"):
        _, y = tensors(dm, split)
        source = torch.from_numpy(labels[dm.split_indices[split].numpy()].copy())
        assert set(y.tolist()) == set(range(8))
        assert torch.equal(torch.tensor(dm.classes)[y], source)  # 6 -> 4, 9 -> 7, ...
        total += len(y)
    assert total == N_DIGITS - 178 - 182  # the zeros and fives are gone


def test_same_seed_same_tensors_different_seed_differs():
    a, b, c = make(seed=3), make(seed=3), make(seed=4)
    for split in ("train", "val", "test"):
        for ta, tb in zip(tensors(a, split), tensors(b, split), strict=True):
            assert torch.equal(ta, tb)
    assert not torch.equal(a.split_indices["train"], c.split_indices["train"])
    xa, ya = next(iter(a.train_dataloader()))
    xb, yb = next(iter(b.train_dataloader()))
    assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_standardisation_uses_train_statistics(raw):
    dm = make()
    x, _ = tensors(dm, "train")
    assert abs(x.double().mean().item()) < 1e-5
    assert abs(x.double().std().item() - 1.0) < 1e-5
    raw_train, _ = tensors(raw, "train")
    assert dm.mean == pytest.approx(raw_train.double().mean().item())
    assert dm.std == pytest.approx(raw_train.double().std().item())
    # the val split is standardised with the *train* statistics, so it is not exactly N(0, 1)
    val, _ = tensors(dm, "val")
    raw_val, _ = tensors(raw, "val")
    torch.testing.assert_close(val * dm.std + dm.mean, raw_val, atol=1e-5, rtol=0)
    assert dm.background == pytest.approx(-dm.mean / dm.std)
    assert (raw.mean, raw.std, raw.background) == (0.0, 1.0, 0.0)


def test_pad_and_upscale(raw):
    dm = make(upscale=2, pad=3, standardize=False)
    x, _ = tensors(dm, "train")
    assert x.shape[1:] == (1, 22, 22) == dm.input_shape
    inner = x[..., 3:-3, 3:-3]
    assert x.abs().sum() == inner.abs().sum()  # the border is zero
    assert torch.equal(inner[..., ::2, ::2], tensors(raw, "train")[0])
    assert torch.equal(inner[..., 1::2, 1::2], inner[..., ::2, ::2])  # nearest neighbour


def test_transform_group_is_applied_once_and_fixed(raw):
    group = Rotations(4)
    dm = make(transform_group="c4", standardize=False)
    for split in ("train", "val", "test"):
        x, y = tensors(dm, split)
        x0, y0 = tensors(raw, split)
        elements = dm.transform_elements[split]
        assert torch.equal(y, y0)
        assert torch.equal(x, group.act(x0, elements))
        assert set(elements.tolist()) == {0, 1, 2, 3}
        assert not torch.equal(x, x0)
    # fixed: the same tensors on every pass and in a fresh module with the same seed
    first = [torch.cat([b[0] for b in dm.val_dataloader()]) for _ in range(2)]
    again = make(transform_group="c4", standardize=False)
    assert torch.equal(first[0], first[1])
    assert torch.equal(first[0], torch.cat([b[0] for b in again.val_dataloader()]))
    # and over epochs of the (shuffled) training loader: the same multiset of images
    key = torch.randn(64, dtype=torch.float64)

    def epoch_keys(loader):
        return torch.cat([x.flatten(1).double() @ key for x, _ in loader]).sort().values

    loader = dm.train_dataloader()
    torch.testing.assert_close(epoch_keys(loader), epoch_keys(loader), rtol=0, atol=1e-9)


def test_transform_group_accepts_group_objects_and_other_groups(raw):
    dm = make(transform_group=CyclicShifts(4, dim=-2), standardize=False)
    x0, _ = tensors(raw, "train")
    x, _ = tensors(dm, "train")
    assert torch.equal(x, CyclicShifts(4, dim=-2).act(x0, dm.transform_elements["train"]))


def test_augment_group_fresh_per_draw_train_only():
    group = Rotations(4)
    dm = make(augment_group="c4", batch_size=16)
    loader = dm.train_dataloader()
    x, y = tensors(dm, "train")
    epochs = [torch.cat([b[0] for b in loader]), torch.cat([b[0] for b in loader])]
    # the loader's order is the sampler's order of that epoch: undo it to compare samples
    first, second = (
        batches[loader.sampler.order(e).argsort()][:16] for e, batches in enumerate(epochs)
    )
    labels = torch.cat([b[1] for b in loader])[loader.sampler.order(2).argsort()]
    assert torch.equal(labels, y)
    assert not torch.equal(first, second)  # a fresh element per sample and epoch
    for augmented in (first, second):  # every augmented image is a rotation of its original
        match = (group.orbit(x[:16]) == augmented.unsqueeze(1)).flatten(2).all(-1)
        assert match.any(1).all()
    # the evaluation loaders are not augmented
    assert torch.equal(torch.cat([b[0] for b in dm.val_dataloader()]), tensors(dm, "val")[0])
    assert torch.equal(torch.cat([b[0] for b in dm.test_dataloader()]), tensors(dm, "test")[0])
    # reproducible: a fresh module with the same seed yields the same augmented batches
    batches = [
        next(iter(make(augment_group="c4", batch_size=16).train_dataloader()))[0] for _ in range(2)
    ]
    assert torch.equal(batches[0], batches[1])


def test_augment_fills_with_standardised_background():
    # padded, standardised images rotated by non-right angles: the corners entering the frame
    # must hold the background value, as if rotated before standardisation
    dm = make(augment_group=ContinuousRotations(), pad=4, batch_size=8)
    x, _ = next(iter(dm.train_dataloader()))
    corners = torch.stack([x[..., 0, 0], x[..., 0, -1], x[..., -1, 0], x[..., -1, -1]])
    torch.testing.assert_close(corners, torch.full_like(corners, dm.background))


def test_transform_and_augment_combine():
    dm = make(transform_group="c4", augment_group="c4", batch_size=8)
    x, _ = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 1, 8, 8)


def test_hyperparameters_saved():
    dm = DigitsDataModule(upscale=2, remove_classes=[1], augment_group="c4", seed=5)
    assert dm.hparams.upscale == 2 and dm.hparams.seed == 5
    assert list(dm.hparams.remove_classes) == [1] and dm.hparams.augment_group == "c4"
    assert isinstance(dm, InvarianceDataModule)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"num_workers": -1}, "num_workers"),
        ({"seed": -1}, "seed"),
        ({"pad": -1}, "pad"),
        ({"upscale": 0}, "upscale"),
        ({"standardize": "yes"}, "standardize"),
        ({"remove_classes": [10]}, "remove_classes"),
        ({"remove_classes": [1, 1]}, "remove_classes"),
        ({"remove_classes": list(range(9))}, "remove_classes"),
        ({"remove_classes": 3}, "remove_classes"),
        ({"val_size": 1.5}, "val_size"),
        ({"val_size": 0}, "val_size"),
        ({"test_size": -3}, "test_size"),
        ({"transform_group": "c4x"}, "transform_group"),
        ({"augment_group": "nonsense"}, "augment_group"),
        ({"transform_group": CyclicShifts(3)}, "transform_group"),  # 8 is not divisible by 3
    ],
)
def test_bad_arguments_raise_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=name):
        DigitsDataModule(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"test_size": 2000}, "test_size"),
        ({"val_size": 0.6, "test_size": 0.5}, "val_size"),
        ({"val_size": 1000, "test_size": 797}, "leaving none to train"),
    ],
)
def test_split_sizes_larger_than_the_data_raise(kwargs, name):
    dm = DigitsDataModule(**kwargs)
    with pytest.raises(ValueError, match=name):
        dm.setup()


def test_trains_with_lightning(tmp_path):
    class Tiny(pl.LightningModule):
        def __init__(self, input_shape, num_classes):
            super().__init__()
            features = int(torch.tensor(input_shape).prod())
            self.net = nn.Sequential(nn.Flatten(), nn.Linear(features, num_classes))

        def training_step(self, batch, _):
            x, y = batch
            return nn.functional.cross_entropy(self.net(x), y)

        def validation_step(self, batch, _):
            x, y = batch
            self.log("val_loss", nn.functional.cross_entropy(self.net(x), y))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    dm = DigitsDataModule(augment_group="c4", transform_group="c4", remove_classes=[9])
    model = Tiny(dm.input_shape, dm.num_classes)
    trainer = tiny_trainer(tmp_path, limit_train_batches=3, limit_val_batches=2)
    trainer.fit(model, datamodule=dm)
    assert torch.isfinite(trainer.callback_metrics["val_loss"])

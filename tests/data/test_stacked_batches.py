"""The data modules' loaders read a batch with one indexing and hand it over as is; the batches
are bit for bit those of a per-sample read and ``default_collate``, with workers too."""

import pytest
import torch
from torch.utils.data import DataLoader, default_collate

from invreg.data import DigitsDataModule
from invreg.data.epochs import StackedSamples, collate


@pytest.fixture(scope="module")
def data():
    module = DigitsDataModule(batch_size=32, seed=0, augment_group="c4")
    module.setup()
    return module


def per_sample(loader: DataLoader, keys_of_batches):
    """What a loader without the stacked path yields: samples read one by one, stacked."""
    dataset = loader.dataset
    return [default_collate([dataset.__getitems__([key])[0] for key in keys])
            for keys in keys_of_batches]


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_batches_equal_per_sample_reads_and_default_collate(data, split):
    loader = getattr(data, f"{split}_dataloader")()
    assert loader.collate_fn is collate
    sampler = loader.sampler
    keys = list(sampler)
    if split == "train":
        sampler.set_epoch(0)  # the pass below draws the same epoch again
    size = loader.batch_size
    expected = per_sample(loader, [keys[i:i + size] for i in range(0, len(keys), size)])
    got = list(loader)
    assert len(got) == len(expected)
    for (x, y), (ex, ey) in zip(got, expected, strict=True):
        assert x.dtype == ex.dtype and torch.equal(x, ex) and torch.equal(y, ey)


def test_workers_yield_the_same_batches(data):
    import copy

    main = copy.deepcopy(data)
    workers = copy.deepcopy(data)
    workers.num_workers = 2
    first = [torch.cat(t) for t in zip(*main.train_dataloader(), strict=True)]
    second = [torch.cat(t) for t in zip(*workers.train_dataloader(), strict=True)]
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


def test_stacked_samples_read_as_the_list_of_samples():
    x, y = torch.randn(4, 1, 2, 2), torch.arange(4)
    batch = StackedSamples(x, y)
    assert len(batch) == 4 and torch.equal(batch[2][0], x[2]) and int(batch[2][1]) == 2
    assert [int(label) for _, label in batch] == [0, 1, 2, 3]
    cx, cy = collate(batch)
    assert cx is x and cy is y  # handed over, not copied
    dx, dy = default_collate(batch)  # another collate function gets the same batch
    assert torch.equal(dx, x) and torch.equal(dy, y)

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from invreg.data.augment import GroupAugmentation, derive_seed
from invreg.data.epochs import EpochDataset, ShuffledEpochs
from invreg.groups import ContinuousRotations, CyclicShifts, Rotations


def test_derive_seed_streams_are_distinct_and_stable():
    seeds = {derive_seed(0, s) for s in range(5)} | {derive_seed(1, s) for s in range(5)}
    assert len(seeds) == 10
    assert derive_seed(3, 1, 2) == derive_seed(3, 1, 2)
    assert all(0 <= s < 2**63 for s in seeds)


def test_fill_is_ignored_by_exact_groups():
    x = torch.randn(6, 2, 5, 5)
    g = torch.arange(6) % 4
    group = Rotations(4)
    assert torch.equal(group.act(x, g, fill=-0.4), group.act(x, g))
    shifts = CyclicShifts(5)
    assert torch.equal(shifts.act(x, g % 5, fill=3.0), shifts.act(x, g % 5))


def test_fill_fills_background_for_bilinear_rotations():
    # a constant image of the background value must stay constant: a zero fill would not
    background = -0.42
    x = torch.full((3, 1, 9, 9), background)
    g = torch.tensor([30.0, 45.0, 100.0])
    group = ContinuousRotations()
    zero_filled = group.act(x, g)
    assert (zero_filled - background).abs().max() > 0.1  # the corners got zeros
    torch.testing.assert_close(group.act(x, g, fill=background), x)
    # and on an image with background 0 both agree
    y = torch.rand(3, 1, 9, 9)
    torch.testing.assert_close(group.act(y, g, fill=0.0), group.act(y, g))


def _orbit_index(group, original, augmented):
    """Per sample, the element e with ``group.act(original, e) == augmented``."""
    match = (group.orbit(original) == augmented.unsqueeze(1)).flatten(2).all(-1)  # [B, N]
    assert match.any(1).all(), "an augmented sample is not in the orbit of its original"
    return match.long().argmax(1)


def test_augmentation_draws_fresh_elements_per_epoch_in_the_orbit():
    group = Rotations(4)
    x = torch.randn(32, 1, 6, 6)
    index = torch.arange(32)
    augment = GroupAugmentation(group, num_samples=32, seed=0)
    first, second = augment(x, 0, index), augment(x, 1, index)
    e1, e2 = _orbit_index(group, x, first), _orbit_index(group, x, second)
    assert not torch.equal(e1, e2)  # a fresh draw each epoch
    assert len(e1.unique()) > 1
    # a function of (seed, epoch, sample): same seed and epoch, same elements, in any batch
    again = GroupAugmentation(group, num_samples=32, seed=0)
    assert torch.equal(again(x, 0, index), first)
    part = torch.tensor([5, 17, 2])
    assert torch.equal(again(x[part], 0, part), first[part])


def _epochs(loader, n):
    return [torch.cat([x for x, _ in loader]) for _ in range(n)]


def test_loader_in_workers_matches_main_process_every_epoch():
    # every sample is the same image, so any difference comes from the augmentation
    group = Rotations(4)
    image = torch.randn(1, 1, 6, 6)
    dataset = TensorDataset(image.expand(64, 1, 6, 6).clone(), torch.zeros(64, dtype=torch.long))

    def loader(num_workers):
        augment = GroupAugmentation(group, num_samples=64, seed=1)
        return DataLoader(
            EpochDataset(dataset, augment),
            batch_size=16,
            sampler=ShuffledEpochs(64, seed=2),
            num_workers=num_workers,
            persistent_workers=num_workers > 0,
        )

    first_epoch, second_epoch = _epochs(loader(0), 2)
    elements = _orbit_index(group, image.expand(64, 1, 6, 6), first_epoch)
    assert len(elements.unique()) == 4
    assert not torch.equal(first_epoch, second_epoch)
    # workers (persistent, two epochs) draw exactly what the main process draws
    in_workers = _epochs(loader(2), 2)
    assert torch.equal(in_workers[0], first_epoch)
    assert torch.equal(in_workers[1], second_epoch)


def test_sampler_epoch_order_is_a_function_of_seed_and_epoch():
    sampler = ShuffledEpochs(50, seed=3)
    epochs = [list(sampler) for _ in range(3)]
    assert [{e for e, _ in keys} for keys in epochs] == [{0}, {1}, {2}]
    assert all(sorted(i for _, i in keys) == list(range(50)) for keys in epochs)
    assert epochs[0] != [(0, i) for _, i in epochs[1]]  # reshuffled
    resumed = ShuffledEpochs(50, seed=3)
    resumed.set_epoch(2)
    assert list(resumed) == epochs[2]


def test_epoch_dataset_plain_index_is_the_untransformed_sample():
    x, y = torch.randn(8, 1, 4, 4), torch.arange(8)
    dataset = EpochDataset(TensorDataset(x, y), GroupAugmentation(Rotations(4), 8, seed=0))
    sample, label = dataset[3]
    assert torch.equal(sample, x[3]) and label == 3
    batch = dataset.__getitems__([(0, 3), (0, 5)])
    assert [int(label) for _, label in batch] == [3, 5]


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: GroupAugmentation(Rotations(4), 0, seed=0), "num_samples"),
        (lambda: ShuffledEpochs(5, seed=0).set_epoch(-1), "epoch"),
        (lambda: EpochDataset(TensorDataset(torch.zeros(3, 1, 2, 2), torch.zeros(3)),
                              GroupAugmentation(Rotations(4), 4, seed=0)), "augmentation"),
        (lambda: EpochDataset(TensorDataset(torch.zeros(3, 2), torch.zeros(3)), None).__getitems__(
            [(0, 1), (1, 2)]), "one epoch"),
    ],
)
def test_errors_name_the_argument(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()

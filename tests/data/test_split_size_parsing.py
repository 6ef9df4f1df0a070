"""Split sizes from the CLI and YAML: ``270`` is a count (int), ``0.2`` a fraction (float).

jsonargparse tries a union's types in order; with ``SplitSize = float | int`` the command line
``--data.val_size 270`` became the float 270.0 and was refused as a fraction.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from invreg.cli import run_cli
from invreg.data import DigitsDataModule
from invreg.data.base import check_split_size

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "configs" / "quickstart.yaml"
QUIET = ["--trainer.logger", "false", "--trainer.callbacks", "[]"]


def _datamodule(*args: str):
    return run_cli(["--config", str(QUICKSTART), *QUIET, *args], run=False).datamodule


@pytest.mark.parametrize(("given", "expected"),
                         [("270", 270), ("1", 1), ("0.2", 0.2), ("0.5", 0.5)])
def test_cli_split_size_is_a_count_or_a_fraction(given, expected):
    datamodule = _datamodule("--data.val_size", given)
    assert datamodule.val_size == expected
    assert type(datamodule.val_size) is type(expected)


def test_yaml_split_sizes_keep_their_type(tmp_path):
    config = tmp_path / "sizes.yaml"
    config.write_text(yaml.safe_dump({"data": {"init_args": {"val_size": 270,
                                                             "test_size": 0.25}}}))
    datamodule = _datamodule("--config", str(config))
    assert (datamodule.val_size, datamodule.test_size) == (270, 0.25)
    assert isinstance(datamodule.val_size, int) and isinstance(datamodule.test_size, float)
    datamodule.setup("fit")
    assert len(datamodule.val_dataset) == 270


def test_a_whole_float_is_refused_with_the_integer_spelling():
    with pytest.raises(ValueError, match=r"got 270\.0; for a count of samples write an "
                                         r"integer, e.g. val_size=270"):
        check_split_size("val_size", 270.0)
    with pytest.raises(ValueError, match=r"val_size as a fraction must lie in \(0, 1\), got 1\.5$"):
        DigitsDataModule(val_size=1.5)


def test_invreg_console_script_reads_a_count():
    invreg = Path(sys.executable).parent / "invreg"
    env = {**os.environ, "WANDB_MODE": "disabled"}
    done = subprocess.run(
        [str(invreg), "fit", "--config", str(QUICKSTART), *QUIET, "--data.val_size", "270",
         "--data.test_size", "0.2", "--print_config"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    data = yaml.safe_load(done.stdout)["data"]["init_args"]
    assert (data["val_size"], data["test_size"]) == (270, 0.2)

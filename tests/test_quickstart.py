"""``python -m invreg.quickstart --config my.yaml``: the config's group is used for every model
(WT is tied over it), and what does not apply to the config is skipped with a printed reason."""

from pathlib import Path

import pytest

from invreg import quickstart

TINY = """\
seed_everything: 0
trainer:
  max_epochs: 1
  limit_train_batches: 2
  limit_val_batches: 1
  limit_test_batches: 1
  accelerator: cpu
  enable_progress_bar: false
  enable_model_summary: false
  logger:
    class_path: pytorch_lightning.loggers.CSVLogger
    init_args:
      save_dir: {root}
model:
  class_path: invreg.modules.InvarianceModule
  init_args:
    backbone:
      class_path: invreg.models.MLP
      init_args:
        input_shape: [1, 8, 8]
        num_classes: 10
        hidden_widths: [16]
    group: {group}
    invariance_weight: {weight}
data:
  class_path: invreg.data.DigitsDataModule
  init_args:
    batch_size: 64
"""


def _config(tmp_path, group, weight=1.0):
    path = tmp_path / "my.yaml"
    path.write_text(TINY.format(root=tmp_path / "runs", group=group, weight=weight))
    return path


def test_weight_tied_model_uses_the_config_group(tmp_path, capsys):
    quickstart.main(["--config", str(_config(tmp_path, "t4")), "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert "full orbits of CyclicShifts(n=4" in out
    table = out[out.index("Test split"):]
    for label in ("DA (data augmentation)", "IR (invariance-regularised)", "WT (weight-tied"):
        assert label in table
    wt_row = next(line for line in table.splitlines() if line.startswith("WT"))
    # tied over t4 and measured on t4 orbits: exactly invariant (float32 sums of equal terms)
    _, di, li, consistency = wt_row.rsplit(maxsplit=3)
    assert float(di) == 0.0 and float(li) == 0.0 and float(consistency) == 1.0
    # each model's run folder is named, and holds its config and summary
    folders = {line.split(": ", 1)[0].strip(): line.split(": ", 1)[1]
               for line in out[out.index("run folders"):].splitlines()[1:] if ": " in line}
    assert set(folders) == {"DA", "IR", "WT"}
    for folder in folders.values():
        assert (Path(folder) / "config.yaml").is_file()
        assert (Path(folder) / "summary.json").is_file()


def test_continuous_group_skips_weight_tying(tmp_path, capsys):
    results = quickstart.run(_config(tmp_path, "so2", weight=0.0), out=tmp_path / "out")
    out = capsys.readouterr().out
    assert "WT (weight-tied (exact)): skipped: ContinuousRotations" in out
    assert "IR (invariance-regularised): skipped: the config's invariance_weight is 0" in out
    assert set(results) == {"DA"}


def test_unknown_model_name(tmp_path):
    with pytest.raises(ValueError, match=r"models: expected names among \['DA', 'IR', 'WT'\]"):
        quickstart.run(_config(tmp_path, "c4"), out=tmp_path / "out", models=("XX",))


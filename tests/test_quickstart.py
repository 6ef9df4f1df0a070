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
    folders = {line.split(": ", 1)[0].strip(): line.split(": ", 1)[1].rsplit(" (", 1)[0]
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



def test_config_without_logger_gets_a_csv_logger_in_one_folder_per_model(tmp_path, capsys):
    text = _config(tmp_path, "t4").read_text()
    start = text.index("  logger:")
    end = text.index("model:")
    (tmp_path / "nolog.yaml").write_text(text[:start] + text[end:])
    out_dir = tmp_path / "out"
    quickstart.run(tmp_path / "nolog.yaml", out=out_dir, models=("DA",))
    out = capsys.readouterr().out
    run = out_dir / "DA" / "version_0"
    assert (run / "metrics.csv").is_file() and (run / "config.yaml").is_file()
    assert not (out_dir / "DA" / "DA").exists()
    line = next(line for line in out.splitlines() if line.strip().startswith("DA:"))
    assert "metrics.csv" in line and "saliency/" not in line  # lists only what was written
    # the test scores are logged under the OrbitMetrics names
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"test_orbit/accuracy", "test_orbit/orbit_accuracy"} <= set(header)
    assert "test_orbit/acc" not in header


def test_logger_false_is_kept(tmp_path):
    text = _config(tmp_path, "t4").read_text()
    path = tmp_path / "off2.yaml"
    path.write_text(text[:text.index("  logger:")] + "  logger: false\n"
                    + text[text.index("model:"):])
    assert quickstart.logger_arguments(path, "DA", tmp_path) == []


def test_table_prints_no_negative_zero_and_flags_chance_level():
    table = quickstart.format_table({"DA": {"accuracy": 0.1, "DI": -3e-9, "LI": 0.5,
                                            "consistency": 1.0}})
    assert "-0.0000" not in table and " 0.0000" in table
    assert table.splitlines()[0].split() == ["model", "acc", "%", "DI", "LI", "orbit",
                                             "consistency"]  # display labels, not keys
    assert table.splitlines()[2].split()[3] == "10.0"
    assert quickstart._fixed(-0.25, 4) == "-0.2500"
    warnings = quickstart.chance_warnings({"DA": {"accuracy": 0.1}, "IR": {"accuracy": 0.9}},
                                          10)
    assert len(warnings) == 1 and warnings[0].startswith("warning: DA is at chance level")


def test_a_missing_config_exits_2_with_one_line():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "invreg.quickstart", "--config",
                           "no/such.yaml"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "--config: no such file" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("argv, message", [
    (["--max-epochs", "0"], "--max-epochs: expected a whole number >= 1"),
    (["--out", __file__], "--out: "),
])
def test_bad_arguments_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        quickstart.main(argv)
    assert stop.value.code == 2 and message in capsys.readouterr().err

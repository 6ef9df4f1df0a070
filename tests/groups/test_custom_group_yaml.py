"""docs/groups_custom.md, "Configs and checkpoints": a FiniteGroup subclass with plain
constructor arguments is named by class_path in YAML, trained with ``invreg fit`` and rebuilt
by ``load_from_checkpoint`` in a fresh process (each step a subprocess, as a user runs it)."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CONFIG = """\
seed_everything: 0
trainer:
  max_epochs: 1
  limit_train_batches: 2
  limit_val_batches: 1
  enable_progress_bar: false
  logger: false
  default_root_dir: runs
model:
  class_path: invreg.modules.InvarianceModule
  init_args:
    backbone:
      class_path: invreg.models.MLP
      init_args: {input_shape: [1, 8, 8], num_classes: 10, hidden_widths: [16]}
GROUP
    invariance_weight: 1.0
data:
  class_path: invreg.data.DigitsDataModule
  init_args: {batch_size: 64}
"""

LOAD = """\
import sys
from pathlib import Path
from invreg.modules import InvarianceModule
module = InvarianceModule.load_from_checkpoint(next(Path(sys.argv[1]).rglob("*.ckpt")))
import mygroups
print(repr(module.group), module.group == mygroups.Rolls(size=8, step=2))
"""


def _doc_blocks():
    text = (ROOT / "docs" / "groups_custom.md").read_text()
    section = text[text.index("## Configs and checkpoints"):]
    python = re.findall(r"```python\n(.*?)```", section, re.DOTALL)[0]
    yaml = re.findall(r"```yaml\n(.*?)```", section, re.DOTALL)[0]
    return python, yaml


def _run(command, cwd, pythonpath="."):
    env = {**os.environ, "PYTHONPATH": pythonpath, "WANDB_MODE": "disabled"}
    env.pop("INVREG_TRACEBACK", None)
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_subclassed_group_trains_from_yaml_and_reloads(tmp_path):
    python, yaml = _doc_blocks()
    header = "import torch\nfrom invreg.groups import FiniteGroup\n"
    (tmp_path / "mygroups.py").write_text(header + python)
    group = yaml[yaml.index("    group:"):].rstrip("\n")
    (tmp_path / "my.yaml").write_text(CONFIG.replace("GROUP", group))
    done = _run([str(Path(sys.executable).parent / "invreg"), "fit", "--config", "my.yaml"],
                tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    saved = next((tmp_path / "runs").rglob("config.yaml")).read_text()
    assert "mygroups.Rolls" in saved

    (tmp_path / "load.py").write_text(LOAD)
    loaded = _run([sys.executable, "load.py", "runs"], tmp_path)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert loaded.stdout.strip() == "Rolls(size=8, step=2) True"

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "load.py").write_text(LOAD)  # a script's folder is on sys.path: not tmp_path
    refused = _run([sys.executable, "load.py", str(tmp_path / "runs")], elsewhere, pythonpath="")
    assert refused.returncode != 0 and "No module named 'mygroups'" in refused.stderr

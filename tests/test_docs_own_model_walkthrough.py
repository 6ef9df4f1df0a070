"""docs/own_model.md run as a user runs it: every file block (``# name`` on its first line)
written into an empty folder, then every line of its ``bash`` blocks run there, in order, as
its own shell command; each must succeed and print what the page says it prints."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "own_model.md"
FENCE = re.compile(r"```(\w+)\n(.*?)```", re.DOTALL)


def blocks() -> list[tuple[str, str]]:
    return FENCE.findall(PAGE.read_text())


def files() -> dict[str, str]:
    """``{file name: text}`` of every non-shell block whose first line is ``# <name>``."""
    out = {}
    for language, text in blocks():
        first = text.splitlines()[0]
        if language != "bash" and re.fullmatch(r"# [\w./-]+\.(py|yaml)", first):
            out[first[2:]] = text
    return out


def commands() -> list[str]:
    return [line.strip() for language, text in blocks() if language == "bash"
            for line in text.splitlines() if line.strip() and not line.startswith("#")]


def test_the_page_holds_the_walkthrough():
    assert set(files()) == {"mypackage.py", "my.yaml", "train.py", "reload.py", "test_mynet.py"}
    steps = commands()
    assert [s.split()[1:3] for s in steps] == [
        ["invreg", "fit"], ["python", "train.py"], ["python", "reload.py"],
        ["invreg", "report"], ["invreg", "report"], ["python", "-m"]], steps
    report = next(s for s in steps if " report " in s)
    assert "--group c4 flip" in report and "--ckpt_path" in report
    # the files do not run inside tests/test_docs.py (only ```python blocks do)
    assert "```python\n" not in PAGE.read_text()
    assert "(docs/own_model.md)" in (ROOT / "README.md").read_text()


def test_the_walkthrough_runs_as_written(tmp_path):
    for name, text in files().items():
        (tmp_path / name).write_text(text)
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    for key in ("INVREG_TRACEBACK", "PYTHONPATH"):
        env.pop(key, None)
    outputs = []
    for command in commands():
        done = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{command}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        outputs.append(done.stdout)
    fit, _, reloaded, _, _, pytest_run = outputs
    checkpoint = tmp_path / "runs" / "mynet" / "version_0" / "checkpoints" / "best.ckpt"
    assert checkpoint.is_file() and "best.ckpt" in fit
    assert (tmp_path / "python.ckpt").is_file()
    for path in ("runs/mynet/version_0/checkpoints/best.ckpt", "python.ckpt"):
        assert f"reloaded {path} MyNet Rotations(n=4)" in reloaded, reloaded
    assert (tmp_path / "report" / "report.html").is_file()
    markdown = (tmp_path / "report" / "report.md").read_text()
    for group in ("c4", "flip"):
        assert re.search(rf"^\| mynet/version_0 \| {group} \| \d", markdown, re.M), group
    assert len(list((tmp_path / "report" / "figures").glob("*.png"))) == 7
    # the checkpoint saved from Python, reported without a config
    python_report = (tmp_path / "report-python" / "report.md").read_text()
    assert re.search(r"^\| python \| c4 \| \d", python_report, re.M), python_report[:2000]
    assert "2 passed" in pytest_run

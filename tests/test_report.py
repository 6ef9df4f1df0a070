"""``invreg report``, run as a user runs it: the console script on checkpoints of tiny runs."""

from __future__ import annotations

import base64
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from matplotlib import image as mpimg
from report_pages import Page, parse

from invreg.cli import main, run_cli
from invreg.evaluation import evaluate_invariance
from invreg.functional import bootstrap_interval
from invreg.report import (
    METRICS,
    ReportSettings,
    feature_layers,
    load_checkpoint,
)

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "configs" / "quickstart.yaml"
TINY = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
        "--trainer.limit_val_batches", "1"]
# small measurements: the test checks the report's contents, not the statistics
QUICK = ["--samples", "24", "--bootstrap", "200", "--saliency_steps", "4",
         "--betas", "[0.0, 0.5]", "--batch_size", "16"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# float32 rounding of an exactly invariant (weight-tied) model: the orbit's logits differ by at
# most some hundred ulps of their size, so the normalised LI ‖Δ‖²/‖f‖² stays below (1000 ε)²;
# an untied model trained for two steps scores ~0.5
EXACT_TOL = (1000 * torch.finfo(torch.float32).eps) ** 2


def script(name: str) -> str:
    path = Path(sys.executable).parent / name
    return str(path) if path.exists() else name


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    env.pop("INVREG_TRACEBACK", None)
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def summary(page: Page) -> dict[str, dict[str, str]]:
    """The summary table (one row per checkpoint and group, a column per metric) of a report
    with one group per checkpoint: ``{metric label: {checkpoint name: cell}}``."""
    header, *rows = page.tables[0]
    assert header[:2] == ["checkpoint", "group"], header
    return {label: {row[0]: row[2 + i] for row in rows} for i, label in enumerate(header[2:])}


def first_number(cell: str) -> float:
    return float(cell.split()[0])


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """Two tiny runs of the quickstart config: ``IR`` as it is, ``WT`` with its weight-tied
    (exactly invariant) MLP; each leaves ``<run>/version_0/checkpoints/best.ckpt``."""
    root = tmp_path_factory.mktemp("runs")
    common = ["fit", "--config", str(QUICKSTART), *TINY, "--trainer.logger", "false",
              "--trainer.callbacks",
              "[{class_path: pytorch_lightning.callbacks.ModelCheckpoint, "
              "init_args: {filename: best}}]"]
    run_cli([*common, "--trainer.default_root_dir", str(root / "IR")])
    run_cli([*common, "--model.init_args.invariance_weight", "0",
             "--model.init_args.backbone.class_path", "invreg.models.TiedMLP",
             "--model.init_args.backbone.init_args.input_shape", "[1, 8, 8]",
             "--trainer.default_root_dir", str(root / "WT")])
    paths = {name: root / name / "version_0" / "checkpoints" / "best.ckpt" for name in ("IR", "WT")}
    assert all(path.is_file() for path in paths.values()), list(root.rglob("*.ckpt"))
    return paths


@pytest.fixture(scope="module")
def report(checkpoints, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """``invreg report`` on both checkpoints, which carry their model and data."""
    out = tmp_path_factory.mktemp("report") / "both"
    done = run([script("invreg"), "report", "--ckpt_path", str(checkpoints["IR"]),
                "--ckpt_path", str(checkpoints["WT"]), "--name", "IR", "--name", "WT",
                "--report_dir", str(out), *QUICK], cwd=out.parent)
    return out, done


def test_report_writes_markdown_and_self_contained_html(report):
    out, done = report
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "report.md").is_file() and (out / "report.html").is_file()
    assert str(out / "report.html") in done.stdout
    page = parse(out / "report.html")
    # 1 comparison figure + 3 per checkpoint, each an embedded PNG that decodes
    assert len(page.images) == 7
    for source in page.images:
        prefix = "data:image/png;base64,"
        assert source.startswith(prefix), source[:60]
        data = base64.b64decode(source[len(prefix):], validate=True)
        assert data.startswith(PNG_SIGNATURE)
        pixels = mpimg.imread(io.BytesIO(data), format="png")
        assert pixels.ndim == 3 and min(pixels.shape[:2]) > 100 and pixels.std() > 0
    assert all(link.startswith("data:") for link in page.links), "no external link or file"
    text = (out / "report.html").read_text()
    assert "<style>" in text and "<link" not in text and "<script" not in text
    # the markdown links its figures as files next to it
    for target in re.findall(r"!\[[^]]*]\(([^)]+)\)", (out / "report.md").read_text()):
        assert (out / target).read_bytes().startswith(PNG_SIGNATURE)


def test_every_metric_side_by_side_for_both_checkpoints(report):
    out, done = report
    assert done.returncode == 0, done.stderr[-3000:]
    table = summary(parse(out / "report.html"))
    assert [label for _, label, _ in METRICS] == list(table)
    for label, cells in table.items():
        assert list(cells) == ["IR", "WT"], label
        for cell in cells.values():
            assert first_number(cell) == first_number(cell), f"{label}: {cell!r} is not a number"
    for cell in table["SI"].values():  # "0.61 [0.55, 0.67]": the bootstrap interval holds SI
        value, low, high = (float(v) for v in re.findall(r"-?[\d.]+(?:e-?\d+)?", cell))
        assert low <= value <= high, cell
    # the weight-tied MLP is invariant by construction, the augmented one is not
    assert first_number(table["normalised LI"]["WT"]) <= EXACT_TOL
    assert first_number(table["DI"]["WT"]) <= EXACT_TOL
    assert first_number(table["normalised LI"]["IR"]) > 100 * EXACT_TOL
    assert "saliency (SI)" in done.stderr, "a progress bar per part"
    # per-layer G-EED of WT (the second checkpoint), in execution order: invariant from the
    # orbit pooling on, up to float32 rounding of 1 − cos (a few ε, here ÷ R ≈ 0.1 - 1)
    geed = [table for table in parse(out / "report.html").tables
            if table[0] == ["layer", "normalised G-EED"]][1]
    assert [row[0] for row in geed[1:]] == ["hidden.0", "pool", "hidden.1", "head"]
    assert all(float(value) <= 1000 * torch.finfo(torch.float32).eps for _, value in geed[2:])
    assert float(geed[1][1]) > 0.01, "before pooling the features move with the input"
    markdown = (out / "report.md").read_text()
    for _, label, _ in METRICS:
        assert re.search(rf"^\| {re.escape(label)} \| \S", markdown, re.M), label


def test_numbers_are_those_of_evaluate_invariance(report, checkpoints):
    """The whole-split values equal invreg.evaluation's on the same checkpoint and split, up to
    the table's 4 significant digits (relative rounding ≤ 5e-4)."""
    out, done = report
    assert done.returncode == 0, done.stderr[-3000:]
    table = summary(parse(out / "report.html"))
    module, datamodule, _ = load_checkpoint(checkpoints["IR"])
    datamodule.setup("test")
    expected = evaluate_invariance(module, datamodule.test_dataloader(), module.group)
    for key, label in (("accuracy", "accuracy"), ("orbit_accuracy", "orbit accuracy"), ("DI", "DI"),
                       ("LI", "LI"), ("consistency", "orbit consistency")):
        assert first_number(table[label]["IR"]) == pytest.approx(expected[key], rel=5e-4), label


def test_report_names_the_run_it_measured(report, checkpoints):
    out, _ = report
    text = (out / "report.html").read_text()
    for expected in (str(checkpoints["IR"].resolve()), "Rotations(n=4)", "DigitsDataModule",
                     "0, 1, 2, 3, 4, 5, 6, 7, 8, 9", "TiedMLP", "invariance_weight", "epoch",
                     "hidden.1", "percentile bootstrap"):
        assert expected in text, expected


def test_config_per_checkpoint_and_overwrite(report, checkpoints, capsys):
    out, done = report
    assert done.returncode == 0, done.stderr[-3000:]
    before = (out / "report.html").read_text()
    args = ["report", "--config", str(QUICKSTART), "--ckpt_path", str(checkpoints["IR"]),
            "--report_dir", str(out), *QUICK, "--progress", "false"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("invreg: error: report_dir: ") and "--overwrite" in err, err
    assert (out / "report.html").read_text() == before, "nothing was replaced"
    assert main([*args, "--overwrite"]) == 0
    table = summary(parse(out / "report.html"))
    assert list(table["accuracy"]) == ["quickstart"], "named after its config"
    assert len(list((out / "figures").iterdir())) == 3, "the earlier report's figures are gone"


def test_the_command_of_the_docs(checkpoints, tmp_path, monkeypatch, capsys):
    """docs/report.md's first example, as written, on a tiny run's checkpoint at its path."""
    text = (ROOT / "docs" / "report.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.DOTALL).group(1).replace("\\\n", " ")
    fit, report = (shlex.split(line) for line in block.splitlines() if line.strip())
    assert fit[:2] == ["invreg", "fit"] and report[:2] == ["invreg", "report"]
    # the fit writes <default_root_dir>/version_0/checkpoints/best.ckpt (as the fixture's runs)
    root = fit[fit.index("--trainer.default_root_dir") + 1]
    ckpt = report[report.index("--ckpt_path") + 1]
    assert ckpt == f"{root}/version_0/checkpoints/best.ckpt"
    monkeypatch.chdir(tmp_path)
    Path(ckpt).parent.mkdir(parents=True)
    shutil.copy(checkpoints["IR"], ckpt)
    assert main(report[1:] + ["--progress", "false"]) == 0, capsys.readouterr().err
    out = Path(report[report.index("--report_dir") + 1])
    table = summary(parse(out / "report.html"))
    assert list(table["SI"]) == ["report-demo/version_0"], "named after the run"
    assert (out / "report.md").is_file()


def test_missing_checkpoint_is_a_short_error(tmp_path, capsys):
    code = main(["report", "--ckpt_path", str(tmp_path / "none.ckpt"),
                 "--report_dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("invreg: error: ckpt_path: no such checkpoint file"), err
    assert "Traceback" not in err and len(err.splitlines()) <= 2
    assert not (tmp_path / "out").exists()


def test_a_rejected_option_exits_2(tmp_path, capsys):
    assert main(["report", "--ckpt_path", "x.ckpt", "--report_dir", str(tmp_path),
                 "--samples", "many"]) == 2
    assert "samples" in capsys.readouterr().err


@pytest.mark.parametrize("args, expected", [
    (["--config", "{tmp}/none.yaml", "--ckpt_path", "{ckpt}"], "config: no such config file"),
    (["--config", "{cfg}", "--config", "{cfg}", "--config", "{cfg}", "--ckpt_path", "{ckpt}",
      "--ckpt_path", "{ckpt}"], "one for all, or one per checkpoint (2), got 3"),
    (["--ckpt_path", "{ckpt}", "--name", "a", "b"], "name: expected one per checkpoint"),
])
def test_bad_arguments_stop_before_any_work(tmp_path, capsys, checkpoints, args, expected):
    args = [a.format(tmp=tmp_path, ckpt=checkpoints["WT"], cfg=QUICKSTART) for a in args]
    assert main(["report", *args, "--report_dir", str(tmp_path / "out")]) == 1
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_config_that_does_not_fit_the_checkpoint(tmp_path, capsys, checkpoints):
    # the quickstart config builds an MLP; the WT checkpoint holds a TiedMLP, whose parameters
    # have the same names and shapes: they would load, and the report measure the wrong model
    code = main(["report", "--config", str(QUICKSTART), "--ckpt_path", str(checkpoints["WT"]),
                 "--report_dir", str(tmp_path / "out"), "--progress", "false"])
    err = capsys.readouterr().err
    assert code == 1 and "does not fit the model of config" in err, err
    assert "invreg.models.TiedMLP" in err and "invreg.models.MLP" in err
    assert not (tmp_path / "out").exists()


def test_bootstrap_interval_covers_the_mean_and_narrows_with_samples():
    generator = torch.Generator().manual_seed(0)
    values = torch.rand(400, generator=generator, dtype=torch.float64)
    low, high = bootstrap_interval(values, 2000, 0.95, seed=1)
    mean = values.mean().item()
    # normal approximation of the mean's 95 % interval; the bootstrap agrees within its own
    # Monte-Carlo error (2000 resamples: a few % of the width)
    half = 1.96 * values.std().item() / len(values) ** 0.5
    assert low < mean < high
    assert abs((high - low) - 2 * half) < 0.1 * 2 * half
    small_low, small_high = bootstrap_interval(values[:25], 2000, 0.95, seed=1)
    assert small_high - small_low > 2 * (high - low)


def test_settings_and_layers():
    with pytest.raises(ValueError, match="samples: expected an integer >= 2, got 1"):
        ReportSettings(samples=1)
    with pytest.raises(ValueError, match="betas: expected values in"):
        ReportSettings(betas=(0.2, 1.5))
    assert ReportSettings(betas=(0.5, 0.1)).betas == (0.0, 0.1, 0.5)
    assert feature_layers(torch.nn.Linear(2, 2)) == [""]


def report_console(args: list[str], cwd: Path, capsys, subprocess_run: bool):
    """``invreg report ARGS``: the console script in a subprocess (``subprocess_run``), else
    its entry point ``invreg.cli.main`` in this process (the same code, without the seconds of
    a fresh interpreter's imports); a ``CompletedProcess`` either way."""
    if subprocess_run:
        return run([script("invreg"), "report", *args], cwd=cwd)
    code = main(["report", *args])
    return subprocess.CompletedProcess(["invreg", "report", *args], code, "",
                                       capsys.readouterr().err)


def short_error(done: subprocess.CompletedProcess) -> str:
    """The console script failed with exit status 1 in at most 2 lines, no traceback; its
    first line."""
    assert done.returncode == 1, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) <= 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert lines[0].startswith("invreg: error: "), lines
    return lines[0]


def damage(source: Path, target: Path, how: str) -> Path:
    raw = bytearray(source.read_bytes())
    if how == "flipped":  # bytes of the first weight tensor; the zip structure intact
        import zipfile

        with zipfile.ZipFile(source) as archive:
            info = next(i for i in archive.infolist() if i.filename.endswith("data/0"))
        offset = info.header_offset + 30 + int.from_bytes(raw[info.header_offset + 26:
                                                              info.header_offset + 28], "little")
        offset += int.from_bytes(raw[info.header_offset + 28:info.header_offset + 30], "little")
        for i in range(info.file_size // 4, info.file_size // 4 + 16):
            raw[offset + i] ^= 0x7F
    elif how == "empty":
        raw = bytearray()
    elif how == "random":
        raw = bytearray(os.urandom(len(raw)))
    elif how == "truncated":
        raw = raw[: len(raw) * 2 // 3]
    target.write_bytes(bytes(raw))
    return target


@pytest.mark.parametrize(("how", "expected"), [
    ("flipped", "fails its CRC-32 check"),
    ("empty", "is empty (0 bytes)"),
    ("random", "is not a PyTorch checkpoint"),
    ("truncated", "is truncated or damaged"),
])
def test_a_damaged_checkpoint_is_refused_before_anything_is_measured(
        tmp_path, checkpoints, capsys, how, expected):
    """Flipped weight bytes loaded without a word and gave a report of wrong numbers (exit 0);
    an empty file crashed the error message itself; random bytes got torch's advice to load
    with weights_only=False. Now: one line naming the file, what is wrong and the fix. The
    flipped file goes through the console script, the others through its entry point."""
    bad = damage(checkpoints["IR"], tmp_path / f"{how}.ckpt", how)
    # the intact checkpoint first: the damaged second one stops the run before any work
    done = report_console(["--ckpt_path", str(checkpoints["WT"]), "--ckpt_path", str(bad),
                           "--report_dir", str(tmp_path / "out"), *QUICK], tmp_path, capsys,
                          subprocess_run=how == "flipped")
    line = short_error(done)
    assert line.startswith(f"invreg: error: ckpt_path: {str(bad)!r} "), line
    assert expected in line and "weights_only=False" not in line, line
    if how != "random":
        assert "re-save or re-download the checkpoint" in line, line
    assert "test split" not in done.stderr, "nothing was measured"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("where", ["file", "under a file"])
def test_report_dir_is_checked_before_anything_is_measured(tmp_path, checkpoints, capsys,
                                                            where):
    """A --report_dir naming a file failed only after the whole evaluation (the file case
    through the console script, the other through its entry point)."""
    existing = tmp_path / "notes.txt"
    existing.write_text("mine")
    report_dir = existing if where == "file" else existing / "report"
    done = report_console(["--ckpt_path", str(checkpoints["WT"]), "--report_dir",
                           str(report_dir), *QUICK], tmp_path, capsys,
                          subprocess_run=where == "file")
    line = short_error(done)
    assert line.startswith(f"invreg: error: report_dir: {str(report_dir)!r} "), line
    assert "is a file, not a folder" in line and "choose another --report_dir" in line, line
    assert "test split" not in done.stderr, "nothing was measured"
    assert existing.read_text() == "mine"


def test_report_dir_writable_and_the_overwrite_rule(tmp_path, monkeypatch):
    from invreg.report import check_report_dir

    assert check_report_dir(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "report.md").write_text("earlier")
    with pytest.raises(FileExistsError, match="already holds a report .*pass --overwrite"):
        check_report_dir(tmp_path / "old")
    (tmp_path / "old" / "figures").write_text("a file where the figures folder goes")
    with pytest.raises(FileExistsError, match="figures' is a file, where the report writes"):
        check_report_dir(tmp_path / "old", overwrite=True)
    # a folder one cannot write into (simulated: the tests may run as root, who can)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != tmp_path
                        and real_access(path, mode))
    with pytest.raises(PermissionError, match=r"report_dir: .* is not writable"):
        check_report_dir(tmp_path / "out")


def test_an_unavailable_device_is_a_one_line_error(tmp_path, checkpoints):
    """--device cuda on a CPU-only build was a 39-line traceback after loading."""
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    unavailable = f"cuda:{count}" if count else "cuda"
    for device, expected in ((unavailable, "cannot be used"), ("gpu", "is not a device name")):
        done = run([script("invreg"), "report", "--ckpt_path", str(checkpoints["WT"]),
                    "--report_dir", str(tmp_path / "out"), "--device", device, *QUICK],
                   cwd=tmp_path)
        line = short_error(done)
        assert f"device: {device!r} {expected}" in line, line
        assert "pass --device with one of: auto, cpu" in line, line
        assert not (tmp_path / "out").exists()

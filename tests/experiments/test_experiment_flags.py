"""``invreg-experiment``'s flags are checked before anything trains, and its help describes
each experiment. Run as a user runs it (a subprocess: exit status, stderr, nothing written);
the remaining values of each rule run in-process through :func:`main` and :func:`run`."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from invreg.experiments.core import get_scale
from invreg.experiments.runner import (
    EXPERIMENTS,
    check_accelerator,
    check_writable_folder,
    main,
    run,
)


def experiment(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``invreg-experiment ARGS`` in ``cwd`` (``python -m invreg.experiments``)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    env.pop("INVREG_TRACEBACK", None)
    return subprocess.run([sys.executable, "-m", "invreg.experiments", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def refused(done: subprocess.CompletedProcess, name: str, message: str, tmp_path: Path) -> None:
    """A usage error (exit 2) whose last line is ``message``, and nothing trained or written."""
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.strip().splitlines()[-1] == f"invreg-experiment {name}: error: {message}"
    assert "Traceback" not in done.stderr and "Seed set" not in done.stderr + done.stdout
    assert not (tmp_path / "out").exists() and not (tmp_path / "models").exists()
    assert not (tmp_path / "results").exists()


def folders(tmp_path: Path) -> list[str]:
    return ["--out", str(tmp_path / "out"), "--cache", str(tmp_path / "models")]


# case 1: counts -------------------------------------------------------------------------------

@pytest.mark.parametrize(("flag", "value"), [("--epochs", "-1"), ("--seeds", "0")])
def test_zero_or_negative_counts_are_usage_errors(tmp_path, flag, value):
    # before: 0 fell back to the scale's default (`epochs or default`), -1 trained forever
    # (--epochs 0 in this process: test_every_count_flag_is_checked_by_the_parser)
    done = experiment("genuine-table1", "--smoke", "--groups", "T3", flag, value,
                      *folders(tmp_path), cwd=tmp_path)
    refused(done, "genuine-table1",
            f"argument {flag}: expected a whole number ≥ 1, got '{value}'", tmp_path)


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--epochs", "0", "expected a whole number ≥ 1, got '0'"),
    ("--epochs", "2.5", "expected a whole number ≥ 1, got '2.5'"),
    ("--seeds", "-3", "expected a whole number ≥ 1, got '-3'"),
    ("--jobs", "0", "expected a whole number ≥ 1, got '0'"),
    ("--dpi", "0", "dpi must be an integer in [20, 1200] (e.g. 150), got 0"),
    ("--dpi", "-5", "dpi must be an integer in [20, 1200] (e.g. 150), got -5"),
])
def test_every_count_flag_is_checked_by_the_parser(tmp_path, capsys, flag, value, message):
    with pytest.raises(SystemExit) as stop:
        main(["genuine-table1", "--smoke", flag, value, *folders(tmp_path)])
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"invreg-experiment genuine-table1: error: argument {flag}: {message}")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(("keyword", "value"), [("seeds", 0), ("epochs", 0), ("epochs", -1),
                                                ("seeds", 1.5), ("jobs", 0), ("epochs", True)])
def test_run_refuses_counts_below_one(tmp_path, keyword, value):
    with pytest.raises(ValueError, match=f"^{keyword}: expected a whole number ≥ 1, got"):
        run("layerwise", scale="smoke", out=tmp_path / "out", **{keyword: value})
    assert not any(tmp_path.iterdir())


def test_run_takes_the_scale_default_only_for_none(tmp_path, monkeypatch):
    import dataclasses

    import invreg.experiments.runner as runner
    from invreg.experiments.core import Results

    seen = []

    def capture(settings):
        seen.append((settings.seeds, settings.epochs))
        return Results([{"model": "DA"}])

    monkeypatch.setitem(runner.EXPERIMENTS, "lie",
                        dataclasses.replace(runner.EXPERIMENTS["lie"], run=capture))
    run("lie", scale="quick", out=tmp_path / "a")
    run("lie", scale="quick", seeds=1, epochs=2, out=tmp_path / "b")
    quick = get_scale("lie", "quick")
    assert seen == [(quick.seeds, quick.epochs), (1, 2)]


# case 2: --out --------------------------------------------------------------------------------

def test_out_naming_a_file_is_a_usage_error_naming_out(tmp_path):
    # before: training started, then "Not a directory: .../runs" without naming --out
    (tmp_path / "out").write_text("a file")
    done = experiment("layerwise", "--smoke", "--out", str(tmp_path / "out"),
                      "--cache", str(tmp_path / "models"), cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.strip().splitlines()[-1] == (
        f"invreg-experiment layerwise: error: --out: {tmp_path / 'out'} is a file, not a "
        "folder; pass a folder (it is created if missing)")
    assert (tmp_path / "out").read_text() == "a file" and not (tmp_path / "models").exists()


def test_out_below_a_file_cannot_be_created(tmp_path):
    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / "out"
    done = experiment("layerwise", "--smoke", "--out", str(out), "--cache",
                      str(tmp_path / "models"), cwd=tmp_path)
    refused(done, "layerwise", f"--out: cannot create {out}: {tmp_path / 'file'} is a file, "
            "not a folder; pass a folder path", tmp_path)


def test_run_checks_out_before_training(tmp_path):
    (tmp_path / "out").write_text("")
    with pytest.raises(ValueError, match="^out: .* is a file, not a folder"):
        run("layerwise", scale="smoke", out=tmp_path / "out")
    assert sorted(tmp_path.iterdir()) == [tmp_path / "out"]


def test_replot_names_out_when_it_is_a_file(tmp_path, capsys):
    (tmp_path / "out").write_text("")
    with pytest.raises(SystemExit) as stop:
        main(["layerwise", "--replot", "--out", str(tmp_path / "out")])
    assert stop.value.code == 2 and "error: --out: " in capsys.readouterr().err


# case 3: --cache ------------------------------------------------------------------------------

def unwritable_folder(tmp_path: Path) -> Path:
    """An existing folder this process cannot create a file in: a ``chmod 500`` folder, or, for
    root (whom file modes do not stop), ``/sys`` or ``/proc`` (no new files even for root)."""
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    for folder in (locked, Path("/sys"), Path("/proc")):
        try:
            (folder / "probe").write_text("")
        except OSError:
            return folder
        (folder / "probe").unlink()
    pytest.skip("no folder here refuses new files to this process (root without a read-only "
                "/sys or /proc)")


def test_unwritable_cache_is_refused_before_training(tmp_path):
    # before: one model trained, then the cache write failed
    cache = unwritable_folder(tmp_path)
    out = tmp_path / "out"
    done = experiment("layerwise", "--smoke", "--out", str(out), "--cache", str(cache),
                      cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"invreg-experiment layerwise: error: --cache: cannot write in "
                           f"{cache}: "), last
    assert last.endswith("; pass a folder you can write to"), last
    assert "Seed set" not in done.stderr and not out.exists()


def test_cache_below_a_file_is_refused_before_training(tmp_path):
    (tmp_path / "file").write_text("")
    cache = tmp_path / "file" / "models"
    done = experiment("lie", "--smoke", "--out", str(tmp_path / "out"), "--cache", str(cache),
                      cwd=tmp_path)
    refused(done, "lie", f"--cache: cannot create {cache}: {tmp_path / 'file'} is a file, not "
            "a folder; pass a folder path", tmp_path)


def test_writable_folder_check_creates_nothing(tmp_path):
    target = tmp_path / "a" / "b"
    assert check_writable_folder(target, "cache") == target
    assert list(tmp_path.iterdir()) == []  # neither the folders nor the probe file remain
    with pytest.raises(ValueError, match="^cache: cannot write in"):
        check_writable_folder(unwritable_folder(tmp_path), "cache")


def test_run_checks_the_cache_before_training(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="^cache: cannot create"):
        run("layerwise", scale="smoke", out=tmp_path / "out", cache=tmp_path / "file" / "m")
    assert not (tmp_path / "out").exists()


# case 4: help ---------------------------------------------------------------------------------

def test_help_lists_every_experiment_with_a_description(tmp_path):
    done = experiment("--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    text = "".join(done.stdout.split())  # argparse wraps the descriptions
    for name, entry in EXPERIMENTS.items():
        assert name in text and "".join(entry.title.split()) in text
    assert "invreg-experimentNAME--help" in text


def test_experiment_help_says_what_it_trains_its_scales_flags_and_results(tmp_path):
    done = experiment("genuine-table1", "--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "WT(firstlayertiedoverthegroup)" in "".join(text.split())
    assert "  smoke  1 seed × 1 epoch (2 batches per epoch): every code path" in text
    assert "  quick  1 seed × 16 epochs: " in text
    assert "  full   4 seeds × 300 epochs: the published setup" in text
    for flag in ("--groups", "--jobs", "--cache", "--no-cache", "--accelerator", "--data-dir"):
        assert flag in text
    assert "--drift-source" not in text  # genuine-drift's
    assert "results/genuine-table1" in text and "results/models" in text
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_each_experiment_help_gives_its_own_scales_and_only_its_flags(name, capsys):
    with pytest.raises(SystemExit) as stop:
        main([name, "--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    assert "".join(EXPERIMENTS[name].description.split())[:60] in "".join(text.split())
    for scale_name in ("smoke", "quick", "full"):
        scale = get_scale(name, scale_name)
        assert f"  {scale_name:<6} {scale.seeds} seed" in text
        assert f" × {scale.epochs} epoch" in text
    for flag in ("--groups", "--jobs", "--drift-dir", "--accelerator", "--cache"):
        assert (flag in text) == (flag in EXPERIMENTS[name].flags), flag
    assert f"results/{name}" in text


def test_a_flag_of_another_experiment_is_refused_with_where_it_applies(tmp_path, capsys):
    # before: `layerwise --groups R4` ran layerwise on its own data, ignoring --groups
    with pytest.raises(SystemExit) as stop:
        main(["layerwise", "--smoke", "--groups", "R4", *folders(tmp_path)])
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "invreg-experiment layerwise: error: --groups does not apply to layerwise (it applies "
        "to genuine-table1, genuine-drift, spectral-decay); see invreg-experiment layerwise "
        "--help")
    assert not any(tmp_path.iterdir())


# case 5: --accelerator ------------------------------------------------------------------------

def missing_accelerator() -> str:
    from pytorch_lightning.accelerators import AcceleratorRegistry

    for name in ("cuda", "mps", "tpu"):
        if not AcceleratorRegistry[name]["accelerator"].is_available():
            return name
    pytest.skip("this machine has every accelerator Lightning knows")


def test_an_accelerator_this_machine_lacks_is_one_line_before_training(tmp_path):
    # before: data loaded and the first Trainer built, then Lightning's error
    name = missing_accelerator()
    done = experiment("layerwise", "--smoke", "--accelerator", name, *folders(tmp_path),
                      cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"invreg-experiment layerwise: error: --accelerator: '{name}' is "
                           "not available on this machine"), last
    assert "; use one of: auto" in last and "cpu" in last.rsplit("use one of:", 1)[1]
    assert "Traceback" not in done.stderr and "Seed set" not in done.stderr
    assert not (tmp_path / "out").exists()


def test_accelerator_check():
    assert check_accelerator("auto") == "auto" and check_accelerator("cpu") == "cpu"
    with pytest.raises(ValueError, match="^accelerator: unknown accelerator 'quantum'; choose "
                                         "from auto, gpu, cpu, cuda"):
        check_accelerator("quantum")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="^--accelerator: 'gpu' is not available"):
            check_accelerator("gpu", "--accelerator")


def documented_calls() -> list[str]:
    """Every ``invreg-experiment NAME ...`` command in README.md, docs/ and benchmarks/."""
    import re

    root = Path(__file__).resolve().parents[2]
    calls = []
    for page in [root / "README.md", *sorted((root / "docs").glob("*.md")),
                 *sorted((root / "benchmarks").glob("*.md"))]:
        for match in re.finditer(r"invreg-experiment ([a-z0-9-]+(?: [^`|#\n]*)?)",
                                 page.read_text()):
            if match.group(1).split()[0] in EXPERIMENTS:
                calls.append(match.group(1).replace("[", "").replace("]", "").strip())
    return calls


def test_every_documented_call_still_parses():
    from invreg.experiments.runner import build_parser

    calls = documented_calls()
    assert len(calls) > 20
    parser, _ = build_parser()
    for call in calls:
        args, extras = parser.parse_known_args(call.split())
        assert not extras, (call, extras)

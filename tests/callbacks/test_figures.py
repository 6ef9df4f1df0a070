"""Figures: file formats, resolution, saliency styles, seed bands, titles and legends, replot."""

import csv
import struct
import xml.etree.ElementTree as ET

import pytest
import torch
from callback_helpers import make_trainer, tiny_module
from matplotlib.collections import PolyCollection
from pytorch_lightning.loggers import CSVLogger

from invreg.callbacks import DriftCallback, SaliencyCallback, SpectralDecayCallback
from invreg.callbacks.drift import drift_figure as callback_drift_figure
from invreg.callbacks.saliency import grid_figure
from invreg.callbacks.spectral import summary_figure
from invreg.experiments import layerwise
from invreg.experiments.genuine import drift_figure
from invreg.experiments.runner import main, replot, run
from invreg.functional import SaliencyRecipe
from invreg.plotting import model_title, new_figure, save_figure, scale_for


def png_size(path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


def is_svg(path) -> bool:
    return ET.parse(path).getroot().tag.endswith("svg")


def bands(figure) -> list[PolyCollection]:
    return [c for axis in figure.axes for c in axis.collections if isinstance(c, PolyCollection)]


# --------------------------------------------------------------------------- callbacks


def test_callbacks_write_pdf_svg_and_a_readable_overlay_grid(tmp_path, data):
    callbacks = [
        SaliencyCallback(num_samples=2, every_n_epochs=0, style="overlay",
                         recipe=SaliencyRecipe(steps=4, baseline=0.0)),
        DriftCallback(betas=(0.0, 0.5), source="noise", num_samples=8, figure_format="svg"),
        SpectralDecayCallback(num_samples=4, every_n_epochs=0, iters=4, figure_format="pdf"),
    ]
    trainer = make_trainer(tmp_path, callbacks, logger=CSVLogger(tmp_path))
    trainer.fit(tiny_module(), data)
    run_dir = tmp_path / "lightning_logs" / "version_0"
    (grid,) = (run_dir / "saliency").glob("val_step*.png")
    width, height = png_size(grid)
    assert width >= 600 and height >= 300  # default 150 dpi: readable without zooming
    (drift,) = (run_dir / "drift").glob("val_step*.svg")
    assert is_svg(drift) and not list((run_dir / "drift").glob("*.png"))
    assert (run_dir / "drift" / drift.with_suffix(".csv").name).is_file()  # the table stays CSV
    pdf = run_dir / "spectral" / "spectral_decay_val.pdf"
    assert pdf.read_bytes().startswith(b"%PDF")


def test_dpi_scales_the_png_pixel_size(tmp_path):
    x, maps = torch.randn(2, 1, 8, 8), torch.rand(2, 4, 1, 8, 8)
    figure = grid_figure(x, maps, torch.ones(2), ["0°", "90°", "180°", "270°"])
    low = png_size(save_figure(figure, tmp_path / "low.png", dpi=100))
    high = png_size(save_figure(figure, tmp_path / "high.png", dpi=200))
    for small, large in zip(low, high, strict=True):
        # the tight bounding box follows text extents, which font hinting snaps to whole
        # pixels per glyph at each dpi: proportional to within 1 %, not to the pixel
        assert large / small == pytest.approx(2.0, rel=0.01)


@pytest.mark.parametrize("style", ["thresholded", "overlay"])
def test_saliency_grid_has_a_colour_bar_and_labelled_rows(style):
    x, maps = torch.randn(3, 1, 8, 8), torch.rand(3, 4, 1, 8, 8)
    figure = grid_figure(x, maps, torch.tensor([0.1, 0.5, 1.0]), ["0°", "90°", "180°", "270°"],
                         targets=torch.tensor([2, 0, 1]), style=style, title="MLP, C4")
    left, right = figure.axes
    (bar,) = right.child_axes
    assert bar.get_ylim() == (0.0, 1.0)  # fraction of the row's maximum
    assert [t.get_text() for t in left.get_yticklabels()] == [
        "class 2\nSI 0.10", "class 0\nSI 0.50", "class 1\nSI 1.00"]
    assert [t.get_text() for t in right.get_xticklabels()] == ["0°", "90°", "180°", "270°"]
    # the overlay draws the inputs under the maps: two images on the right, else one
    assert len(right.get_images()) == (2 if style == "overlay" else 1)
    assert figure.get_suptitle() == "MLP, C4"


def test_grid_maps_share_the_scale_of_their_row():
    maps = torch.ones(1, 2, 1, 4, 4)
    maps[0, 1] *= 0.5
    figure = grid_figure(torch.randn(1, 1, 4, 4), maps, torch.ones(1), ["a", "b"])
    image = figure.axes[1].get_images()[0].get_array()
    assert image[0, 0] == 1.0 and image[0, 5] == 0.5  # not each map scaled to its own max


@pytest.mark.parametrize(
    ("make", "valid"),
    [
        (lambda: SaliencyCallback(style="heatmap"), "'thresholded', 'overlay'"),
        (lambda: DriftCallback(figure_format="jpg"), "'png', 'pdf', 'svg'"),
        (lambda: SpectralDecayCallback(figure_format="eps"), "'png', 'pdf', 'svg'"),
        (lambda: SaliencyCallback(dpi=0), "[20, 1200]"),
        (lambda: DriftCallback(dpi=150.0), "[20, 1200]"),
        (lambda: grid_figure(torch.zeros(1, 1, 4, 4), torch.zeros(1, 2, 1, 4, 4), torch.ones(1),
                             ["a", "b"], style="raw"), "'thresholded', 'overlay'"),
    ],
)
def test_bad_figure_options_name_the_valid_choices(make, valid):
    with pytest.raises(ValueError, match="got") as error:
        make()
    assert valid in str(error.value)


def test_drift_callback_figure_has_title_axis_labels_and_legend_outside_the_axes():
    title = model_title(tiny_module())
    assert title == "MLP, Rotations(n=4)"
    figure = callback_drift_figure([0.0, 0.5], [0.2, 0.4], [1.0, 0.8], title)
    axis, twin = figure.axes
    assert axis.get_title() == title and axis.get_ylabel() and twin.get_ylabel()
    assert axis.get_legend() is None and len(figure.legends) == 1
    assert axis.get_ylim()[0] == 0.0  # DI on a linear axis starts at 0
    figure.canvas.draw()
    legend_box = figure.legends[0].get_window_extent()
    assert legend_box.y1 <= axis.get_window_extent().y0  # below the axes, over no data


def test_spectral_summary_of_one_evaluation_is_a_point_with_a_range():
    record = {"step": 7, "jacobian_sigma_max": 2.0, "jacobian_sigma_max_p10": 1.5,
              "jacobian_sigma_max_p90": 2.5, "first_layer_sigma_max": 1.0}
    figure = summary_figure([record], torch.rand(20) + 1.5, "MLP, Rotations(n=4)")
    left = figure.axes[0]
    assert list(left.get_xticks()) == [7]  # a tick at the evaluation, not at 6.5, 7.0, 7.5
    assert left.containers  # the 10–90 % range as an error bar (a band needs two steps)
    legend = left.get_legend()
    figure.canvas.draw()
    assert legend.get_window_extent().y1 <= left.get_window_extent().y0


def test_scale_for_uses_log_only_when_values_span_decades():
    figure = new_figure(2, 2)
    a, b, c = figure.subplots(1, 3)
    assert scale_for(a, [1e-3, 1.0, 10.0]) == "log"
    assert scale_for(b, [0.0, 1e-4, 1.0]) == "symlog"
    assert scale_for(c, [0.5, 0.7]) == "linear" and c.get_ylim()[0] == 0.0


# --------------------------------------------------------------------------- experiments


def drift_summary(seeds: int) -> list[dict]:
    rows = []
    for kind, scale in (("WT", 0.0), ("DA", 1.0), ("IR", 0.01)):
        for beta in (0.0, 0.5):
            rows.append({"group": "R4", "model": kind, "beta": beta, "seeds": seeds,
                         "DI": scale * (1 + beta), "DI_std": 0.1 * scale,
                         "acc_ratio": 1 - beta, "acc_ratio_std": 0.05})
    return rows


def test_experiment_drift_figure_draws_mean_plus_minus_std_bands_over_seeds():
    figure = drift_figure(drift_summary(seeds=4))
    found = bands(figure)
    assert len(found) == 6  # 3 models × (DI, accuracy ratio)
    da_di = found[1].get_paths()[0].vertices[:, 1]
    assert da_di.min() == pytest.approx(1.0 - 0.1) and da_di.max() == pytest.approx(1.5 + 0.1)
    assert "4 seeds" in figure.get_suptitle() and "R4" in figure.get_suptitle()
    assert not bands(drift_figure(drift_summary(seeds=1)))


def test_layerwise_figure_draws_bands_with_several_seeds_and_ticks_per_stage():
    rows = [{"model": model, "split": split, "stage": stage, "layer": stage, "seeds": 3,
             "geed": 0.5 - 0.1 * i, "geed_std": 0.02}
            for model in ("DA CNN", "IR CNN") for split in ("in distribution", "OOD")
            for i, stage in enumerate(layerwise.CNN_LAYERS.values())]
    figure = layerwise.figure(rows)
    assert len(bands(figure)) == 4
    axis = figure.axes[0]
    assert list(axis.get_xticks()) == list(range(len(layerwise.STAGES)))
    assert [t.get_text() for t in axis.get_xticklabels()] == list(layerwise.STAGES)


def test_replot_redraws_from_results_csv_in_the_chosen_format(tmp_path, capsys):
    rows = drift_summary(seeds=4)
    with open(tmp_path / "results.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    svg = ["--figure-format", "svg"]
    assert main(["genuine-drift", "--replot", "--out", str(tmp_path), *svg]) == 0
    assert is_svg(tmp_path / "drift.svg")
    assert str(tmp_path / "drift.svg") in capsys.readouterr().out
    (png,) = replot("genuine-drift", tmp_path, dpi=60)
    assert png.name == "drift.png" and png_size(png)[0] < 400
    assert main(["genuine-drift", "--replot", "--out", str(tmp_path / "empty")]) == 1
    assert "no summary table" in capsys.readouterr().err
    assert main(["genuine-table1", "--replot", "--out", str(tmp_path)]) == 1


def test_experiment_run_checks_figure_options_before_training(tmp_path):
    with pytest.raises(ValueError, match="'png', 'pdf', 'svg'"):
        run("layerwise", scale="smoke", out=tmp_path, figure_format="gif")
    with pytest.raises(SystemExit):
        main(["layerwise", "--dpi", "ten"])
    assert not any(tmp_path.iterdir())

import pytest
import torch
from callback_helpers import make_trainer, tiny_module
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

from invreg.callbacks import SaliencyCallback
from invreg.callbacks.saliency import grid_figure
from invreg.data import DigitsDataModule
from invreg.functional.saliency import SaliencyRecipe, saliency_invariance
from invreg.groups import Rotations


def ig(steps: int, baseline: float | str = "background") -> SaliencyRecipe:
    """The paper's recipe with few integrated-gradients steps (fast tests)."""
    return SaliencyRecipe(steps=steps, baseline=baseline)


def test_a_png_grid_per_logged_step_in_the_run_directory(tmp_path, data):
    callback = SaliencyCallback(num_samples=3, every_n_epochs=2, recipe=ig(4))
    logger = CSVLogger(tmp_path)
    module = tiny_module()
    trainer = make_trainer(tmp_path, [callback], logger=logger, max_epochs=3)
    trainer.fit(module, data)
    trainer.test(module, data)
    folder = tmp_path / "lightning_logs" / "version_0" / "saliency"
    names = sorted(p.name for p in folder.glob("*.png"))
    assert names == ["test_step000003.png", "val_step000001.png", "val_step000002.png"]
    assert all((folder / n).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for n in names)
    # the SI of the figure's rows is the functional SI of those samples
    x, y = callback._subsets["val"]
    expected = saliency_invariance(module.eval(), x, y, Rotations(4), steps=4).item()
    val = [h for h in callback.history if h["split"] == "val"][-1]
    assert val["SI"] == pytest.approx(expected, rel=1e-5)


def test_weight_tied_rows_have_si_one(tmp_path, data):
    callback = SaliencyCallback(num_samples=2, recipe=ig(4))
    make_trainer(tmp_path, [callback]).fit(tiny_module(tied=True), data)
    assert callback.history[-1]["SI"] == pytest.approx(1.0, abs=1e-4)


def test_tensorboard_gets_the_image(tmp_path, data):
    callback = SaliencyCallback(num_samples=2, recipe=ig(2), save_local=False)
    logger = TensorBoardLogger(tmp_path)
    make_trainer(tmp_path, [callback], logger=logger).fit(tiny_module(), data)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(logger.log_dir)
    events.Reload()
    assert "saliency/val/grid" in events.Tags()["images"]
    assert not (tmp_path / "lightning_logs" / "version_0" / "saliency").exists()


def test_grid_layout_rows_samples_columns_orbit():
    x = torch.randn(3, 1, 8, 8)
    maps = torch.rand(3, 4, 1, 8, 8)
    figure = grid_figure(x, maps, torch.tensor([0.1, 0.5, 1.0]), ["0°", "90°", "180°", "270°"])
    left, right = figure.axes
    assert [t.get_text() for t in right.get_xticklabels()] == ["0°", "90°", "180°", "270°"]
    assert [t.get_text() for t in left.get_yticklabels()] == ["SI 0.10", "SI 0.50", "SI 1.00"]
    image = right.get_images()[0].get_array()
    assert image.shape == (3 * 9 - 1, 4 * 9 - 1)  # 8×8 tiles, 1-pixel gaps


def test_signals_are_drawn_as_bands():
    figure = grid_figure(torch.randn(2, 1, 40), torch.rand(2, 3, 1, 40), torch.ones(2),
                         ["a", "b", "c"])
    assert figure.axes[1].get_images()[0].get_array().shape == (2 * 11 - 1, 3 * 41 - 1)


def digits_module():
    from invreg.models import MLP
    from invreg.modules import InvarianceModule

    torch.manual_seed(0)
    data = DigitsDataModule(batch_size=128, seed=0, augment_group="c4")
    backbone = MLP(data.input_shape, data.num_classes, hidden_widths=[64])
    return data, InvarianceModule(backbone, group="c4", invariance_weight=0.0, lr=1e-2)


def test_background_baseline_is_the_datamodules_and_changes_si_on_digits(tmp_path):
    # standardised 8×8 digits: an empty pixel is −mean/std ≈ −0.81, far from the grey 0.0
    data, module = digits_module()
    background = SaliencyCallback(num_samples=8, recipe=ig(8))
    make_trainer(tmp_path, [background], limit_train_batches=None).fit(module, data)
    grey = SaliencyCallback(num_samples=8, recipe=ig(8, baseline=0.0))
    make_trainer(tmp_path, [grey]).validate(module, data)
    assert data.background < -0.5
    assert background.history[-1]["SI_baseline"] == data.background
    assert grey.history[-1]["SI_baseline"] == 0.0
    x, y = background._subsets["val"]
    module.eval()
    values = {}
    for name, callback, baseline in (("background", background, data.background),
                                     ("grey", grey, 0.0)):
        expected = saliency_invariance(module, x, y, Rotations(4), steps=8, baseline=baseline)
        assert callback.history[-1]["SI"] == pytest.approx(expected.item(), rel=1e-5), name
        values[name] = expected.item()
    # the option matters: the two baselines' SI differ by 100× the relative tolerance (1e-5,
    # float32 rounding of a batched backward) to which the callback matches the function
    assert abs(values["background"] - values["grey"]) > 100 * 1e-5


def test_background_falls_back_to_zero_with_one_warning(tmp_path, data):
    callback = SaliencyCallback(num_samples=2, recipe=ig(2), every_n_epochs=1, save_local=False)
    with pytest.warns(UserWarning, match="no `background` attribute") as caught:
        make_trainer(tmp_path, [callback], max_epochs=2).fit(tiny_module(), data)
    assert sum("background" in str(w.message) for w in caught) == 1  # once, not per epoch
    assert [h["SI_baseline"] for h in callback.history] == [0.0, 0.0]


def test_baseline_option_is_checked():
    with pytest.raises(ValueError, match="baseline: expected a number, a tensor or 'background'"):
        SaliencyRecipe(baseline="grey")
    with pytest.raises(TypeError, match="baseline"):
        SaliencyRecipe(baseline=None)
    with pytest.raises(TypeError, match="recipe: expected a SaliencyRecipe"):
        SaliencyCallback(recipe=SaliencyRecipe(baseline=torch.zeros(1, 8, 8)))


def test_default_recipe_is_the_papers_with_32_steps_from_the_background():
    recipe = SaliencyCallback().recipe
    assert recipe == SaliencyRecipe(steps=32, baseline="background")
    assert (recipe.method, recipe.threshold, recipe.blur) == ("integrated_gradients", 0.9, True)


def replaced_evaluate_path(module, x, y, group, recipe, elements):
    """The callback's evaluate before SI was measured through the metric, verbatim."""
    from dataclasses import replace

    from invreg.functional.saliency import (
        orbit_saliency,
        postprocess_saliency,
        saliency_similarity,
    )

    raw = orbit_saliency(module, x, y, group,
                         replace(recipe, threshold=None, blur=False), elements=elements)
    maps = postprocess_saliency(
        raw.flatten(0, 1), threshold=recipe.threshold, blur=recipe.blur,
        blur_kernel_size=recipe.blur_kernel_size, blur_sigma=recipe.blur_sigma,
    ).reshape_as(raw)
    return raw, maps, saliency_similarity(maps, reduction="none")


@pytest.mark.parametrize(("group", "style"), [
    ("c4", "thresholded"), ("c4", "overlay"), ("so2", "thresholded"),
])
def test_logged_si_and_drawn_maps_equal_the_replaced_path(tmp_path, data, monkeypatch, group,
                                                          style):
    from invreg.callbacks import saliency as saliency_module

    module = tiny_module(group=group)
    callback = SaliencyCallback(num_samples=3, recipe=ig(3, baseline=-0.3), style=style,
                                save_local=False, orbit_size=4)
    checked = []
    draw = saliency_module.grid_figure

    def compare(x, maps, similarity, labels, **kwargs):
        # the replaced path on the model as it is when the callback draws
        elements = module.group.fixed_elements(4, callback.seed)
        raw, processed, pairs = replaced_evaluate_path(
            module, *callback._subsets["val"], module.group, ig(3, baseline=-0.3), elements)
        assert torch.equal(x, callback._subsets["val"][0])
        assert torch.equal(maps, raw if style == "overlay" else processed)
        assert torch.equal(similarity, pairs.mean(dim=1))
        assert torch.equal(kwargs["targets"], callback._subsets["val"][1])
        assert len(labels) == (4 if elements is not None else module.group.order)
        checked.append(pairs.mean().item())
        return draw(x, maps, similarity, labels, **kwargs)

    monkeypatch.setattr(saliency_module, "grid_figure", compare)
    make_trainer(tmp_path, [callback]).fit(module, data)
    assert checked and [h["SI"] for h in callback.history] == checked

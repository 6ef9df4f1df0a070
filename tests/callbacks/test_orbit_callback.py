import csv

import pytest
import torch
from callback_helpers import TinyData, make_trainer, tiny_module
from pytorch_lightning.loggers import CSVLogger

from invreg.callbacks import OrbitConsistencyCallback
from invreg.functional import (
    logit_invariance,
    orbit_accuracy,
    orbit_consistency,
    orbit_logits,
    predictive_kl_invariance,
)
from invreg.functional.saliency import saliency_invariance
from invreg.groups import Rotations


def read_metrics(logger):
    with open(f"{logger.log_dir}/metrics.csv") as handle:
        return list(csv.DictReader(handle))


def test_values_match_the_functional_formulas_on_the_fixed_subset(tmp_path, data):
    callback = OrbitConsistencyCallback(num_samples=20, saliency_samples=5, saliency_steps=4,
                                        seed=3)
    module = tiny_module()
    trainer = make_trainer(tmp_path, [callback], max_epochs=2)
    trainer.fit(module, data)
    # subset: 20 of the 32 validation samples, chosen by the seed, in index order
    order = torch.randperm(32, generator=torch.Generator().manual_seed(3))[:20].sort().values
    x, y = data.datasets["val"].tensors
    x, y = x[order], y[order]
    assert torch.equal(callback._subsets["val"][0], x)
    module.eval()
    with torch.no_grad():
        orbit = orbit_logits(module, x, Rotations(4))
    expected = {
        "DI": predictive_kl_invariance(orbit).item(),
        "LI": logit_invariance(orbit).item(),
        "consistency": orbit_consistency(orbit).item(),
        "orbit_accuracy": orbit_accuracy(orbit, y).item(),
        "accuracy": (orbit[:, 0].argmax(-1) == y).float().mean().item(),
        "SI": saliency_invariance(module, x[:5], y[:5], Rotations(4), steps=4).item(),
    }
    last = callback.history[-1]
    assert last["step"] == trainer.global_step - 1 and last["split"] == "val"
    for name, value in expected.items():
        assert last[name] == pytest.approx(value, rel=1e-5, abs=1e-7), name
    assert [h["step"] for h in callback.history] == [0, 1]  # end of fit == last epoch: once
    assert trainer.callback_metrics["orbit/val/SI"].item() == pytest.approx(expected["SI"])


def test_weight_tied_model_is_exactly_invariant(tmp_path, data):
    callback = OrbitConsistencyCallback(num_samples=16, saliency_samples=4, saliency_steps=4)
    trainer = make_trainer(tmp_path, [callback])
    trainer.fit(tiny_module(tied=True), data)
    last = callback.history[-1]
    assert last["LI"] < 1e-6 and last["DI"] < 1e-6  # float summation order only
    assert last["consistency"] == 1.0
    assert last["SI"] == pytest.approx(1.0, abs=1e-4)


def test_logged_in_the_same_row_and_step_as_the_modules_epoch_end_metrics(tmp_path, data):
    callback = OrbitConsistencyCallback(num_samples=16, every_n_epochs=1, saliency_samples=0)
    logger = CSVLogger(tmp_path)
    module = tiny_module()
    trainer = make_trainer(tmp_path, [callback], logger=logger, max_epochs=2)
    trainer.fit(module, data)
    trainer.validate(module, data)
    trainer.test(module, data)
    rows = read_metrics(logger)
    val_rows = [r for r in rows if r.get("orbit/val/DI")]
    # two epochs of one batch (Lightning logs an epoch's end at its last batch: 0, 1), then
    # validate after two optimizer steps; each time in the row that holds val/acc
    assert [int(r["step"]) for r in val_rows] == [0, 1, 2]
    assert all(r["val/acc"] for r in val_rows)
    assert len([r for r in rows if r.get("val/acc")]) == 3  # no row with val/acc alone
    test_rows = [r for r in rows if r.get("orbit/test/consistency")]
    assert len(test_rows) == 1 and int(test_rows[0]["step"]) == 2 and test_rows[0]["test/acc"]
    assert "orbit/val/SI" not in rows[0]  # saliency_samples=0 turns SI off
    assert [h["stage"] for h in callback.history] == ["fit", "fit", "validate", "test"]
    assert [h["step"] for h in callback.history] == [0, 1, 2, 2]


def test_checkpoint_can_monitor_the_epochs_own_orbit_metric(tmp_path, data):
    # the value ModelCheckpoint sees at the end of an epoch is that epoch's, not the previous
    from pytorch_lightning.callbacks import ModelCheckpoint

    callback = OrbitConsistencyCallback(num_samples=16, saliency_samples=0)
    seen = []

    class Record(ModelCheckpoint):
        def on_validation_end(self, trainer, pl_module):
            seen.append(trainer.callback_metrics["orbit/val/LI"].item())
            super().on_validation_end(trainer, pl_module)

    checkpoint = Record(dirpath=tmp_path / "ckpt", monitor="orbit/val/LI", mode="min")
    trainer = make_trainer(tmp_path, [callback, checkpoint], max_epochs=3,
                           enable_checkpointing=True)
    trainer.fit(tiny_module(), data)
    assert seen == pytest.approx([h["LI"] for h in callback.history])
    best = min(range(3), key=lambda i: seen[i])
    assert checkpoint.best_model_score.item() == pytest.approx(seen[best])


def test_every_n_epochs_zero_runs_only_at_the_end(tmp_path, data):
    callback = OrbitConsistencyCallback(num_samples=8, every_n_epochs=0, saliency_samples=0)
    make_trainer(tmp_path, [callback], max_epochs=3).fit(tiny_module(), data)
    assert [h["step"] for h in callback.history] == [2]  # the last epoch's (of one batch)


def test_without_labels_accuracies_are_skipped(tmp_path):
    class Unlabelled(TinyData):
        def val_dataloader(self):
            x = self.datasets["val"].tensors[0]
            return torch.utils.data.DataLoader(x, batch_size=8)

    callback = OrbitConsistencyCallback(num_samples=8, saliency_samples=2, saliency_steps=2)
    # no validation loop (the module needs labels); the callback reads the loader itself
    make_trainer(tmp_path, [callback], limit_val_batches=0).fit(tiny_module(), Unlabelled())
    assert "accuracy" not in callback.history[-1] and "DI" in callback.history[-1]


def test_group_comes_from_the_callback_or_the_module(tmp_path, data):
    import pytorch_lightning as pl

    class NoGroup(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = tiny_module().backbone

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, batch_idx):
            return torch.nn.functional.cross_entropy(self(batch[0]), batch[1])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    with pytest.raises(ValueError, match="pass group="):
        make_trainer(tmp_path, [OrbitConsistencyCallback(num_samples=4)]).fit(NoGroup(), data)
    callback = OrbitConsistencyCallback(num_samples=4, group="flip", saliency_samples=0)
    make_trainer(tmp_path, [callback]).fit(NoGroup(), data)
    assert "DI" in callback.history[-1]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_samples": 0}, "num_samples"),
        ({"every_n_epochs": -1}, "every_n_epochs"),
        ({"split": "holdout"}, "split"),
        ({"saliency_method": "lime"}, "saliency_method"),
        ({"orbit_size": 1}, "orbit_size"),
    ],
)
def test_invalid_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        OrbitConsistencyCallback(**kwargs)


def test_continuous_group_uses_the_same_seeded_elements_at_every_evaluation(tmp_path, data):
    callback = OrbitConsistencyCallback(num_samples=8, orbit_size=5, saliency_samples=2,
                                        saliency_steps=2)
    module = tiny_module(group="so2")
    module.lr = 0.0  # weights fixed: identical elements must give identical values
    make_trainer(tmp_path, [callback], max_epochs=2).fit(module, data)
    first, second = callback.history
    for key in ("DI", "LI", "SI"):
        assert first[key] == second[key] > 0


def test_si_uses_the_datamodules_background_and_logs_it(tmp_path):
    from invreg.data import DigitsDataModule
    from invreg.models import MLP
    from invreg.modules import InvarianceModule

    torch.manual_seed(0)
    data = DigitsDataModule(batch_size=128, seed=0, augment_group="c4")
    module = InvarianceModule(MLP(data.input_shape, data.num_classes, hidden_widths=[64]),
                              group="c4", invariance_weight=0.0, lr=1e-2)
    background = OrbitConsistencyCallback(num_samples=16, saliency_samples=8, saliency_steps=8)
    logger = CSVLogger(tmp_path)
    make_trainer(tmp_path, [background], logger=logger, limit_train_batches=None).fit(module, data)
    grey = OrbitConsistencyCallback(num_samples=16, saliency_samples=8, saliency_steps=8,
                                    saliency_baseline=0.0)
    make_trainer(tmp_path, [grey]).validate(module, data)
    assert background.history[-1]["SI_baseline"] == data.background < -0.5
    assert grey.history[-1]["SI_baseline"] == 0.0
    logged = [r for r in read_metrics(logger) if r.get("orbit/val/SI_baseline")]
    assert float(logged[-1]["orbit/val/SI_baseline"]) == pytest.approx(data.background)
    x, y = background._subsets["val"][0][:8], background._subsets["val"][1][:8]
    module.eval()
    si = {b: saliency_invariance(module, x, y, Rotations(4), steps=8, baseline=b).item()
          for b in (data.background, 0.0)}
    assert background.history[-1]["SI"] == pytest.approx(si[data.background], rel=1e-5)
    assert grey.history[-1]["SI"] == pytest.approx(si[0.0], rel=1e-5)
    # 100× the relative tolerance above: the baseline changes SI on real digits
    assert abs(si[data.background] - si[0.0]) > 100 * 1e-5


def test_si_baseline_falls_back_to_zero_with_one_warning(tmp_path, data):
    callback = OrbitConsistencyCallback(num_samples=8, saliency_samples=2, saliency_steps=2)
    with pytest.warns(UserWarning, match="no `background` attribute") as caught:
        make_trainer(tmp_path, [callback], max_epochs=2).fit(tiny_module(), data)
    assert sum("background" in str(w.message) for w in caught) == 1
    assert [h["SI_baseline"] for h in callback.history] == [0.0, 0.0]
    with pytest.raises(ValueError, match="baseline: expected a number or 'background'"):
        OrbitConsistencyCallback(saliency_baseline="mean")


def test_training_that_stops_early_is_evaluated_at_its_last_step(tmp_path, data):
    # max_steps ends fit after the third epoch of five: not an every_n_epochs epoch, not the
    # last by max_epochs, so on_train_end evaluates, at the step of that epoch's val/acc
    callback = OrbitConsistencyCallback(num_samples=8, every_n_epochs=2, saliency_samples=0)
    logger = CSVLogger(tmp_path)
    trainer = make_trainer(tmp_path, [callback], logger=logger, max_epochs=5, max_steps=3)
    trainer.fit(tiny_module(), data)
    assert [h["step"] for h in callback.history] == [1, 2]
    rows = read_metrics(logger)
    assert [int(r["step"]) for r in rows if r.get("orbit/val/DI")] == [1, 2]
    assert [int(r["step"]) for r in rows if r.get("val/acc")] == [0, 1, 2]

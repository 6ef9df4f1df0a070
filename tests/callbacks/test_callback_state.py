"""Checkpoints carry the callbacks' history; memory does not grow with invocations."""

import gc
import os

import pytorch_lightning as pl
import torch
from callback_helpers import fast_callbacks, make_trainer, tiny_module

from invreg.callbacks import InvarianceCallback, SpectralDecayCallback


def test_history_is_saved_and_restored_with_the_checkpoint(tmp_path, data):
    first = fast_callbacks()
    trainer = make_trainer(tmp_path, first, max_epochs=2)
    trainer.fit(tiny_module(), data)
    ckpt = tmp_path / "two_epochs.ckpt"
    trainer.save_checkpoint(ckpt)
    saved = torch.load(ckpt, weights_only=False)["callbacks"]
    for callback in first:
        assert saved[callback.state_key]["history"] == callback.history

    resumed = fast_callbacks()
    trainer = make_trainer(tmp_path, resumed, max_epochs=3)
    trainer.fit(tiny_module(), data, ckpt_path=str(ckpt))
    for before, after in zip(first, resumed, strict=True):
        steps = [h["step"] for h in after.history]
        assert after.history[: len(before.history)] == before.history, type(after).__name__
        assert steps[-1] == 2  # the third epoch's (one batch each), as val/acc
    spectral = resumed[1]
    assert [h["step"] for h in spectral.history] == [0, 1, 2]  # the curve continues


def test_state_keys_differ_between_two_instances_with_different_settings():
    a = SpectralDecayCallback(split="val")
    b = SpectralDecayCallback(split="test")
    assert a.state_key != b.state_key
    a.history.append({"step": 5, "split": "val", "jacobian_sigma_max": 1.0})
    b.load_state_dict(a.state_dict())
    assert b.history == a.history


def rss_bytes() -> int:
    try:
        import psutil

        return psutil.Process().memory_info().rss
    except ImportError:  # pragma: no cover - psutil is installed in the dev environment
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_memory_does_not_grow_with_invocations(tmp_path, data):
    callbacks = [c for c in fast_callbacks() if isinstance(c, InvarianceCallback)]
    module = tiny_module()
    trainer = make_trainer(tmp_path, callbacks, logger=pl.loggers.CSVLogger(tmp_path))
    trainer.fit(module, data)  # sets up loggers, run directory, subsets

    def invoke(times):
        for _ in range(times):
            for callback in callbacks:
                callback._invoke(trainer, module, "validate", through_lightning=False,
                                  at_end=True)
                callback._finalize(trainer, module, "validate")
        gc.collect()

    invoke(2)
    after_two = rss_bytes()
    invoke(18)
    after_twenty = rss_bytes()
    assert after_twenty <= 1.10 * after_two, (after_two, after_twenty)
    assert all(len(c.history) >= 20 for c in callbacks)

"""The evidence script ``python -m invreg.experiments.hyper``: table format; the real (slow) run."""

import pytest

from invreg.experiments import hyper


def test_summary_table_reports_means_and_learned_descriptors():
    rows = [dict(seed=s, task="upstream", variant="upstream", val_acc=0.9) for s in (0, 1)]
    for seed, (acc, d) in enumerate([(0.90, 0.8), (0.92, 0.9)]):
        rows.append(dict(seed=seed, task="rotated", variant="learned", test_acc=acc,
                         descriptor={"rotation": d}))
        rows.append(dict(seed=seed, task="rotated", variant="fixed d=1", test_acc=acc,
                         descriptor={"rotation": 1.0}))
    table = hyper.summarise(rows)
    assert "| rotated | learned | 91.0 ± 1.4 | 0.80, 0.90 |" in table
    assert "| rotated | fixed d=1 | 91.0 ± 1.4 | 1 |" in table
    assert "upstream val acc (sampled descriptors): 90.0 ± 0.0 %" in table


@pytest.mark.slow
def test_learned_rotation_strength_moves_the_right_way(tmp_path, monkeypatch):
    """One seed of the evidence run at a reduced budget (a few minutes on 2 CPU cores)."""
    monkeypatch.setenv("WANDB_MODE", "disabled")
    rows = hyper.main(["--seeds", "0", "--upstream-epochs", "30", "--downstream-epochs", "15",
                       "--out", str(tmp_path)])
    result = {(r["task"], r["variant"]): r for r in rows if r["task"] != "upstream"}
    assert result["rotated", "learned"]["descriptor"]["rotation"] > 0.5
    assert result["orientation", "learned"]["descriptor"]["rotation"] < 0.5
    for task in ("rotated", "orientation"):
        best_fixed = max(result[task, v]["test_acc"] for v in ("fixed d=0", "fixed d=1"))
        assert result[task, "learned"]["test_acc"] >= best_fixed - 0.05


def test_scratch_baseline_is_augmented_with_rotations_only_where_they_keep_the_label(tmp_path):
    backbone = {"channels": [16, 32, 32], "input_shape": [1, 20, 20], "num_classes": 10}

    def args(task, variant):
        return hyper.downstream_args(task, variant, tmp_path / "up.ckpt", backbone, 3,
                                     ["--seed_everything", "0"])

    rotated, orientation = args("rotated", "scratch"), args("orientation", "scratch")
    assert rotated[-2:] == ["--data.init_args.augment_group", "so2"]
    assert "--data.init_args.augment_group" not in orientation
    for scratch in (rotated, orientation):
        assert "--model.init_args.upstream_checkpoint" not in scratch
        assert '"augment": false' in scratch[scratch.index("--model") + 1]  # no c4 on top
    learned = args("rotated", "learned")
    assert learned[learned.index("--model.init_args.upstream_checkpoint") + 1] == str(
        tmp_path / "up.ckpt")
    assert "--data.init_args.augment_group" not in learned
    assert args("orientation", "fixed d=1")[-4:] == [
        "--model.init_args.learn_descriptor", "false", "--model.init_args.descriptor_init", "1"]


def test_every_model_of_the_table_reports_the_fraction_classified_correctly():
    import torch

    from invreg.models.hyper import HyperCNN
    from invreg.modules import HyperUpstreamModule, InvarianceModule

    hyper_module = HyperUpstreamModule(
        invariance_weight=1.0,
        backbone=HyperCNN((1, 8, 8), 3, descriptor=["rotation"], channels=(4, 8)))
    plain = InvarianceModule(torch.nn.Flatten(), num_classes=3)
    # imbalanced classes: 3 of class 0 all right, 1 of class 1 wrong → micro 0.75 (exact in
    # float32), macro ≤ 0.5
    target, preds = torch.tensor([0, 0, 0, 1]), torch.tensor([0, 0, 0, 2])
    logged = {}
    hyper_module.log = lambda name, value, **kw: logged.__setitem__(name, value)
    logits = torch.nn.functional.one_hot(preds, 3).float()
    terms = {name: torch.tensor(1.0) for name in hyper_module.loss_terms}
    hyper_module._log_metrics("test", 0, logits, target, terms)
    hyper_module.on_test_epoch_end()
    assert logged["test/acc"].item() == 0.75
    # InvarianceModule's test accuracy is OrbitMetrics' micro accuracy of the identity element
    identity_logits = torch.nn.functional.one_hot(preds, 3).float().unsqueeze(1)
    assert plain.orbit_metrics["test_"]["accuracy"](identity_logits, target).item() == 0.75

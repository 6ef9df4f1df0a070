"""invreg.evaluation: what tests/metrics/test_orbit_metrics.py leaves out — batching and
chunking do not change the scores, groups by name, continuous groups, no gradients."""

import pytest
import torch
from torch import nn

from invreg.evaluation import eval_mode, evaluate_invariance
from invreg.groups import ContinuousRotations, CyclicShifts

T3 = CyclicShifts(3)
#: float32 sums of O(10) terms of magnitude O(1), grouped differently: a few ulps each
REL = 64 * torch.finfo(torch.float32).eps


def data(n=12, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 6, 6, generator=gen), torch.randint(3, (n,), generator=gen)


def linear(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(36, 3))


def test_scores_do_not_depend_on_the_batch_or_chunk_size():
    model, (x, y) = linear(), data()
    whole = evaluate_invariance(model, [(x, y)], T3)
    split = evaluate_invariance(model, [(x[:5], y[:5]), (x[5:7], y[5:7]), (x[7:], y[7:])], T3,
                                chunk_size=2)
    assert whole["LI"] > 0.1 and whole["DI"] > 0  # a linear model is not shift-invariant
    for key, value in whole.items():
        assert split[key] == pytest.approx(value, rel=REL, abs=REL), key


def test_group_by_name_equals_the_group_object():
    model, (x, y) = linear(), data()
    assert evaluate_invariance(model, [(x, y)], "t3") == evaluate_invariance(model, [(x, y)], T3)
    with pytest.raises(ValueError, match="Unknown group name"):
        evaluate_invariance(model, [(x, y)], "t3x")


def test_continuous_group_uses_num_samples_orbit_elements():
    model, (x, y) = linear(), data()
    seen = []
    model.register_forward_hook(lambda module, args, out: seen.append(args[0].shape[0]))
    scores = evaluate_invariance(model, [(x, y)], ContinuousRotations(), num_samples=5)
    assert sum(seen) == 5 * x.shape[0]  # the identity and four rotations of each sample
    assert scores["LI"] > 0


def test_the_model_runs_without_gradients_and_keeps_none():
    seen = []

    class Recorder(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = linear()

        def forward(self, x):
            seen.append((torch.is_grad_enabled(), self.training))
            return self.net(x)

    model, (x, y) = Recorder().train(), data()
    evaluate_invariance(model, [(x, y)], T3)
    assert seen and all(state == (False, False) for state in seen)
    assert all(p.grad is None for p in model.parameters()) and model.training


def test_eval_mode_yields_the_model_and_nests():
    net = nn.Sequential(nn.Dropout(), nn.Dropout())
    with eval_mode(net) as inner:
        assert inner is net and not net.training
        with eval_mode(net):
            assert not net[0].training
        assert not net.training  # the inner block restores eval, the outer one's state
    assert net.training and net[1].training


def test_scores_use_the_orbit_metrics_names_and_old_keys_name_the_new_ones():
    import copy
    import json
    import pickle

    model, (x, y) = linear(), data()
    scores = evaluate_invariance(model, [(x, y)], T3)
    assert list(scores) == ["accuracy", "DI", "LI", "consistency", "orbit_accuracy"]
    for old, new in (("acc", "accuracy"), ("orbit_acc", "orbit_accuracy")):
        with pytest.raises(KeyError, match=rf"'{old}' was renamed '{new}'"):
            scores[old]
        # everything but [] behaves as for a plain dict
        assert old not in scores and scores.get(old) is None and scores.get(old, 1) == 1
    with pytest.raises(KeyError) as error:
        scores["nope"]
    assert error.value.args == ("nope",)
    plain = dict(scores)
    assert scores == plain and json.loads(json.dumps(scores)) == plain
    for twin in (pickle.loads(pickle.dumps(scores)), copy.deepcopy(scores)):
        assert twin == plain and list(twin) == list(plain)
        with pytest.raises(KeyError, match="'acc' was renamed 'accuracy'"):
            twin["acc"]

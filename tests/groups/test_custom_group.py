"""FiniteGroup: groups built from a user's functions, checked and used like the shipped ones."""

import itertools
import math
import pickle

import pytest
import torch
from tiny import tiny_trainer
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from invreg.evaluation import evaluate_invariance
from invreg.functional import orbit_logits
from invreg.groups import CyclicShifts, FiniteGroup, Product
from invreg.losses import LogitL2
from invreg.metrics import OrbitMetrics, SaliencyInvarianceSimilarity
from invreg.models import TiedMLP
from invreg.modules import InvarianceModule

T, N_SHIFTS = 12, 4  # audio-like clips [B, 1, T]: shifts of T / N_SHIFTS = 3 samples
TOKENS, DIM, CLASSES = 5, 3, 4  # sets of TOKENS tokens [B, TOKENS, DIM]


def shift_step(x):
    return torch.roll(x, T // N_SHIFTS, dims=-1)


def shift_power(x, k):
    return torch.roll(x, k * (T // N_SHIFTS), dims=-1)


def next_token(x):
    return torch.roll(x, 1, dims=1)


def token_cycles():
    return FiniteGroup.from_generator(next_token, TOKENS, name="token_cycle",
                                      input_shape=(TOKENS, DIM))


class SumPool(nn.Module):
    """Per-token linear map, summed over tokens: invariant to any permutation of the set."""

    def __init__(self):
        super().__init__()
        self.num_classes = CLASSES
        self.token = nn.Linear(DIM, CLASSES)

    def forward(self, x):
        return self.token(x).sum(dim=1)


class Flat(nn.Module):
    """Linear map of the flattened set: depends on the token order."""

    def __init__(self):
        super().__init__()
        self.num_classes = CLASSES
        self.linear = nn.Sequential(nn.Flatten(), nn.Linear(TOKENS * DIM, CLASSES))

    def forward(self, x):
        return self.linear(x)


@pytest.mark.parametrize("build", ["generator", "power", "actions"])
def test_time_shift_group_matches_cyclic_shifts(build):
    """The same time shift built three ways acts, composes and inverts like CyclicShifts(4)."""
    probe = torch.randn(3, 1, T, generator=torch.Generator().manual_seed(1))
    if build == "generator":
        group = FiniteGroup.from_generator(shift_step, N_SHIFTS, probe=probe)
    elif build == "power":
        group = FiniteGroup.from_generator(shift_step, N_SHIFTS, power=shift_power, probe=probe)
    else:
        actions = [lambda x, k=k: shift_power(x, k) for k in range(N_SHIFTS)]
        group = FiniteGroup.from_actions(actions, name="time_shift", probe=probe)
    shipped = CyclicShifts(N_SHIFTS)
    x = torch.randn(6, 1, T, generator=torch.Generator().manual_seed(2))
    g = torch.tensor([0, 1, 2, 3, 3, 1])
    assert group.order == shipped.order and group.is_exact
    assert torch.equal(group.orbit(x), shipped.orbit(x))
    assert torch.equal(group.act(x, g), shipped.act(x, g))
    assert not torch.equal(group.act(x, g), x)  # the shifts move the clips
    elements = torch.arange(N_SHIFTS)
    a, b = torch.meshgrid(elements, elements, indexing="ij")
    assert torch.equal(group.compose(a.flatten(), b.flatten()),
                       shipped.compose(a.flatten(), b.flatten()))
    assert torch.equal(group.inverse(elements), shipped.inverse(elements))
    assert torch.equal(group.act(group.act(x, g), group.inverse(g)), x)


def test_derived_table_is_a_left_action_of_a_non_abelian_group():
    """All 6 permutations of 3 tokens (S3): the derived table satisfies
    act(act(x, h), g) == act(x, compose(g, h)) for every pair, and S3 does not commute."""
    perms = list(itertools.permutations(range(3)))
    group = FiniteGroup.from_actions([lambda x, p=p: x[:, list(p)] for p in perms],
                                     name="S3", input_shape=(3, 2))
    x = torch.randn(4, 3, 2, generator=torch.Generator().manual_seed(0))
    for g, h in itertools.product(range(6), repeat=2):
        assert torch.equal(group.act(group.act(x, h), g), group.act(x, group.compose(g, h)))
        assert torch.equal(group.act(group.act(x, g), group.inverse(g)), x)
    table = group.compose_table
    assert not torch.equal(table, table.T)
    again = FiniteGroup.from_actions(group._actions, table, name="S3", input_shape=(3, 2))
    assert torch.equal(again.compose_table, table)


def test_permutation_invariant_model_scores_zero_and_flat_model_does_not():
    """Sum pooling is invariant to cyclic token permutations: DI = LI = 0 up to the float64
    rounding of summing TOKENS values in another order; a flattening model is not invariant."""
    torch.manual_seed(0)
    group = token_cycles()
    x = torch.randn(16, TOKENS, DIM, dtype=torch.float64)
    y = torch.randint(CLASSES, (16,))
    invariant, flat = SumPool().double(), Flat().double()
    scores = {}
    for name, model in (("sum", invariant), ("flat", flat)):
        metrics = OrbitMetrics(group, CLASSES)
        orbit = metrics.update_from_model(model, x, y)
        assert orbit.shape == (16, TOKENS, CLASSES)
        scores[name] = {key: value.item() for key, value in metrics.compute().items()}
    logit_scale = orbit_logits(invariant, x, group).abs().max().item()
    # a reordered sum of TOKENS terms differs by at most TOKENS·eps·scale per logit
    rounding = TOKENS * torch.finfo(torch.float64).eps * max(logit_scale, 1.0)
    assert 0 <= scores["sum"]["LI"] <= 0.5 * CLASSES * rounding**2
    assert abs(scores["sum"]["DI"]) <= 4 * rounding
    assert scores["sum"]["consistency"] == 1.0
    assert scores["flat"]["LI"] > 1e-2 and scores["flat"]["DI"] > 1e-4
    evaluated = evaluate_invariance(invariant, [(x, y)], group)
    assert evaluated["LI"] <= 0.5 * CLASSES * rounding**2 and evaluated["consistency"] == 1.0
    loss = LogitL2()(orbit_logits(flat, x, group))
    # the metric keeps float32 sums: a few float32 roundings apart from the float64 loss
    assert loss.item() == pytest.approx(scores["flat"]["LI"], rel=8 * torch.finfo().eps)


def test_invariance_module_trains_on_a_custom_group():
    torch.manual_seed(0)
    group = token_cycles()
    x = torch.randn(64, TOKENS, DIM)
    y = (x[:, 0, 0] > 0).long()
    data = DataLoader(TensorDataset(x, y), batch_size=32)
    for orbit_mode in ("sample", "full"):
        module = InvarianceModule(Flat(), group=group, orbit_mode=orbit_mode, lr=1e-2)
        assert module.group is group
        before = [p.detach().clone() for p in module.parameters()]
        trainer = tiny_trainer(max_steps=2)
        trainer.fit(module, data)
        assert any(not torch.equal(b, p) for b, p in zip(before, module.parameters(), strict=True))
        (scores,) = trainer.validate(module, data, verbose=False)  # the whole orbit
        assert scores and all(math.isfinite(value) for value in scores.values())


def test_fill_is_ignored_and_inputs_must_have_the_probe_shape():
    group = token_cycles()
    x = torch.randn(3, TOKENS, DIM)
    g = torch.tensor([1, 2, 0])
    assert torch.equal(group.act(x, g, fill=-0.5), group.act(x, g))
    assert torch.equal(group.orbit(x, fill=2.0), group.orbit(x))
    with pytest.raises(ValueError, match=r"checked on inputs \[B, 5, 3\]; got shape \(3, 4, 3\)"):
        group.act(torch.randn(3, 4, DIM), g)
    with pytest.raises(ValueError, match="cannot act on inputs of shape"):
        group.check_input_shape((TOKENS + 1, DIM))
    group.check_input_shape((TOKENS, DIM))
    with pytest.raises(TypeError, match="acts on tensors"):
        group.check_input([[0.0]])


def test_equality_and_repr():
    assert token_cycles() == token_cycles()
    assert hash(token_cycles()) == hash(token_cycles())
    other = FiniteGroup.from_generator(lambda x: torch.roll(x, 1, dims=1), TOKENS,
                                       name="token_cycle", input_shape=(TOKENS, DIM))
    assert other != token_cycles()  # a different function
    assert repr(token_cycles()) == "FiniteGroup(name='token_cycle', order=5, input_shape=(5, 3))"


def test_a_group_that_holds_only_up_to_rounding_is_not_exact():
    """Rotating 2-vectors by 120° (float arithmetic) is a group only up to rounding."""
    angle = torch.tensor(2 * torch.pi / 3, dtype=torch.float64)
    rotation = torch.stack([torch.stack([angle.cos(), -angle.sin()]),
                            torch.stack([angle.sin(), angle.cos()])]).float()
    group = FiniteGroup.from_generator(lambda x: x @ rotation.T, 3, input_shape=(4, 2))
    assert group.order == 3 and not group.is_exact


SQUARE = (4, 2)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        # an action that is not invertible
        (lambda: FiniteGroup.from_actions([lambda x: x, torch.zeros_like], input_shape=SQUARE),
         r"element 1 has no inverse"),
        (lambda: FiniteGroup.from_generator(lambda x: 0.5 * x, 4, input_shape=SQUARE),
         r"element 1 \(the generator\) applied order=4 times does not give the probe back"),
        # wrong order: a half-turn of 4 tokens has order 2; a quarter-turn has order 4
        (lambda: FiniteGroup.from_generator(lambda x: torch.roll(x, 2, 1), 4, input_shape=SQUARE),
         r"element 2 .* already the identity.* pass order=2"),
        (lambda: FiniteGroup.from_generator(lambda x: torch.roll(x, 1, 1), 2, input_shape=SQUARE),
         r"applied order=2 times does not give the probe back"),
        # not closed: rolling by 1 twice is a roll by 2, which is not in the list
        (lambda: FiniteGroup.from_actions([lambda x: x, lambda x: torch.roll(x, 1, 1)],
                                          input_shape=SQUARE),
         r"not closed: element 1 followed by element 1 is none of the 2 elements"),
        (lambda: FiniteGroup.from_actions([lambda x: torch.roll(x, 2, 1), lambda x: x],
                                          input_shape=SQUARE),
         r"element 0 must be the identity"),
        (lambda: FiniteGroup.from_actions([lambda x: x, torch.neg, lambda x: -x],
                                          input_shape=SQUARE),
         r"elements 1 and 2 act identically"),
        (lambda: FiniteGroup.from_actions([lambda x: x, torch.neg], [[0, 1], [1, 1]],
                                          input_shape=SQUARE),
         r"compose_table\[1\]\[1\] = 1, but element 1 followed by element 1 differs"),
        (lambda: FiniteGroup.from_generator(lambda x: torch.roll(x, 1, 1), 4, input_shape=SQUARE,
                                            power=lambda x, k: torch.roll(x, -k, 1)),
         r"power\(x, 1\) differs from the generator applied 1 times \(element 1\)"),
        (lambda: FiniteGroup.from_actions([lambda x: x, lambda x: torch.roll(x, 1, 0)],
                                          input_shape=SQUARE),
         r"element 1 mixes the samples of a batch"),
        (lambda: FiniteGroup.from_actions([lambda x: x, lambda x: x[:, :1]], input_shape=SQUARE),
         r"element 1 returned shape \(32, 1, 2\)"),  # 32 samples: 256 entries
        (lambda: FiniteGroup.from_actions([lambda x: x, torch.neg]),
         r"pass probe= .* or input_shape="),
    ],
)
def test_axiom_violations_name_the_element(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_non_callable_action_is_a_type_error():
    with pytest.raises(TypeError, match=r"actions\[1\]: expected a function, got int"):
        FiniteGroup.from_actions([lambda x: x, 3], input_shape=SQUARE)


def test_weight_tied_model_over_a_custom_group_is_invariant():
    """TiedMLP pools its first layer over the custom group's orbit: LI = DI = 0 and SI = 1 up
    to float32 rounding (the pooled mean sums the same terms in another order)."""
    torch.manual_seed(0)
    group = token_cycles()
    model = TiedMLP((TOKENS, DIM), CLASSES, group=group, hidden_widths=[16])
    x, y = torch.randn(8, TOKENS, DIM), torch.randint(CLASSES, (8,))
    eps = torch.finfo(torch.float32).eps
    scale = max(1.0, orbit_logits(model, x, group).abs().max().item())
    rounding = 64 * eps * scale  # per logit: a reordered float32 mean through two layers
    scores = evaluate_invariance(model, [(x, y)], group)
    assert scores["LI"] <= 0.5 * CLASSES * rounding**2 and scores["consistency"] == 1.0
    assert abs(scores["DI"]) <= 2 * rounding
    saliency = SaliencyInvarianceSimilarity(group, baseline=0.0)
    saliency.update(model, x, y)
    assert abs(saliency.compute().item() - 1.0) <= 64 * eps
    InvarianceModule(model, group=token_cycles())  # an equal group: the backbone's is accepted
    with pytest.raises(ValueError, match="backbone.group"):
        InvarianceModule(model, group=FiniteGroup.from_generator(
            next_token, TOKENS, name="other", input_shape=(TOKENS, DIM)))


def test_product_of_custom_groups():
    """Time shifts × sign flips of a clip: a Product of two FiniteGroups is a left action."""
    shifts = FiniteGroup.from_generator(shift_step, N_SHIFTS, input_shape=(1, T))
    signs = FiniteGroup.from_generator(torch.neg, 2, input_shape=(1, T))
    group = Product(shifts, signs)
    x = torch.randn(3, 1, T, generator=torch.Generator().manual_seed(0))
    orbit = group.orbit(x)
    assert orbit.shape == (3, 8, 1, T) and torch.equal(orbit[:, 0], x)
    assert len({tuple(orbit[0, i].flatten().tolist()) for i in range(8)}) == 8  # all distinct
    for g, h in itertools.product(range(8), repeat=2):
        assert torch.equal(group.act(group.act(x, h), g), group.act(x, group.compose(g, h)))


def test_a_group_of_module_level_functions_pickles():
    """DataLoader workers started with spawn pickle the group: module-level functions do."""
    signs = FiniteGroup.from_generator(torch.neg, 2, name="sign", input_shape=(1, T))
    flips = FiniteGroup.from_actions([torch.clone, torch.neg], name="sign", input_shape=(1, T))
    for group in (signs, flips):
        again = pickle.loads(pickle.dumps(group))
        assert again == group and torch.equal(again.compose_table, group.compose_table)


def test_integer_token_ids_are_compared_exactly():
    """A probe of token ids [B, N] (long): laws compared exactly, the group acts on ids."""
    ids = torch.arange(2 * TOKENS).reshape(2, TOKENS)
    group = FiniteGroup.from_generator(lambda x: torch.roll(x, 1, dims=1), TOKENS, probe=ids)
    assert group.is_exact and group.input_shape == (TOKENS,)
    out = group.act(ids, torch.tensor([1, 4]))
    assert out.dtype == torch.long and out.tolist() == [[4, 0, 1, 2, 3], [6, 7, 8, 9, 5]]
    with pytest.raises(ValueError, match="does not give the probe back"):
        FiniteGroup.from_generator(lambda x: torch.roll(x, 1, dims=1) + 1, TOKENS, probe=ids)

"""BatchMeans: batch-size weighted means of several names with one update per batch."""

import pytest
import torch

from invreg.metrics import BatchMeans


def test_weighted_means_equal_the_per_sample_means():
    generator = torch.Generator().manual_seed(0)
    samples = torch.randn(23, 3, generator=generator, dtype=torch.float64)
    means = BatchMeans(("a", "b", "c"))
    for batch in samples.split(5):  # 5, 5, 5, 5, 3
        means.update(batch.mean(0), batch.shape[0])
    got = means.compute()
    expected = samples.mean(0)
    for i, name in enumerate(("a", "b", "c")):
        # float32 sums of 5 values of order 1
        assert got[name].item() == pytest.approx(expected[i].item(), rel=1e-5, abs=1e-6)


def test_empty_is_nan_with_a_warning():
    with pytest.warns(UserWarning, match="no samples"):
        values = BatchMeans(("loss",)).compute()
    assert torch.isnan(values["loss"])


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: BatchMeans(()), "names"),
        (lambda: BatchMeans(("a", "a")), "names"),
        (lambda: BatchMeans(("a",)).update(torch.zeros(2), 1), r"shape \(1,\)"),
        (lambda: BatchMeans(("a",)).update(torch.zeros(1), -1), "weight"),
        (lambda: BatchMeans(("a",)).update(torch.zeros(1), 1.5), "weight"),
    ],
)
def test_bad_input_names_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()

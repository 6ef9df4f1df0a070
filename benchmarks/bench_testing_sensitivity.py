"""Sensitivity of ``invreg.testing`` (not a test; the tables in docs/testing.md come from it).

1. *calibration*: exact networks (weight-tied MLPs, e2cnn G-CNNs over C4 and D4) checked in
   their own dtype; the largest error ÷ ``eps·sqrt(D)·max|f|`` sets ``TOLERANCE_FACTOR`` of the
   calibrated bound; the largest margin of the float64 recompute is printed next to it;
2. *leaks*: a tiny E2CNN (9×9, channels (2, 3)) in float32 with a non-invariant path of
   relative size ``s`` — added to the logits (``s`` of the output scale) or, as a plain
   ``Conv2d``, to the first equivariant convolution (``s`` of that layer's output): error,
   tolerance, margin (error ÷ tolerance) and whether it is caught, through the float64
   recompute, the calibrated bound, and the former bound ``16·eps·sqrt(D)·max|f|``;
3. *C8*: networks built for C4 and for C8 (and others) checked against C8 on band-limited,
   disc-masked inputs: error ÷ interpolation floor on the 45° elements, margin, caught;
4. *low precision*: the logit leak in bfloat16 / float16, checked through the recompute.

    python benchmarks/bench_testing_sensitivity.py [--seeds 20]
"""

from __future__ import annotations

import argparse
import warnings

import torch
from torch import nn

from invreg.models import E2CNN, MLP, TiedMLP
from invreg.testing import (
    FLOOR_FACTOR,
    TOLERANCE_FACTOR,
    CheckFailed,
    CheckReport,
    assert_invariant,
    random_input,
)

FORMER_FACTOR = 16.0  # the bound before the recompute: 16·eps·sqrt(D)·max|f|


class LogitLeak(nn.Module):
    """``model(x) + c·L(x)``, ``L`` a random linear map of the input, ``c`` such that the leak's
    largest value on ``x`` is ``leak`` times the model's largest output."""

    def __init__(self, model: nn.Module, x: torch.Tensor, leak: float, seed: int = 0) -> None:
        super().__init__()
        self.model = model
        generator = torch.Generator().manual_seed(seed)
        weight = torch.randn(3, x[0].numel(), generator=generator, dtype=x.dtype)
        with torch.no_grad():
            ratio = model(x).abs().max() / (x.flatten(1) @ weight.T).abs().max()
        self.register_buffer("weight", weight * (leak * ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) + x.flatten(1) @ self.weight.T


class ConvLeak(nn.Module):
    """An E2CNN whose first R2Conv output gets ``c·conv(x)`` added (a plain 3×3 ``Conv2d``),
    ``c`` such that the leak is ``leak`` times that layer's largest output on ``x``."""

    def __init__(self, model: E2CNN, x: torch.Tensor, leak: float, seed: int = 0) -> None:
        super().__init__()
        from e2cnn.nn import GeometricTensor

        self.model = model
        first = model.blocks[0].conv
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(x.shape[1], first.out_type.size, 3, padding=1).to(x.dtype)
        with torch.no_grad():
            layer = first(GeometricTensor(x, model.in_type)).tensor.abs().max()
            self.scale = float(leak * layer / self.conv(x).abs().max())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from e2cnn.nn import GeometricTensor

        model = self.model
        h = GeometricTensor(x, model.in_type)
        for i, block in enumerate(model.blocks):
            for name, layer in block._modules.items():
                h = layer(h)
                if i == 0 and name == "conv":
                    h = GeometricTensor(h.tensor + self.scale * self.conv(x), h.type)
        return model.head(model.pool(model.group_pool(h).tensor))


def e2cnn(group: str, size: int, channels: tuple[int, ...], seed: int) -> E2CNN:
    torch.manual_seed(seed)
    return E2CNN((1, size, size), 3, group=group, channels=channels).eval()


def tied(group: str, size: int, seed: int) -> TiedMLP:
    torch.manual_seed(seed)
    return TiedMLP((1, size, size), 3, group=group, hidden_widths=(32, 32)).eval()


def gaussian(size: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(4, 1, size, size, generator=generator).to(dtype)


def calibration(seeds: int) -> None:
    print("## 1. Calibration: exact networks in their own dtype\n")
    print("| network | input | dtype | checks | max error ÷ eps·sqrt(D)·max|f| | "
          "max margin, float64 recompute |")
    print("|---|---|---|---|---|---|")
    cases = [
        ("TiedMLP C4", lambda s: tied("c4", 12, s), 12, "c4"),
        ("TiedMLP D4", lambda s: tied("d4", 28, s), 28, "d4"),
        ("E2CNN C4 (2, 3)", lambda s: e2cnn("c4", 9, (2, 3), s), 9, "c4"),
        ("E2CNN D4 (2, 3)", lambda s: e2cnn("d4", 9, (2, 3), s), 9, "d4"),
        ("E2CNN C4 (4, 8)", lambda s: e2cnn("c4", 17, (4, 8), s), 17, "c4"),
        ("E2CNN D4 (4, 8)", lambda s: e2cnn("d4", 28, (4, 8), s), 28, "d4"),
    ]
    overall = 0.0
    for name, build, size, group in cases:
        for dtype in (torch.float32, torch.float64):
            worst = worst_margin = 0.0
            for seed in range(seeds):
                model = build(seed).to(dtype)
                x = gaussian(size, 1000 + seed, dtype)
                report = assert_invariant(model, group, x, atol=1e30, rtol=0.0, recompute=False)
                eps = torch.finfo(dtype).eps
                worst = max(worst, report.max_error / (eps * size * report.scale))
                worst_margin = max(worst_margin, assert_invariant(model, group, x).margin)
            overall = max(overall, worst)
            print(f"| {name} | {size}×{size} | {str(dtype)[6:]} | {seeds} | {worst:.3f} | "
                  f"{worst_margin:.1e} |")
    print(f"\nlargest ratio {overall:.3f}; TOLERANCE_FACTOR = {TOLERANCE_FACTOR:g} "
          f"({TOLERANCE_FACTOR / overall:.1f}× it)\n")


def outcome(model: nn.Module, group: str, x: torch.Tensor, **kwargs) -> CheckReport:
    """The report of a check, whether it passes or fails."""
    try:
        return assert_invariant(model, group, x, **kwargs)
    except CheckFailed as failure:
        return failure.report


def leaks() -> None:
    print("## 2. Leaks in float32 (E2CNN 9×9, channels (2, 3), 4 Gaussian inputs)\n")
    print("| network | leak | s | error ÷ max|f| | path | error | tolerance | margin | caught |")
    print("|---|---|---|---|---|---|---|---|---|")
    eps = torch.finfo(torch.float32).eps
    for group in ("c4", "d4"):
        model, x = e2cnn(group, 9, (2, 3), 0), gaussian(9, 0)
        for wrapper, sizes in ((LogitLeak, (0.0, 1e-7, 1e-6, 1e-5)), (ConvLeak, (1e-6, 1e-5))):
            for s in sizes:
                leaky = wrapper(model, x, s)
                recomputed = outcome(leaky, group, x)
                calibrated = outcome(leaky, group, x, recompute=False)
                former = FORMER_FACTOR * eps * 9 * calibrated.scale
                rows = (
                    ("float64 recompute", recomputed.error, recomputed.tolerance),
                    ("calibrated bound", calibrated.error, calibrated.tolerance),
                    ("former bound", calibrated.max_error, former),
                )
                for path, error, tolerance in rows:
                    margin = error / tolerance
                    print(f"| E2CNN {group.upper()} | {wrapper.__name__} | {s:g} | "
                          f"{recomputed.max_error / recomputed.scale:.2e} | {path} | "
                          f"{error:.3g} | {tolerance:.3g} | {margin:.3g} | "
                          f"{'yes' if margin > 1 else 'no'} |")
    print()


def c8(seeds: int) -> None:
    print(f"## 3. C8 on band-limited, disc-masked inputs (16 per check, floor_factor "
          f"{FLOOR_FACTOR:g})\n")
    print("| network | input | checks | worst elements | error ÷ floor there | margin | caught |")
    print("|---|---|---|---|---|---|---|")
    cases = [
        ("E2CNN C8 (8,)", lambda s: e2cnn("c8", 33, (8,), s), 33),
        ("E2CNN C4 (8,)", lambda s: e2cnn("c4", 33, (8,), s), 33),
        ("E2CNN C8 (4, 8)", lambda s: e2cnn("c8", 17, (4, 8), s), 17),
        ("E2CNN C4 (4, 8)", lambda s: e2cnn("c4", 17, (4, 8), s), 17),
        ("TiedMLP C4", lambda s: tied("c4", 29, s), 29),
        ("MLP", lambda s: seeded(lambda: MLP((1, 17, 17), 3, hidden_widths=(32,)), s), 17),
        ("global mean", lambda s: nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()), 17),
    ]
    for name, build, size in cases:
        reports = []
        for seed in range(seeds):
            x = random_input(E2CNN((1, size, size), 1, group="c4", channels=(1,)), "c8",
                             batch_size=16, seed=seed)
            reports.append(outcome(build(seed), "c8", x))
        elements = sorted({r.element for r in reports})
        # error ÷ floor on resampled elements (an exact one, 90° in C8, has a floor of ~0)
        ratios = [r.error / r.floor for r in reports if r.floor and r.floor > 1e-12 * r.scale]
        ratio = f"{min(ratios):.2f}–{max(ratios):.2f}" if ratios else "— (floor 0)"
        margins = [r.margin for r in reports]
        caught = sum(m > 1 for m in margins)
        print(f"| {name} | {size}×{size} | {seeds} | {', '.join(elements)} | {ratio} | "
              f"{min(margins):.3g}–{max(margins):.3g} | {caught}/{seeds} |")
    print()


def seeded(build, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return build()


def low_precision() -> None:
    print("## 4. Low precision (E2CNN C4 9×9, logit leak s·eps(dtype), float64 recompute)\n")
    print("| dtype | s | error ÷ max|f| | tolerance ÷ max|f| | margin | caught |")
    print("|---|---|---|---|---|---|")
    x = gaussian(9, 0)
    for dtype in (torch.bfloat16, torch.float16):
        eps = torch.finfo(dtype).eps
        for s in (0.1, 1.0, 10.0, 30.0):
            leaky = LogitLeak(e2cnn("c4", 9, (2, 3), 0), x, s * eps).to(dtype)
            report = outcome(leaky, "c4", x.to(dtype))
            error, tolerance, margin = report.error, report.tolerance, report.margin
            scale = report.scale
            print(f"| {str(dtype)[6:]} | {s:g}·eps = {s * eps:.2g} | {error / scale:.2e} | "
                  f"{tolerance / scale:.2e} | {margin:.3g} | {'yes' if margin > 1 else 'no'} |")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20, help="networks per row (default 20)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)
    torch.set_num_threads(1)
    calibration(args.seeds)
    leaks()
    c8(max(args.seeds // 2, 1))
    low_precision()


if __name__ == "__main__":
    main()

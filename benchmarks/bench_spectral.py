"""Speed of ``jacobian_spectral_norm``: ``method="auto"`` against Lanczos and the exact Jacobian.

For the paper's MLP (5 hidden layers of 128, 36×36 inputs) with C ∈ {2, 9, 10, 100} outputs
and a small CNN (9 outputs), on ``B`` samples in eval mode, median of repeated runs in one
process after warm-up: the time of ``method="lanczos"`` (``iters`` steps), ``"exact"`` (C
pullbacks, then the largest singular value) and ``"auto"`` (the default); the ratio of
``auto`` to the faster of the other two (target ≤ 1.0 up to timing noise); and the largest
relative difference between the methods' σ_max (Lanczos is exact for ``iters ≥ C`` and a lower
bound below). Not a test; results in benchmarks/RESULTS.md.

    python benchmarks/bench_spectral.py [--batch-size 64] [--iters 20] [--repeats 10] [--tiny]

``--tiny`` runs small inputs in a few seconds and checks the agreement (exit status 1 if a
method disagrees with the exact Jacobian beyond float32 rounding).
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
from timing import median_time
from torch import nn

from invreg.functional.spectral import jacobian_spectral_norm
from invreg.models import MLP, SmallCNN


def models(input_shape: tuple[int, ...], tiny: bool) -> dict[str, tuple[nn.Module, int]]:
    widths = (16, 16) if tiny else (128,) * 5
    out = {
        f"MLP, C={c}": (MLP(input_shape, c, hidden_widths=widths), c)
        for c in ((2, 9) if tiny else (2, 9, 10, 100))
    }
    channels = (4, 8) if tiny else (16, 32, 32)
    out["SmallCNN, C=9"] = (SmallCNN(input_shape, 9, channels=channels), 9)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--tiny", action="store_true", help="small sizes, a correctness run")
    args = parser.parse_args(argv)
    if args.tiny:
        args.batch_size, args.repeats, args.warmup = 8, 1, 1
    input_shape = (1, 8, 8) if args.tiny else (1, 36, 36)
    torch.manual_seed(0)
    x = torch.randn(args.batch_size, *input_shape)
    print(
        f"- torch {torch.__version__}, {torch.get_num_threads()} threads, load average "
        f"{os.getloadavg()[0]:.2f}; B = {args.batch_size}, inputs {input_shape}, iters = "
        f"{args.iters}; median of {args.repeats} "
        f"runs after {args.warmup} warm-up runs\n"
    )
    print("| model | lanczos (ms) | exact (ms) | auto (ms) | auto picks | auto ÷ faster | "
          "max rel. diff lanczos vs exact |")
    print("|---|---|---|---|---|---|---|")
    ok = True
    for name, (model, classes) in models(input_shape, args.tiny).items():
        model.eval()
        values, times = {}, {}
        for method in ("lanczos", "exact", "auto"):
            def run(method=method, model=model):
                generator = torch.Generator().manual_seed(0)
                return jacobian_spectral_norm(model, x, args.iters, method, generator=generator)
            values[method] = run()
            times[method] = median_time(run, None, args.repeats, args.warmup)
        picks = "exact" if torch.equal(values["auto"], values["exact"]) else "lanczos"
        exact = values["exact"].double()
        diff = ((values["lanczos"].double() - exact).abs() / exact).max().item()
        ratio = times["auto"] / min(times["lanczos"], times["exact"])
        print(f"| {name} | {1e3 * times['lanczos']:.1f} | {1e3 * times['exact']:.1f} | "
              f"{1e3 * times['auto']:.1f} | {picks} | {ratio:.2f} | {diff:.1e} |", flush=True)
        # Lanczos is exact for iters ≥ C: float32 rounding of the products, times the Gram
        # operator's conditioning (these nets: ≲ 1e2), well inside 1e-3
        if classes <= args.iters and diff > 1e-3:
            ok = False
            print(f"  disagreement for {name}: {diff:.2e}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

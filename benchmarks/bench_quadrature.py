"""Completeness error and wall time of integrated gradients' quadrature rules.

For a small CNN on 36×36 inputs, ``B`` samples explained for their predicted class from the
baseline 0, each rule (``riemann_right``, ``trapezoid``, ``gauss_legendre``) at ``S`` = 16, 64
and 256 path points, in float64 and float32:

* *error*: the largest over the samples of ``|Σ IG − (f_c(x) − f_c(x'))|``
  (:func:`~invreg.functional.ig_completeness_error`), with ``|f_c(x) − f_c(x')|`` printed
  for scale;
* *time*: ``saliency`` (raw maps, passes sized automatically), the median of repeated runs
  after warm-up. Every rule evaluates the model at ``S`` points per sample, so the times
  should agree.

Two models: ``SmallCNN`` as invreg trains it (16-32-32 channels, ReLU, max pooling: the
integrand ``∂f_c/∂x`` jumps along the path, so every rule is first order) and ``SmallCNN
smooth`` (SiLU, average pooling: a smooth integrand, where the rules reach their orders).
Not a test; results in benchmarks/RESULTS.md and docs/metrics.md.

    python benchmarks/bench_quadrature.py [--batch-size 8] [--repeats 3] [--tiny]

``--tiny`` runs small sizes once and checks that Gauss–Legendre at the largest step count is
complete to 1e-6 on the smooth model in float64 (exit status 1 if not).
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
from timing import median_time
from torch import nn

from invreg.functional import QUADRATURES, ig_completeness_error, saliency
from invreg.models import SmallCNN

NUM_CLASSES = 10
STEPS = (16, 64, 256)


def small_cnn(input_shape: tuple[int, ...], smooth: bool) -> nn.Module:
    """SmallCNN with its defaults, or with SiLU and average pooling (``smooth``)."""
    torch.manual_seed(0)
    model = SmallCNN(input_shape, NUM_CLASSES, activation="silu" if smooth else "relu")
    if smooth:
        for block in model.blocks:
            block.pool = nn.AvgPool2d(2)
    return model.eval()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--tiny", action="store_true", help="small sizes once; a correctness run")
    args = parser.parse_args(argv)
    steps = STEPS
    if args.tiny:
        args.batch_size, args.repeats, args.warmup, steps = 2, 1, 0, (16, 64)
    input_shape = (1, 12, 12) if args.tiny else (1, 36, 36)
    x64 = torch.randn(args.batch_size, *input_shape, dtype=torch.float64,
                      generator=torch.Generator().manual_seed(1))
    print(
        f"- torch {torch.__version__}, {torch.get_num_threads()} threads, load average "
        f"{os.getloadavg()[0]:.2f}; B = {args.batch_size} inputs {input_shape}, baseline 0, "
        f"the predicted class; error: max over samples; time: median of {args.repeats} runs "
        f"after {args.warmup} warm-up\n"
    )
    errors = " | ".join(f"error S={s}" for s in steps)
    times = " | ".join(f"time S={s} (ms)" for s in steps)
    print(f"| model | dtype | rule | {errors} | {times} |")
    print("|---|---|---|" + "---|" * (2 * len(steps)))
    ok, scales = True, []
    for name, smooth in (("SmallCNN", False), ("SmallCNN smooth", True)):
        for dtype in (torch.float64, torch.float32):
            model, x = small_cnn(input_shape, smooth).to(dtype), x64.to(dtype)
            with torch.no_grad():
                logits = model(torch.cat([x, torch.zeros_like(x[:1])]))
            target = logits[:-1].argmax(1)
            scale = (logits[:-1].gather(1, target[:, None]) - logits[-1, target][:, None]).abs()
            for quadrature in QUADRATURES:
                row_errors, row_times = [], []
                for s in steps:
                    error = ig_completeness_error(model, x, target, steps=s, quadrature=quadrature)
                    row_errors.append(error.max().item())
                    def explain(m=model, x=x, t=target, s=s, q=quadrature):
                        return saliency(m, x, t, steps=s, quadrature=q)

                    row_times.append(median_time(explain, None, args.repeats, args.warmup))
                print(f"| {name} | {str(dtype)[6:]} | {quadrature} | "
                      + " | ".join(f"{e:.2e}" for e in row_errors) + " | "
                      + " | ".join(f"{1e3 * t:.0f}" for t in row_times) + " |", flush=True)
                if smooth and dtype == torch.float64 and quadrature == "gauss_legendre":
                    ok = ok and row_errors[-1] <= 1e-6
            scales.append(f"{name} {str(dtype)[6:]}: {scale.min().item():.3g} to "
                          f"{scale.max().item():.3g}")
    print(f"\n- |f_c(x) − f_c(x')| per sample: {'; '.join(scales)}")
    if not ok:
        print("Gauss–Legendre is not complete to 1e-6 on the smooth model", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Speed of SI with integrated gradients against the plain forward + backward passes it needs.

For the paper's MLP (5×128) and a small CNN on 36×36 inputs with C4 (|G| = 4), median of
repeated runs in one process after warm-up:

* *SI*: ``saliency_invariance`` with the default settings (the paper's recipe: |IG| with ``S``
  steps, 0.9·max threshold, 3×3 blur; passes sized automatically from the model's activation
  memory): builds the orbit, the ``B·|G|·S`` path points pass by pass, one forward + backward
  per pass, then aligns, post-processes and compares the maps;
* *baseline*: ``S·|G|`` plain forward + backward passes over the same ``B·|G|·S`` path points,
  built beforehand (``torch.autograd.grad`` of the target logits), the best of passes of
  1024, 256, 128 and 64 inputs.

The ratio SI ÷ baseline has the target ≤ 1.2. The largest pass SI ran is printed (its memory
bound). Not a test; results in benchmarks/RESULTS.md.

    python benchmarks/bench_saliency.py [--batch-size 32] [--steps 20] [--repeats 5] [--tiny]

``--tiny`` runs small sizes once and checks that the default passes give the same SI as one
pass over every path point (exit status 1 if not).
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
from timing import median_time
from torch import nn

from invreg.functional import saliency_invariance
from invreg.groups import Rotations
from invreg.models import MLP, SmallCNN

NUM_CLASSES = 9
#: pass sizes (model inputs per forward + backward) tried for the best-chunked baseline
PLAIN_CHUNKS = (1024, 256, 128, 64)


def path_points(x: torch.Tensor, group, steps: int, baseline: float = 0.0) -> torch.Tensor:
    """The ``B·|G|·S`` integrated-gradients inputs ``x' + (s/S)(g·x − x')``, step-major."""
    orbit = group.orbit(x).flatten(0, 1)
    alphas = torch.arange(1, steps + 1, dtype=x.dtype) / steps
    path = baseline + alphas.view(-1, *([1] * orbit.ndim)) * (orbit - baseline)
    return path.flatten(0, 1)


def plain_backward(model: nn.Module, inputs: torch.Tensor, target: torch.Tensor, step: int):
    """Input gradients of the target logits, ``step`` inputs per forward + backward."""
    grads = []
    for start in range(0, inputs.shape[0], step):
        chunk = inputs[start : start + step].detach().requires_grad_(True)
        selected = model(chunk).gather(1, target[start : start + step, None]).sum()
        grads.append(torch.autograd.grad(selected, chunk)[0])
    return grads


class LargestPass:
    """A forward pre-hook that records the largest batch the model saw."""

    def __init__(self, model: nn.Module) -> None:
        self.largest = 0
        model.register_forward_pre_hook(self)

    def __call__(self, module: nn.Module, args: tuple) -> None:
        self.largest = max(self.largest, args[0].shape[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20, help="integrated gradients' steps S")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--tiny", action="store_true", help="small sizes once; a correctness run")
    args = parser.parse_args(argv)
    if args.tiny:
        args.batch_size, args.steps, args.repeats, args.warmup = 3, 4, 1, 0
    input_shape = (1, 12, 12) if args.tiny else (1, 36, 36)
    torch.manual_seed(0)
    group = Rotations(4)
    models = {
        "MLP 5×128": MLP(input_shape, NUM_CLASSES, hidden_widths=(128,) * 5),
        "SmallCNN 16-32-32": SmallCNN(input_shape, NUM_CLASSES),
    }
    x = torch.randn(args.batch_size, *input_shape)
    inputs = path_points(x, group, args.steps)
    count = inputs.shape[0]
    print(
        f"- torch {torch.__version__}, {torch.get_num_threads()} threads, load average "
        f"{os.getloadavg()[0]:.2f}; B = {args.batch_size}, C4, S = {args.steps}: {count} path "
        f"points of {input_shape}; median of {args.repeats} runs after {args.warmup} warm-up\n"
    )
    print("| model | S·|G| plain forward+backward passes, best-chunked (ms) | SI, defaults (ms) "
          "| ratio | largest SI pass (inputs) |")
    print("|---|---|---|---|---|")
    ok = True
    for name, model in models.items():
        model.eval()
        with torch.no_grad():
            target = model(x).argmax(1)
        # step-major path points of orbit-major inputs: sample i's class on row k
        path_target = target.repeat_interleave(group.order).repeat(args.steps)
        t_best, best = float("inf"), 0
        for step in PLAIN_CHUNKS:
            if step > count and best:
                continue
            t = median_time(
                lambda m=model, k=step, t=path_target: plain_backward(m, inputs, t, k),
                None, args.repeats, args.warmup,
            )
            if t < t_best:
                t_best, best = t, min(step, count)

        def si(m=model, t=target, **kw):
            return saliency_invariance(m, x, t, group, steps=args.steps, **kw)

        passes = LargestPass(model)
        value = si()
        t_si = median_time(si, None, args.repeats, args.warmup)
        print(f"| {name} | {1e3 * t_best:.1f} ({best} inputs) | {1e3 * t_si:.1f} | "
              f"{t_si / t_best:.3f} | {passes.largest} |", flush=True)
        one_pass = si(max_batch_size=count)
        # the same gradients summed in another order: S float32 additions of gradients built
        # from fan-ins ≤ 1296 + 5·128, then a cosine; relative to SI's scale (≤ 1)
        tol = (args.steps + 1296 + 5 * 128) * torch.finfo(torch.float32).eps
        if abs(value.item() - one_pass.item()) > tol:
            ok = False
            print(f"  {name}: SI {value.item()} by default, {one_pass.item()} in one pass",
                  file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

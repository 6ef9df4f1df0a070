"""Cost of a training step with the Lie derivative penalty against a plain training step.

``python benchmarks/bench_lie.py [--repeats 20] [--tiny] [--profile]``

For each model, the same weights, the same batch and the same optimiser (Adam):

* **plain** — ``cross_entropy(f(x), y)``, ``zero_grad`` / ``backward`` / ``step``;
* **Lie** — ``cross_entropy(f(x), y) + ν·LieDerivativeL2("rotation")(f, x)``, the step of
  :class:`~invreg.modules.InvarianceModule` with that loss: the plain forward, the image
  tangent ``d/dt g_t·x`` (:func:`~invreg.functional.lie.lie_tangent`), one forward-mode pass
  of ``f`` and the backward through both;
* **Lie, one pass** — the same loss with ``f(x)`` taken from the forward-mode pass
  (:meth:`~invreg.losses.LieDerivativeL2.output_and_loss`): no separate plain forward.

Models: the paper's MLP (5×128) on 1×36×36 inputs, batch 512, and a SmallCNN (16-32-32, batch
norm) on 1×28×28, batch 128; 10 classes. The two steps alternate after warm-up, in one
process; the figure reported is the ratio of the median process CPU times (wall beside it).
Target ≤ 3×.

``--tiny`` runs small sizes a few times and checks the Lie step: its loss equals, in float64,
the squared central finite difference ``(f(g_ε·x) − f(g_{−ε}·x)) / 2ε`` through the group's
own rotation at ε = 10⁻⁶ rad to a relative 10⁻³ (measured: 4·10⁻⁷ for the MLP, the O(ε) kinks
of ReLU the difference straddles; 3·10⁻⁴ for the CNN, where max-pool ties in the empty
background make the model non-differentiable and forward mode takes one side), and both steps
move the weights; the exit status is 1 otherwise. ``--profile`` prints
the top items of ``torch.profiler`` for the two Lie steps of each model.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from invreg.groups import ContinuousRotations
from invreg.losses import LieDerivativeL2
from invreg.models import MLP, SmallCNN

NU = 1e-3
#: model -> (input shape, batch size, tiny batch size)
SIZES = {"MLP": ((1, 36, 36), 512, 16), "SmallCNN": ((1, 28, 28), 128, 8)}


def build(kind: str, shape: tuple[int, ...], classes: int = 10) -> nn.Module:
    torch.manual_seed(0)
    if kind == "MLP":
        return MLP(shape, classes, hidden_widths=(128,) * 5)
    return SmallCNN(shape, classes, channels=(16, 32, 32))


def digit_like(batch: int, shape: tuple[int, ...], seed: int = 0) -> tuple[Tensor, Tensor]:
    """Smooth blobs inside the inscribed disc, so a rotation keeps the content in the frame."""
    generator = torch.Generator().manual_seed(seed)
    channels, height, width = shape
    coarse = torch.randn(batch, channels, height // 4, width // 4, generator=generator)
    x = F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=True)
    ys = torch.linspace(-1.0, 1.0, height).view(-1, 1)
    xs = torch.linspace(-1.0, 1.0, width).view(1, -1)
    x = x * (1.0 - (ys**2 + xs**2)).clamp(min=0.0)
    return x, torch.randint(0, 10, (batch,), generator=generator)


def steps(model: nn.Module, x: Tensor, y: Tensor) -> dict[str, Callable[[], Tensor]]:
    """The plain and the Lie training step on one model and one Adam optimiser."""
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-4)
    lie = LieDerivativeL2("rotation")

    def plain() -> Tensor:
        optimiser.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimiser.step()
        return loss.detach()

    def with_lie() -> Tensor:
        optimiser.zero_grad()
        loss = F.cross_entropy(model(x), y) + NU * lie(model, x)
        loss.backward()
        optimiser.step()
        return loss.detach()

    def one_pass() -> Tensor:
        optimiser.zero_grad()
        logits, penalty = lie.output_and_loss(model, x)
        loss = F.cross_entropy(logits, y) + NU * penalty
        loss.backward()
        optimiser.step()
        return loss.detach()

    return {"plain": plain, "Lie": with_lie, "one pass": one_pass}


def measure(kind: str, repeats: int, warmup: int, tiny: bool) -> dict[str, float]:
    shape, batch, tiny_batch = SIZES[kind]
    model = build(kind, shape)
    x, y = digit_like(tiny_batch if tiny else batch, shape)
    work = steps(model, x, y)
    for _ in range(warmup):
        for step in work.values():
            step()
    cpu: dict[str, list[float]] = {name: [] for name in work}
    wall: dict[str, list[float]] = {name: [] for name in work}
    for _ in range(repeats):
        for name, step in work.items():  # interleaved: both see the same machine load
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            step()
            cpu[name].append(time.process_time() - start_cpu)
            wall[name].append(time.perf_counter() - start_wall)
    result = {f"{name}_{clock}": 1e3 * statistics.median(values[name])
              for clock, values in (("cpu", cpu), ("wall", wall)) for name in work}
    for name in ("Lie", "one pass"):
        result[f"{name}_ratio_cpu"] = result[f"{name}_cpu"] / result["plain_cpu"]
        result[f"{name}_ratio_wall"] = result[f"{name}_wall"] / result["plain_wall"]
    result["batch"] = x.shape[0]
    return result


def check(kind: str) -> list[str]:
    """Problems with the Lie step of ``kind`` (empty: none); see ``--tiny`` in the docstring."""
    shape, _, tiny_batch = SIZES[kind]
    model = build(kind, shape).double().eval()
    x, y = digit_like(tiny_batch, shape)
    x = x.double()
    value = LieDerivativeL2("rotation")(model, x).detach()
    eps, rotations = 1e-6, ContinuousRotations()
    angle = torch.full((x.shape[0],), math.degrees(eps), dtype=torch.float64)
    with torch.no_grad():
        difference = (model(rotations.act(x, angle)) - model(rotations.act(x, -angle))) / (2 * eps)
    reference = difference.pow(2).sum(dim=-1).mean()
    problems = []
    relative = abs(float(value) - float(reference)) / float(reference)
    if not relative < 1e-3:
        problems.append(f"{kind}: Lie loss {float(value):.6g} vs finite difference "
                        f"{float(reference):.6g} (relative error {relative:.2g})")
    lie = LieDerivativeL2("rotation")
    logits, penalty = lie.output_and_loss(model, x)
    one_pass = (F.cross_entropy(logits, y) + NU * penalty).detach()
    two_passes = (F.cross_entropy(model(x), y) + NU * lie(model, x)).detach()
    # the same float64 kernels on the same numbers: equal to rounding
    if not abs(float(one_pass - two_passes)) <= 64 * torch.finfo(torch.float64).eps * float(
        two_passes
    ):
        problems.append(f"{kind}: one-pass loss {float(one_pass):.17g} differs from the two "
                        f"passes' {float(two_passes):.17g}")
    model = build(kind, shape).train()
    for name, step in steps(model, x.float(), y).items():
        before = [p.detach().clone() for p in model.parameters()]
        if not torch.isfinite(step()):
            problems.append(f"{kind}: the {name} step's loss is not finite")
        if all(torch.equal(p, q) for p, q in zip(before, model.parameters(), strict=True)):
            problems.append(f"{kind}: the {name} step changed no weight")
    return problems


def profile(kind: str, repeats: int) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    shape, batch, _ = SIZES[kind]
    model = build(kind, shape)
    x, y = digit_like(batch, shape)
    for name, step in steps(model, x, y).items():
        if name == "plain":
            continue
        step()
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(repeats):
                step()
        print(f"\n## torch.profiler: {repeats} {name} steps of the {kind}\n")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--tiny", action="store_true", help="small sizes, checked (CI)")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)
    repeats, warmup = (3, 1) if args.tiny else (args.repeats, args.warmup)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s), load {load:.1f}, ν = {NU:g}, "
          f"median of {repeats} interleaved steps")
    print("| model | batch | plain step CPU (ms) | Lie step CPU (ms) | ratio (CPU) | "
          "ratio (wall) | one-pass Lie step CPU (ms) | ratio (CPU) | ratio (wall) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for kind in args.models:
        r = measure(kind, repeats, warmup, args.tiny)
        print(f"| {kind} | {r['batch']} | {r['plain_cpu']:.2f} | {r['Lie_cpu']:.2f} | "
              f"**{r['Lie_ratio_cpu']:.2f}** | {r['Lie_ratio_wall']:.2f} | "
              f"{r['one pass_cpu']:.2f} | **{r['one pass_ratio_cpu']:.2f}** | "
              f"{r['one pass_ratio_wall']:.2f} |")
    if args.profile:
        for kind in args.models:
            profile(kind, 5)
    if args.tiny:
        problems = [problem for kind in args.models for problem in check(kind)]
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Speed of invreg's invariance metrics (not a test; results in benchmarks/RESULTS.md).

For a 5×128 MLP and a small CNN on 36×36 inputs with C4 (|G| = 4), median of repeated runs in
one process:

1. *overhead*: full-orbit DI + LI + orbit consistency with the default settings
   (``orbit_logits`` — building the orbit and the forwards it chunks automatically — then the
   three errors) ÷ the *best-chunked* plain forward over the same ``B·|G|`` pre-built inputs:
   the fastest of one forward and forwards of 1024, 256, 128 and 64 inputs (targets ≤ 1.10 for
   the MLP, ≤ 1.03 for the CNN); the ratio to one plain forward of all ``B·|G|`` inputs is
   printed too;
2. *speed-up* over measuring the same model on the same data (a) with Python loops — per
   sample and group element (batch size 1, as much research code does), and per group element
   (batched over samples) — and (b) with the ``tmeasures`` package (if importable), on the
   output layer and on every layer (its variance measures vs invreg's G-EED, both hooking the
   same modules); target ≥ 3×.

    python benchmarks/bench_metrics.py [--device cuda] [--batch-size 512] [--repeats 20]
                                       [--results benchmarks/RESULTS.md] [--tiny]

``--tiny`` runs a few samples once, without tmeasures, and checks that the default path's
DI, LI and consistency agree with the per-element loop's (exit status 1 if not).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import warnings

import torch
from timing import median_time
from torch import nn

from invreg.functional import (
    logit_invariance,
    logit_l2,
    orbit_consistency,
    orbit_logits,
    predictive_kl,
    predictive_kl_invariance,
)
from invreg.groups import Rotations
from invreg.metrics import LayerInvariance
from invreg.models import MLP, SmallCNN

INPUT_SHAPE = (1, 36, 36)
NUM_CLASSES = 9


# --------------------------------------------------------------------------- the ways to measure
def invreg_orbit_metrics(
    model: nn.Module, x: torch.Tensor, group, chunk_size: int | None = None
) -> tuple:
    orbit = orbit_logits(model, x, group, chunk_size=chunk_size)
    return (
        predictive_kl_invariance(orbit),
        logit_invariance(orbit),
        orbit_consistency(orbit),
    )


def loop_per_sample(model: nn.Module, x: torch.Tensor, group) -> tuple:
    """One forward per (sample, element): batch size 1."""
    kl = l2 = consistent = 0.0
    for i in range(x.shape[0]):
        xi = x[i : i + 1]
        ref = model(xi)
        same = True
        for g in range(1, group.order):
            out = model(group.act(xi, g))
            kl += predictive_kl(ref, out).item()
            l2 += logit_l2(ref, out).item()
            same &= bool(out.argmax(1) == ref.argmax(1))
        consistent += same
    pairs = x.shape[0] * (group.order - 1)
    return kl / pairs, l2 / pairs, consistent / x.shape[0]


def loop_per_element(model: nn.Module, x: torch.Tensor, group) -> tuple:
    """One batched forward per group element."""
    ref = model(x)
    kl = l2 = 0.0
    same = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    for g in range(1, group.order):
        out = model(group.act(x, g))
        kl += predictive_kl(ref, out).sum()
        l2 += logit_l2(ref, out).sum()
        same &= out.argmax(1) == ref.argmax(1)
    pairs = x.shape[0] * (group.order - 1)
    return kl / pairs, l2 / pairs, same.float().mean()


def leaf_layers(model: nn.Module) -> list[str]:
    """Module names of the leaves: the modules tmeasures' AutoActivationsModule hooks."""
    return [name for name, m in model.named_modules() if name and not list(m.children())]


def invreg_all_layers(model: nn.Module, x: torch.Tensor, group, normalize: bool) -> object:
    metric = LayerInvariance(group, leaf_layers(model), normalize=normalize).to(x.device)
    metric.update(model, x)
    return metric.compute()


def tmeasures_runner(model: nn.Module, x: torch.Tensor, group, head_only: bool, normalized: bool):
    """A closure that measures invariance with tmeasures, or None if it cannot be imported."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from tmeasures import pytorch as tmp
    except Exception as err:  # any import failure: report and skip
        return None, f"{type(err).__name__}: {err}"

    class GroupElement(tmp.PyTorchTransformation):
        def __init__(self, g: int) -> None:
            super().__init__()
            self.g = g

        def parameters(self):
            return torch.tensor([float(self.g)])

        def __call__(self, sample):  # one sample [C, H, W]: the group acts on a batch of one
            return group.act(sample.unsqueeze(0), self.g)[0]

    class Elements(tmp.PyTorchTransformationSet):
        def __init__(self) -> None:
            super().__init__([GroupElement(g) for g in range(group.order)])

        def id(self):
            return repr(group)

        def valid_input(self, shape):
            return True

        def copy(self):
            return Elements()

    samples = x.cpu()  # tmeasures pins its batches: its dataset must live on the CPU

    class Samples(torch.utils.data.Dataset):
        def __len__(self):
            return samples.shape[0]

        def __getitem__(self, i):
            return samples[i]

    head = model.head
    keep = (lambda m: m is head) if head_only else (lambda m: True)
    activations = tmp.AutoActivationsModule(model, filter=keep)
    options = tmp.PyTorchMeasureOptions(
        batch_size=x.shape[0],
        num_workers=0,
        verbose=False,
        model_device=str(x.device),
        measure_device=str(x.device),
        data_device="cpu",
    )
    measure = (
        tmp.NormalizedVarianceInvariance() if normalized else tmp.TransformationVarianceInvariance()
    )

    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return measure.eval(Samples(), Elements(), activations, options)

    return run, None


# --------------------------------------------------------------------------- main
def cpu_model_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown CPU"


#: plain-forward chunk sizes (model inputs per forward) tried for the best-chunked baseline
PLAIN_CHUNKS = (1024, 256, 128, 64)


def plain_forward(model: nn.Module, inputs: torch.Tensor, step: int) -> list[torch.Tensor]:
    return [model(inputs[i : i + step]) for i in range(0, inputs.shape[0], step)]


def agree(ours: tuple, loop: tuple, classes: int) -> bool:
    """DI, LI and consistency of two paths equal up to float32 rounding of the forward: sums
    over fan-ins of at most 1296 + 5·128 terms, ``terms · eps`` relative to the logits' scale,
    squared for LI, through softmax for DI."""
    eps = torch.finfo(torch.float32).eps
    tol = (1296 + 5 * 128 + classes) * eps
    di, li, cons = (float(v) for v in ours)
    di_l, li_l, cons_l = (float(v) for v in loop)
    return (
        abs(di - di_l) <= tol * max(1.0, abs(di_l))
        and abs(li - li_l) <= 2 * tol * max(1.0, abs(li_l))
        and cons == cons_l
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--loop-samples", type=int, default=64,
                        help="samples for the per-sample loop (timed, then scaled to the batch)")
    parser.add_argument("--slow-repeats", type=int, default=3,
                        help="repeats for the loops and tmeasures (seconds per run)")
    parser.add_argument("--chunk-size", type=int, default=32,
                        help="also time orbit_logits(chunk_size=...) (samples' orbits per forward)")
    parser.add_argument("--no-tmeasures", action="store_true")
    parser.add_argument("--results", default=None, help="also write the report to this file")
    parser.add_argument("--tiny", action="store_true", help="a few samples once; a correctness run")
    args = parser.parse_args(argv)
    if args.tiny:
        args.batch_size, args.repeats, args.warmup, args.slow_repeats = 12, 1, 0, 1
        args.loop_samples, args.chunk_size, args.no_tmeasures = 4, 4, True

    device = torch.device(args.device)
    torch.manual_seed(0)
    group = Rotations(4)
    models = {
        "MLP 5×128": MLP(INPUT_SHAPE, NUM_CLASSES, hidden_widths=(128,) * 5),
        "SmallCNN 16-32-32": SmallCNN(INPUT_SHAPE, NUM_CLASSES),
    }
    x = torch.randn(args.batch_size, *INPUT_SHAPE, device=device)
    inputs = group.orbit(x).reshape(-1, *INPUT_SHAPE)  # the same B·|G| inputs, pre-built
    if device.type == "cpu":
        machine = (
            f"{cpu_model_name()}, {torch.get_num_threads()} threads, load average "
            f"{os.getloadavg()[0]:.2f}"
        )
    else:
        machine = torch.cuda.get_device_name(device)
    lines = [
        f"- machine: {machine}; torch {torch.__version__}; device {device}",
        f"- batch B = {args.batch_size}, group C4 (|G| = 4), inputs {INPUT_SHAPE}; median of "
        f"{args.repeats} runs ({args.slow_repeats} for loops and tmeasures) after "
        f"{args.warmup} warm-up runs",
        "",
    ]
    table = [
        "| model | plain forward, one batch (ms) | best-chunked plain forward (ms) | DI+LI+"
        "consistency, defaults (ms) | ratio to best-chunked | ratio to one batch | of which "
        "orbit build (ms) | per-sample loop (ms) | speed-up | per-element loop (ms) | "
        "speed-up |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    ok = True
    chunk_table = [
        f"| model | plain forward in chunks of {args.chunk_size}·|G| (ms) | DI+LI+consistency, "
        f"chunk_size={args.chunk_size} (ms) | ratio | speed-up over per-sample loop |",
        "|---|---|---|---|---|",
    ]
    tm_table = [
        "| model | what | invreg (ms) | tmeasures (ms) | speed-up |",
        "|---|---|---|---|---|",
    ]
    tm_error = None
    step = args.chunk_size * group.order  # model inputs per chunk
    for name, model in models.items():
        model = model.to(device).eval()
        with torch.inference_mode():
            t_plain = median_time(lambda m=model: m(inputs), device, args.repeats, args.warmup)
            t_best, best_step = t_plain, inputs.shape[0]
            for plain_step in PLAIN_CHUNKS:
                if plain_step >= inputs.shape[0]:
                    continue
                t_step = median_time(
                    lambda m=model, k=plain_step: plain_forward(m, inputs, k),
                    device, args.repeats, args.warmup,
                )
                if t_step < t_best:
                    t_best, best_step = t_step, plain_step
            ok &= agree(invreg_orbit_metrics(model, x, group), loop_per_element(model, x, group),
                        NUM_CLASSES)
            t_ours = median_time(
                lambda m=model: invreg_orbit_metrics(m, x, group), device, args.repeats, args.warmup
            )
            t_build = median_time(lambda: group.orbit(x), device, args.repeats, args.warmup)
            sub = x[: args.loop_samples]
            t_sample = median_time(
                lambda m=model, s=sub: loop_per_sample(m, s, group), device, args.slow_repeats, 1
            ) * (args.batch_size / sub.shape[0])
            t_element = median_time(
                lambda m=model: loop_per_element(m, x, group), device, args.repeats, args.warmup
            )
        best = "one batch" if best_step == inputs.shape[0] else f"{best_step} inputs"
        table.append(
            f"| {name} | {1e3 * t_plain:.2f} | {1e3 * t_best:.2f} ({best}) | {1e3 * t_ours:.2f} "
            f"| {t_ours / t_best:.3f} | {t_ours / t_plain:.3f} | "
            f"{1e3 * t_build:.2f} | {1e3 * t_sample:.0f} | {t_sample / t_ours:.1f}× | "
            f"{1e3 * t_element:.2f} | {t_element / t_ours:.2f}× |"
        )
        print(table[-1], flush=True)
        with torch.inference_mode():
            t_plain_chunks = median_time(
                lambda m=model: plain_forward(m, inputs, step),
                device,
                args.repeats,
                args.warmup,
            )
            t_chunked = median_time(
                lambda m=model: invreg_orbit_metrics(m, x, group, args.chunk_size),
                device,
                args.repeats,
                args.warmup,
            )
        chunk_table.append(
            f"| {name} | {1e3 * t_plain_chunks:.2f} | {1e3 * t_chunked:.2f} | "
            f"{t_chunked / t_plain_chunks:.3f} | {t_sample / t_chunked:.1f}× |"
        )
        print(chunk_table[-1], flush=True)
        if args.no_tmeasures:
            continue
        comparisons = [
            ("output layer: DI+LI+consistency vs TransformationVarianceInvariance", True, False,
             lambda m=model: invreg_orbit_metrics(m, x, group)),
            ("every leaf layer: G-EED vs TransformationVarianceInvariance", False, False,
             lambda m=model: invreg_all_layers(m, x, group, normalize=False)),
            ("every leaf layer: normalised G-EED vs NormalizedVarianceInvariance", False, True,
             lambda m=model: invreg_all_layers(m, x, group, normalize=True)),
        ]  # fmt: skip
        for what, head_only, normalized, ours in comparisons:
            run, tm_error = tmeasures_runner(model, x, group, head_only, normalized)
            if run is None:
                break
            with torch.inference_mode():
                t_ours = median_time(ours, device, args.repeats, args.warmup)
                t_tm = median_time(run, device, args.slow_repeats, 1)
            tm_table.append(
                f"| {name} | {what} | {1e3 * t_ours:.1f} | {1e3 * t_tm:.0f} | "
                f"{t_tm / t_ours:.1f}× |"
            )
            print(tm_table[-1], flush=True)
    report = "\n".join(lines + table + [""] + chunk_table)
    if args.no_tmeasures:
        report += "\n\n(tmeasures skipped: --no-tmeasures)"
    elif tm_error is not None:
        report += f"\n\ntmeasures could not be imported ({tm_error}); only the loops are compared."
    else:
        report += "\n\n" + "\n".join(tm_table)
    print("\n" + report)
    if args.results:
        with open(args.results, "w") as handle:
            handle.write(report + "\n")
    if not ok:
        print("the default path and the per-element loop disagree", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Write the pinned values of ``tests/pins/*.json`` (the cases of ``pin_cases.py``).

The files hold the numbers of commit f7e01f9, the code before the refactor of the saliency
metric, the report, the groups, ``InvarianceModule`` and the evaluation keys. They were made
with that commit checked out in a separate work tree and this script run on it, one torch
thread (as the test suite runs), from the repository root::

    git worktree add /tmp/pinbase f7e01f9
    PYTHONPATH=/tmp/pinbase OMP_NUM_THREADS=1 WANDB_MODE=disabled \\
        .venv/bin/python tests/pins/regenerate.py
    git worktree remove --force /tmp/pinbase

``--cases NAME ...`` writes some cases only (``table1_quick`` takes minutes); ``--out DIR``
writes elsewhere (to compare two runs); ``--threads N`` runs torch on N threads. Regenerate
only for a change that is meant to change the numbers, and say which in the commit.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import pin_cases  # noqa: E402  (next to this script)


def package_commit() -> str:
    """The commit of the checkout the ``invreg`` package is imported from."""
    import invreg

    root = Path(invreg.__file__).resolve().parent.parent
    done = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                          text=True)
    return done.stdout.strip() or "unknown"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=list(pin_cases.CASES),
                        default=list(pin_cases.CASES))
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    os.environ.setdefault("WANDB_MODE", "disabled")
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    commit = package_commit()
    import invreg

    print(f"invreg from {invreg.__file__} (commit {commit})", file=sys.stderr)
    for name in args.cases:
        function, terms, _ = pin_cases.CASES[name]
        with tempfile.TemporaryDirectory() as folder:
            result = function(Path(folder))
        values, text = (result["values"], result["text"]) if "values" in result else (result, {})
        rtol, atol = pin_cases.tolerances(terms, values)
        pinned = {"commit": commit, "terms": terms, "rtol": rtol, "atol": atol,
                  "values": values, "text": text}
        path = args.out / f"{name}.json"
        path.write_text(json.dumps(pinned, indent=1, sort_keys=True) + "\n")
        print(f"{path}: {len(values)} values, {len(text)} cells", file=sys.stderr)


if __name__ == "__main__":
    main()

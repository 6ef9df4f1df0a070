"""Run by test_callback_ddp.py: ``python ddp_callbacks_worker.py OUT.json``.

Fits (lr 0: the weights stay at their seeded initialisation), validates and tests a tiny
module with all four callbacks under DDP on two CPU processes (gloo). Rank 0 writes the
callbacks' histories to OUT.json; every rank writes the shard sizes it evaluated to
OUT.json.rank<r>.
"""

import json
import os
import sys


def run(out: str, devices: int) -> dict:
    from callback_helpers import TinyData, fast_callbacks, make_trainer, tiny_module

    from invreg.callbacks import InvarianceCallback

    shard_sizes: list[int] = []
    original = InvarianceCallback._subset

    def counting(self, trainer, pl_module, split):
        subset = original(self, trainer, pl_module, split)
        shard_sizes.append(len(subset))
        return subset

    InvarianceCallback._subset = counting
    try:
        callbacks = fast_callbacks()
        for callback in callbacks:
            callback.num_samples = 15  # odd: the two shards differ in size
        module = tiny_module()
        module.lr = 0.0
        trainer = make_trainer(os.path.dirname(out), callbacks, devices=devices,
                               strategy="ddp" if devices > 1 else "auto")
        data = TinyData()
        trainer.fit(module, data)
        trainer.validate(module, data)
        trainer.test(module, data)
    finally:
        InvarianceCallback._subset = original
    with open(f"{out}.rank{trainer.global_rank}", "w") as handle:
        json.dump(shard_sizes, handle)
    result = {type(c).__name__: c.history for c in callbacks}
    result["gathered"] = gathered(trainer)
    if trainer.is_global_zero:
        with open(out, "w") as handle:
            json.dump(result, handle)
    return result


def gathered(trainer) -> dict:
    """``gather_per_sample`` of float64 values ``[n, 2]`` (``position / 3`` and its negative,
    not representable in float32) on shards of 15 samples (8 + 7) and of 1 sample (1 + 0), as
    hex strings: bit for bit, in subset order."""
    import torch

    from invreg.callbacks.base import InvarianceCallback, Subset

    rank, world = trainer.global_rank, trainer.world_size
    found = {}
    for total in (15, 1):
        index = torch.arange(rank, total, world)
        values = torch.stack([index.double() / 3, -index.double() / 3], 1)
        subset = Subset(torch.zeros(len(index), 1), None, index, total)
        result = InvarianceCallback.gather_per_sample(trainer, subset, values)
        found[str(total)] = [str(result.dtype), [[v.hex() for v in row] for row in result.tolist()]]
    return found


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:0] = [here, os.path.dirname(here)]  # its callback_helpers, and the tests' tiny module
    import torch

    torch.set_num_threads(1)
    run(sys.argv[1], 2)

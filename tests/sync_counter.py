"""Run a pretraining with every torch.Tensor call that makes the host wait for the device counted
by the line of this repository's code that made it (DeepSpeed's and the data pipeline's own are
not ours to count; on a CPU nothing actually waits, so every call counts as it would on a GPU):

    python -m tests.sync_counter counts.json -- --config ... overrides
"""
import collections
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
OURS = ("dnachunker", "train")
SYNCS = ("item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__", "__index__")
counts: collections.Counter = collections.Counter()


def _counting(name: str):
    original = getattr(torch.Tensor, name)

    def call(self, *args, **kwargs):
        frame = sys._getframe(1)
        while frame is not None and "/torch/" in frame.f_code.co_filename:
            frame = frame.f_back
        if frame is not None:
            path = Path(frame.f_code.co_filename)
            if path.is_relative_to(ROOT) and path.relative_to(ROOT).parts[0] in OURS:
                counts[f"{path.relative_to(ROOT)}:{frame.f_lineno} {name}"] += 1
        return original(self, *args, **kwargs)
    setattr(torch.Tensor, name, call)


if __name__ == "__main__":
    out, args = sys.argv[1], sys.argv[sys.argv.index("--") + 1:]
    for name in SYNCS:
        _counting(name)
    from train.pretrain import main
    code = main(args)
    Path(out).write_text(json.dumps(dict(counts), indent=1))
    sys.exit(code)

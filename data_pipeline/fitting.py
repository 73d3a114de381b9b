"""Fit a model config's tokenization (dnachunker.tokenization) on the windows of a shard set: the
one place where a tokenization is fitted on pretraining data (pretraining at start-up, the sweep's
points through it, `python -m evaluation bpe`).

The windows are a fixed draw (seed 0) of `fit_samples` training windows, as the model sees them
before masking (uppercase; the draw does not depend on the number of ranks or workers), so the
same shards and arguments always give the same file.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

from dnachunker import tokenization
from dnachunker.tokenizer import decode

from .corpus import open_split


def fit_tokenization(model_cfg, root: str | Path, directory: str | Path, split: str = "train"):
    """Fit model_cfg's tokenization on `root`'s split and save it into `directory` (created; a
    tokenization file there is replaced atomically) -> the fitted Tokenization."""
    samples = open_split(root, split)  # a corpus: uniform over its genomes' windows
    n = getattr(tokenization.build(model_cfg).args, "fit_samples", len(samples))
    pick = np.random.default_rng(0).permutation(len(samples))[:n]
    print(f"fitting tokenization {model_cfg.tokenization!r} {model_cfg.tokenization_args} on {len(pick)} "
          f"{split} windows of {root}", file=sys.stderr, flush=True)
    fitted = tokenization.fit(model_cfg, (decode(samples[int(i)]["bases"]) for i in pick))
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".fitting-", dir=directory) as tmp:
        fitted.save(Path(tmp))
        for f in Path(tmp).iterdir():  # renamed into place: complete or absent
            f.replace(directory / f.name)
    return fitted

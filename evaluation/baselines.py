"""Classical baselines that every study computes itself: no pretraining, no network beyond a small CNN.

A baseline is scored exactly as a pretrained model is (evaluation.finetune.evaluate): the same
capped subsample of each task, the same valid split per seed (Task.split_valid), the same metrics,
its hyperparameter (or epoch) chosen on the valid split. Registry: BASELINES; one class and one
entry add a baseline, and `--baseline NAME` (evaluation suite) or `baselines: [NAME]` (a sweep)
uses it.

  kmer_lr  logistic regression on k-mer frequencies, k = 1..6 (5460 features: counts of each k-mer
           over the sequence divided by the number of k-mers of that k; N and other codes break
           k-mers), standardised on the train split; C from `Cs`, chosen by the task's metric on
           valid (scikit-learn); for a regression task, ridge regression with alpha = 1 / C
  cnn      the Genomic Benchmarks baseline CNN (ML-Bioinfo-CEITEC/genomic_benchmarks, models/torch.py):
           embedding 100 -> 3 x [Conv1d k=8 (16, 8, 4 channels), BatchNorm, ReLU, MaxPool 2] ->
           Linear 512 -> Linear to the classes; Adam lr 1e-3, batch 64, the epoch of `epochs` best
           on valid by the task's metric. Theirs is binary only (one sigmoid output); ours has one
           logit per class (softmax cross-entropy), so that 3-class splice runs too; one output and
           squared error for a regression task. Sequences are padded (or cut) to the longest
           training sequence.
  onehot   the bases themselves, one-hot (A, C, G, T; N and other codes all zero), read by the
           task's probe (evaluation.probes) and fitted by the same linear head as a pretrained
           model's probe: base composition under `mean`, the bases around the site under
           `window`. What a pretrained model adds beyond its input is its row minus this one.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from dnachunker import tokenizer

from .metrics import all_metrics, score
from .task_types import TaskType, task_type


def encode(seq: str) -> np.ndarray:
    """'ACGTN' -> [0, 1, 2, 3, 4] (either case; other IUPAC codes -> 4): the tokenizer's ids less A."""
    return tokenizer.encode(seq)[0].astype(np.int64) - tokenizer.A


def kmer_frequencies(seq: str, ks=(1, 2, 3, 4, 5, 6)) -> np.ndarray:
    """(sum 4^k,) frequency of every k-mer of every k, A < C < G < T order; k-mers with N skipped."""
    codes = encode(seq)
    out = []
    for k in ks:
        counts = np.zeros(4 ** k)
        n = len(codes) - k + 1
        if n > 0:
            windows = np.lib.stride_tricks.sliding_window_view(codes, k)
            ok = (windows < 4).all(1)
            index = (windows[ok] * 4 ** np.arange(k - 1, -1, -1)).sum(1)
            counts = np.bincount(index, minlength=4 ** k) / max(ok.sum(), 1)
        out.append(counts)
    return np.concatenate(out)


@dataclass
class KmerLogReg:
    ks: tuple = (1, 2, 3, 4, 5, 6)
    Cs: tuple = (0.001, 0.01, 0.1, 1.0)
    name = "kmer_lr"
    label = "k-mer LR (baseline)"

    def fit_predict(self, train, valid, test, width: int, seed: int, cfg, tt: TaskType
                    ) -> tuple[np.ndarray, float]:
        """-> (the task type's output on test, valid `metric` of the chosen C)."""
        from sklearn.preprocessing import StandardScaler
        x = {name: np.stack([kmer_frequencies(s, self.ks) for s, _ in data]) for name, data in
             (("train", train), ("valid", valid), ("test", test))}
        y = {name: np.array([label for _, label in data]) for name, data in (("train", train), ("valid", valid))}
        scale = StandardScaler().fit(x["train"])
        x = {k: scale.transform(v) for k, v in x.items()}
        best = (-2.0, None)
        for c in self.Cs:
            clf = tt.sklearn(c, seed).fit(x["train"], y["train"])
            value = score(cfg.metric, y["valid"], tt.predict(clf, x["valid"], width))
            if value > best[0]:
                best = (value, clf)
        return tt.predict(best[1], x["test"], width), best[0]


class GBCNN(nn.Module):
    """(b, L) codes 0..5 -> (b, outputs) logits (or values); the Genomic Benchmarks baseline layout."""

    def __init__(self, outputs: int, length: int, embed: int = 100):
        super().__init__()
        layers, width = [], embed
        for out in (16, 8, 4):
            layers += [nn.Conv1d(width, out, 8), nn.BatchNorm1d(out), nn.ReLU(), nn.MaxPool1d(2)]
            width = out
        self.embed = nn.Embedding(6, embed)
        self.convs = nn.Sequential(*layers)
        flat = self.convs(torch.zeros(1, embed, length)).numel()
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(flat, 512), nn.Linear(512, outputs))

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return self.head(self.convs(self.embed(codes).transpose(1, 2)))


@dataclass
class GenomicBenchmarksCNN:
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    name = "cnn"
    label = "CNN (baseline)"

    @staticmethod
    def _tensor(data, length: int, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        x = np.full((len(data), length), 5, dtype=np.int64)  # 5: padding
        for i, (s, _) in enumerate(data):
            c = encode(s)[:length]
            x[i, :len(c)] = c
        return torch.from_numpy(x), torch.tensor([y for _, y in data], dtype=dtype)

    def fit_predict(self, train, valid, test, width: int, seed: int, cfg, tt: TaskType
                    ) -> tuple[np.ndarray, float]:
        torch.manual_seed(seed)
        length = max(len(s) for s, _ in train)
        (xtr, ytr), (xva, yva), (xte, _) = (self._tensor(d, length, tt.target) for d in (train, valid, test))
        model = GBCNN(width, length)
        opt = torch.optim.Adam(model.parameters(), lr=self.lr)
        g = torch.Generator().manual_seed(seed)

        @torch.no_grad()
        def predict(x):
            model.eval()
            return torch.cat([tt.output(model(b)) for b in x.split(256)]).numpy()
        best = (-2.0, None)
        for _ in range(self.epochs):
            model.train()
            for idx in torch.randperm(len(xtr), generator=g).split(self.batch_size):
                if len(idx) < 2:  # BatchNorm needs two samples
                    continue
                loss = tt.loss(model(xtr[idx]), ytr[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
            value = score(cfg.metric, yva.numpy(), predict(xva))
            if value > best[0]:
                best = (value, copy.deepcopy(model.state_dict()))
        model.load_state_dict(best[1])
        return predict(xte), best[0]


@dataclass
class OneHot:
    name = "onehot"
    label = "one-hot bases (baseline)"

    def fit_predict(self, train, valid, test, width: int, seed: int, cfg, tt: TaskType
                    ) -> tuple[np.ndarray, float]:
        from .probes import fit_linear_head, probe

        def features(data):
            b = tokenizer.batch_encode([s for s, _ in data], max_len=cfg.max_len)
            bases = torch.nn.functional.one_hot(b.input_ids, 7)[..., list(tokenizer.BASES)].float()
            return probe(cfg.probe)(bases, b.valid, cfg.probe)
        x = {name: features(d) for name, d in (("train", train), ("valid", valid), ("test", test))}
        y = {name: torch.tensor([label for _, label in d], dtype=tt.target) for name, d in (("train", train),
                                                                                        ("valid", valid))}
        lr = (cfg.lr if cfg.mode == "probe" else None) or 1e-2  # a linear probe's rate, in a fine-tuning suite too
        return fit_linear_head(x, y, width, tt, cfg.metric, seed, cfg.epochs, lr, cfg.batch_size, cfg.weight_decay)


BASELINES = {"kmer_lr": KmerLogReg, "cnn": GenomicBenchmarksCNN, "onehot": OneHot}


def baseline(name: str):
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r} (known: {', '.join(BASELINES)})")
    return BASELINES[name]()


def score_baseline(model, task, cfg, seed: int) -> tuple[dict[str, float], np.ndarray]:
    """One seed of a baseline on a (capped) task, under the suite's protocol `cfg` (FinetuneConfig:
    valid split, metric, probe): its valid split, fit (choosing by the metric on valid) -> (test
    metrics of the task's type and the valid score, the output on test)."""
    tt = task_type(task.type)
    train, valid = task.split_valid(seed, cfg.val_fraction, cfg.valid_split)
    out, valid_score = model.fit_predict(train, valid, task.test, tt.width(task.n_classes), seed, cfg, tt)
    return {**all_metrics([y for _, y in task.test], out, tt.metrics), f"valid_{cfg.metric}": valid_score}, out

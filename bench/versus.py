"""Training speed of this tree against an earlier commit, measured in one run.

    python -m bench.versus --against REV [--model configs/model/small.yaml] [--length 1024]
                           [--batch 16] [--threads 2] [--steps 3] [--rounds 3] [--precision fp32]
                           [key=value ...]

The commit is checked out into a temporary git worktree; each round runs one fresh process per
tree (the other tree's first), each timing `--steps` training steps (forward, backward, AdamW;
BERT masking; the same real chr20 windows) after a warm-up step, with that tree's own code and its
own copy of the model config (so each commit's defaults), `--threads` PyTorch threads and
GOMP_SPINCOUNT set before torch loads. key=value overrides and `--precision bf16` (the forward
under bf16 autocast with fp32 weights, as training's `precision: bf16`) apply to this tree only (a
setting the old code may not have); the old tree runs in fp32, as the CPU study config trains.
Reported: each tree's training bp/s (its fastest step over all rounds), the spread of its rounds
(slowest / fastest round's best step: the machine's noise), its processes' peak RSS (model,
optimizer, activations and the Python process), and the ratio new / old.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from dnachunker.cli import parser
from dnachunker.fileio import markdown_table

from .model import ROOT, real_window

# runs inside each tree: only APIs every commit of this project has had
CHILD = """
import json, resource, sys, time
import dnachunker
import torch
from dnachunker import DNAChunker, DNAChunkerConfig
from dnachunker.masking import bert_mask
from dnachunker.tokenizer import batch_encode
a = json.loads(sys.argv[1])
torch.set_num_threads(a["threads"])
seqs = open(a["windows"]).read().split()
cfg = DNAChunkerConfig.load(a["model"], f"max_len={a['length']}", *a["overrides"])
torch.manual_seed(0)
model = DNAChunker(cfg).train()
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
b = batch_encode(seqs)
ids, labels = bert_mask(b.input_ids, b.valid, torch.Generator().manual_seed(0))
times = []
for i in range(a["steps"] + 1):
    t = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a["precision"] == "bf16"):
        out = model(ids, b.valid, labels)
    opt.zero_grad()
    out.loss.backward()
    opt.step()
    times.append(time.perf_counter() - t)
print(json.dumps({"seconds": min(times[1:]), "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def run_tree(tree: Path, args: dict) -> dict:
    """-> {"seconds": its fastest step, "rss": the process's peak RSS in bytes}"""
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": str(args["threads"]),
           "GOMP_SPINCOUNT": os.environ.get("GOMP_SPINCOUNT", "3000")}
    r = subprocess.run([sys.executable, "-c", CHILD, json.dumps(args)], cwd=tree, env=env, capture_output=True,
                       text=True)
    if r.returncode != 0:
        raise SystemExit(f"the step in {tree} failed:\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv=None, prog: str | None = None):
    ap = parser(prog or f"python -m {__spec__.name}", __doc__)
    ap.add_argument("--against", required=True, help="the earlier commit (any git revision)")
    ap.add_argument("--model", default="configs/model/small.yaml", help="model config, relative to each tree")
    ap.add_argument("--length", type=int, default=1024, help="window length (bp)")
    ap.add_argument("--batch", type=int, default=16, help="windows per step")
    ap.add_argument("--threads", type=int, default=2, help="PyTorch threads of each process")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per process")
    ap.add_argument("--rounds", type=int, default=3, help="fresh processes per tree, alternating")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                    help="this tree's: bf16 = the forward under bf16 autocast (fp32 weights)")
    ap.add_argument("overrides", nargs="*", help="key=value for this tree's model config")
    a = ap.parse_args(argv)
    rev = subprocess.run(["git", "rev-parse", "--short", a.against], cwd=ROOT, capture_output=True, text=True)
    if rev.returncode != 0:
        raise SystemExit(f"--against {a.against}: not a revision of {ROOT} ({rev.stderr.strip()})")
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "old"
        subprocess.run(["git", "worktree", "add", "--detach", str(old), a.against], cwd=ROOT, check=True,
                       capture_output=True)
        try:
            windows = Path(tmp) / "windows.txt"
            seq = real_window(a.length * a.batch)
            windows.write_text("\n".join(seq[i * a.length:(i + 1) * a.length] for i in range(a.batch)))
            common = {"windows": str(windows), "model": a.model, "length": a.length, "threads": a.threads,
                      "steps": a.steps}
            trees = {f"{rev.stdout.strip()} (old)": (old, [], "fp32"),
                     "this tree (new)": (ROOT, a.overrides, a.precision)}
            best, rss = {name: [] for name in trees}, {name: 0 for name in trees}
            for k in range(a.rounds):
                for name, (tree, overrides, precision) in trees.items():
                    r = run_tree(tree, {**common, "overrides": overrides, "precision": precision})
                    best[name].append(r["seconds"])
                    rss[name] = max(rss[name], r["rss"])
                    print(f"round {k + 1}/{a.rounds} {name}: {best[name][-1]:.3f} s/step", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=ROOT, capture_output=True)
    bp = a.length * a.batch
    rows = [{"tree": name, "model": a.model, "overrides": " ".join(trees[name][1]) or "–", "precision": trees[name][2],
             "training bp/s": bp / min(t), "spread": max(t) / min(t), "peak RSS (GB)": rss[name] / 1e9}
            for name, t in best.items()]
    print(markdown_table(rows))
    old_s, new_s = (min(t) for t in best.values())
    print(f"\nnew / old training bp/s: {old_s / new_s:.3f} ({a.batch} x {a.length} bp, {a.threads} threads)")


if __name__ == "__main__":
    main()

"""python -m evaluation COMMAND ...

  finetune   fine-tune (or --mode probe: linear probe) a pretrained model on a classification task,
             several seeds; writes <out>/<task>_<mode>.csv (per seed) and appends to <out>/results.md
  suite      every task of an evaluation suite (configs/eval/) on one model, one protocol;
             <out>/<column>.json per task (skipped on a re-run with the same weights)
  bpe        fit the BPE baseline tokenization on pretraining shards -> <out>/bpe.json
  segment    chunk-length table per region type (repeats from soft-masking; exons from a GTF) and
             a PNG + HTML view of both stages' boundaries on one window
  robustness fraction of boundaries unchanged after a random SNV / 1-bp insertion / deletion, for
             DNAChunker and the single-nucleotide, 6-mer and BPE tokenizations

Examples:
  python -m evaluation finetune --model runs/tiny_chr20/export --format gue \\
      --path ../shared/data/gue_from_DeepGene/prom/prom_300_tata --mode probe --seeds 0 1 2
  python -m evaluation bpe --shards data/chr20_demo --out runs/bpe
  python -m evaluation segment --model runs/tiny_chr20/export \\
      --fasta ../shared/data/ncbi_softmasked_small_chroms/DmelanDM6_4_*.fna.gz --gtf .../DmelanDM6_4.gtf.gz
  python -m evaluation robustness --model runs/tiny_chr20/export --bpe runs/bpe \\
      --fasta ../shared/data/hg19_chr20_softmasked/chr20.hg19.softmasked.fa.gz
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from dnachunker.fileio import markdown_table, write_csv


def _windows(fasta: str, length: int, count: int, seed: int = 0):
    """Real N-free windows of the first record of a FASTA: (sequences with case, record name, starts)."""
    from dnachunker.fasta import read_fasta
    from dnachunker.tokenizer import N, decode
    name, codes, soft = next(iter(read_fasta(fasta)))
    starts = np.arange(0, len(codes) - length, length)
    ok = [s for s in starts if not (codes[s:s + length] == N).any()]
    pick = sorted(np.random.default_rng(seed).permutation(ok)[:count])
    return [decode(codes[s:s + length], soft[s:s + length]) for s in pick], name, pick, len(codes)


def cmd_finetune(a) -> int:
    from .finetune import FinetuneConfig, evaluate
    from .tasks import load_task
    task = load_task(a.format, a.path, task=a.nt_task, fasta=a.fasta)
    cfg = FinetuneConfig(mode=a.mode, epochs=a.epochs, lr=a.lr, batch_size=a.batch_size, max_len=a.max_len,
                         seeds=a.seeds, max_train=a.max_train)
    rows, summary = evaluate(a.model, task, cfg)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = task.name.replace("/", "_") + f"_{a.mode}"
    write_csv(rows, out / f"{stem}.csv")
    with open(out / "results.md", "a") as fh:
        fh.write(f"\n{a.model} · {task.name} · {a.mode}\n\n" + markdown_table([summary]) + "\n")
    print(markdown_table(rows) + "\n\n" + markdown_table([summary]))
    print(f"results: {out / f'{stem}.csv'} (per seed), {out / 'results.md'} (summary appended)", file=sys.stderr)
    return 0


def cmd_suite(a) -> int:
    from .suite import SuiteConfig, run_suite
    suite = SuiteConfig.load(a.suite, a.overrides)
    results = run_suite(a.model, suite, a.out, a.device)
    print(markdown_table([{"column": c, **r} for c, r in results.items()],
                         ["column", "task", "mcc", "mcc_std", "accuracy", "f1", "majority_accuracy"]))
    print(f"results: {Path(a.out).resolve()}", file=sys.stderr)
    return 0


def _bpe_config(vocab_size: int | None = None, samples: int | None = None):
    """A model config naming only the BPE tokenization (what fitting and loading need)."""
    from dnachunker import DNAChunkerConfig
    args = {k: v for k, v in (("vocab_size", vocab_size), ("fit_samples", samples)) if v is not None}
    return DNAChunkerConfig(tokenization="bpe", tokenization_args=args).validate()


def cmd_bpe(a) -> int:
    from data_pipeline.fitting import fit_tokenization
    fit_tokenization(_bpe_config(a.vocab_size, a.max_samples), a.shards, a.out)
    print(f"BPE ({a.vocab_size} tokens) fitted on {a.shards} -> {Path(a.out) / 'bpe.json'}")
    return 0


def _model_segmenter(model_dir):
    from dnachunker import DNAChunker
    model = DNAChunker.from_pretrained(model_dir)
    return model, lambda seqs: [s[0] for s in model.segment(seqs)]


def cmd_segment(a) -> int:
    from .analysis import exon_mask, html_view, lengths_by_region, png_view
    model, _ = _model_segmenter(a.model)
    seqs, chrom, starts, chrom_len = _windows(a.fasta, a.length, a.count)
    segs = model.segment(seqs)
    regions = {"repeat": [np.array([c.islower() for c in s]) for s in seqs]}
    if a.gtf:
        exons = exon_mask(a.gtf, chrom, chrom_len)
        regions["exon"] = [exons[s:s + a.length] for s in starts]
    rows = []
    for rname, masks in regions.items():
        for stage in range(len(segs[0])):
            split = [lengths_by_region(seg[stage], m) for seg, m in zip(segs, masks)]
            for side, label in (("in", rname), ("out", f"non-{rname}")):
                lens = np.concatenate([x[side] for x in split])
                rows.append({"region": label, "stage": stage, "chunks": len(lens),
                             "mean_bp": float(lens.mean()) if len(lens) else float("nan"),
                             "median_bp": float(np.median(lens)) if len(lens) else float("nan")})
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, out / "chunk_lengths.csv")
    (out / "segmentation.html").write_text(html_view(seqs[0], segs[0], f"{chrom}:{starts[0]}"))
    png_view(seqs[0], segs[0], out / "segmentation.png", regions["repeat"][0])
    print(markdown_table(rows))
    print(f"views: {out / 'segmentation.html'}, {out / 'segmentation.png'}")
    return 0


def cmd_robustness(a) -> int:
    from dnachunker import tokenization
    from dnachunker.tokenization import KmerArgs, Kmer, NoArgs, Single

    from .analysis import robustness
    seqs, *_ = _windows(a.fasta, a.length, a.count)
    fixed = {"single-nucleotide": Single(NoArgs()), "6-mer": Kmer(KmerArgs(6))}
    if a.bpe:
        fixed["BPE"] = tokenization.load(_bpe_config(), a.bpe)
    batch = {name: (lambda ss, t=t: [t.starts(s) for s in ss]) for name, t in fixed.items()}
    if a.model:
        batch = {"DNAChunker (stage 0)": _model_segmenter(a.model)[1], **batch}
    rows = [{"tokenization": name, **{k: robustness(seg, seqs, k, a.seed) for k in ("snv", "insertion", "deletion")}}
            for name, seg in batch.items()]
    print(markdown_table(rows))
    if a.out:
        write_csv(rows, Path(a.out))
        print(f"results: {a.out}", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m evaluation", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("finetune", help="fine-tune or probe on a classification task")
    f.add_argument("--model", required=True, help="save_pretrained directory (e.g. <out_dir>/export)")
    f.add_argument("--format", required=True, choices=["gue", "csv", "nt", "gb", "gbseq", "janggu"])
    f.add_argument("--path", required=True)
    f.add_argument("--nt-task", help="task name for --format nt")
    f.add_argument("--fasta", help="reference FASTA for --format gb (coordinates)")
    f.add_argument("--mode", default="finetune", choices=["finetune", "probe"])
    f.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    f.add_argument("--epochs", type=int, default=3)
    f.add_argument("--lr", type=float, default=None)
    f.add_argument("--batch-size", type=int, default=32)
    f.add_argument("--max-len", type=int, default=None)
    f.add_argument("--max-train", type=int, default=None)
    f.add_argument("--out", default="results/eval")
    su = sub.add_parser("suite", help="an evaluation suite (configs/eval/*.yaml) on one model")
    su.add_argument("--model", required=True, help="save_pretrained directory (e.g. <out_dir>/export)")
    su.add_argument("--suite", required=True, help="suite YAML, e.g. configs/eval/paper_columns.yaml")
    su.add_argument("--out", required=True, help="directory for one result JSON per task")
    su.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    su.add_argument("overrides", nargs="*", help="key=value overrides of the suite, e.g. seeds=[0]")
    b = sub.add_parser("bpe", help="fit the BPE baseline tokenization on shards")
    b.add_argument("--shards", required=True)
    b.add_argument("--vocab-size", type=int, default=4096)
    b.add_argument("--max-samples", type=int, default=20000)
    b.add_argument("--out", required=True, help="directory for bpe.json")
    s = sub.add_parser("segment", help="chunk lengths per region type + boundary views")
    s.add_argument("--model", required=True)
    s.add_argument("--fasta", required=True)
    s.add_argument("--gtf")
    s.add_argument("--length", type=int, default=1024)
    s.add_argument("--count", type=int, default=64)
    s.add_argument("--out", default="results/segmentation")
    r = sub.add_parser("robustness", help="boundary agreement under SNVs and 1-bp indels")
    r.add_argument("--model")
    r.add_argument("--bpe", help="directory with a fitted bpe.json (the bpe command's --out, or a BPE model's export)")
    r.add_argument("--fasta", required=True)
    r.add_argument("--length", type=int, default=1024)
    r.add_argument("--count", type=int, default=64)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--out")
    a = p.parse_args(argv)
    from data_pipeline.errors import DataError
    from dnachunker.config import ConfigError
    from dnachunker.errors import describe

    from .tasks import EvalDataError
    try:
        return {"finetune": cmd_finetune, "suite": cmd_suite, "bpe": cmd_bpe, "segment": cmd_segment,
                "robustness": cmd_robustness}[a.cmd](a)
    except (EvalDataError, DataError, ConfigError, OSError) as e:
        print(f"error: {describe(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

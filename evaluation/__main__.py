"""dnachunker eval COMMAND ...   (or python -m evaluation COMMAND ...)

  finetune   fine-tune (or --mode probe: linear probe) a pretrained model on a classification task,
             several seeds; writes <out>/<task>_<mode>.csv (per seed) and appends to <out>/results.md
  suite      every task of an evaluation suite (configs/eval/) on one model, one protocol, or on a
             classical baseline (--baseline kmer_lr | cnn, evaluation.baselines);
             <out>/<column>.json per task (skipped on a re-run with the same weights)
  bpe        fit the BPE baseline tokenization on pretraining shards -> <out>/bpe.json
  mlm        masked-LM loss of a model on a shard set or corpus split, per genome on a corpus
  segment    chunk-length statistics (mean with its interval over windows, median, the router's own
             ratio) per genome of a corpus or for one FASTA, per region type (repeats from
             soft-masking; exons from a GTF), their distribution as a PNG, and a PNG + HTML view of
             both stages' boundaries on one window per genome
  robustness fraction of boundaries unchanged after a random SNV / 1-bp insertion / deletion, for
             DNAChunker and the single-nucleotide, 6-mer and BPE tokenizations; a table and a plot

Examples:
  python -m evaluation finetune --model runs/tiny_chr20/export --format gue \\
      --path ../shared/data/gue_from_DeepGene/prom/prom_300_tata --mode probe --seeds 0 1 2
  python -m evaluation bpe --shards data/chr20_demo --out runs/bpe
  python -m evaluation segment --model runs/tiny_chr20/export \\
      --fasta ../shared/data/ncbi_softmasked_small_chroms/DmelanDM6_4_*.fna.gz --gtf .../DmelanDM6_4.gtf.gz
  python -m evaluation segment --model runs/multispecies_demo/export --data data/multispecies_demo \\
      --gtf fly=../shared/data/ncbi_softmasked_small_chroms/DmelanDM6_4.gtf.gz
  python -m evaluation robustness --model runs/tiny_chr20/export --bpe runs/bpe \\
      --fasta ../shared/data/hg19_chr20_softmasked/chr20.hg19.softmasked.fa.gz
"""
from __future__ import annotations

import sys
from pathlib import Path

from dnachunker.fileio import markdown_table, output_dir, output_file, write_csv

from .regions import data_windows, fasta_windows, parse_gtfs, region_masks
from .tasks import EvalDataError


def cmd_finetune(a) -> int:
    from .finetune import FinetuneConfig, evaluate
    from .formats import load_task
    out = output_dir(a.out)
    task = load_task(a.format, a.path, task=a.nt_task, fasta=a.fasta)
    cfg = FinetuneConfig(mode=a.mode, epochs=a.epochs, lr=a.lr, batch_size=a.batch_size, max_len=a.max_len,
                         seeds=a.seeds, max_train=a.max_train, species=a.species)
    rows, summary, _ = evaluate(a.model, task, cfg)
    for r in [*rows, summary]:
        r.update({"format": a.format, "path": a.path})
    stem = task.name.replace("/", "_") + f"_{a.mode}"
    write_csv(rows, out / f"{stem}.csv")
    with open(out / "results.md", "a") as fh:
        fh.write(f"\n{a.model} · {task.name} · {a.mode}\n\n" + markdown_table([summary]) + "\n")
    print(markdown_table(rows) + "\n\n" + markdown_table([summary]))
    print(f"results: {out / f'{stem}.csv'} (per seed), {out / 'results.md'} (summary appended)", file=sys.stderr)
    return 0


def cmd_suite(a) -> int:
    from .baselines import baseline
    from .suite import SuiteConfig, run_suite
    suite = SuiteConfig.load(a.suite, a.overrides)
    output_dir(a.out)
    results = run_suite(baseline(a.baseline) if a.baseline else a.model, suite, a.out, a.device)
    print(markdown_table([{"column": c, "task": r["task"], "metric": r["metric"], "score": r[r["metric"]],
                           "std": r[f"{r['metric']}_std"]} for c, r in results.items()]))
    print(f"results: {Path(a.out).resolve()} (summary.md: the suite's table with its published numbers)",
          file=sys.stderr)
    return 0


def _bpe_config(vocab_size: int | None = None, samples: int | None = None):
    """A model config naming only the BPE tokenization (what fitting and loading need)."""
    from dnachunker import DNAChunkerConfig
    args = {k: v for k, v in (("vocab_size", vocab_size), ("fit_samples", samples)) if v is not None}
    return DNAChunkerConfig(tokenization="bpe", tokenization_args=args).validate()


def cmd_bpe(a) -> int:
    from data_pipeline.fitting import fit_tokenization
    output_dir(a.out)
    fit_tokenization(_bpe_config(a.vocab_size, a.max_samples), a.shards, a.out)
    print(f"BPE ({a.vocab_size} tokens) fitted on {a.shards} -> {Path(a.out) / 'bpe.json'}")
    return 0


def cmd_mlm(a) -> int:
    import json

    from dnachunker.cli import load_model
    from dnachunker.fileio import write_text

    from .mlm import mlm_loss
    if a.out:
        output_file(a.out)
    model = load_model(a, require_species=False, map_location=a.device)  # a corpus names its genomes
    values = mlm_loss(model, a.data, a.split, a.batches, a.batch_size, device=a.device)
    genomes = sorted({k.split("/")[0] for k in values if "/" in k})
    rows = [{"data": "all", "MLM loss": values["mlm_loss"]}] + [
        {"data": g, "MLM loss": values.get(f"{g}/mlm_loss"), "compression 0": values.get(f"{g}/compression_0"),
         "router compression 0": values.get(f"{g}/router_compression_0")} for g in genomes]
    print(markdown_table(rows))
    if a.out:
        write_text(a.out, json.dumps({"model": str(a.model), "data": a.data, "split": a.split, **values}, indent=1))
        print(f"-> {a.out}")
    return 0


def _model_segmenter(model_dir):
    """An export's stage-0 cuts: sequences -> their chunk starts."""
    from dnachunker import DNAChunker
    model = DNAChunker.from_pretrained(model_dir)
    return lambda seqs: [s[0] for s in model.segment(seqs)]


def _species_for(model, genome: str, a) -> str | None:
    """The species a genome of a corpus is read as: its own name where the model embeds it, else
    --species (None: the model embeds no species)."""
    if not model.cfg.species:
        return None
    if genome not in model.cfg.species and not a.species:
        raise EvalDataError(f"{a.model} embeds the species {model.cfg.species}; genome {genome!r} of "
                            f"{a.data} is none of them: --species names the one to use for it")
    return genome if genome in model.cfg.species else a.species


def cmd_segment(a) -> int:
    from .analysis import html_view, png_view, zoom_score
    from .chunk_lengths import group_rows, length_histogram, per_window_lengths, region_lengths
    from dnachunker.cli import load_model
    from data_pipeline.corpus import is_corpus
    corpus = bool(a.data) and is_corpus(a.data)
    out = output_dir(a.out)
    model = load_model(a, require_species=not corpus)  # a corpus names its genomes; else --species
    gtfs = parse_gtfs(a.gtf or [], corpus=bool(a.data))
    if a.data:
        groups = data_windows(a.data, a.split, a.count)
        if unknown := set(gtfs) - set(groups):
            raise EvalDataError(f"--gtf names {sorted(unknown)}: {a.data} has {sorted(groups)}")
        source = f"{a.data} ({a.split})"
    else:
        seqs, chrom, starts, _ = fasta_windows(a.fasta, a.length, a.count)
        groups = {chrom: (seqs, [{"chrom": chrom, "start": int(s), "end": int(s) + a.length} for s in starts])}
        gtfs = {chrom: g for g in gtfs.values()}
        source = Path(a.fasta).name
    species = {name: _species_for(model, name, a) for name in groups} if corpus else {}
    rows, lengths, pages, views, first = [], {}, [], [], None
    for name, (seqs, metas) in groups.items():
        if species.get(name):
            model.set_species(species[name])
        segs = model.segment(seqs)
        length = len(seqs[0])
        regions = region_masks(seqs, metas, gtfs.get(name))
        per_window = per_window_lengths(segs, length)
        rows += group_rows(name, segs, per_window, regions, first)
        first = first or per_window
        lengths[name] = region_lengths(segs, regions)
        # the window shown: the one whose zoom shows the most kinds of region edge (a repeat's and an
        # exon's), then where the last region type (exons if given) covers closest to half
        i = max(range(len(seqs)), key=lambda j: (zoom_score(len(seqs[j]), 120, {k: v[j] for k, v in regions.items()})[1][:2],
                                                 min(m := regions[list(regions)[-1]][j].mean(), 1 - m)))
        where = f"{metas[i]['chrom']}:{metas[i]['start'] + 1:,}-{metas[i]['end']:,}"
        pages.append(html_view(seqs[i], segs[i], f"{where} ({a.model})"))
        view = out / ("segmentation.png" if len(groups) == 1 else f"segmentation_{name}.png")
        png_view(seqs[i], segs[i], view, {k: v[i] for k, v in regions.items()},
                 f"{where} by {Path(a.model).resolve().parent.name}/{Path(a.model).name}", offset=int(metas[i]["start"]))
        views.append(view)
    write_csv(rows, out / "chunk_lengths.csv")
    length_histogram(lengths, rows, out / "chunk_lengths.png",
                     f"Chunk lengths of {Path(a.model).resolve().parent.name}/{Path(a.model).name} on {source} "
                     f"\nwindows of {length:,} bp, no masking: the router's own boundaries")
    (out / "segmentation.html").write_text("<hr>".join(pages))
    print(markdown_table(rows))
    print(f"results: {out / 'chunk_lengths.csv'}, {out / 'chunk_lengths.png'}; views: {out / 'segmentation.html'}, "
          + ", ".join(str(v) for v in views), file=sys.stderr)
    return 0


def cmd_robustness(a) -> int:
    from dnachunker import tokenization
    from dnachunker.tokenization import KmerArgs, Kmer, NoArgs, Single

    from tqdm import tqdm

    from .analysis import MUTATIONS, robustness, robustness_plot
    out = output_dir(a.out)
    seqs, *_ = fasta_windows(a.fasta, a.length, a.count)
    fixed = {"single-nucleotide": Single(NoArgs()), "6-mer": Kmer(KmerArgs(6))}
    if a.bpe:
        fixed["BPE"] = tokenization.load(_bpe_config(), a.bpe)
    batch = {name: (lambda ss, t=t: [t.starts(s) for s in ss]) for name, t in fixed.items()}
    if a.model:
        batch = {"DNAChunker (stage 0)": _model_segmenter(a.model), **batch}
    kinds = list(MUTATIONS)
    rows = []
    with tqdm(total=len(batch) * len(kinds), desc="robustness", unit="tokenization x mutation",
              dynamic_ncols=True) as bar:
        for name, seg in batch.items():
            row = {"tokenization": name}
            for k in kinds:
                bar.set_postfix_str(f"{name}, {k}")
                row[k] = robustness(seg, seqs, k, a.seed)
                bar.update()
            rows.append(row)
    print(markdown_table(rows))
    write_csv(rows, out / "robustness.csv")
    robustness_plot(rows, out / "robustness.png", f"Boundaries kept after one random mutation, {len(seqs)} windows "
                                                   f"of {a.length} bp of {Path(a.fasta).name}")
    print(f"results: {out / 'robustness.csv'}, {out / 'robustness.png'}", file=sys.stderr)
    return 0


COMMANDS = {"finetune": cmd_finetune, "suite": cmd_suite, "bpe": cmd_bpe, "mlm": cmd_mlm, "segment": cmd_segment,
            "robustness": cmd_robustness}


def main(argv=None, prog: str = "python -m evaluation") -> int:
    from dnachunker.cli import add_device, add_model, add_species, at_least, parser, subparser

    from .baselines import BASELINES
    from .formats import FORMATS
    p = parser(prog, __doc__)
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    f = subparser(sub, "finetune", "fine-tune or linear-probe a model on one classification task, several seeds")
    add_model(f)
    add_species(f)
    f.add_argument("--format", required=True, choices=list(FORMATS),
                   help="task format: " + "; ".join(f"{k}: {v.expects}" for k, v in FORMATS.items()))
    f.add_argument("--path", required=True, help="the task's file or directory, as --format expects")
    f.add_argument("--nt-task", help="the task to take from an nt TSV (a wrong name lists those there)")
    f.add_argument("--fasta", help="the reference FASTA that gb coordinates are cut from (GRCh38)")
    f.add_argument("--mode", default="finetune", choices=["finetune", "probe"],
                   help="finetune: train everything; probe: frozen model, linear head on mean-pooled states")
    f.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="one run per seed (its valid split and head)")
    f.add_argument("--epochs", type=int, default=3, help="epochs; the best one on valid is scored on test")
    f.add_argument("--lr", type=float, default=None, help="learning rate (None: 1e-4 finetune, 1e-2 probe)")
    f.add_argument("--batch-size", type=at_least(1), default=32, help="sequences per batch")
    f.add_argument("--max-len", type=int, default=None, help="truncate longer sequences (None: keep whole)")
    f.add_argument("--max-train", type=int, default=None, help="subsample the training pool (None: all)")
    f.add_argument("--out", default="outputs/eval", help="directory for <task>_<mode>.csv and results.md")
    su = subparser(sub, "suite", "every task of an evaluation suite (configs/eval/*.yaml) on one model or baseline")
    which = su.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="an export directory (a training run's <out_dir>/export)")
    which.add_argument("--baseline", choices=list(BASELINES),
                       help="a classical baseline instead of a model: " + "; ".join(
                           f"{k}: {v.label}" for k, v in BASELINES.items()))
    su.add_argument("--suite", required=True, help="suite YAML, e.g. configs/eval/paper_columns.yaml")
    su.add_argument("--out", required=True, help="directory for one result JSON per task (reused on a re-run)")
    add_device(su)
    su.add_argument("overrides", nargs="*", help="key=value overrides of the suite, e.g. seeds=[0]")
    b = subparser(sub, "bpe", "fit the BPE baseline tokenization on pretraining shards")
    b.add_argument("--shards", required=True, help="a shard set (python -m data_pipeline's out)")
    b.add_argument("--vocab-size", type=int, default=4096, help="BPE vocabulary size")
    b.add_argument("--max-samples", type=int, default=20000, help="training windows it is fitted on")
    b.add_argument("--out", required=True, help="directory for bpe.json")
    m = subparser(sub, "mlm", "masked-LM loss on a shard set or corpus split (per genome on a corpus)")
    add_model(m)
    add_species(m)
    add_device(m)
    m.add_argument("--data", required=True, help="a shard set or corpus root (python -m data_pipeline's out)")
    m.add_argument("--split", default="valid", help="which split")
    m.add_argument("--batches", type=int, default=40, help="batches read (a corpus's genomes interleaved)")
    m.add_argument("--batch-size", type=at_least(1), default=16, help="windows per batch")
    m.add_argument("--out", help="also write the numbers to this JSON file")
    s = subparser(sub, "segment", "chunk-length statistics per genome and region type, and a picture of both "
                                  "stages' chunks")
    add_model(s)
    add_species(s)
    where = s.add_mutually_exclusive_group(required=True)
    where.add_argument("--fasta", help="FASTA whose first record is segmented (soft-masked: repeats)")
    where.add_argument("--data", help="a corpus (or shard set): each genome's windows of --split, a row group each")
    s.add_argument("--split", default="valid", help="with --data: which split")
    s.add_argument("--gtf", action="append", help="exons as a region type and a track: with --fasta its GTF; with "
                                                  "--data GENOME=GTF (repeat the flag for several genomes)")
    s.add_argument("--length", type=at_least(1), default=1024,
                   help="with --fasta: window length (bp; --data: the data's own)")
    s.add_argument("--count", type=at_least(1), default=64, help="N-free windows drawn per genome (fixed seed)")
    s.add_argument("--out", default="outputs/segmentation",
                   help="directory for chunk_lengths.csv / .png, segmentation.html and segmentation[_<genome>].png")
    r = subparser(sub, "robustness", "boundaries kept after a random SNV / 1-bp insertion / deletion")
    r.add_argument("--model", help="an export: its learned stage-0 chunks are compared too")
    r.add_argument("--bpe", help="directory with a fitted bpe.json (the bpe command's --out, or a BPE model's export)")
    r.add_argument("--fasta", required=True, help="FASTA whose first record the windows come from")
    r.add_argument("--length", type=int, default=1024, help="window length (bp)")
    r.add_argument("--count", type=int, default=64, help="N-free windows drawn (fixed seed)")
    r.add_argument("--seed", type=int, default=0, help="seed of the mutations")
    r.add_argument("--out", default="outputs/robustness", help="directory for robustness.csv and robustness.png")
    a = p.parse_args(argv)
    from data_pipeline.errors import DataError
    from dnachunker.configlib import ConfigError
    from dnachunker.errors import InputError, describe

    try:
        return COMMANDS[a.cmd](a)
    except (EvalDataError, DataError, ConfigError, InputError, OSError) as e:
        print(f"error: {describe(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""The generated parts of results/multispecies/README.md, from the files beside this script and
the human-only DNAChunker rows of results/scaling/ (the same config: seeds 0 and 1).

    python results/multispecies/tables.py            # rewrite them
    python results/multispecies/tables.py --check    # exit 1 if the README differs from the files
"""
import csv
import json
import statistics
from pathlib import Path

import sys

from evaluation.stats import Row, compare, mean_std, overall
from slurm.compare import fmt
from slurm.readme import main

HERE = Path(__file__).resolve().parent
SCALING = HERE.parent / "scaling"
GENOMES = ["human", "arabidopsis", "fly", "yeast"]
MODELS = {"multi-species": ["mlm_multispecies.json", "mlm_multispecies_seed1.json"],
          "human only": ["mlm_human_only.json", "mlm_human_only_seed1.json"],  # of results/scaling's seeds 0 and 1
          "multi-species + species embedding": ["species/mlm.json"]}
SEGMENTS = {"multi-species": ["multispecies", "multispecies_seed1"], "human only": ["human_only", "human_only_seed1"],
            "multi-species + species embedding": ["species"]}


def table(header: list[str], rows: list[list[str]]) -> str:
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                     + ["| " + " | ".join(r) + " |" for r in rows])


def seeds(values: list[float], digits: int = 3) -> str:
    """One run: its value; two: mean (the runs' values)."""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.fmean(values):.{digits}f} ({', '.join(f'{v:.{digits}f}' for v in values)})"


def mlm_tables() -> str:
    runs = {m: [json.loads((HERE / f).read_text()) for f in files if (HERE / f).is_file()] for m, files in MODELS.items()}
    loss = [[g, *(seeds([r[f"{g}/mlm_loss"] for r in runs[m]]) for m in MODELS)] for g in GENOMES]
    loss.append(["all windows", *(seeds([r["mlm_loss"] for r in runs[m]]) for m in MODELS)])
    diff = [[g, seeds([a[f"{g}/mlm_loss"] - b[f"{g}/mlm_loss"] for a, b in zip(runs["multi-species"], runs["human only"])])]
            for g in GENOMES]
    comp = [[g, *(f"{seeds([r[f'{g}/router_compression_0'] for r in runs[m]])} / "
                  f"{seeds([r[f'{g}/compression_0'] for r in runs[m]])}" for m in MODELS)] for g in GENOMES]
    return ("Validation MLM loss per genome (seed 0 and seed 1 in brackets where there are two runs):\n\n"
            + table(["genome", *MODELS], loss)
            + "\n\nMulti-species minus human only, per pretraining seed (paired by seed):\n\n"
            + table(["genome", "difference"], diff)
            + "\n\nStage-0 compression on those windows, the router's own / with the boundaries mask protection "
              "forces:\n\n" + table(["genome", *MODELS], comp))


COLUMNS = ["histone", "enhancers", "promoters", "splice"]
HUMAN = {0: SCALING / "p00_base__seed-0" / "eval", 1: SCALING / "p00_base__seed-1" / "eval"}
PROBES = {"multi-species": {0: HERE / "probe", 1: HERE / "probe_seed1"},
          "human only": HUMAN,
          "multi-species + species embedding": {0: HERE / "species" / "probe"},
          "k-mer LR (baseline)": {None: SCALING / "points" / "kmer_lr" / "eval"}}


def probe_samples(dirs: dict) -> dict[str, dict]:
    """column -> {pretraining seed: {probe seed: MCC}} (evaluation.stats.Samples)."""
    out = {c: {} for c in COLUMNS}
    for pre, d in dirs.items():
        if (d / "histone.json").is_file():
            for c in COLUMNS:
                out[c][pre] = {r["seed"]: r["mcc"] for r in json.loads((d / f"{c}.json").read_text())["rows"]}
    return out


def probe_table() -> str:
    runs = {m: probe_samples(d) for m, d in PROBES.items()}
    rows = []
    for m, cols in runs.items():
        cells = [cols[c] for c in COLUMNS] + [overall(cols)]
        rows.append([m, "none" if None in cols["histone"] else str(len(cols["histone"])), *(
            "{:.3f} ± {:.3f}".format(*mean_std(x)[:2]) for x in cells)])
    diff = [["multi-species − human only", *(fmt(compare(Row(a), Row(b))) for a, b in zip(
        [runs["multi-species"][c] for c in COLUMNS] + [overall(runs["multi-species"])],
        [runs["human only"][c] for c in COLUMNS] + [overall(runs["human only"])]))]]
    return ("Linear probe, MCC (`paper_columns`, probe seeds 0-2; ± is the std across pretraining seeds where "
            "there are two, else across probe seeds):\n\n"
            + table(["model", "pretraining seeds", *COLUMNS, "overall"], rows)
            + "\n\nDifference with its 95 % interval (evaluation.stats.compare, paired by pretraining seed; two "
              "seeds per row, so no difference is claimed; the multi-species probes keep no per-example predictions, "
              "so the test-set term is left out):\n\n" + table(["", *COLUMNS, "overall"], diff))


def segment_rows(name: str) -> dict:
    with open(HERE / "segment" / name / "chunk_lengths.csv") as fh:
        return {(r["group"], r["stage"]): r for r in csv.DictReader(fh) if r["region"] == "all"}


def segment_table() -> str:
    runs = {m: [segment_rows(n) for n in names if (HERE / "segment" / n).is_dir()] for m, names in SEGMENTS.items()}
    rows = []
    for stage in ("0", "1"):
        for g in GENOMES:
            cells = []
            for m in SEGMENTS:
                per_seed = [f"{float(r[(g, stage)]['mean_bp']):.2f} [{float(r[(g, stage)]['mean_bp_95lo']):.2f}, "
                            f"{float(r[(g, stage)]['mean_bp_95hi']):.2f}]" for r in runs[m]]
                cells.append("; ".join(per_seed))
            rows.append([stage, g, *cells])
    diffs = []
    for stage in ("0", "1"):
        for g in GENOMES[1:]:
            diffs.append([stage, f"{g} − human", *("; ".join(
                f"{float(r[(g, stage)]['vs_first_bp']):+.2f} [{float(r[(g, stage)]['vs_first_95lo']):+.2f}, "
                f"{float(r[(g, stage)]['vs_first_95hi']):+.2f}]" for r in runs[m]) for m in SEGMENTS)])
    return ("Mean chunk length (bp) with its 95 % interval over windows, per pretraining seed (seed 0; seed 1):\n\n"
            + table(["stage", "genome", *SEGMENTS], rows)
            + "\n\nEach genome's mean chunk length minus human's, 95 % interval (windows of both resampled):\n\n"
            + table(["stage", "genomes", *SEGMENTS], diffs))


def cross_tables() -> str:
    loss = [[g, *(f"{json.loads((HERE / 'species' / 'cross' / f'{g}_as_{s}.json').read_text())['mlm_loss']:.4f}"
                  for s in GENOMES)] for g in GENOMES]
    seg = []
    for g, s in (("human", "human"), ("human", "yeast"), ("yeast", "yeast"), ("yeast", "human")):
        with open(HERE / "species" / "cross" / f"{g}_as_{s}" / "chunk_lengths.csv") as fh:
            r = {x["stage"]: x for x in csv.DictReader(fh) if x["region"] == "all"}
        seg.append([g, s, *(f"{float(r[st]['mean_bp']):.2f} [{float(r[st]['mean_bp_95lo']):.2f}, "
                            f"{float(r[st]['mean_bp_95hi']):.2f}]" for st in ("0", "1"))])
    return ("MLM loss of each genome's validation windows (rows) read as each species (columns); the same "
            "windows and masks along a row:\n\n" + table(["windows \\ read as", *GENOMES], loss)
            + "\n\nMean chunk length (bp, 95 % interval over windows) of the same windows read as two species:\n\n"
            + table(["windows", "read as", "stage 0", "stage 1"], seg))


def setting() -> str:
    corpus = json.loads((HERE / "corpus.json").read_text())
    g = {x["name"]: x for x in corpus["genomes"]}
    return (f"* Corpus (`configs/data/multispecies_demo.yaml`): " + ", ".join(
        f"{n} ({g[n]['samples']['train']:,} training windows, sampled with p = {g[n]['p']:.3f})" for n in
        ("human", "arabidopsis", "fly", "yeast")) + f"; temperature sampling p ∝ bp^{corpus['sampling']['temperature']}. "
        f"So the multi-species runs saw about {g['human']['p']:.0%} of the human sequence the human-only runs saw.")


def blocks() -> dict[str, str]:
    return {"setting": setting(), "mlm": mlm_tables(), "probe": probe_table(), "segment": segment_table(),
            "cross": cross_tables()}


if __name__ == "__main__":
    sys.exit(main(HERE / "README.md", blocks(), sys.argv[1:]))

"""The generated parts of results/multispecies/README.md, from the files beside this script.

    python results/multispecies/tables.py            # rewrite them
    python results/multispecies/tables.py --check    # exit 1 if the README differs from the files
"""
import csv
import json
import statistics
import sys
from pathlib import Path

from evaluation.stats import Row, compare, mean_std, overall
from studies.compare import fmt
from studies.readme import main

HERE = Path(__file__).resolve().parent
GENOMES = ["human", "arabidopsis", "fly", "yeast"]
MODELS = {"multi-species": ["mlm_multispecies.json", "mlm_multispecies_seed1.json"],
          "human only": ["mlm_human_only.json", "mlm_human_only_seed1.json"],
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
PROBES = {"multi-species": {0: HERE / "probe", 1: HERE / "probe_seed1"},
          "human only": {0: HERE / "probe_human_only", 1: HERE / "probe_human_only_seed1"},
          "multi-species + species embedding": {0: HERE / "species" / "probe"},
          "k-mer LR (baseline)": {None: HERE / "probe_kmer_lr"}}


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


def _span(values: list[float], fmt: str = "{:+.3f}") -> str:
    lo, hi = min(values), max(values)
    return fmt.format(lo) if fmt.format(lo) == fmt.format(hi) else f"{fmt.format(lo)} to {fmt.format(hi)}"


def reading() -> str:
    """The reading's numbers and the statements they decide."""
    runs = {m: [json.loads((HERE / f).read_text()) for f in files] for m, files in MODELS.items()}
    delta = {g: [a[f"{g}/mlm_loss"] - b[f"{g}/mlm_loss"] for a, b in zip(runs["multi-species"], runs["human only"])]
             for g in GENOMES}
    others = [g for g in GENOMES if g != "human"]
    better = [g for g in others if all(d < 0 for d in delta[g])]
    probes = {m: probe_samples(d) for m, d in PROBES.items()}
    hist = {m: mean_std(probes[m]["histone"])[0] for m in PROBES if "baseline" not in m}
    diff = {c: compare(Row(probes["multi-species"][c]), Row(probes["human only"][c])) for c in COLUMNS}
    ov = {m: mean_std(overall(probes[m]))[0] for m in PROBES}
    seg = {m: [segment_rows(n) for n in names] for m, names in SEGMENTS.items()}
    every = [r for m in SEGMENTS for r in seg[m]]
    yeast = [float(r[("yeast", "0")]["vs_first_bp"]) for r in every]
    yeast_pct = [float(r[("yeast", "0")]["vs_first_bp"]) / float(r[("human", "0")]["mean_bp"]) for r in every]
    yeast_sure = sum(float(r[("yeast", "0")]["vs_first_95lo"]) > 0 for r in every)
    longer = {g: sum(float(r[(g, "0")]["vs_first_95lo"]) > 0 for r in every) for g in ("arabidopsis", "fly")}
    human_bp = {m: [float(r[("human", "0")]["mean_bp"]) for r in seg[m]] for m in ("multi-species", "human only")}
    cross = {(g, sp): json.loads((HERE / "species" / "cross" / f"{g}_as_{sp}.json").read_text())["mlm_loss"]
             for g in GENOMES for sp in GENOMES}
    human_gain = [cross[("human", sp)] - cross[("human", "human")] for sp in others]
    yeast_loss = cross[("yeast", "human")] - min(cross[("yeast", sp)] for sp in others)
    spread = max(max(cross[(g, sp)] for sp in others) - min(cross[(g, sp)] for sp in others) for g in others)
    species = runs["multi-species + species embedding"][0]
    inside = [g for g in GENOMES if min(r[f"{g}/mlm_loss"] for r in runs["multi-species"]) <= species[f"{g}/mlm_loss"]
              <= max(r[f"{g}/mlm_loss"] for r in runs["multi-species"])]
    fly_best = min(GENOMES, key=lambda sp: cross[("fly", sp)])
    return f"""* **MLM loss.** With the other genomes in the data the model models them better in both seeds
  ({", ".join(f"{g} {_span(delta[g])}" for g in others)}; better in both seeds: {", ".join(better) or "none"});
  human is {_span(delta["human"])} (positive: worse), having seen part of the human sequence. The
  species-embedding run (one seed) falls between the two multi-species seeds on {len(inside)} of
  {len(GENOMES)} genomes ({", ".join(inside) or "none"}).
* **Probe.** The yeast histone task, the study's one non-human task: multi-species {hist["multi-species"]:.3f},
  human only {hist["human only"]:.3f}, with the species embedding {hist["multi-species + species embedding"]:.3f};
  multi − human {fmt(diff["histone"])}. Promoters {fmt(diff["promoters"])}, enhancers {fmt(diff["enhancers"])},
  splice {fmt(diff["splice"])}; overall multi-species {ov["multi-species"]:.3f} against human only
  {ov["human only"]:.3f}, every model below the k-mer baseline ({ov["k-mer LR (baseline)"]:.3f}). With two
  pretraining seeds per row no difference is claimed.
* **Chunks differ between genomes.** In {yeast_sure} of {len(every)} runs the router cuts yeast into
  longer stage-0 chunks than human, the interval over windows excluding 0 ({_span(yeast, "{:+.2f}")} bp,
  {_span([100 * x for x in yeast_pct], "{:.0f}")} %); Arabidopsis in {longer["arabidopsis"]} and fly in
  {longer["fly"]} of {len(every)}. Stage 1 is in the table. The level moves between seeds (human's mean
  stage-0 chunk: {", ".join(f"{x:.2f}" for x in human_bp["multi-species"])} bp for the multi-species seeds,
  {", ".join(f"{x:.2f}" for x in human_bp["human only"])} bp human-only), so the intervals over windows,
  which describe one model, understate run-to-run noise: only differences between genomes within a run
  are compared.
* **The species embedding.** On the same windows and masks, human windows are modelled best read as human
  (by {_span(human_gain, "{:.3f}")}) and yeast windows worst read as human (by {yeast_loss:.3f}); the windows of the three other genomes, read as any of
  those three species, differ by at most {spread:.3f} in loss, and fly's windows are modelled best
  read as {fly_best}. Read as human, windows are cut finer (the cross table above), so the embedding reaches
  the router."""


def blocks() -> dict[str, str]:
    return {"setting": setting(), "mlm": mlm_tables(), "probe": probe_table(), "segment": segment_table(),
            "cross": cross_tables(), "reading": reading()}


if __name__ == "__main__":
    sys.exit(main(HERE / "README.md", blocks(), sys.argv[1:]))

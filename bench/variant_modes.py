"""SNV scores read from shared unmasked windows (`score-variants --unmasked`) against the masked
score, on real chr20: agreement, AUROC of each on a labelled set, and time per variant, measured
in one run.

    python -m bench.variant_modes [--export runs/tiny_chr20/export] [--snvs 600] [--dense-bp 500]

Sparse set: --snvs SNVs at random non-N positions of the shared hg19 chr20 within 1-3 Mbp, a random
alternative base each, labelled 1 where the reference base is soft-masked (in a repeat) and 0
elsewhere: the proxy label of the BEND-style suite's test, not a pathogenicity label. AUROC of
-score, as the suite computes it, with a paired bootstrap interval (over variants, --resamples) of
the difference unmasked - masked. Dense set: all three alternatives at every position of
--dense-bp bases (saturation mutagenesis), where windows are shared. Time per variant: the best of
two alternating rounds of each mode, beside nothing else (run it alone).
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from dnachunker.cli import parser
from dnachunker.fileio import markdown_table

from .model import CHR20, ROOT


def _vcf(path: Path, rows: list[tuple[int, str, str, int]]) -> Path:
    path.write_text("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
                    + "".join(f"chr20\t{p}\t.\t{r}\t{a}\t.\t.\tLABEL={y}\n" for p, r, a, y in rows))
    return path


def _sets(text: str, snvs: int, dense_bp: int, seed: int = 0) -> dict[str, list]:
    rng = np.random.default_rng(seed)
    upper = text.upper()
    ok = [p for p in rng.choice(np.arange(1_000_000, 3_000_000), snvs * 2, replace=False) if upper[p] in "ACGT"]
    sparse = [(int(p) + 1, upper[p], "ACGT".replace(upper[p], "")[rng.integers(3)], int(text[p].islower()))
              for p in sorted(ok[:snvs])]
    start = 2_000_000
    dense = [(p + 1, upper[p], b, int(text[p].islower())) for p in range(start, start + dense_bp)
             if upper[p] in "ACGT" for b in "ACGT" if b != upper[p]]
    return {"sparse": sparse, "dense": dense}


def _bootstrap(y: np.ndarray, a: np.ndarray, b: np.ndarray, resamples: int) -> tuple[float, float]:
    from evaluation.metrics import auroc
    rng = np.random.default_rng(0)
    diffs = []
    for _ in range(resamples):
        i = rng.integers(0, len(y), len(y))
        if len(set(y[i].tolist())) == 2:
            diffs.append(auroc(y[i], -b[i]) - auroc(y[i], -a[i]))
    return tuple(np.percentile(diffs, [2.5, 97.5]))


def main(argv=None, prog: str | None = None) -> int:
    ap = parser(prog or f"python -m {__spec__.name}", __doc__)
    ap.add_argument("--export", default=str(ROOT / "runs" / "tiny_chr20" / "export"), help="a trained export")
    ap.add_argument("--snvs", type=int, default=600, help="SNVs in the sparse set")
    ap.add_argument("--dense-bp", type=int, default=500, help="bases whose three alternatives form the dense set")
    ap.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples of the AUROC difference")
    a = ap.parse_args(argv)
    from scipy.stats import spearmanr

    from dnachunker import DNAChunker
    from dnachunker.fasta import read_fasta
    from dnachunker.reference import open_reference
    from dnachunker.tokenizer import decode
    from dnachunker.variants import score_variants
    from evaluation.metrics import auroc

    model = DNAChunker.from_pretrained(a.export).eval()
    _, codes, soft = next(iter(read_fasta(CHR20)))
    text = decode(codes[:3_100_000], soft[:3_100_000])
    with tempfile.TemporaryDirectory() as tmp:
        fasta = Path(tmp) / "chr20.fa"
        fasta.write_text(">chr20\n" + "\n".join(text[i:i + 60] for i in range(0, len(text), 60)) + "\n")
        import pysam
        pysam.faidx(str(fasta))
        reference = open_reference(fasta)
        rows = []
        for name, variants in _sets(text, a.snvs, a.dense_bp).items():
            vcf = _vcf(Path(tmp) / f"{name}.vcf", variants)
            seconds, scores = {}, {}
            for _ in range(2):
                for unmasked in (False, True):
                    t0 = time.perf_counter()
                    out = list(score_variants(model, vcf, reference, unmasked=unmasked))
                    dt = (time.perf_counter() - t0) / len(out)
                    seconds[unmasked] = min(seconds.get(unmasked, dt), dt)
                    scores[unmasked] = np.array([v.score for v in out])
            y = np.array([v[3] for v in variants])
            row = {"set": f"{name} ({len(variants)} SNVs)", "masked ms/variant": 1e3 * seconds[False],
                   "unmasked ms/variant": 1e3 * seconds[True], "speed-up": seconds[False] / seconds[True],
                   "Spearman(masked, unmasked)": spearmanr(scores[False], scores[True]).statistic}
            if name == "sparse":
                lo, hi = _bootstrap(y, scores[False], scores[True], a.resamples)
                row.update({"AUROC masked": auroc(y, -scores[False]), "AUROC unmasked": auroc(y, -scores[True]),
                            "difference, 95 % bootstrap": f"[{lo:+.3f}, {hi:+.3f}]"})
            rows.append(row)
        reference.close()
    print(markdown_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

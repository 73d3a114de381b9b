"""dnachunker tracks --model M --fasta F [--region chr:start-end ...] [--bed regions.bed] --out DIR

Genome-browser files for regions of a reference (default: all of it), from one unmasked forward
pass in overlapping windows (as embed): bigWig per track (p_0.bw, p_1.bw: boundary probability per
stage; entropy.bw, logp_ref.bw: the prediction at each base, dnachunker.tracks), BED of the learned
chunks per stage (chunks_0.bed, chunks_1.bed), and browser.png: the first region's first
--plot-length bases with the tracks, the chunks, repeats and (with --gtf) exons. IGV, the UCSC
browser and pyBigWig read them. The folder appears only when complete.

Examples:
  dnachunker tracks --model runs/tiny_chr20/export --fasta hg38.fa.gz --region chr20:1,000,001-1,100,000 --out t
  dnachunker tracks --model runs/x/export --fasta dm6.fa.gz --bed enhancers.bed --gtf dm6.gtf.gz --out t
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


def main(argv=None, prog: str = "dnachunker tracks") -> int:
    from dnachunker.cli import add_device, add_model, add_species, at_least, parser
    from dnachunker.errors import InputError, describe
    p = parser(prog, __doc__)
    add_model(p)
    add_species(p)
    p.add_argument("--fasta", required=True, help="the reference (indexed with samtools faidx: read by region)")
    p.add_argument("--region", action="append", default=[], help="chrom or chrom:start-end, 1-based inclusive "
                   "(repeatable; default: every sequence of the FASTA)")
    p.add_argument("--bed", help="BED of regions (0-based, as BED is)")
    p.add_argument("--gtf", help="GTF whose exons browser.png shows")
    p.add_argument("--out", required=True, help="output folder (made with its parents; appears or is replaced only "
                   "when complete)")
    p.add_argument("--plot-length", type=at_least(0), default=400, help="bases of the first region in browser.png "
                   "(0: no picture)")
    p.add_argument("--window", type=at_least(0), default=None, help="bases per forward pass (None: max_len)")
    p.add_argument("--batch-size", type=at_least(1), default=8, help="windows per forward pass")
    add_device(p)
    a = p.parse_args(argv)
    try:
        return run(a)
    except (InputError, OSError) as e:
        print(f"error: {describe(e)}", file=sys.stderr)
        return 2


def run(a) -> int:
    from dnachunker.cli import load_model
    from dnachunker.fileio import atomic_directory, output_dir
    from dnachunker.inference import stream
    from dnachunker.reference import open_reference
    from dnachunker.track_io import TrackWriter, parse_region, read_bed_regions, sorted_regions
    from dnachunker.tracks import NAMES

    out = Path(a.out)
    output_dir(out.parent)  # made (parents too) and writable, or an error before any work
    reference = open_reference(a.fasta)
    regions = [parse_region(r, reference.lengths) for r in a.region]
    regions += read_bed_regions(a.bed, reference.lengths) if a.bed else []
    regions = sorted_regions(regions or [(c, 0, n) for c, n in reference.lengths.items()], reference.lengths)
    model = load_model(a, map_location=a.device)
    stages = len(model.cfg.d_model) - 1
    total = sum(e - s for _, s, e in regions)
    print(f"{len(regions)} region(s), {total:,} bp", file=sys.stderr)
    with atomic_directory(out) as tmp:
        writer = TrackWriter(tmp, reference.lengths, list(NAMES[:stages]) + list(NAMES[2:]), stages)
        try:
            for k, (chrom, start, end) in enumerate(regions):
                seq = reference.text(chrom, start, end)
                shown = _Shown(min(a.plot_length, len(seq))) if k == 0 and a.plot_length else None
                for piece in stream(model, [seq], a.window, None, a.batch_size, a.device, tracks=True,
                                    desc=f"{chrom}:{start + 1:,}-{end:,}"):
                    writer.add(chrom, start, piece)
                    if shown:
                        shown.add(piece)
                writer.end_region(chrom, end)
                if shown:
                    _picture(tmp / "browser.png", a, chrom, start, seq[:shown.n], shown)
        finally:
            writer.close()
            reference.close()
    print(f"results: {out} (" + ", ".join(sorted(p.name for p in out.iterdir())) + ")", file=sys.stderr)
    return 0


class _Shown:
    """The first n bases' tracks and chunk starts, kept for the picture."""

    def __init__(self, n: int):
        self.n, self.tracks, self.starts = n, {}, None

    def add(self, piece) -> None:
        if piece.lo >= self.n:
            return
        keep = self.n - piece.lo
        for k, v in piece.tracks.items():
            self.tracks[k] = np.concatenate([self.tracks.get(k, np.zeros(0, np.float32)), v[:keep]])
        starts = [s[s < self.n] for s in piece.chunk_starts]
        self.starts = starts if self.starts is None else [np.concatenate([x, y]) for x, y in zip(self.starts, starts)]


def _picture(path: Path, a, chrom: str, start: int, seq: str, shown: _Shown) -> None:
    from evaluation.analysis import exon_mask
    from evaluation.browser import browser_png
    exons = exon_mask(a.gtf, chrom, start + len(seq))[start:] if a.gtf else None
    browser_png(path, chrom, start, seq, shown.tracks, shown.starts, exons,
                f"{chrom}:{start + 1:,}-{start + len(seq):,}  ({Path(a.model).resolve().parent.name}/{Path(a.model).name}: one unmasked pass, windows of "
                f"{a.window or 'max_len'} bp)")


if __name__ == "__main__":
    sys.exit(main())

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
    from dnachunker.cli import add_device, add_model, add_parts, add_species, at_least, parser
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
    add_parts(p, "the regions, as whole regions balanced by bp (tile long ones with --bed for more),")
    p.add_argument("--batch-size", type=at_least(1), default=8, help="windows per forward pass")
    add_device(p)
    a = p.parse_args(argv)
    try:
        return run(a)
    except (InputError, OSError) as e:
        print(f"error: {describe(e)}", file=sys.stderr)
        return 2


def run(a) -> int:
    from dnachunker.cli import check_parts, load_model
    from dnachunker.fileio import atomic_directory, output_dir
    from dnachunker.parts import Parts, export_id
    from dnachunker.reference import open_reference
    from dnachunker.track_io import merge_tracks, parse_region, read_bed_regions, sorted_regions, split_regions
    from dnachunker.tracks import NAMES

    out = Path(a.out)
    check_parts(a)
    output_dir(out.parent)  # made (parents too) and writable, or an error before any work
    reference = open_reference(a.fasta)
    try:
        regions = [parse_region(r, reference.lengths) for r in a.region]
        regions += read_bed_regions(a.bed, reference.lengths) if a.bed else []
        regions = sorted_regions(regions or [(c, 0, n) for c, n in reference.lengths.items()], reference.lengths)
        model = load_model(a, map_location=a.device)
        stages = len(model.cfg.d_model) - 1
        names = list(NAMES[:stages]) + list(NAMES[2:])
        print(f"{len(regions)} region(s), {sum(e - s for _, s, e in regions):,} bp", file=sys.stderr)
        if not a.parts:
            with atomic_directory(out) as tmp:
                _write(tmp, model, a, reference, regions, names, stages)
                _picture(tmp, a, reference, regions[0], names, stages)
        else:
            parts = Parts(out, a.parts, {"fasta": str(Path(a.fasta).resolve()), "regions": _digest(regions),
                                         "model": export_id(a.model), "window": a.window, "parts": a.parts})
            parts.check_folder()
            groups = split_regions(regions, a.parts)

            def write(k: int) -> int:
                with atomic_directory(parts.path(k)) as tmp:
                    _write(tmp, model, a, reference, groups[k], names, stages)
                return sum(e - s for _, s, e in groups[k])
            if not parts.run(a.part, a.merge, write, "bp"):
                return 0
            with atomic_directory(out) as tmp:
                merge_tracks(tmp, parts.require_all(), reference.lengths, names, stages)
                _picture(tmp, a, reference, regions[0], names, stages)
    finally:
        reference.close()
    print(f"results: {out} (" + ", ".join(sorted(p.name for p in out.iterdir())) + ")", file=sys.stderr)
    return 0


def _write(tmp: Path, model, a, reference, regions, names: list[str], stages: int) -> None:
    """The regions' tracks and chunks into bigWig and BED files in `tmp`."""
    from dnachunker.inference import stream
    from dnachunker.track_io import TrackWriter
    writer = TrackWriter(tmp, reference.lengths, names, stages)
    try:
        for chrom, start, end in regions:
            for piece in stream(model, [reference.text(chrom, start, end)], a.window, None, a.batch_size, a.device,
                                tracks=True, desc=f"{chrom}:{start + 1:,}-{end:,}"):
                writer.add(chrom, start, piece)
            writer.end_region(chrom, end)
    finally:
        writer.close()


def _picture(tmp: Path, a, reference, region, names: list[str], stages: int) -> None:
    """browser.png of the first region's first --plot-length bases, read back from the files."""
    if not a.plot_length:
        return
    import pyBigWig

    from dnachunker.track_io import chunk_starts_in
    from evaluation.analysis import exon_mask
    from evaluation.browser import browser_png
    chrom, start, end = region
    end = min(end, start + a.plot_length)
    tracks = {}
    for name in names:
        bw = pyBigWig.open(str(tmp / f"{name}.bw"))
        tracks[name] = np.array(bw.values(chrom, start, end), dtype=np.float32)
        bw.close()
    starts = [chunk_starts_in(tmp / f"chunks_{s}.bed", chrom, start, end) for s in range(stages)]
    exons = exon_mask(a.gtf, chrom, end)[start:] if a.gtf else None
    browser_png(tmp / "browser.png", chrom, start, reference.text(chrom, start, end), tracks, starts, exons,
                f"{chrom}:{start + 1:,}-{end:,}  ({Path(a.model).resolve().parent.name}/{Path(a.model).name}: one "
                f"unmasked pass, windows of {a.window or 'max_len'} bp)")


def _digest(regions) -> str:
    import hashlib
    return hashlib.sha256(repr(regions).encode()).hexdigest()


if __name__ == "__main__":
    sys.exit(main())

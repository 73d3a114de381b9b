"""dnachunker embed|score-variants ...   (using a trained model)

  embed           embeddings of sequences from FASTA, BED + FASTA or CSV -> .npz (mean-pooled) or
                  zarr (mean-pooled, per base, per chunk); any length (overlapping windows)
  score-variants  zero-shot scores of SNVs, MNVs and indels from a VCF + reference FASTA (indexed:
                  read by region) -> TSV, or a bgzipped, tabix-indexed VCF with DNAC_ INFO fields

Examples:
  dnachunker embed --model runs/x/export --fasta genes.fa --out genes.npz
  dnachunker embed --model runs/x/export --bed peaks.bed --fasta hg38.fa --out peaks.zarr --per-base --chunks 0
  dnachunker score-variants --model runs/x/export --vcf clinvar.vcf.gz --fasta hg38.fa --out scores.tsv
  dnachunker score-variants --model runs/x/export --vcf clinvar.vcf.gz --fasta hg38.fa.gz --out scored.vcf.gz \
      --boundary-shift
"""
from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

import numpy as np

from dnachunker.cli import at_least, load_model
from dnachunker.errors import InputError, describe
from dnachunker.fileio import atomic_directory, atomic_file, output_file
from dnachunker.tokenizer import TokenizerError, decode, decode_interval, encode

from . import score


def _from_fasta(fasta: str) -> tuple[list[str], list[str]]:
    from dnachunker.fasta import read_fasta
    names, seqs = [], []
    for name, codes, soft in read_fasta(fasta):
        names.append(name)
        seqs.append(decode(codes, soft))
    if not seqs:
        raise InputError(f"{fasta}: no FASTA records")
    return names, seqs


def _from_bed(bed: str, fasta: str) -> tuple[list[str], list[str]]:
    from dnachunker.fasta import open_maybe_gzip, read_fasta
    rows = []
    path = Path(bed)
    if not path.is_file():
        raise InputError(f"{bed}: BED file not found")
    with open_maybe_gzip(path) as fh:
        for line_no, raw in enumerate(fh, 1):
            line = raw.decode(errors="replace").rstrip("\r\n")  # LF or CRLF, as the pipeline's BED reader
            if not line.strip() or line.startswith(("#", "track", "browser")):
                continue
            f = line.split("\t")
            try:
                start, end = int(f[1]), int(f[2])
            except (IndexError, ValueError):
                raise InputError(f"{bed}:{line_no}: a BED line needs chrom, start and end (integers)") from None
            strand = f[5] if len(f) > 5 else "+"
            if not 0 <= start < end or strand not in "+-.":
                raise InputError(f"{bed}:{line_no}: bad interval or strand: {f[:3]} {strand}")
            rows.append((line_no, f[0], start, end, f[3] if len(f) > 3 else f"{f[0]}:{start}-{end}", strand))
    if not rows:
        raise InputError(f"{bed}: no intervals (only empty, comment, track or browser lines)")
    wanted = {r[1] for r in rows}
    genome = {name: (codes, soft) for name, codes, soft in read_fasta(fasta) if name in wanted}
    names, seqs = [], []
    for line_no, chrom, start, end, name, strand in rows:
        if chrom not in genome:
            raise InputError(f"{bed}:{line_no}: sequence {chrom!r} is not in {fasta}")
        codes, soft = genome[chrom]
        if end > len(codes):
            raise InputError(f"{bed}:{line_no}: {chrom}:{start}-{end} runs past the end of {chrom} ({len(codes)} bp)")
        names.append(name)
        seqs.append(decode_interval(codes, soft, start, end, strand))
    return names, seqs


def _from_csv(path: str, column: str, name_column: str | None) -> tuple[list[str], list[str]]:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{path}: CSV file not found")
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8-sig")  # -sig: a byte order mark is not a column name
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise InputError(f"{path}:{line}: byte 0x{raw[e.start]:02x} is not UTF-8 text "
                         "(a file saved in another encoding, such as Windows-1252: save it as UTF-8)") from None
    with io.StringIO(text, newline="") as fh:
        reader = csv.DictReader(fh, delimiter="\t" if p.suffix in (".tsv", ".txt") else ",")
        if column not in (reader.fieldnames or []):
            raise InputError(f"{path}:1: no column {column!r} (columns: {reader.fieldnames})")
        names, seqs = [], []
        for line_no, row in enumerate(reader, 2):
            seq = (row[column] or "").strip()
            if not seq:
                raise InputError(f"{path}:{line_no}: empty sequence")
            names.append(row.get(name_column) if name_column else f"row{line_no}")
            seqs.append(seq)
    if not seqs:
        raise InputError(f"{path}: no rows below its header")
    return names, seqs


def _check(seqs: list[str], names: list[str], source: str) -> None:
    """Every record a valid sequence (else InputError naming it); a record without a single A, C,
    G or T is embedded, with a warning naming it: its embedding says nothing about sequence."""
    empty = []
    for i, s in enumerate(seqs):
        try:
            encode(s, name=f"{source}: record {names[i]!r}")
        except TokenizerError as e:
            raise InputError(str(e)) from None
        if not any(b in s for b in "ACGTacgt"):
            empty.append(names[i])
    if empty:
        print(f"warning: {source}: {len(empty)} record(s) hold no A, C, G or T ({', '.join(map(repr, empty[:5]))}"
              f"{', ...' if len(empty) > 5 else ''}): their embeddings say nothing about a sequence", file=sys.stderr)


def cmd_embed(a) -> int:
    from dnachunker.inference import ChunkMeans, stream
    output_file(a.out)
    if a.csv:
        names, seqs = _from_csv(a.csv, a.column, a.name_column)
        source = a.csv
    elif a.bed:
        if not a.fasta:
            raise InputError("--bed needs --fasta (the reference the intervals are cut from)")
        names, seqs = _from_bed(a.bed, a.fasta)
        source = a.bed
    elif a.fasta:
        names, seqs = _from_fasta(a.fasta)
        source = a.fasta
    else:
        raise InputError("give --fasta, --bed with --fasta, or --csv")
    _check(seqs, names, source)
    if a.window and a.overlap is not None and a.overlap >= a.window:
        raise InputError(f"--overlap {a.overlap} must be smaller than --window {a.window}")
    out = Path(a.out)
    if out.suffix == ".npz" and (a.per_base or a.chunks is not None):
        raise InputError(f"{out}: per-base and per-chunk embeddings have a length each: write them to a .zarr")
    if out.suffix not in (".npz", ".zarr"):
        raise InputError(f"{out}: the output must end in .npz (mean-pooled embeddings and their names, one file) "
                         f"or .zarr" + (f": give {out.with_suffix('.npz')}" if out.suffix == ".npy" else ""))
    model = load_model(a, map_location=a.device)
    print(f"embedding {len(seqs)} sequences ({sum(map(len, seqs)):,} bp, longest {max(map(len, seqs)):,}) "
          f"from {source} with {a.model} on {a.device}", file=sys.stderr)
    pieces = stream(model, seqs, a.window, a.overlap, a.batch_size, a.device)
    if out.suffix == ".npz":  # one file, written at once: the embeddings never without their names
        means = Means(len(seqs))
        for piece in pieces:
            means.add(piece)
        mean = means.result()
        with atomic_file(out) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, embeddings=mean, names=np.array(names, dtype=str))
        print(f"embeddings {mean.shape} and their names -> {out} (np.load(path)['embeddings'], ['names'])",
              file=sys.stderr)
        return 0
    import zarr
    with atomic_directory(out) as tmp:  # written piece by piece: memory is one batch's, not the sequences'
        root = zarr.open_group(str(tmp), mode="w")
        means, d = Means(len(seqs)), model.cfg.d_model[0]
        chunks, seq = None, -1
        for piece in pieces:
            i = piece.seq
            if i != seq:  # a new sequence: close the last one's open chunk, make this one's arrays
                if chunks is not None:
                    root[f"per_chunk/{seq}"].append(chunks.close())
                seq, chunks = i, ChunkMeans() if a.chunks is not None else None
                if a.per_base:
                    root.create_array(f"per_base/{i}", shape=(len(seqs[i]), d), dtype="float32",
                                      chunks=(min(len(seqs[i]), 1 << 16), d))
                if a.chunks is not None:
                    root.create_array(f"chunk_starts/{i}", shape=(0,), dtype="int64", chunks=(1 << 16,))
                    root.create_array(f"per_chunk/{i}", shape=(0, d), dtype="float32", chunks=(1 << 14, d))
            means.add(piece)
            if a.per_base:
                root[f"per_base/{i}"][piece.lo:piece.lo + len(piece.hidden)] = piece.hidden
            if chunks is not None:
                starts = piece.chunk_starts[a.chunks]
                root[f"chunk_starts/{i}"].append(starts.astype(np.int64))
                done = chunks.add(piece.hidden, piece.lo, starts)
                if len(done):
                    root[f"per_chunk/{i}"].append(done)
        if chunks is not None:
            root[f"per_chunk/{seq}"].append(chunks.close())
        root.create_array("mean", data=means.result())
        root.attrs.update(names=names, lengths=[len(s) for s in seqs], model=str(a.model),
                          chunk_stage=a.chunks, window=a.window or model.cfg.max_len)
    print(f"embeddings of {len(seqs)} sequences -> {out} (mean{', per_base' if a.per_base else ''}"
          f"{', per_chunk / chunk_starts (stage %d)' % a.chunks if a.chunks is not None else ''})", file=sys.stderr)
    return 0


class Means:
    """Each sequence's mean state, summed piece by piece (inference.stream)."""

    def __init__(self, count: int):
        self.sums, self.lengths = [None] * count, [0] * count

    def add(self, piece) -> None:
        total = piece.hidden.sum(0, dtype=np.float64)
        self.sums[piece.seq] = total if self.sums[piece.seq] is None else self.sums[piece.seq] + total
        self.lengths[piece.seq] += len(piece.hidden)

    def result(self) -> np.ndarray:
        """(count, d) float32."""
        return np.stack([t / n for t, n in zip(self.sums, self.lengths)]).astype(np.float32)


def main(argv=None, prog: str = "dnachunker") -> int:
    from dnachunker.cli import add_device, add_model, add_species, parser, subparser
    p = parser(prog, __doc__)
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    e = subparser(sub, "embed", "sequence embeddings (any length: overlapping windows)")
    add_model(e)
    add_species(e)
    e.add_argument("--fasta", help="FASTA of sequences, or the reference for --bed")
    e.add_argument("--bed", help="BED intervals (chrom start end [name [score [strand]]]) cut from --fasta")
    e.add_argument("--csv", help="CSV/TSV with a sequence column")
    e.add_argument("--column", default="sequence", help="CSV column holding the sequences")
    e.add_argument("--name-column", help="CSV column naming the rows (None: row<line>)")
    e.add_argument("--out", required=True, help="the output file: .npz (mean-pooled, with the names) or .zarr")
    e.add_argument("--per-base", action="store_true", help="also per-base states (zarr)")
    e.add_argument("--chunks", type=int, choices=[0, 1], help="also per-chunk means for this stage (zarr)")
    e.add_argument("--window", type=at_least(0), default=None, help="bases per forward pass (None: max_len; 0: whole)")
    e.add_argument("--overlap", type=at_least(0), default=None, help="overlap of windows, < --window (None: window/2)")
    e.add_argument("--batch-size", type=at_least(1), default=8, help="windows per forward pass")
    add_device(e)
    s = subparser(sub, "score-variants", "zero-shot variant effect scores (SNVs, MNVs, indels): mean log P(ALT) "
                  "- mean log P(REF), each allele masked")
    score.add_arguments(s)
    a = p.parse_args(argv)
    try:
        return {"embed": cmd_embed, "score-variants": score.cmd_score_variants}[a.cmd](a)
    except (InputError, OSError) as e:
        print(f"error: {describe(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""dnachunker embed: its arguments and the command. Sequences come from a FASTA or BED + FASTA
(read by region, window by window: dnachunker.reference) or a CSV; dnachunker.embed_io writes
them as they come, or in parts (dnachunker.parts) that a merge joins."""
from __future__ import annotations

import csv
import io
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dnachunker.cli import at_least, check_parts, load_model
from dnachunker.errors import InputError
from dnachunker.fileio import atomic_directory, atomic_file, file_sha256, output_file
from dnachunker.tokenizer import TokenizerError, encode

_BASE = re.compile("[ACGTacgt]")


def add_arguments(e) -> None:
    from dnachunker.cli import add_device, add_model, add_parts, add_species
    add_model(e)
    add_species(e)
    e.add_argument("--fasta", help="FASTA of sequences, or the reference for --bed (indexed with samtools faidx: "
                   "read by region)")
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
    add_parts(e, "the windows of all the sequences, in order,")
    add_device(e)


@dataclass
class Noted:
    """A sequence whose text is looked at as it is read: whether it held any A, C, G or T."""
    seq: object
    bases: bool = False

    def __len__(self) -> int:
        return len(self.seq)

    def __getitem__(self, s: slice) -> str:
        text = self.seq[s]
        self.bases = self.bases or bool(_BASE.search(text))
        return text


def cmd_embed(a) -> int:
    from dnachunker.parts import Parts, export_id, part_range
    output_file(a.out)
    out = Path(a.out)
    check_parts(a)
    if out.suffix == ".npz" and (a.per_base or a.chunks is not None):
        raise InputError(f"{out}: per-base and per-chunk embeddings have a length each: write them to a .zarr")
    if out.suffix not in (".npz", ".zarr"):
        raise InputError(f"{out}: the output must end in .npz (mean-pooled embeddings and their names, one file) "
                         f"or .zarr" + (f": give {out.with_suffix('.npz')}" if out.suffix == ".npy" else ""))
    if a.window and a.overlap is not None and a.overlap >= a.window:
        raise InputError(f"--overlap {a.overlap} must be smaller than --window {a.window}")
    names, seqs, source, reference = _inputs(a)
    try:
        model = load_model(a, map_location=a.device)
        window = model.cfg.max_len if a.window is None else a.window
        overlap = window // 2 if a.overlap is None else a.overlap
        print(f"embedding {len(seqs)} sequences ({sum(map(len, seqs)):,} bp, longest {max(map(len, seqs)):,}) "
              f"from {source} with {a.model} on {a.device}", file=sys.stderr)
        if not a.parts:
            _write(out, a, model, names, seqs, window, overlap, source)
        else:
            from dnachunker.inference import tile_count
            key = {"input": _input_key(a), "model": export_id(a.model), "window": window, "overlap": overlap,
                   "per_base": a.per_base, "chunks": a.chunks, "parts": a.parts}
            parts = Parts(out, a.parts, key)
            parts.check_folder()
            total = sum(tile_count(len(s), window, overlap) for s in seqs)

            def write(k: int) -> int:
                select = part_range(total, k, a.parts)
                with atomic_directory(parts.path(k)) as tmp:
                    _write_part(tmp, a, model, seqs, window, overlap, select)
                return len(select)
            if not parts.run(a.part, a.merge, write, "windows"):
                return 0
            _write(out, a, model, names, seqs, window, overlap, source, parts.require_all())
    finally:
        if reference is not None:
            reference.close()
    return 0


def _write(out: Path, a, model, names: list[str], seqs: list, window: int, overlap: int, source: str,
           parts: list[Path] | None = None) -> None:
    """The embeddings into `out` (it appears only when complete): from a forward pass over `seqs`,
    or merged from finished `parts`."""
    import zarr

    from dnachunker.embed_io import Embeddings, merge
    from dnachunker.inference import Span, stream
    lengths, d = [len(s) for s in seqs], model.cfg.d_model[0]

    def fill(embeddings: Embeddings) -> None:
        if parts is not None:
            merge(embeddings, [zarr.open_group(str(p), mode="r") for p in parts])
            return
        for piece in stream(model, seqs, window, overlap, a.batch_size, a.device):
            embeddings.add(Span.of(piece, a.chunks), piece.hidden)
        _warn_empty(names, seqs, source)

    if out.suffix == ".npz":  # one file, written at once: the embeddings never without their names
        embeddings = Embeddings(None, lengths, d, False, None)
        fill(embeddings)
        mean = embeddings.close()
        with atomic_file(out) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, embeddings=mean, names=np.array(names, dtype=str))
        print(f"embeddings {mean.shape} and their names -> {out} (np.load(path)['embeddings'], ['names'])",
              file=sys.stderr)
        return
    with atomic_directory(out) as tmp:  # written span by span: memory is one batch's, not the sequences'
        root = zarr.open_group(str(tmp), mode="w")
        embeddings = Embeddings(root, lengths, d, a.per_base, a.chunks)
        fill(embeddings)
        embeddings.close()
        root.attrs.update(names=names, lengths=lengths, model=str(a.model), chunk_stage=a.chunks, window=window,
                          overlap=overlap)
    print(f"embeddings of {len(seqs)} sequences -> {out} (mean{', per_base' if a.per_base else ''}"
          f"{', per_chunk / chunk_starts (stage %d)' % a.chunks if a.chunks is not None else ''})", file=sys.stderr)


def _write_part(tmp: Path, a, model, seqs: list, window: int, overlap: int, select: range) -> None:
    import zarr

    from dnachunker.embed_io import PartWriter
    from dnachunker.inference import Span, stream
    writer = PartWriter(zarr.open_group(str(tmp), mode="w"), model.cfg.d_model[0], a.per_base)
    for piece in stream(model, seqs, window, overlap, a.batch_size, a.device, select=select):
        writer.add(Span.of(piece, a.chunks), piece.hidden)
    writer.close()


def _warn_empty(names: list[str], seqs: list[Noted], source: str) -> None:
    """A record without a single A, C, G or T is embedded, with a warning naming it: its embedding
    says nothing about sequence."""
    empty = [name for name, s in zip(names, seqs) if not s.bases]
    if empty:
        print(f"warning: {source}: {len(empty)} record(s) hold no A, C, G or T ({', '.join(map(repr, empty[:5]))}"
              f"{', ...' if len(empty) > 5 else ''}): their embeddings say nothing about a sequence", file=sys.stderr)


def _inputs(a) -> tuple[list[str], list[Noted], str, object]:
    """-> names, sequences (text, or reference regions read window by window), the source, the
    reference to close (or None)."""
    from dnachunker.reference import Region, open_reference
    if a.csv:
        names, seqs = _from_csv(a.csv, a.column, a.name_column)
        return names, [Noted(s) for s in seqs], a.csv, None
    if not a.fasta:
        raise InputError("--bed needs --fasta (the reference the intervals are cut from)" if a.bed else
                         "give --fasta, --bed with --fasta, or --csv")
    reference = open_reference(a.fasta)
    try:
        if a.bed:
            rows = _read_bed(a.bed, a.fasta, reference.lengths)
            return ([name for name, *_ in rows], [Noted(Region(reference, *r)) for _, *r in rows], a.bed, reference)
        if not reference.lengths:
            raise InputError(f"{a.fasta}: no FASTA records")
        return (list(reference.lengths), [Noted(Region(reference, c, 0, n)) for c, n in reference.lengths.items()],
                a.fasta, reference)
    except BaseException:
        reference.close()
        raise


def _input_key(a) -> dict:
    """What the parts' sequences depend on."""
    if a.csv:
        return {"csv": file_sha256(a.csv), "column": a.column}
    key = {"fasta": str(Path(a.fasta).resolve())}
    return key | ({"bed": file_sha256(a.bed)} if a.bed else {})


def _read_bed(bed: str, fasta: str, lengths: dict[str, int]) -> list[tuple[str, str, int, int, str]]:
    """-> [(name, chrom, start, end, strand)], each checked against the reference's sequences."""
    from dnachunker.fasta import open_maybe_gzip
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
            if f[0] not in lengths:
                raise InputError(f"{bed}:{line_no}: sequence {f[0]!r} is not in {fasta}")
            if end > lengths[f[0]]:
                raise InputError(f"{bed}:{line_no}: {f[0]}:{start}-{end} runs past the end of {f[0]} "
                                 f"({lengths[f[0]]} bp)")
            rows.append((f[3] if len(f) > 3 else f"{f[0]}:{start}-{end}", f[0], start, end, strand))
    if not rows:
        raise InputError(f"{bed}: no intervals (only empty, comment, track or browser lines)")
    return rows


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
            name = row.get(name_column) if name_column else f"row{line_no}"
            try:
                encode(seq, name=f"{path}: record {name!r}")
            except TokenizerError as e:
                raise InputError(str(e)) from None
            names.append(name)
            seqs.append(seq)
    if not seqs:
        raise InputError(f"{path}: no rows below its header")
    return names, seqs

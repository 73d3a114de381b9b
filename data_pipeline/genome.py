"""Stage 1: FASTA -> zarr genome store.

Layout (zarr v3, blosc-zstd): seq/<i> uint8 token ids and repeat/<i> bool per chromosome i;
root attrs hold the chromosome names and lengths, the source files' SHA-256 and `complete`.
The store is written under a temporary name and renamed when complete, so an interrupted run
never leaves a store that looks usable; a re-run with the same inputs reuses a complete store.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import zarr
from tqdm import tqdm
from zarr.codecs import BloscCodec

from dnachunker.fasta import read_fasta
from dnachunker.fileio import atomic_directory, file_sha256

from .annotations import check_against, read_repeats
from .config import PipelineConfig
from .errors import DataError

FORMAT = "dnachunker-genome/1"


def _compressors(clevel: int):
    return [BloscCodec(cname="zstd", clevel=clevel, shuffle="bitshuffle")]


def source_info(cfg: PipelineConfig) -> dict:
    info = {"fasta": str(cfg.fasta), "fasta_sha256": file_sha256(cfg.fasta)}
    if cfg.repeats:
        info.update(repeats=str(cfg.repeats), repeats_sha256=file_sha256(cfg.repeats))
    else:
        info.update(repeats="soft-masking", repeats_sha256=None)
    return info


def build_genome(cfg: PipelineConfig) -> Path:
    out = Path(cfg.out) / "genome.zarr"
    if not Path(cfg.fasta).is_file():
        raise DataError(f"{cfg.fasta}: FASTA file not found")
    source = source_info(cfg)
    if out.exists():
        try:
            store = GenomeStore(out)
            if store.attrs.get("source") == source:
                print(f"genome store {out} is complete and matches the inputs: reused")
                return out
        except DataError:
            pass
        print(f"genome store {out} is stale or incomplete: rebuilding")
    repeats = read_repeats(cfg.repeats) if cfg.repeats else None
    names, lengths = [], {}
    size = Path(cfg.fasta).stat().st_size
    with atomic_directory(out) as tmp:
        root = zarr.open_group(str(tmp), mode="w")
        with ThreadPoolExecutor(max_workers=2) as pool, \
                tqdm(total=size, unit="B", unit_scale=True, desc="FASTA -> zarr") as bar:
            jobs = []
            # read_fasta reports decompressed bytes; scale to the file size for a gz input
            for name, codes, soft in read_fasta(cfg.fasta, on_bytes=lambda n: bar.update(min(n, bar.total - bar.n))):
                if repeats is not None:
                    mask = np.zeros(len(codes), dtype=bool)
                    for start, end, line in repeats.get(name, ()):
                        if end > len(codes):
                            raise DataError(f"{cfg.repeats}:{line}: interval {name}:{start}-{end} "
                                            f"extends past the chromosome end ({len(codes)})")
                        mask[start:end] = True
                else:
                    mask = soft
                i = len(names)
                names.append(name)
                lengths[name] = len(codes)
                jobs.append(pool.submit(_write, root, i, codes, mask, cfg.zarr_chunk, cfg.zarr_clevel))
                while len(jobs) > 2:  # bound memory: at most ~3 chromosomes in flight
                    jobs.pop(0).result()
            for j in jobs:
                j.result()
        if repeats is not None:
            check_against(cfg.repeats, repeats, lengths)
        root.attrs.update(format=FORMAT, names=names, lengths=[lengths[n] for n in names],
                          source=source, complete=True)
    print(f"genome store {out}: {len(names)} sequences, {sum(lengths.values()):,} bp")
    return out


def _write(root, i: int, codes: np.ndarray, mask: np.ndarray, chunk: int, clevel: int):
    for group, data in (("seq", codes), ("repeat", mask)):
        arr = root.create_array(f"{group}/{i}", shape=data.shape, dtype=data.dtype,
                                chunks=(min(chunk, len(data)),), compressors=_compressors(clevel))
        arr[:] = data


class GenomeStore:
    """Read access to a complete genome store."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.root = zarr.open_group(str(self.path), mode="r")
            self.attrs = dict(self.root.attrs)
        except Exception as e:
            raise DataError(f"{self.path}: not a genome store ({e})") from None
        if self.attrs.get("format") != FORMAT or not self.attrs.get("complete"):
            raise DataError(f"{self.path}: incomplete or unknown genome store (run the 'genome' stage)")
        self.names: list[str] = list(self.attrs["names"])
        self.lengths: dict[str, int] = dict(zip(self.names, self.attrs["lengths"]))
        self._index = {n: i for i, n in enumerate(self.names)}

    def seq(self, name: str, start: int = 0, end: int | None = None) -> np.ndarray:
        return self.root[f"seq/{self._index[name]}"][start:end]

    def repeat(self, name: str, start: int = 0, end: int | None = None) -> np.ndarray:
        return self.root[f"repeat/{self._index[name]}"][start:end]

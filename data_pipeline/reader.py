"""Random access to the samples of a shard set, by (split, index), via the manifest's offsets.

The shards are ordinary WebDataset tars (any tar/WebDataset reader streams them); for training we
read samples by index instead, which is what makes exact and elastic resume simple: the global
sample order is a permutation, and a checkpoint only needs the position in it.

Every read is checked where it happens: the sample's CRC-32 against its shard record (format 3;
formats 1 and 2 have none, so each shard is verified whole against its SHA-256 when a process
first opens it), its tar headers, its index, and its tokens (bases only). A failure is a
DataError naming the shard, the sample and the byte offset: a damaged shard never trains, and
never fails later deep in the model.
"""
from __future__ import annotations

import json
import os
import tarfile
import zlib
from pathlib import Path

import numpy as np

from dnachunker.fileio import file_sha256
from dnachunker.tokenizer import A, N

from .errors import DataError
from .shards import load_manifest


def provenance(manifest: dict) -> dict:
    """What a model card records of a shard set: source FASTA (+ SHA-256), window, split sizes."""
    return {"source": manifest["source"], "window_length": manifest["window_length"],
            "splits": {k: v["samples"] for k, v in manifest["splits"].items()}}


class ShardSplit:
    def __init__(self, root: str | Path, split: str):
        self.root = Path(root)
        self.manifest = load_manifest(self.root)
        if split not in self.manifest["splits"]:
            raise DataError(f"{self.root}: no split '{split}' (has {list(self.manifest['splits'])})")
        self.split = split
        self.length = self.manifest["window_length"]
        self.shards = self.manifest["splits"][split]["shards"]
        self.paths = [self.root / split / r["name"] for r in self.shards]
        for path, rec in zip(self.paths, self.shards):
            if not path.is_file():
                raise DataError(f"{path}: shard listed in the manifest is missing")
            if path.stat().st_size != rec["bytes"]:
                raise DataError(f"{path}: {path.stat().st_size} bytes, the manifest says {rec['bytes']} "
                                f"(truncated or replaced; run: python -m data_pipeline verify out={self.root})")
        self.first = np.array([r["first_index"] for r in self.shards], dtype=np.int64)
        self._handles: dict[int, object] = {}
        self._pid = os.getpid()
        self.format = self.manifest["format"]
        # one sample: 3 headers + bases (L) + repeat flags (L / 8; format 1: float16 weights, 2L) + json
        per_base = 1.125 if self.format.endswith("/2") else 3
        self._read_size = 6 * 512 + int(per_base * self.length) + 2 * 512

    @property
    def genomes(self) -> None:
        """One shard set: one genome, no per-genome metrics or species index (a CorpusSplit has them)."""
        return None

    def __len__(self) -> int:
        return int(sum(r["samples"] for r in self.shards))

    def provenance(self) -> dict:
        return provenance(self.manifest)

    def _file(self, shard: int):
        if os.getpid() != self._pid:  # forked into a DataLoader worker: do not share handles
            self._handles, self._pid = {}, os.getpid()
        if shard not in self._handles:
            if "crc32" not in self.shards[shard] and file_sha256(self.paths[shard]) != self.shards[shard]["sha256"]:
                raise DataError(f"{self.paths[shard]}: SHA-256 differs from the manifest's (damaged or replaced; "
                                f"run: python -m data_pipeline verify out={self.root})")
            self._handles[shard] = open(self.paths[shard], "rb")
        return self._handles[shard]

    def __getitem__(self, index: int) -> dict:
        """-> {bases: uint8 (L,), repeat: bool (L,), meta: dict}; format 1 adds its stored per-base
        loss weights (weight: float16 (L,), repeat_weight baked in)."""
        if not 0 <= index < len(self):
            raise IndexError(index)
        shard = int(np.searchsorted(self.first, index, side="right") - 1)
        rec, k = self.shards[shard], index - int(self.first[shard])
        offset = rec["offsets"][k]
        fh = self._file(shard)
        fh.seek(offset)
        buf = fh.read(self._read_size)
        where = f"{self.paths[shard]}: sample {index} (byte {offset})"
        out, pos = {}, 0
        for _ in range(3):
            try:
                info = tarfile.TarInfo.frombuf(buf[pos:pos + 512], "utf-8", "surrogateescape")
            except tarfile.HeaderError as e:
                raise DataError(f"{self.paths[shard]}: bad tar header at byte {offset + pos}: {e}") from None
            pos += 512
            out[info.name.rsplit(".", 1)[-1]] = buf[pos:pos + info.size]
            pos += (info.size + 511) // 512 * 512
        if "crc32" in rec and zlib.crc32(buf[:pos]) != rec["crc32"][k]:
            raise DataError(f"{where}: CRC-32 differs from the shard record: the shard is damaged (run: python -m "
                            f"data_pipeline verify out={self.root})")
        try:
            bases = np.frombuffer(out["bases"], dtype=np.uint8)
            sample = {"bases": bases, "meta": json.loads(out["json"])}
        except (KeyError, ValueError) as e:
            raise DataError(f"{where}: malformed sample ({type(e).__name__}: {e})") from None
        if sample["meta"].get("index") != index or len(bases) != self.length:
            raise DataError(f"{where}: holds sample {sample['meta'].get('index')} of {len(bases)} bp, expected sample "
                            f"{index} of {self.length} bp (offsets in the manifest do not match the shard)")
        bad = np.flatnonzero((bases < A) | (bases > N))
        if bad.size:
            raise DataError(f"{where}: token id {bases[bad[0]]} at position {bad[0]} is not a base "
                            f"({bad.size} such); the shard is damaged")
        if "repeat" in out:
            sample["repeat"] = np.unpackbits(np.frombuffer(out["repeat"], dtype=np.uint8), count=len(bases)).astype(bool)
        else:  # format 1
            sample["weight"] = np.frombuffer(out["weight"], dtype="<f2")
            sample["repeat"] = sample["weight"] < 1
        return sample

"""Stage 3: WebDataset tar shards + manifest, in parallel, deterministic and resumable.

Format 3 (dnachunker-shards/3). Each sample <key> has three members:
  <key>.bases   uint8 token ids (dnachunker.tokenizer codes A..N), one per base
  <key>.repeat  the repeat (soft-masked) flag of each base, bit-packed (numpy.packbits, big-endian
                bit order; the last byte zero-padded)
  <key>.json    chrom, start, end, split, index
The loss weight of repeats is applied by the training loader (`data.repeat_weight`), so it can
change without re-sharding; at 8 kbp a sample takes 1.4 bytes per base. The shard's record
(<name>.json, and the manifest) lists each sample's byte offset and the CRC-32 of its bytes (its
three members, headers and padding included), which the reader checks on every read
(data_pipeline.reader). Format 2 is format 3 without the CRC-32 list; format 1 stored a float16
loss weight per base instead of the repeat bits (3.25 bytes per base). Both are still read, each
shard verified whole (SHA-256) when a process first opens it. Tars are plain USTAR with
fixed metadata (mode 0444, uid/gid 0, mtime 0), written from headers made here into one buffer per
shard and hashed from that buffer, so the same input and config give byte-identical shards. A
shard is written under a hidden temporary name, renamed, then its record <name>.json (checksum,
sample count, byte offset of each sample) is written the same way. A re-run keeps a shard only if
its record matches the current config and its checksum verifies. The manifest (written last)
lists every shard with its record: its presence marks a complete set.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import zlib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from dnachunker.fileio import atomic_file, file_sha256, write_text

from .config import PipelineConfig, digest
from .errors import DataError
from .genome import GenomeStore

MANIFEST = "manifest.json"
FORMAT = "dnachunker-shards/3"
FORMATS = ("dnachunker-shards/1", "dnachunker-shards/2", FORMAT)  # readable
SPLITS = ("train", "valid", "test")
BLOCK = 512


def tar_header(name: str, size: int) -> bytes:
    """The USTAR header Python's tarfile writes for a regular file `name` of `size` bytes with
    mode 0444, uid = gid = 0, mtime 0 and no user or group names (tested against tarfile)."""
    h = bytearray(BLOCK)
    raw = name.encode("ascii")
    if len(raw) > 100:
        raise ValueError(f"tar member name longer than 100 bytes: {name}")
    h[0:len(raw)] = raw
    h[100:108] = b"0000444\0"
    h[108:116] = h[116:124] = b"0000000\0"
    h[124:136] = b"%011o\0" % size
    h[136:148] = b"00000000000\0"
    h[148:156] = b" " * 8
    h[156:157] = b"0"
    h[257:265] = b"ustar\x0000"
    h[148:155] = b"%06o\0" % sum(h)
    return bytes(h)


def _append(buf: bytearray, name: str, data: bytes) -> None:
    buf += tar_header(name, len(data))
    buf += data
    buf += bytes(-len(data) % BLOCK)


def _write_shard(job: dict) -> dict:
    store = GenomeStore(job["store"])
    path = Path(job["path"])
    L = job["length"]
    offsets = []
    # a shard's windows are contiguous in genome order: read each chromosome's span once
    spans = {}
    for chrom, start in zip(job["chroms"], job["starts"]):
        lo, hi = spans.get(chrom, (start, start + L))
        spans[chrom] = (min(lo, start), max(hi, start + L))
    loaded = {c: (lo, store.seq(c, lo, hi), store.repeat(c, lo, hi)) for c, (lo, hi) in spans.items()}
    buf, crcs = bytearray(), []
    for k, (chrom, start) in enumerate(zip(job["chroms"], job["starts"])):
        index = job["first_index"] + k
        key = f"{job['split']}-{index:09d}"
        lo, seq, rep = loaded[chrom]
        meta = json.dumps({"chrom": chrom, "start": int(start), "end": int(start + L), "split": job["split"],
                           "index": index}, sort_keys=True).encode()
        offsets.append(len(buf))
        _append(buf, f"{key}.bases", seq[start - lo:start - lo + L].tobytes())
        _append(buf, f"{key}.repeat", np.packbits(rep[start - lo:start - lo + L]).tobytes())
        _append(buf, f"{key}.json", meta)
        crcs.append(zlib.crc32(memoryview(buf)[offsets[-1]:]))
    buf += bytes(2 * BLOCK)            # end of archive
    buf += bytes(-len(buf) % 10240)    # tarfile's record size, as every tar reader expects
    with atomic_file(path) as tmp, open(tmp, "wb") as fh:
        fh.write(buf)
    record = {"name": path.name, "split": job["split"], "samples": len(offsets), "first_index": job["first_index"],
              "bytes": len(buf), "sha256": hashlib.sha256(buf).hexdigest(), "offsets": offsets, "crc32": crcs,
              "config_key": job["config_key"]}
    _write_json(path.with_name(path.name + ".json"), record)
    return record


def _write_json(path: Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=1, sort_keys=True))


def _finished(path: Path, config_key: str) -> dict | None:
    """The record of a finished shard that matches the config and verifies, else None."""
    rec_path = path.with_name(path.name + ".json")
    if not (path.is_file() and rec_path.is_file()):
        return None
    try:
        rec = json.loads(rec_path.read_text())
    except json.JSONDecodeError:
        return None
    if rec.get("config_key") != config_key or path.stat().st_size != rec.get("bytes"):
        return None
    return rec if file_sha256(path) == rec["sha256"] else None


def build_shards(cfg: PipelineConfig) -> Path:
    out = Path(cfg.out)
    store_path = out / "genome.zarr"
    store = GenomeStore(store_path)
    wjson = out / "windows.json"
    if not wjson.is_file():
        raise DataError(f"{out}: no windows.json (run the 'windows' stage first)")
    wmeta = json.loads(wjson.read_text())
    if (wmeta["length"], wmeta["stride"]) != (cfg.window.length, cfg.stride):
        raise DataError(f"{wjson}: windows were made with length/stride {wmeta['length']}/{wmeta['stride']}, "
                        f"config asks for {cfg.window.length}/{cfg.stride}: re-run the 'windows' stage")
    win = np.load(out / "windows.npz")
    names = [str(n) for n in win["names"]]
    base_key = {"format": FORMAT, "source": store.attrs["source"], "window": cfg.to_dict()["window"],
                "samples_per_shard": cfg.samples_per_shard}
    jobs, kept = [], {}
    for split in [s[: -len("_start")] for s in win.files if s.endswith("_start")]:
        chroms, starts = win[f"{split}_chrom"], win[f"{split}_start"]
        (out / split).mkdir(parents=True, exist_ok=True)
        n = len(starts)
        for i, lo in enumerate(range(0, n, cfg.samples_per_shard)):
            hi = min(lo + cfg.samples_per_shard, n)
            job = {"store": str(store_path), "split": split, "first_index": lo, "length": cfg.window.length,
                   "path": str(out / split / f"{split}-{i:06d}.tar"),
                   "chroms": [names[c] for c in chroms[lo:hi]], "starts": starts[lo:hi].tolist()}
            job["config_key"] = digest({**base_key, "chroms": job["chroms"], "starts": job["starts"]})
            rec = _finished(Path(job["path"]), job["config_key"])
            if rec is not None:
                kept[job["path"]] = rec
            else:
                jobs.append(job)
    if kept:
        print(f"shards: {len(kept)} finished shards verified and kept, {len(jobs)} to write")
    records = dict(kept)
    workers = cfg.workers or os.cpu_count() or 1
    with tqdm(total=len(jobs), desc="shards", unit="shard") as bar:
        if workers == 1 or len(jobs) <= 1:
            for job in jobs:
                records[job["path"]] = _write_shard(job)
                bar.update()
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                for job, rec in zip(jobs, pool.map(_write_shard, jobs)):
                    records[job["path"]] = rec
                    bar.update()
    windows_stats = wmeta["splits"]
    splits = {}
    for split in windows_stats:
        recs = sorted((r for r in records.values() if r["split"] == split), key=lambda r: r["first_index"])
        splits[split] = {"samples": sum(r["samples"] for r in recs),
                         "dropped_mostly_n": windows_stats[split]["dropped_mostly_n"],
                         "shards": [{k: v for k, v in r.items() if k != "config_key"} for r in recs]}
    manifest = {"format": FORMAT, "window_length": cfg.window.length, "window_stride": cfg.stride,
                "source": store.attrs["source"],
                "config": cfg.to_dict(), "splits": splits}
    _write_json(out / MANIFEST, manifest)
    total = {s: v["samples"] for s, v in splits.items()}
    print(f"manifest {out / MANIFEST}: {total}")
    return out / MANIFEST


def load_manifest(root: str | Path) -> dict:
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise DataError(f"{path}: no manifest (the shard set is missing or incomplete)")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: corrupt manifest: {e}") from None
    if manifest.get("format") not in FORMATS:
        raise DataError(f"{path}: unknown manifest format {manifest.get('format')!r} (this version reads "
                        f"{', '.join(FORMATS)})")
    _check_records(path, manifest)
    return manifest


def _check_records(path: Path, manifest: dict) -> None:
    """A hand-edited manifest must not read a file twice, or one outside the shard set: every
    record names a plain <split>-NNNNNN.tar of its own split, no two records the same file, and
    the sample indices run on without gap or overlap."""
    seen = {}
    try:
        for split, info in manifest["splits"].items():
            first = 0
            for i, rec in enumerate(info["shards"]):
                name, where = rec["name"], f"splits.{split}.shards[{i}]"
                if not re.fullmatch(rf"{re.escape(split)}-\d{{6}}\.tar", str(name)):
                    raise DataError(f"{path}: {where}: shard name {name!r} is not a plain '{split}-NNNNNN.tar' of "
                                    f"this shard set (a path, or another split's file, is never read)")
                if name in seen:
                    raise DataError(f"{path}: {where}: shard file {name!r} is listed twice (also {seen[name]}): "
                                    f"its samples would be read twice")
                seen[name] = where
                if rec["first_index"] != first or len(rec["offsets"]) != rec["samples"] or \
                        ("crc32" in rec and len(rec["crc32"]) != rec["samples"]):
                    raise DataError(f"{path}: {where}: sample indices or offsets do not follow on from the "
                                    f"previous shard (first_index {rec['first_index']}, expected {first})")
                first += rec["samples"]
    except (KeyError, TypeError, AttributeError) as e:
        raise DataError(f"{path}: malformed manifest ({type(e).__name__}: {e})") from None


def verify(root: str | Path, checksums: bool = True) -> list[str]:
    """Problems with a shard set (empty list: all shards present, sized and checksummed)."""
    root = Path(root)
    manifest = load_manifest(root)
    problems = []
    for split, info in manifest["splits"].items():
        for rec in info["shards"]:
            path = root / split / rec["name"]
            if not path.is_file():
                problems.append(f"{path}: missing")
            elif path.stat().st_size != rec["bytes"]:
                problems.append(f"{path}: {path.stat().st_size} bytes, manifest says {rec['bytes']}")
            elif checksums and file_sha256(path) != rec["sha256"]:
                problems.append(f"{path}: checksum mismatch")
    return problems

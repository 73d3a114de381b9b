"""Peak memory of `dnachunker embed` on one long sequence, by its length: the process's resident
set sampled every second while it embeds the first L bases (from 5 Mbp on) of the shared hg19
chr20, bgzipped and indexed here, into a zarr store with per-base states and stage-0 chunk means.

    python -m bench.embed_memory [--export runs/tiny_chr20/export] [--lengths 1000000,4000000]

Each length runs in its own process, one after another (run it alone). The table gives the peak
RSS, the RSS at the end, the output's size and bp/s; the last column is each peak over the first
length's, measured in this run: close to 1 when memory is bounded by the batch, not the length.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from dnachunker.cli import parser
from dnachunker.fileio import markdown_table

from .model import CHR20, ROOT

OFFSET = 5_000_000  # past chr20's leading N run


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


def embed(export: str, fasta: Path, length: int, out: Path, extra: list[str]) -> dict:
    """One run: peak and final RSS (MB), seconds."""
    bed = out.with_suffix(".bed")
    bed.write_text(f"chr20\t{OFFSET}\t{OFFSET + length}\n")
    cmd = [sys.executable, "-m", "dnachunker_cli", "embed", "--model", export, "--bed", str(bed), "--fasta", str(fasta),
           "--out", str(out), "--per-base", "--chunks", "0", *extra]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    samples: list[float] = []

    def sample():
        while proc.poll() is None:
            samples.append(_rss_mb(proc.pid))
            time.sleep(1.0)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    err = proc.stderr.read()
    proc.wait()
    thread.join()
    if proc.returncode:
        raise SystemExit(f"embed failed ({proc.returncode}):\n{err[-3000:]}")
    seconds = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return {"peak": max(samples, default=0.0), "last": next((s for s in reversed(samples) if s), 0.0),
            "seconds": seconds, "size": size}


def main(argv=None, prog: str | None = None) -> int:
    ap = parser(prog or f"python -m {__spec__.name}", __doc__)
    ap.add_argument("--export", default=str(ROOT / "runs" / "tiny_chr20" / "export"), help="a trained export")
    ap.add_argument("--lengths", default="1000000,4000000", help="comma-separated sequence lengths, bp")
    ap.add_argument("--work", default=None, help="folder for the reference and outputs (default: a temporary one)")
    ap.add_argument("embed_args", nargs="*", help="more embed arguments, after --")
    a = ap.parse_args(argv)
    import pysam

    lengths = [int(x) for x in a.lengths.split(",")]
    with tempfile.TemporaryDirectory(dir=a.work) as tmp:
        fasta = Path(tmp) / "chr20.fa.gz"
        print(f"bgzip + faidx of {CHR20} into {tmp} ...", file=sys.stderr)
        subprocess.run(f"zcat {CHR20} > {tmp}/chr20.fa", shell=True, check=True)
        pysam.tabix_compress(f"{tmp}/chr20.fa", str(fasta), force=True)
        Path(f"{tmp}/chr20.fa").unlink()
        pysam.faidx(str(fasta))
        rows = []
        for length in lengths:
            print(f"embedding {length:,} bp ...", file=sys.stderr)
            r = embed(a.export, fasta, length, Path(tmp) / f"e{length}.zarr", a.embed_args)
            rows.append({"bp": f"{length:,}", "peak RSS MB": r["peak"], "RSS at end MB": r["last"],
                         "output MB": r["size"] / 2**20, "bp/s": length / r["seconds"],
                         "peak / first": r["peak"] / (rows[0]["peak RSS MB"] if rows else r["peak"])})
            print(markdown_table(rows[-1:]), file=sys.stderr)
    print(markdown_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""`dnachunker tracks` on real chr20: bigWig and BED files read back through pyBigWig, agreeing with
each other and with the model's own segmentation; regions merged and sorted; bad regions named."""
import numpy as np
import pytest

from dnachunker import DNAChunker
from dnachunker.inference import stream
from dnachunker.reference import open_reference

from .test_inference import _cli

pytestmark = pytest.mark.slow
pyBigWig = pytest.importorskip("pyBigWig")


def _bed(path):
    return [(f[0], int(f[1]), int(f[2])) for f in (ln.split("\t") for ln in path.read_text().splitlines()[1:])]


def test_tracks_round_trip_through_pybigwig_and_match_the_segmentation(tmp_path, pretrained, chr20_indexed):
    (tmp_path / "r.bed").write_text("chr20\t101000\t102500\nchr20\t250000\t250600\n")
    out = tmp_path / "t"
    r = _cli("tracks", "--model", pretrained, "--fasta", chr20_indexed["indexed"], "--region", "chr20:100,001-101,500",
             "--bed", tmp_path / "r.bed", "--window", 512, "--plot-length", 300, "--out", out)
    regions = [("chr20", 100_000, 102_500), ("chr20", 250_000, 250_600)]  # the first two merged
    assert "2 region(s), 3,100 bp" in r.stderr and (out / "browser.png").stat().st_size > 10_000
    bw = {t: pyBigWig.open(str(out / f"{t}.bw")) for t in ("p_0", "p_1", "entropy", "logp_ref")}
    assert bw["p_0"].chroms() == {"chr20": 400_000}
    model = DNAChunker.from_pretrained(pretrained).eval()
    reference = open_reference(chr20_indexed["indexed"])
    chunks = [_bed(out / f"chunks_{s}.bed") for s in (0, 1)]
    for chrom, start, end in regions:
        seq = reference.text(chrom, start, end)
        pieces = list(stream(model, [seq], 512, None, 8, progress=False, tracks=True))
        for t, f in bw.items():
            want = np.concatenate([p.tracks[t] for p in pieces])
            got = np.array(f.values(chrom, start, end), dtype=np.float32)
            np.testing.assert_allclose(got, want, rtol=1e-6, equal_nan=True)
        assert np.isnan(bw["p_0"].values(chrom, end, end + 10)).all()  # nothing written outside the regions
        for s in (0, 1):
            starts = np.concatenate([p.chunk_starts[s] for p in pieces]) + start
            mine = [c for c in chunks[s] if start <= c[1] < end]
            assert [c[1] for c in mine] == starts.tolist() and mine[-1][2] == end
            assert all(a[2] == b[1] for a, b in zip(mine, mine[1:]))  # chunks tile the region
        p0 = np.array(bw["p_0"].values(chrom, start, end))
        assert set(np.flatnonzero(p0 >= 0.5) + start) | {start} == {c[1] for c in chunks[0] if start <= c[1] < end}


def test_bad_regions_are_named_and_leave_no_output(tmp_path, pretrained, chr20_indexed):
    for region, message in (("chr2:1-100", "chr2 is not in the FASTA"), ("chr20:500,000-500,100", "outside chr20"),
                            ("chr20:1-", "not chrom or chrom:start-end")):
        r = _cli("tracks", "--model", pretrained, "--fasta", chr20_indexed["indexed"], "--region", region, "--out",
                 tmp_path / "t", ok=False)
        assert f"--region {region}: {message}" in r.stderr and not (tmp_path / "t").exists()
    (tmp_path / "a_file").write_text("")
    r = _cli("tracks", "--model", pretrained, "--fasta", chr20_indexed["indexed"], "--region", "chr20:1-100", "--out",
             tmp_path / "a_file" / "t", ok=False)
    assert f"{tmp_path / 'a_file'}: File exists, for the output folder" in r.stderr

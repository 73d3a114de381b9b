"""Variant scoring beyond SNVs on real chr20: indels and MNVs (scored by hand once, and not decided by
their length), boundary shifts, the indexed and the streamed reference, and the bgzipped,
tabix-indexed VCF output read back through pysam."""
import csv
import gzip
import shutil

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from dnachunker import DNAChunker
from dnachunker.reference import IndexedReference, StreamedReference, open_reference
from dnachunker.tokenizer import MASK, VOCAB
from dnachunker.variants import Windows, boundary_shift, score_variants

from .test_inference import _cli

pytestmark = pytest.mark.slow
pysam = pytest.importorskip("pysam")
CONTEXT = 512


def _variants(text: str, rng, n: int) -> list[tuple[int, str, str]]:
    """n real-position variants of each kind: deletions and insertions of 1-24 bp (anchor base
    kept), MNVs; (pos 1-based, REF, ALT) sorted."""
    out = []
    acgt = np.flatnonzero(np.isin(np.frombuffer(text.encode(), np.uint8), list(b"ACGT")))
    for kind in ("del", "ins", "mnv"):
        for p in rng.choice(acgt[(acgt > 50_000) & (acgt < 350_000)], n, replace=False):
            k = int(rng.integers(1, 25))
            if kind == "del":
                ref, alt = text[p:p + k + 1], text[p]
            elif kind == "ins":
                ref, alt = text[p], text[p] + "".join(rng.choice(list("ACGT"), k))
            else:
                ref = text[p:p + 3]
                alt = "".join("ACGT"[("ACGT".index(b) + 1) % 4] for b in ref)
            if set(ref + alt) <= set("ACGT"):
                out.append((int(p) + 1, ref, alt))
    return sorted(out)


def _vcf(path, rows):
    path.write_text('##fileformat=VCFv4.2\n##INFO=<ID=DP,Number=1,Type=Integer,Description="depth">\n'
                    "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
                    + "".join(f"chr20\t{p}\tv{i}\t{r}\t{a}\t.\tPASS\tDP={i}\n" for i, (p, r, a) in enumerate(rows)))
    return path


def test_indels_and_mnvs_are_scored_per_base_and_their_length_does_not_decide(tmp_path, pretrained, chr20_indexed):
    rows = _variants(chr20_indexed["text"], np.random.default_rng(0), 30)
    model = DNAChunker.from_pretrained(pretrained).eval()
    scored = list(score_variants(model, _vcf(tmp_path / "v.vcf", rows), chr20_indexed["indexed"], CONTEXT))
    assert all(v.status == "ok" and np.isfinite(v.score) for v in scored)
    assert {v.kind for v in scored} == {"del", "ins", "mnv"}
    # one deletion by hand: REF masked in its window, ALT (the anchor) masked in the window without the deleted bases
    v = next(v for v in scored if v.kind == "del" and len(v.ref) > 5)
    text, p, r = chr20_indexed["text"], v.pos - 1, len(v.ref)
    start = p + r // 2 - CONTEXT // 2
    ids = lambda s: torch.tensor([VOCAB.index(b) for b in s])  # noqa: E731
    ref_win = ids(text[start:start + CONTEXT])
    alt_win = ids(text[start:p] + v.alt + text[p + r:p + r + CONTEXT - (p - start) - 1])
    with torch.no_grad():
        lp = [torch.log_softmax(model(w.masked_fill(torch.arange(len(w)).ge(p - start) & torch.arange(len(w)).lt(p - start + n),
                                                    MASK)[None]).logits[0].float(), -1) for w, n in ((ref_win, r), (alt_win, 1))]
    ref_logp = float(lp[0][torch.arange(p - start, p - start + r), ref_win[p - start:p - start + r]].mean())
    alt_logp = float(lp[1][p - start, VOCAB.index(v.alt)])
    assert v.ref_logp == pytest.approx(ref_logp, abs=1e-5) and v.score == pytest.approx(alt_logp - ref_logp, abs=1e-5)
    # per-base means: a sum of log-probabilities would fall with the allele's length, the score does not follow it
    indels = [v for v in scored if v.kind in ("del", "ins")]
    change = np.array([len(v.alt) - len(v.ref) for v in indels])
    summed = np.array([v.alt_logp * len(v.alt) - v.ref_logp * len(v.ref) for v in indels])
    assert abs(spearmanr(change, summed).statistic) > 0.8  # a sum: decided by the length
    assert abs(spearmanr(change, [v.score for v in indels]).statistic) < 0.5


def test_boundary_shift_counts_moved_cuts_in_reference_coordinates():
    w = Windows(ref=np.zeros(20), alt=np.zeros(22), ref_at=8, alt_at=8)  # a 2-bp insertion after position 8
    ref_cuts = np.array([0, 4, 9, 12, 16])
    same = np.array([0, 4, 9, 11, 14, 18])  # a cut inside the inserted bases (ignored); the rest moved by 2 only
    assert boundary_shift(ref_cuts, same, w, r=1, a=3) == 0
    moved = np.array([0, 5, 9, 11, 14, 18, 20])  # 4 -> 5 moved, and a new cut at 20 - 2 = 18
    assert boundary_shift(ref_cuts, moved, w, r=1, a=3) == 3


def test_boundary_shifts_on_real_chr20(tmp_path, pretrained, chr20_indexed):
    rows = _variants(chr20_indexed["text"], np.random.default_rng(1), 6)
    model = DNAChunker.from_pretrained(pretrained).eval()
    vcf = _vcf(tmp_path / "v.vcf", rows)
    plain = list(score_variants(model, vcf, chr20_indexed["indexed"], CONTEXT))
    shifted = list(score_variants(model, vcf, chr20_indexed["indexed"], CONTEXT, shift=True))
    assert [v.score for v in shifted] == [v.score for v in plain]
    assert all(len(v.shift) == 2 and min(v.shift) >= 0 for v in shifted)
    assert any(v.shift[0] > 0 for v in shifted)  # a trained router reacts to some variants near them


def test_indexed_and_streamed_references_read_the_same_and_order_is_checked(tmp_path, chr20_indexed, capsys,
                                                                            monkeypatch):
    """An unindexed FASTA with a sequence of NOTE_BP or more (chromosome-scale, held whole) gets a note
    on indexing; one of short sequences does not."""
    import dnachunker.reference
    monkeypatch.setattr(dnachunker.reference, "NOTE_BP", 400_000)
    indexed, streamed = open_reference(chr20_indexed["indexed"]), open_reference(chr20_indexed["plain"])
    assert isinstance(indexed, IndexedReference) and isinstance(streamed, StreamedReference)
    assert "samtools faidx" in capsys.readouterr().err
    for lo, hi in ((0, 10), (123_456, 124_000), (399_990, 400_100)):
        assert np.array_equal(indexed.fetch("chr20", lo, hi), streamed.fetch("chr20", lo, hi))
    two = tmp_path / "two.fa"
    two.write_text(">a\nACGTACGT\n>b\nGGGGCCCC\n")
    ref = open_reference(two)
    assert capsys.readouterr().err == ""
    assert "".join(VOCAB[c] for c in ref.fetch("b", 2, 6)) == "GGCC"
    with pytest.raises(ValueError, match="a is asked for after b, but .*two.fa holds it before and has no index"):
        ref.fetch("a", 0, 2)


def test_scores_as_a_tabix_indexed_vcf_read_back_by_pysam(tmp_path, pretrained, chr20_indexed):
    rows = _variants(chr20_indexed["text"], np.random.default_rng(2), 5)
    vcf = _vcf(tmp_path / "in.vcf", sorted(rows + [(200_000, "A" if chr20_indexed["text"][199_999] != "A" else "C", "G")]))
    gz = tmp_path / "in.vcf.gz"
    with open(vcf, "rb") as src, gzip.open(gz, "wb") as dst:
        shutil.copyfileobj(src, dst)
    _cli("score-variants", "--model", pretrained, "--vcf", gz, "--fasta", chr20_indexed["indexed"], "--out",
         tmp_path / "s.tsv", "--context", CONTEXT, "--boundary-shift")
    r = _cli("score-variants", "--model", pretrained, "--vcf", gz, "--fasta", chr20_indexed["indexed"], "--out",
             tmp_path / "s.vcf.gz", "--context", CONTEXT, "--boundary-shift")
    assert f"(index {tmp_path / 's.vcf.gz'}.tbi)" in r.stderr
    table = list(csv.DictReader(open(tmp_path / "s.tsv"), delimiter="\t"))
    out = pysam.VariantFile(str(tmp_path / "s.vcf.gz"))
    assert {"DNAC_SCORE", "DNAC_STATUS", "DNAC_KIND", "DNAC_SHIFT"} <= set(out.header.info)
    records = list(out)
    assert [(x.pos, x.ref, x.alts[0]) for x in records] == [(int(t["pos"]), t["ref"], t["alt"]) for t in table]
    for x, t in zip(records, table):
        assert x.info["DNAC_STATUS"] == t["status"] and x.info["DP"] == int(t["id"][1:])  # the input's INFO kept
        if t["status"] == "ok":
            assert x.info["DNAC_SCORE"] == pytest.approx(float(t["score"]), abs=1e-5)
            assert list(x.info["DNAC_SHIFT"]) == [int(t["shift_0"]), int(t["shift_1"])]
    mismatch = next(i for i, t in enumerate(table) if t["pos"] == "200000")
    assert table[mismatch]["status"] == "ref_mismatch" and "DNAC_SCORE" not in records[mismatch].info
    region = list(out.fetch("chr20", 100_000, 200_000))  # through the .tbi
    assert [x.pos for x in region] == [x.pos for x in records if 100_000 < x.pos <= 200_000]
    unsorted = _vcf(tmp_path / "unsorted.vcf", rows[::-1])
    r = _cli("score-variants", "--model", pretrained, "--vcf", unsorted, "--fasta", chr20_indexed["indexed"], "--out",
             tmp_path / "u.vcf.gz", ok=False)
    assert "unsorted.vcf:5: position" in r.stderr and "bcftools sort" in r.stderr
    assert not list(tmp_path.glob("u.vcf.gz*")) and not list(tmp_path.glob(".u.vcf.gz*"))


def test_unmasked_snvs_share_windows_and_read_the_base_unmasked(tmp_path, pretrained, chr20_indexed, monkeypatch):
    text, start = chr20_indexed["text"], 150_000
    rows = [(p + 1, text[p], b) for p in range(start, start + 40) if text[p] in "ACGT" for b in "ACGT" if b != text[p]]
    rows.append((start + 5000, text[start + 4999], "A" if text[start + 4999] != "A" else "C"))  # a window of its own
    model = DNAChunker.from_pretrained(pretrained).eval()
    calls = []
    forward = model.forward
    monkeypatch.setattr(model, "forward", lambda ids, *a, **k: calls.append(ids.shape) or forward(ids, *a, **k))
    scored = list(score_variants(model, _vcf(tmp_path / "v.vcf", rows), chr20_indexed["indexed"], CONTEXT, unmasked=True))
    assert calls == [(2, CONTEXT)] and all(v.status == "ok" for v in scored)  # 121 SNVs, two windows, one pass
    w0 = start - CONTEXT // 4  # the first SNV sits a quarter of the context from its window's left edge
    ids = torch.tensor([[VOCAB.index(b) for b in text[w0:w0 + CONTEXT]]])
    with torch.no_grad():
        logp = torch.log_softmax(forward(ids).logits[0].float(), -1)
    for v in scored[:-1]:
        row = logp[v.pos - 1 - w0]
        assert v.score == pytest.approx(float(row[VOCAB.index(v.alt)] - row[VOCAB.index(v.ref)]), abs=1e-5)

"""Using a trained model: Transformers compatibility (offline), embeddings from FASTA / BED / CSV,
zero-shot variant scores on real chr20, inputs longer than the training window."""
import gzip
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dnachunker import DNAChunker
from dnachunker.inference import run, tiles
from dnachunker.masking import bert_mask
from dnachunker.tokenizer import MASK, VOCAB, batch_encode, decode

from .conftest import CHR20, ROOT, shared_file

pytestmark = pytest.mark.slow


def _cli(*args, ok=True):
    r = subprocess.run([sys.executable, "-m", "dnachunker_cli", *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                       env={"PATH": "/usr/bin:/bin", "TQDM_DISABLE": "1", "HOME": "/tmp"})
    assert (r.returncode == 0) == ok, r.stderr[-3000:]
    return r


def test_export_loads_with_transformers_auto_classes_offline_and_matches(tmp_path, pretrained, monkeypatch,
                                                                        chr20_windows):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path / "hf_modules"))
    import dnachunker.hf  # noqa: F401  registers the classes: the export is text and tensors
    from transformers import AutoModel, AutoModelForMaskedLM, AutoTokenizer
    assert not list(pretrained.glob("*.py")) and "auto_map" not in (pretrained / "config.json").read_text()
    native = DNAChunker.from_pretrained(pretrained).eval()
    seqs = [chr20_windows(300, 1)[0], "ACGTNacgtRYkm" * 9]
    tok = AutoTokenizer.from_pretrained(pretrained)
    enc = tok(seqs, padding=True, return_tensors="pt")
    batch = batch_encode(seqs)
    assert torch.equal(enc.input_ids, batch.input_ids) and torch.equal(enc.attention_mask.bool(), batch.valid)
    assert (tok.mask_token_id, tok.pad_token_id) == (MASK, 0) and tok("AC[MASK]g").input_ids == [2, 3, MASK, 4]
    assert tok.decode([2, 3, 4, 5, 6]) == "ACGTN" and len(tok) == native.cfg.vocab_size == 7
    ids, labels = bert_mask(batch.input_ids, batch.valid, torch.Generator().manual_seed(0))
    mlm = AutoModelForMaskedLM.from_pretrained(pretrained).eval()
    encoder = AutoModel.from_pretrained(pretrained).eval()
    with torch.no_grad():
        ref = native(ids, batch.valid, labels)
        out = mlm(input_ids=ids, attention_mask=enc.attention_mask, labels=labels)
        hidden = encoder(input_ids=ids, attention_mask=enc.attention_mask).last_hidden_state
    special = torch.tensor([0, MASK])  # [PAD], [MASK]: never a prediction
    assert torch.equal(out.logits[..., 2:], ref.logits[..., 2:]) and torch.equal(out.loss, ref.loss)
    assert torch.isinf(out.logits[..., special]).all() and not (out.logits.argmax(-1)[..., None] == special).any()
    assert torch.equal(hidden, ref.hidden)
    from transformers import pipeline
    fill = pipeline("fill-mask", model=mlm, tokenizer=tok)
    guesses = fill(seqs[0][:40] + "[MASK]" + seqs[0][41:80], top_k=7)
    best = guesses[0]
    assert best["sequence"] == (seqs[0][:40] + best["token_str"] + seqs[0][41:80]).upper() and " " not in best["sequence"]
    assert {g["token_str"] for g in guesses if g["score"] > 0} <= set("ACGTN")
    assert all(len(g["sequence"]) == 80 for g in guesses if g["score"] > 0)


def test_an_export_given_python_files_and_an_auto_map_runs_none_of_them(tmp_path, pretrained, monkeypatch):
    """A tampered export: payload Python files beside the weights and config.json pointing the Auto
    classes at them. Loading as the docs show (the package's classes registered, no
    trust_remote_code) runs neither; nor do DNAChunker.from_pretrained and embed. The Hub option
    writes the files, and the card says they are code."""
    import json
    import shutil

    import dnachunker.hf  # noqa: F401
    from dnachunker.export.hf import AUTO_MAP, REMOTE_CODE
    from transformers import AutoModelForMaskedLM, AutoTokenizer
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path / "hf_modules"))
    export = tmp_path / "tampered"
    shutil.copytree(pretrained, export)
    marker = tmp_path / "payload-ran"
    for name, text in REMOTE_CODE.items():
        (export / name).write_text(text + f"open({str(marker)!r}, 'w').write('ran')\n")
    config = json.loads((export / "config.json").read_text())
    (export / "config.json").write_text(json.dumps({**config, "auto_map": AUTO_MAP}))
    AutoTokenizer.from_pretrained(export)
    AutoModelForMaskedLM.from_pretrained(export)
    DNAChunker.from_pretrained(export)
    (tmp_path / "s.fa").write_text(">s\nACGTACGTAC\n")
    _cli("embed", "--model", export, "--fasta", tmp_path / "s.fa", "--out", tmp_path / "e.npz")
    assert not marker.exists()
    hub = DNAChunker.from_pretrained(pretrained).save_pretrained(tmp_path / "hub", remote_code=True)
    assert sorted(p.name for p in hub.glob("*.py")) == sorted(REMOTE_CODE)
    assert "**Code in this directory:**" in (hub / "README.md").read_text()
    again = DNAChunker.from_pretrained(hub).save_pretrained(hub)  # saved again without: the code goes
    assert not list(again.glob("*.py")) and "Code in this directory" not in (again / "README.md").read_text()


def test_tiles_cover_once_and_keep_the_middle_of_each_overlap():
    for length, window, overlap in ((5000, 1024, 512), (1024, 1024, 512), (3000, 1000, 100), (700, 1024, 512)):
        t = tiles(length, window, overlap)
        assert t[0][2] == 0 and t[-1][3] == length and all(a[3] == b[2] for a, b in zip(t, t[1:]))
        for start, end, lo, hi in t:
            assert 0 <= start <= lo < hi <= end <= length and end - start == min(window, length)
            if len(t) > 1:  # no kept base within overlap/2 of an inner window edge
                assert (lo - start >= overlap // 2 or start == 0) and (end - hi >= overlap // 2 or end == length)


@given(st.lists(st.integers(1, 99), unique=True, max_size=20), st.lists(st.integers(1, 99), unique=True, max_size=8),
       st.integers(0, 9), st.sampled_from([None, 0]))
@settings(max_examples=80, deadline=None)
def test_chunk_means_from_spans_and_parts_equal_chunk_means_of_the_whole(starts, cuts, split, stage):
    """Chunks cut anywhere by piece seams (a piece may begin inside a chunk, or exactly at one), the
    pieces written as two parts at any seam and merged: the chunk means and the mean of the whole."""
    import zarr

    from dnachunker.embed_io import Embeddings, PartWriter, merge
    from dnachunker.inference import Piece, Span, chunk_means
    h = np.random.default_rng(len(starts)).normal(size=(100, 3)).astype(np.float32)
    starts = np.array([0, *sorted(starts)])
    edges = [0, *sorted(cuts), 100]
    spans = [Span.of(Piece(0, a, h[a:b], [starts[(starts >= a) & (starts < b)]]), stage)
             for a, b in zip(edges, edges[1:])]
    one = Embeddings(zarr.open_group(zarr.storage.MemoryStore(), mode="w"), [100], 3, False, stage)
    for span in spans:
        one.add(span)
    merged = Embeddings(zarr.open_group(zarr.storage.MemoryStore(), mode="w"), [100], 3, False, stage)
    split = min(split, len(spans) - 1)
    groups = [g for g in (spans[:split], spans[split:]) if g]
    stores = []
    for group in groups:
        writer = PartWriter(zarr.open_group(zarr.storage.MemoryStore(), mode="w"), 3, False)
        for span in group:
            writer.add(span, h[span.lo:span.lo + span.n])
        writer.close()
        stores.append(writer.root)
    merge(merged, stores)
    for out in (one, merged):
        np.testing.assert_allclose(out.close()[:], h.mean(0, keepdims=True), rtol=1e-5, atol=1e-6)
        if stage is not None:
            np.testing.assert_allclose(out.root["per_chunk/0"][:], chunk_means(h, starts), rtol=1e-5, atol=1e-6)
            np.testing.assert_array_equal(out.root["chunk_starts/0"][:], starts)


def test_embed_streams_a_long_sequence_into_zarr_as_run_stitches_it(tmp_path, pretrained, chr20_windows):
    """Written piece by piece (windows of 512 overlapping by 128: many seams, chunks across them),
    the zarr holds what the in-memory path gives: per-base states, chunk starts and chunk means."""
    import zarr

    from dnachunker.inference import chunk_means
    seqs = [chr20_windows(5000, 1)[0], chr20_windows(300, 1)[0]]
    (tmp_path / "s.fa").write_text("".join(f">s{i}\n{s}\n" for i, s in enumerate(seqs)))
    _cli("embed", "--model", pretrained, "--fasta", tmp_path / "s.fa", "--out", tmp_path / "e.zarr", "--per-base",
         "--chunks", "1", "--window", "512", "--overlap", "128", "--batch-size", "3")
    z = zarr.open_group(str(tmp_path / "e.zarr"), mode="r")
    ref = run(DNAChunker.from_pretrained(pretrained), seqs, window=512, overlap=128, batch_size=3, progress=False)
    for i, r in enumerate(ref):
        np.testing.assert_array_equal(z[f"per_base/{i}"][:], r.hidden)
        np.testing.assert_array_equal(z[f"chunk_starts/{i}"][:], r.chunk_starts[1])
        np.testing.assert_allclose(z[f"per_chunk/{i}"][:], chunk_means(r.hidden, r.chunk_starts[1]), rtol=1e-5,
                                   atol=1e-6)
        np.testing.assert_allclose(z["mean"][i], r.hidden.mean(0), rtol=1e-5, atol=1e-6)


def test_long_inputs_interior_does_not_depend_on_where_windows_start(pretrained, chr20_windows):
    """A 6 kbp sequence, windows of 1024 overlapping by 512, tiled from 0 and from 256 bp later:
    in the interior, the same boundaries and (nearly) the same embeddings."""
    model = DNAChunker.from_pretrained(pretrained)
    seq = chr20_windows(6144, 1)[0]
    a = run(model, [seq], window=1024, overlap=512, progress=False)[0]
    shift = 256
    b = run(model, [seq[shift:]], window=1024, overlap=512, progress=False)[0]
    lo, hi = 1024, len(seq) - 1024  # away from both tilings' first and last windows
    for stage in (0, 1):
        sa = set(a.chunk_starts[stage][(a.chunk_starts[stage] >= lo) & (a.chunk_starts[stage] < hi)].tolist())
        sb = set((b.chunk_starts[stage] + shift)[(b.chunk_starts[stage] + shift >= lo)
                                                 & (b.chunk_starts[stage] + shift < hi)].tolist())
        assert len(sa & sb) / len(sa | sb) >= 0.99, stage
    ha, hb = a.hidden[lo:hi], b.hidden[lo - shift:hi - shift]
    cos = (ha * hb).sum(1) / np.linalg.norm(ha, axis=1) / np.linalg.norm(hb, axis=1)
    assert cos.mean() > 0.999 and np.percentile(cos, 1) > 0.99
    # a sequence that fits one window is one forward pass, identical to the model's own call
    short = chr20_windows(700, 1)[0]
    with torch.no_grad():
        direct = model(batch_encode([short]).input_ids).hidden[0].numpy()
    assert np.array_equal(run(model, [short], progress=False)[0].hidden, direct)
    assert [x.tolist() for x in model.segment([seq])[0]] == [x.tolist() for x in a.chunk_starts]


def test_embed_cli_from_fasta_bed_and_csv_with_clear_errors(tmp_path, pretrained, chr20_windows):
    seqs = [chr20_windows(1800, 1)[0], chr20_windows(300, 2)[1]]  # one longer than max_len (1024)
    fasta = tmp_path / "x.fa"
    fasta.write_text("".join(f">s{i}\n{s}\n" for i, s in enumerate(seqs)))
    _cli("embed", "--model", pretrained, "--fasta", fasta, "--out", tmp_path / "x.npz")
    with np.load(tmp_path / "x.npz", allow_pickle=False) as z:  # one file: the embeddings with their names
        emb, names = z["embeddings"], z["names"].tolist()
    assert emb.shape == (2, 32) and names == ["s0", "s1"] and sorted(p.name for p in tmp_path.iterdir()
                                                                     if p.name.startswith("x.")) == ["x.fa", "x.npz"]
    _cli("embed", "--model", pretrained, "--fasta", fasta, "--out", tmp_path / "x.zarr", "--per-base", "--chunks", "0")
    import zarr
    z = zarr.open_group(str(tmp_path / "x.zarr"), mode="r")
    assert z["per_base/0"].shape == (1800, 32) and z.attrs["names"] == ["s0", "s1"]
    np.testing.assert_allclose(z["mean"][:], emb, rtol=1e-6)
    np.testing.assert_allclose(z["per_base/1"][:].mean(0), emb[1], rtol=1e-5, atol=1e-6)
    starts = z["chunk_starts/0"][:]
    assert starts[0] == 0 and z["per_chunk/0"].shape == (len(starts), 32)
    np.testing.assert_allclose(z["per_chunk/0"][0], z["per_base/0"][:starts[1]].mean(0), rtol=1e-5, atol=1e-6)
    # BED on the real chr20; a minus-strand interval is the reverse complement
    chr20 = shared_file("hg19_chr20_softmasked/chr20.hg19.softmasked.fa.gz")
    bed = tmp_path / "x.bed"
    bed.write_text("chr20\t1000000\t1000400\tplus\t0\t+\nchr20\t1000000\t1000400\tminus\t0\t-\n")
    _cli("embed", "--model", pretrained, "--bed", bed, "--fasta", chr20, "--out", tmp_path / "b.npz")
    region = None
    with gzip.open(CHR20, "rt") as fh:
        fh.readline()
        text = "".join(line.strip() for _, line in zip(range(16700), fh))
        region = text[1000000:1000400]
    rc = region.translate(str.maketrans("ACGTNacgtn", "TGCANtgcan"))[::-1]
    (tmp_path / "rc.fa").write_text(f">rc\n{rc}\n")
    _cli("embed", "--model", pretrained, "--fasta", tmp_path / "rc.fa", "--out", tmp_path / "rc.npz")
    minus, rc = (np.load(tmp_path / f"{name}.npz")["embeddings"] for name in ("b", "rc"))
    np.testing.assert_allclose(minus[1], rc[0], rtol=1e-5, atol=1e-6)
    csv = tmp_path / "x.csv"
    csv.write_text("id,sequence\na,ACGTACGTAA\nb,ACGXTT\n")
    r = _cli("embed", "--model", pretrained, "--csv", csv, "--name-column", "id", "--out", tmp_path / "c.npz", ok=False)
    assert "x.csv: record 'b': character 'X' at position 3" in r.stderr and not (tmp_path / "c.npz").exists()
    bed.write_text("chr20\t10\t20\nchrZ\t10\t20\n")
    r = _cli("embed", "--model", pretrained, "--bed", bed, "--fasta", chr20, "--out", tmp_path / "d.npz", ok=False)
    assert "x.bed:2: sequence 'chrZ' is not in" in r.stderr and not (tmp_path / "d.npz").exists()
    r = _cli("embed", "--model", pretrained, "--fasta", fasta, "--out", tmp_path / "e.npz", "--per-base", ok=False)
    assert "write them to a .zarr" in r.stderr
    r = _cli("embed", "--model", pretrained, "--fasta", fasta, "--out", tmp_path / "e.npy", ok=False)
    assert f"give {tmp_path / 'e.npz'}" in r.stderr


def test_score_variants_on_real_chr20_with_broken_records(tmp_path, pretrained):
    from dnachunker.fasta import read_fasta
    chr20 = shared_file("hg19_chr20_softmasked/chr20.hg19.softmasked.fa.gz")
    _, codes, _ = next(iter(read_fasta(chr20)))
    rng = np.random.default_rng(0)
    lines, expected = ["##fileformat=VCFv4.2", "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"], []
    for pos in sorted(rng.choice(np.flatnonzero((codes >= 2) & (codes <= 5))[1_000_000:1_200_000], 40, replace=False)):
        ref = VOCAB[codes[pos]]
        alt = "ACGT"[("ACGT".index(ref) + 1 + int(rng.integers(3))) % 4]
        lines.append(f"chr20\t{pos + 1}\tv{pos}\t{ref}\t{alt}\t.\t.\t.")
        expected.append("ok")
    pos = 1_500_000 + int(np.flatnonzero(codes[1_500_000:] == 2)[0])  # an A in the reference
    lines += [f"chr20\t{pos + 1}\tbad_ref\tC\tG\t.\t.\t.", f"chr20\t{pos + 1}\tmulti\tA\tC,G\t.\t.\t.",
              f"chr20\t{pos + 1}\tindel\tA\tAT\t.\t.\t.", "chrZ\t100\tnochrom\tA\tC\t.\t.\t.",
              f"chr20\t{len(codes) + 10}\tpast\tA\tC\t.\t.\t.", f"chr20\t{pos + 1}\tiupac\tA\tR\t.\t.\t."]
    expected += ["ref_mismatch", "multiallelic", "ok", "unknown_chrom", "out_of_range", "not_acgt"]  # the indel scored
    vcf = tmp_path / "x.vcf"
    vcf.write_text("\n".join(lines) + "\n")
    r = _cli("score-variants", "--model", pretrained, "--vcf", vcf, "--fasta", chr20, "--out", tmp_path / "s.tsv")
    import csv
    rows = list(csv.DictReader(open(tmp_path / "s.tsv"), delimiter="\t"))
    assert [row["status"] for row in rows] == expected and "ok 41" in r.stderr
    assert [row["kind"] for row in rows if row["id"] == "indel"] == ["ins"]
    scores = np.array([float(row["score"]) for row in rows if row["status"] == "ok"])
    assert scores.mean() < 0  # the trained model prefers the reference base at real positions
    # one score by hand: mask the base in its 1024-bp window and compare log-probabilities
    model = DNAChunker.from_pretrained(pretrained).eval()
    first = rows[0]
    p0 = int(first["pos"]) - 1
    start = p0 - 512
    ids = torch.from_numpy(codes[start:start + 1024].astype(np.int64))[None].clone()
    ids[0, 512] = MASK
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0, 512], -1)
    manual = float(logp[VOCAB.index(first["alt"])] - logp[VOCAB.index(first["ref"])])
    assert abs(float(first["score"]) - manual) < 1e-5 and decode(codes[p0:p0 + 1]) == first["ref"]
    import gzip  # a bgzip/gzip VCF (detected by content) gives the same table
    (tmp_path / "x.vcf.gz").write_bytes(gzip.compress(vcf.read_bytes()))
    _cli("score-variants", "--model", pretrained, "--vcf", tmp_path / "x.vcf.gz", "--fasta", chr20,
         "--out", tmp_path / "gz.tsv")
    assert (tmp_path / "gz.tsv").read_text() == (tmp_path / "s.tsv").read_text()
    vcf.write_text("chr20\tnot_a_number\t.\tA\tC\n")
    r = _cli("score-variants", "--model", pretrained, "--vcf", vcf, "--fasta", chr20, "--out", tmp_path / "t.tsv",
             ok=False)
    assert "x.vcf:1: POS 'not_a_number' is not an integer" in r.stderr and not (tmp_path / "t.tsv").exists()

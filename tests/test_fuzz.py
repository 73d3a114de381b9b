"""Every user command fed generated malformed input (hypothesis): FASTA, BED, CSV and VCF files
and flag values. Each run ends in exit 0, or in exit 2 with one line that names the input and
says what is wrong; never in a traceback (an exception escaping the command fails the test)."""
import gzip

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dnachunker_cli.use import main as dnachunker_cli
from evaluation.__main__ import main as eval_cli

pytestmark = pytest.mark.slow
SETTINGS = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

bases = st.text(alphabet="ACGTNacgtnRYKM", min_size=0, max_size=80)
junk = st.text(alphabet="ACGTN>@#;,\t \r-*XUu\x00é\u2013", min_size=0, max_size=40)
names = st.text(alphabet="abcXYZ_0123456789.|:", min_size=0, max_size=12)
line = st.one_of(bases, junk, names.map(lambda n: ">" + n))
fasta_text = st.lists(line, min_size=0, max_size=8).map("\n".join)
raw = st.one_of(fasta_text.map(str.encode), st.binary(max_size=64),
                st.binary(max_size=40).map(lambda b: b"\x1f\x8b" + b),  # a gzip that is not one
                fasta_text.map(lambda t: gzip.compress(t.encode())),
                fasta_text.map(lambda t: t.encode("cp1252", errors="replace")))
integer = st.one_of(st.integers(-5, 5), st.integers(-10**12, 10**12), st.sampled_from(["x", "1.5", "", "0x10"]))


def bed_line():
    field = st.one_of(names, integer.map(str), st.sampled_from(["+", "-", ".", "?", "chr1", "s"]))
    return st.lists(field, min_size=0, max_size=7).map("\t".join)


def csv_text():
    header = st.sampled_from(["name,sequence", "sequence", "name;sequence", "seq,name", "", "name,sequence,extra"])
    row = st.lists(st.one_of(bases, junk, names), min_size=0, max_size=4).map(",".join)
    return st.tuples(header, st.lists(row, max_size=5)).map(lambda t: "\n".join([t[0], *t[1]]))


def vcf_line():
    field = st.one_of(names, integer.map(str), bases, st.sampled_from(["<DEL>", "*", "A,C", "G]1:5]", "."]))
    return st.lists(field, min_size=0, max_size=9).map("\t".join)


def call(cli, args: list[str]) -> int:
    """A command's exit code, in this process (argparse exits for a bad flag: that is its code)."""
    try:
        return cli(args)
    except SystemExit as e:
        return e.code


def _ok_or_one_error_line(rc, capsys, *inputs):
    err = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")]
    assert rc in (0, 2), rc
    if rc == 2:
        assert len(err) == 1, err
        assert any(str(i) in err[0] for i in inputs) or "--" in err[0], err[0]  # names the file or the flag


@pytest.fixture
def fasta(tmp_path):
    path = tmp_path / "ref.fa"
    path.write_text(">s\n" + "ACGTACGTTGCA" * 40 + "\n>t\n" + "GGCATTACGA" * 30 + "\n")
    return path


@SETTINGS
@given(data=raw)
def test_embed_a_malformed_fasta(tmp_path, pretrained, capsys, data):
    path = tmp_path / "in.fa"
    path.write_bytes(data)
    rc = call(dnachunker_cli, ["embed", "--model", str(pretrained), "--fasta", str(path), "--out", str(tmp_path / "e.npz")])
    _ok_or_one_error_line(rc, capsys, path)


@SETTINGS
@given(lines=st.lists(bed_line(), max_size=5), crlf=st.booleans())
def test_embed_a_malformed_bed(tmp_path, pretrained, fasta, capsys, lines, crlf):
    path = tmp_path / "in.bed"
    path.write_text(("\r\n" if crlf else "\n").join(lines))
    rc = call(dnachunker_cli, ["embed", "--model", str(pretrained), "--bed", str(path), "--fasta", str(fasta),
                         "--out", str(tmp_path / "e.npz")])
    _ok_or_one_error_line(rc, capsys, path, fasta)


@SETTINGS
@given(text=csv_text(), encoding=st.sampled_from(["utf-8", "utf-8-sig", "cp1252", "utf-16"]))
def test_embed_a_malformed_csv(tmp_path, pretrained, capsys, text, encoding):
    path = tmp_path / "in.csv"
    path.write_bytes(text.encode(encoding, errors="replace"))
    rc = call(dnachunker_cli, ["embed", "--model", str(pretrained), "--csv", str(path), "--name-column", "name",
                         "--out", str(tmp_path / "e.npz")])
    _ok_or_one_error_line(rc, capsys, path)


@SETTINGS
@given(lines=st.lists(vcf_line(), max_size=5), info=st.binary(max_size=8))
def test_score_variants_on_a_malformed_vcf(tmp_path, pretrained, fasta, capsys, lines, info):
    path = tmp_path / "in.vcf"
    path.write_bytes(b"##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
                     + "\n".join(lines).encode() + b"\ts\t5\t.\tA\tC\t.\t.\t" + info + b"\n")
    rc = call(dnachunker_cli, ["score-variants", "--model", str(pretrained), "--vcf", str(path), "--fasta", str(fasta),
                         "--out", str(tmp_path / "s.tsv")])
    _ok_or_one_error_line(rc, capsys, path, fasta)


@SETTINGS
@given(window=integer, overlap=integer, batch=integer, context=integer)
def test_flag_values(tmp_path, pretrained, fasta, capsys, window, overlap, batch, context):
    rc = call(dnachunker_cli, ["embed", "--model", str(pretrained), "--fasta", str(fasta), "--out", str(tmp_path / "e.npz"),
                         "--window", str(window), "--overlap", str(overlap), "--batch-size", str(batch)])
    _ok_or_one_error_line(rc, capsys, fasta)
    vcf = tmp_path / "v.vcf"
    vcf.write_text("#CHROM\tPOS\tID\tREF\tALT\ns\t5\t.\tA\tC\n")
    rc = call(dnachunker_cli, ["score-variants", "--model", str(pretrained), "--vcf", str(vcf), "--fasta", str(fasta),
                         "--out", str(tmp_path / "s.tsv"), "--context", str(context), "--batch-size", str(batch)])
    _ok_or_one_error_line(rc, capsys, vcf, fasta)


@SETTINGS
@given(data=raw, length=integer, count=integer)
def test_segment_a_malformed_fasta(tmp_path, pretrained, capsys, data, length, count):
    path = tmp_path / "in.fa"
    path.write_bytes(data)
    rc = call(eval_cli, ["segment", "--model", str(pretrained), "--fasta", str(path), "--length", str(length),
                   "--count", str(count), "--out", str(tmp_path / "seg")])
    _ok_or_one_error_line(rc, capsys, path)

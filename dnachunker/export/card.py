"""The model card every export carries (README.md), in Hugging Face's conventions: YAML metadata
(library_name, tags, license, pipeline_tag) and sections for the architecture, the training data
and run, the validation results, intended use, limitations and how to load it.

`training` (what pretraining knows: the shard set's source FASTA and its SHA-256, or each genome's
of a corpus, splits, steps,
tokens seen, the final validation metrics of summary.json) fills the training and results
sections; without it (a model saved by hand) they say so.
"""
from __future__ import annotations

from ..configlib import redact

LICENSE = "apache-2.0"


def _architecture(cfg, params: int) -> str:
    stages = "; ".join(f"stage {s}: width {cfg.d_model[s]}, {cfg.encoder_layers[s]} encoder / {cfg.decoder_layers[s]} "
                       f"decoder BiMamba layers, target ratio {cfg.target_ratio[s]}" for s in range(cfg.n_stages))
    args = f" {cfg.tokenization_args}" if cfg.tokenization_args else ""
    return (f"| | |\n|---|---|\n| parameters | {params:,} |\n| stages | {stages} |\n"
            f"| main network | {cfg.main_layers} Transformer layers, width {cfg.d_model[-1]}, {cfg.n_heads} heads, "
            f"{cfg.main_norm} + {cfg.main_mlp} |\n| stage-0 tokenization | {cfg.tokenization}{args} |\n"
            f"| context | {cfg.max_len:,} bp |\n| vocabulary | [PAD] [MASK] A C G T N (one token per base) |")


def _data(d: dict) -> str:
    src, splits = d["source"], ", ".join(f"{k}: {v}" for k, v in d["splits"].items())
    return f"FASTA `{src['fasta']}`, SHA-256 `{src['fasta_sha256']}` (repeats: {src['repeats']}); windows: {splits}"


def _training(t: dict) -> str:
    data = ("\n".join(f"- genome `{g['name']}` (sampling probability {g['p']:.3f}): {_data(g)}" for g in t["genomes"])
            if "genomes" in t else f"- {_data(t)}")  # a multi-genome corpus, or one shard set
    return (f"Pretrained by masked language modelling (BERT 15 %: 80/10/10; soft-masked repeats weighted "
            f"{t['repeat_weight']}) on windows of {t['window_length']:,} bp of\n\n{data}\n"
            f"- steps: {t['step']:,}; tokens seen: {t['tokens_seen']:,}")


def _results(t: dict, n_stages: int) -> str:
    rows = [("validation MLM loss", t["valid/mlm_loss"]), ("validation MLM accuracy", t["valid/mlm_accuracy"])]
    rows += [(f"compression, stage {s} (chunks / positions, with masking)", t[f"valid/compression_{s}"])
             for s in range(n_stages)]
    rows += [(f"router compression, stage {s} (its own decisions, as at inference)", t[f"valid/router_compression_{s}"])
             for s in range(n_stages)]
    for g in t.get("genomes", []):  # a multi-genome corpus: each genome's own
        rows += [(f"{g['name']}: {what}", t[key]) for what, key in
                 [("validation MLM loss", f"valid/{g['name']}/mlm_loss"),
                  *((f"compression, stage {s}", f"valid/{g['name']}/compression_{s}") for s in range(n_stages)),
                  *((f"router compression, stage {s}", f"valid/{g['name']}/router_compression_{s}")
                    for s in range(n_stages))] if key in t]
    return "| metric | value |\n|---|---|\n" + "\n".join(f"| {k} | {v:.4f} |" for k, v in rows)


def model_card(cfg, params: int, name: str, training: dict | None = None, remote_code: bool = False) -> str:
    tags = ["dna", "genomics", "masked-language-model", "dnachunker", "learnable-tokenization"]
    remote = ("\n\n**Code in this directory:** `configuration_dnachunker.py` and `modeling_dnachunker.py` are "
              "Python, run by `trust_remote_code=True` (they import the installed dnachunker package); they were "
              "written for the Hugging Face Hub. Read them before you trust them, or delete them and load as above."
              if remote_code else "")
    meta = ("---\nlibrary_name: dnachunker\ntags:\n" + "".join(f"- {t}\n" for t in tags)
            + f"license: {LICENSE}\npipeline_tag: fill-mask\n---\n")
    return meta + f"""
# {redact(name)}

A masked DNA language model with a learnable tokenizer: DNAChunker (Kim et al., *DNAChunker:
Learnable Tokenization for DNA Language Models*, arXiv 2601.03019). BiMamba encoders at base-pair
level route the sequence into chunks in two stages; a Transformer runs on the chunks; the chunks
are brought back to base pairs and a head predicts every base.

## Architecture

{_architecture(cfg, params)}

## Training

{_training(training) if training else "Not recorded: this model was saved outside a training run."}

## Results

{_results(training, cfg.n_stages) if training else "Not recorded."}
The validation split is held-out sequence of the same genome, not a downstream benchmark.

## Intended use

Research on DNA language models: embeddings of sequences (mean-pooled, per base, per chunk), the
learned segmentation, zero-shot variant-effect scores, and a starting point for fine-tuning on
sequence-classification tasks.

## Limitations

- It knows the genome(s) it was trained on; other species and long-range effects beyond
  {cfg.max_len:,} bp are untested.
- Zero-shot variant scores and embeddings are research signals, not clinical predictions.
- Check what a downstream table compares against: a k-mer baseline can beat small models.

## How to load

```python
from dnachunker import DNAChunker
model = DNAChunker.from_pretrained("path/to/this/directory")

import dnachunker.hf  # registers the model with Transformers' Auto classes (needs `pip install dnachunker`)
from transformers import AutoModelForMaskedLM, AutoTokenizer
tok = AutoTokenizer.from_pretrained("path/to/this/directory")
mlm = AutoModelForMaskedLM.from_pretrained("path/to/this/directory")
```

This directory holds tensors (`model.safetensors`, read without unpickling) and text: loading it
runs no code from it.{remote}

```bash
dnachunker embed --model path/to/this/directory --fasta seqs.fa --out seqs.npz
```
"""

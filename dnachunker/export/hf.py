"""What Hugging Face Transformers reads in an export, written beside the native files by
DNAChunker.save_pretrained without importing transformers. Text and tensors only:

  config.json                 model_type 'dnachunker', the model config under 'dnachunker'; the
                              installed package's classes load it (`import dnachunker.hf` registers
                              them with Transformers' Auto classes), no trust_remote_code
  tokenizer.json, tokenizer_config.json, special_tokens_map.json
                              a PreTrainedTokenizerFast with the ids of dnachunker.tokenizer: one
                              token per base, case dropped, IUPAC ambiguity codes -> N; no
                              special tokens added around a sequence; decode() joins the bases
                              without spaces ("ACGT"); its 7 tokens are config.json's vocab_size

With remote_code=True (for the Hugging Face Hub, where a reader may not have this package
imported) it also writes configuration_dnachunker.py / modeling_dnachunker.py and an auto_map to
them: those files are code, run by trust_remote_code=True, and the model card says so.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..config import DNAChunkerConfig
from ..configlib import to_dict
from ..tokenizer import MASK, PAD, VOCAB

AUTO_MAP = {"AutoConfig": "configuration_dnachunker.DNAChunkerHFConfig",
            "AutoModel": "modeling_dnachunker.DNAChunkerModel",
            "AutoModelForMaskedLM": "modeling_dnachunker.DNAChunkerForMaskedLM"}
REMOTE_CODE = {
    "configuration_dnachunker.py": "# DNAChunker's configuration for Transformers: needs `pip install dnachunker`.\n"
                                   "from dnachunker.hf import DNAChunkerHFConfig  # noqa: F401\n",
    "modeling_dnachunker.py": "# DNAChunker's models for Transformers: need `pip install dnachunker`.\n"
                              "from dnachunker.hf import DNAChunkerForMaskedLM, DNAChunkerModel  # noqa: F401\n",
}


def tokenizer_json():
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    tok = Tokenizer(models.WordLevel({t: i for i, t in enumerate(VOCAB)}, unk_token="N"))
    # case dropped (soft-masking is not an input), ambiguity codes to N, as dnachunker.tokenizer.encode
    tok.normalizer = normalizers.Sequence([normalizers.Replace(Regex(f"[{b}{b.lower()}]"), b) for b in "ACGT"]
                                          + [normalizers.Replace(Regex("[nNrRyYsSwWkKmMbBdDhHvV]"), "N")])
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()  # a DNA string, not space-separated bases
    tok.add_special_tokens([VOCAB[PAD], VOCAB[MASK]])
    return tok


def write(directory: Path, cfg: DNAChunkerConfig, remote_code: bool = False) -> None:
    # N is a base (and what unknown characters become in tokenizer.json), not a special token: a
    # decode that skips special tokens keeps it, so a filled-in sequence keeps its length
    special = {"pad_token": VOCAB[PAD], "mask_token": VOCAB[MASK]}
    config = {"model_type": "dnachunker", "architectures": ["DNAChunkerForMaskedLM"],
              **({"auto_map": AUTO_MAP} if remote_code else {}),
              "dnachunker": to_dict(cfg), "vocab_size": cfg.vocab_size, "pad_token_id": PAD, "mask_token_id": MASK}
    (directory / "config.json").write_text(json.dumps(config, indent=1))
    for name, text in REMOTE_CODE.items() if remote_code else ():
        (directory / name).write_text(text)
    tokenizer_json().save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": cfg.max_len,
         "clean_up_tokenization_spaces": False, **special}, indent=1))
    (directory / "special_tokens_map.json").write_text(json.dumps(special, indent=1))

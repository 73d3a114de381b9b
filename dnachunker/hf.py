"""Hugging Face Transformers classes around DNAChunker, registered with the Auto classes when this
module is imported: an export is then loaded from its text and tensors, without trust_remote_code.

    import dnachunker.hf  # noqa: F401  (registers model_type 'dnachunker')
    from transformers import AutoModel, AutoModelForMaskedLM, AutoTokenizer
    mlm = AutoModelForMaskedLM.from_pretrained("runs/x/export")
    enc = AutoModel.from_pretrained("runs/x/export")   # last_hidden_state
    tok = AutoTokenizer.from_pretrained("runs/x/export")

The export (DNAChunker.save_pretrained, see dnachunker.export.hf) holds the weights in the native
layout; these classes keep the model under `.dnachunker`, and Transformers adds that prefix when
it loads them.
"""
from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput, MaskedLMOutput

from . import tokenization
from .config import DNAChunkerConfig
from .model import DNAChunker
from .tokenizer import MASK, PAD


class DNAChunkerHFConfig(PretrainedConfig):
    model_type = "dnachunker"

    def __init__(self, dnachunker: dict | None = None, **kwargs):
        self.dnachunker = dnachunker or {}
        super().__init__(**kwargs)


class _Base(PreTrainedModel):
    config_class = DNAChunkerHFConfig
    base_model_prefix = "dnachunker"
    main_input_name = "input_ids"

    def __init__(self, config: DNAChunkerHFConfig):
        super().__init__(config)
        self.dnachunker = DNAChunker(DNAChunkerConfig.from_dict(config.dnachunker))
        self.post_init()

    def _init_weights(self, module):  # every weight comes from the checkpoint
        pass

    def _run(self, input_ids, attention_mask, labels=None, boundaries=None, species=None):
        """species: (b,) indices into config.dnachunker['species'] (models with a species embedding;
        or name one for every call: model.dnachunker.set_species(name))."""
        valid = None if attention_mask is None else attention_mask.bool()
        return self.dnachunker(input_ids, valid, labels, None, boundaries, species)

    @classmethod
    def from_pretrained(cls, path, *args, **kwargs):
        """Weights through Transformers; the stage-0 tokenization (its kind in config.json, a fitted
        kind's file beside it) as DNAChunker.from_pretrained loads it, so the model cuts its own inputs."""
        model = super().from_pretrained(path, *args, **kwargs)
        model.dnachunker.tokenization = tokenization.load(model.dnachunker.cfg, Path(path))
        return model


class DNAChunkerModel(_Base):
    """AutoModel: the final hidden states (b, L, d_0), for embeddings."""

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                boundaries: torch.Tensor | None = None, species: torch.Tensor | None = None, **kwargs) -> BaseModelOutput:
        return BaseModelOutput(last_hidden_state=self._run(input_ids, attention_mask, None, boundaries, species).hidden)


class DNAChunkerForMaskedLM(_Base):
    """AutoModelForMaskedLM: logits over the vocabulary; labels (-100 = not predicted) give the loss."""

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, boundaries: torch.Tensor | None = None,
                species: torch.Tensor | None = None, **kwargs) -> MaskedLMOutput:
        out = self._run(input_ids, attention_mask, labels, boundaries, species)
        # [PAD] and [MASK] are never a base: fill-mask (and any argmax) must not suggest them
        logits = out.logits.index_fill(-1, torch.tensor([PAD, MASK], device=out.logits.device), float("-inf"))
        return MaskedLMOutput(loss=out.loss, logits=logits, hidden_states=(out.hidden,))


AutoConfig.register("dnachunker", DNAChunkerHFConfig, exist_ok=True)
AutoModel.register(DNAChunkerHFConfig, DNAChunkerModel, exist_ok=True)
AutoModelForMaskedLM.register(DNAChunkerHFConfig, DNAChunkerForMaskedLM, exist_ok=True)

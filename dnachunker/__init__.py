"""DNAChunker: masked DNA language model with a learnable two-stage tokenizer."""
from .config import DNAChunkerConfig, MambaConfig
from .model import DNAChunker, DNAChunkerOutput, StageOutput, ratio_loss

__all__ = ["DNAChunker", "DNAChunkerConfig", "DNAChunkerOutput", "MambaConfig", "StageOutput", "ratio_loss"]

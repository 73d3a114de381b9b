"""DNAChunker: masked DNA language model with a learnable two-stage tokenizer."""
from .cpu import flush_subnormals
from .config import DNAChunkerConfig, MambaConfig
from .model import DNAChunker, DNAChunkerOutput, StageOutput, ratio_loss

# The model's long decays produce subnormal floats, which make CPU kernels tens of times slower
# (dnachunker.cpu): treat them as zero in every process that uses the model.
flush_subnormals()

__all__ = ["DNAChunker", "DNAChunkerConfig", "DNAChunkerOutput", "MambaConfig", "StageOutput", "ratio_loss"]

"""DNAChunker: masked DNA language model with a learnable two-stage tokenizer."""
from .threads import set_default_wait_policy

set_default_wait_policy()  # first: OpenMP reads it when torch loads (dnachunker.threads)

from .cpu import flush_subnormals  # noqa: E402
from .config import DNAChunkerConfig, MambaConfig  # noqa: E402
from .model import DNAChunker, DNAChunkerOutput  # noqa: E402
from .stage import StageOutput, ratio_loss  # noqa: E402

# The model's long decays produce subnormal floats, which make CPU kernels tens of times slower
# (dnachunker.cpu): treat them as zero in every process that uses the model.
flush_subnormals()

__all__ = ["DNAChunker", "DNAChunkerConfig", "DNAChunkerOutput", "MambaConfig", "StageOutput", "ratio_loss"]

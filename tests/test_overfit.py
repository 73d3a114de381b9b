import pytest
import torch

from dnachunker import DNAChunker, DNAChunkerConfig
from dnachunker.masking import bert_mask
from dnachunker.tokenizer import batch_encode

from .test_model import CONFIGS


@pytest.mark.slow
def test_tiny_model_overfits_real_chr20_windows(chr20_windows):
    """MLM loss on 4 real 256-bp windows must fall well below a base-composition model (ln 4)."""
    batch = batch_encode(chr20_windows(256, 4))
    torch.manual_seed(0)
    model = DNAChunker(DNAChunkerConfig.load(CONFIGS / "tiny.yaml"))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(80):
        ids, labels = bert_mask(batch.input_ids, batch.valid, g)
        out = model(ids, batch.valid, labels, batch.weight())
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(out.mlm_loss.item())
    first, last = losses[0], sum(losses[-10:]) / 10
    assert first > 1.9  # starts near ln(vocab)
    assert last < 1.3 and last < 0.7 * first, (first, last)

"""Downstream evaluation: benchmark task loaders, fine-tuning / linear probing, segmentation analysis."""
import dnachunker  # noqa: F401  (first: it sets how OpenMP threads wait, before torch loads)

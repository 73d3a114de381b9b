"""Downstream evaluation: benchmark task loaders, fine-tuning / linear probing, segmentation analysis."""

"""Numerical kernels: each fast path has a pure-PyTorch reference twin (`*_ref`)."""
from .scan import gated_scan, gated_scan_ref, selective_scan, selective_scan_ref
from .ssd import ssd_chunked, ssd_sequential

__all__ = ["gated_scan", "gated_scan_ref", "selective_scan", "selective_scan_ref",
           "ssd_chunked", "ssd_sequential"]

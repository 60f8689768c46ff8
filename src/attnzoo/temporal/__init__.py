"""Temporal blocks on B×C×N×T: one file per paper."""

from .mtgnn import DilatedInception, GatedTemporalConv

__all__ = ["DilatedInception", "GatedTemporalConv"]

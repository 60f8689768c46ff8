"""Sequence blocks on B×N×C tokens: one file per paper."""

from .mhsa import MultiHeadSelfAttention, SimplifiedMultiHeadAttention
from .positional import PositionalEncoding, PositionalEncoding2D
from .transformer import TransformerEncoder, TransformerEncoderLayer

__all__ = [
    "MultiHeadSelfAttention",
    "SimplifiedMultiHeadAttention",
    "PositionalEncoding",
    "PositionalEncoding2D",
    "TransformerEncoder",
    "TransformerEncoderLayer",
]

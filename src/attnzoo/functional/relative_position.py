"""Relative-position bias tables of windowed vision transformers: index maps into a learned per-head table.

Two parametrisations (the factorised R_h / R_w logits of BoT and AA-conv live elsewhere):

- **signed** (Swin): a (2Mh−1)·(2Mw−1) × heads table, entry (Δy + Mh − 1)·(2Mw − 1) + (Δx + Mw − 1) for the
  pair (query, key) with Δ = query − key (:func:`signed_offset_index`);
- **absolute offsets** (EfficientViT, Liu et al.): a heads × R² table, entry |Δy|·R + |Δx|
  (:func:`absolute_offset_index`), so the bias is symmetric in the sign of each offset.

The indices are built from ``arange`` on every call (a few thousand integers: no cached buffer that a
``load_state_dict`` or a device move can make stale; under tracing they are constants of the graph).
"""

from __future__ import annotations

import torch

__all__ = ["signed_offset_index", "absolute_offset_index", "gather_bias"]


def _grid(h: int, w: int, device: torch.device | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column of each of the h·w positions (row-major), as two length-h·w long tensors."""
    ys = torch.arange(h, device=device).repeat_interleave(w)
    xs = torch.arange(w, device=device).repeat(h)
    return ys, xs


def signed_offset_index(win_h: int, win_w: int, device: torch.device | None = None) -> torch.Tensor:
    """L×L long (L = win_h·win_w, row-major window positions): Swin's index into its (2Mh−1)(2Mw−1)-row table,
    ``(y_q − y_k + Mh − 1)·(2Mw − 1) + (x_q − x_k + Mw − 1)`` (the layout of Swin's and timm's
    ``relative_position_index``, so their tables load as they are)."""
    ys, xs = _grid(win_h, win_w, device)
    dy = ys[:, None] - ys[None, :] + (win_h - 1)
    dx = xs[:, None] - xs[None, :] + (win_w - 1)
    return dy * (2 * win_w - 1) + dx


def absolute_offset_index(h: int, w: int, resolution: int, device: torch.device | None = None) -> torch.Tensor:
    """N×N long (N = h·w, row-major positions of an h×w map, h, w ≤ ``resolution``): EfficientViT's index
    ``|y_q − y_k|·R + |x_q − x_k|`` into its R²-column table (the order in which the official code and timm
    enumerate the offsets, so their ``attention_biases`` load as they are)."""
    if h > resolution or w > resolution:
        raise ValueError(f"absolute_offset_index: a {h}×{w} map exceeds the table's resolution {resolution}")
    ys, xs = _grid(h, w, device)
    return (ys[:, None] - ys[None, :]).abs() * resolution + (xs[:, None] - xs[None, :]).abs()


def gather_bias(table: torch.Tensor, index: torch.Tensor, heads_first: bool = False) -> torch.Tensor:
    """heads×L×L bias from a table and an L×L index: ``table`` is T×heads (Swin) or, with ``heads_first``,
    heads×T (EfficientViT)."""
    if heads_first:
        return table[:, index]
    return table[index].permute(2, 0, 1)

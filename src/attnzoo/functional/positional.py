"""Sinusoidal positional tables (1-D, and the separable 2-D form of DETR)."""

from __future__ import annotations

import math

import torch

__all__ = ["sinusoidal_table", "grid_table"]


def sinusoidal_table(
    length: int,
    channels: int,
    base: float = 10000.0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The length×channels sinusoidal table: ``PE[p, 2i] = sin(p / base^(2i/C))``, ``PE[p, 2i+1] = cos(...)``.

    Computed in float64 (float32 where the device has no float64) and cast to ``dtype``: the usual float32
    computation loses ~1e-4 at positions of a few thousand.  Odd ``channels`` work (the last column is a sine).
    """
    work = torch.float64 if torch.device(device or "cpu").type in ("cpu", "cuda") else torch.float32
    pos = torch.arange(length, dtype=work, device=device)[:, None]
    inv_freq = torch.exp(torch.arange(0, channels, 2, dtype=work, device=device) * (-math.log(base) / channels))
    angles = pos * inv_freq  # length × ceil(C/2)
    pe = torch.empty(length, channels, dtype=work, device=device)
    pe[:, 0::2] = torch.sin(angles)
    pe[:, 1::2] = torch.cos(angles[:, : channels // 2])
    return pe.to(dtype)


def grid_table(
    h: int, w: int, half: int, base: float, device: torch.device | str | None, dtype: torch.dtype
) -> torch.Tensor:
    rows = sinusoidal_table(h, half, base, device, dtype).t()[:, :, None].expand(half, h, w)
    cols = sinusoidal_table(w, half, base, device, dtype).t()[:, None, :].expand(half, h, w)
    return torch.cat([rows, cols], 0)

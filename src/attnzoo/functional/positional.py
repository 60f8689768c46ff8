"""Sinusoidal positional tables (1-D, the separable 2-D form of DETR, and RT-DETR's 2-D sin-cos table)."""

from __future__ import annotations

import math

import torch

__all__ = ["sinusoidal_table", "grid_table", "SINCOS_ORDERS", "sincos_2d_table", "detr_sine_table"]

#: Position layouts of :func:`sincos_2d_table`.
SINCOS_ORDERS = ("xy", "yx", "rtdetr")


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


def sincos_2d_table(
    h: int,
    w: int,
    channels: int,
    temperature: float = 10000.0,
    order: str = "xy",
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """RT-DETR's 2-D sin-cos position table for an H×W map flattened row-major: (H·W)×C.

    With d = C/4 and ω_i = temperature^(−i/d), the token at (y, x) gets, in blocks of d channels,
    ``[sin(x·ω), cos(x·ω), sin(y·ω), cos(y·ω)]`` (``order="xy"``, correct for every H×W), or the y blocks first
    (``"yx"``, what recent Ultralytics builds use).  ``"rtdetr"`` is the official RT-DETR grid, kept for
    checkpoint parity: it enumerates positions column-major while the tokens are row-major, so token k gets
    x = k // H and y = k % H — garbled when H ≠ W, the x and y halves swapped when H = W.  Computed in float64.
    """
    if channels % 4 != 0 or channels <= 0:
        raise ValueError(
            f"sincos_2d_table: channels must be a positive multiple of 4 (d = C/4 per part), got {channels}"
        )
    if order not in SINCOS_ORDERS:
        raise ValueError(f"sincos_2d_table: order must be one of {SINCOS_ORDERS}, got {order!r}")
    work = torch.float64 if torch.device(device or "cpu").type in ("cpu", "cuda") else torch.float32
    d = channels // 4
    omega = temperature ** (-torch.arange(d, dtype=work, device=device) / d)
    k = torch.arange(h * w, device=device)
    if order == "rtdetr":
        x, y = k // h, k % h
    else:
        y, x = k // w, k % w
    ax, ay = x.to(work)[:, None] * omega, y.to(work)[:, None] * omega
    blocks = [ax.sin(), ax.cos(), ay.sin(), ay.cos()] if order != "yx" else [ay.sin(), ay.cos(), ax.sin(), ax.cos()]
    return torch.cat(blocks, 1).to(dtype)


def detr_sine_table(
    h: int,
    w: int,
    channels: int,
    temperature: float = 10000.0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Deformable DETR's normalised 2-D sine positions of an H×W map, flattened row-major: (H·W)×C.

    With F = C/2 features per axis, ``ŷ = (y + 0.5) / (H + 1e-6) · 2π`` for rows y = 0 … H−1 (the official
    ``(cumsum − 0.5) / (last + eps) · scale``; likewise x̂) and ``t_i = T^(2⌊i/2⌋/F)``, the row's features are
    ``[sin(ŷ/t_0), cos(ŷ/t_1), sin(ŷ/t_2), …]`` followed by the same of x̂ (``PositionEmbeddingSine(normalize=True)``
    of Deformable DETR).  C must be a multiple of 4.  Computed in float64.
    """
    if channels % 4 != 0 or channels <= 0:
        raise ValueError(f"detr_sine_table: channels must be a positive multiple of 4 (C/2 per axis), got {channels}")
    work = torch.float64 if torch.device(device or "cpu").type in ("cpu", "cuda") else torch.float32
    f = channels // 2
    dim_t = temperature ** (2 * (torch.arange(f, dtype=work, device=device) // 2) / f)
    ys = (torch.arange(h, dtype=work, device=device) + 0.5) / (h + 1e-6) * (2 * math.pi)
    xs = (torch.arange(w, dtype=work, device=device) + 0.5) / (w + 1e-6) * (2 * math.pi)

    def feats(p: torch.Tensor) -> torch.Tensor:
        a = p[:, None] / dim_t
        return torch.stack([a[:, 0::2].sin(), a[:, 1::2].cos()], 2).flatten(1)  # n×F, sin / cos interleaved

    fy, fx = feats(ys), feats(xs)
    return (
        torch.cat([fy[:, None, :].expand(h, w, f), fx[None, :, :].expand(h, w, f)], 2)
        .reshape(h * w, channels)
        .to(dtype)
    )

"""Bilinear sampling of a pyramid at per-head points: the kernel of multi-scale deformable attention.

Deformable DETR samples every level ``l`` of a value pyramid at ``K`` points per query, level and head, bilinearly
with zero padding and ``align_corners=False`` (``grid = 2·loc − 1``: location 0 and 1 are the outer edges of the
border pixels, pixel centres sit at ``(i + 0.5) / W``), and sums the samples with attention weights.  Its PyTorch
fallback (``ms_deform_attn_core_pytorch``) folds the heads into the batch and calls ``grid_sample`` once per level,
through 6-axis sampling tensors; ncnn has neither a batch axis nor more than 4 axes besides it.

Here every level and head is laid out once on one zero-bordered **canvas** B×D×H_c×W_c: level ``l`` occupies a band
of rows, head ``m`` a band of columns, and one row / column of zeros separates neighbouring blocks.  A sampling
point is moved to its block and clamped to the block's zero border (``x ∈ [−1, W_l]`` in pixel units): outside
that range both bilinear taps are zero in the padded level, and on the border they are the zeros the canvas
holds, so every value (and every gradient) is the one of zero padding.  All points then take **one**
``grid_sample`` call, with tensors of at most 5 axes and no batch folding: the eager form, which ONNX Runtime,
OpenVINO and ncnn (its GridSample layer) run.

:func:`ms_deform_sample_portable` computes the same sums with ``floor``, one row gather (``index_select``) on the
channels-last canvas and one batched matmul: for ONNX consumers without GridSample (it needs opset 16, and N-D
only from opset 20: TensorRT before 8.5, TFLite / CoreML converters), the graph holds only Gather and MatMul.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from ..tracing import PortableForm, portable

__all__ = ["ms_deform_sample", "ms_deform_sample_portable", "GATHER_SAMPLING_FORM"]

#: The portable form of a module that samples with :func:`ms_deform_sample` (declare it in its registration).
GATHER_SAMPLING_FORM = PortableForm(
    targets=("onnx",),
    marker="aten::index_select",
    reason="ONNX GridSample needs opset 16 (4-D only before opset 20), which many ONNX consumers (TensorRT before "
    "8.5, the TFLite and CoreML converters) lack; the gather form is floor, one row Gather and one MatMul",
)


def _check(value: torch.Tensor, shapes: Sequence[tuple[int, int]], loc: torch.Tensor, weights: torch.Tensor) -> int:
    """Check the shapes of the arguments (plain Python, on static sizes); return K, the points per level."""
    b, n, m, _ = value.shape
    n_levels = len(shapes)
    if n != sum(int(h) * int(w) for h, w in shapes):
        raise ValueError(
            f"ms_deform_sample: value has {n} positions, the levels {list(shapes)} hold a different number"
        )
    if loc.dim() != 5 or loc.shape[2] != m or loc.shape[4] != 2 or loc.shape[3] % n_levels != 0:
        raise ValueError(
            f"ms_deform_sample: expected locations B×Q×{m}×(L·K)×2 with L = {n_levels}, got {tuple(loc.shape)}"
        )
    if tuple(weights.shape) != tuple(loc.shape[:4]):
        raise ValueError(
            f"ms_deform_sample: expected weights of shape {tuple(loc.shape[:4])}, got {tuple(weights.shape)}"
        )
    return int(loc.shape[3]) // n_levels


def _canvas(value: torch.Tensor, shapes: Sequence[tuple[int, int]]) -> torch.Tensor:
    """The zero-bordered canvas B×D×H_c×W_c of ``value`` (B×N×M×D): level l in rows ``r_l … r_l+H_l−1`` with
    ``r_l = 1 + Σ_{j<l}(H_j + 1)``, head m in columns ``c_m … c_m+W_l−1`` with ``c_m = 1 + m·(W_max + 1)``, zeros
    elsewhere (H_c = 1 + Σ(H_l + 1), W_c = 1 + M·(W_max + 1))."""
    b, _, m, d = value.shape
    w_max = max(int(w) for _, w in shapes)
    bands, start = [], 0
    for h, w in shapes:
        h, w = int(h), int(w)
        v = value[:, start : start + h * w].reshape(b, h, w, m, d).permute(0, 4, 1, 3, 2)  # B×D×H×M×W
        v = F.pad(v.reshape(b, d * h, m, w), (1, w_max - w))  # a zero column left of each head, zeros to W_max + 1
        bands.append(F.pad(v.reshape(b, d, h, m * (w_max + 1)), (0, 0, 0, 1)))  # a zero row below the level
        start += h * w
    return F.pad(torch.cat(bands, 2), (0, 1, 1, 0))  # the top row and the last column


def _canvas_xy(
    loc: torch.Tensor, shapes: Sequence[tuple[int, int]], points: int
) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pixel coordinates (x, y) on the canvas of the normalised locations B×Q×M×(L·K)×2, each clamped to its
    block's zero border; and the canvas size (H_c, W_c)."""
    m = loc.shape[2]
    w_max = max(int(w) for _, w in shapes)
    h_c, w_c = 1 + sum(int(h) + 1 for h, _ in shapes), 1 + m * (w_max + 1)
    size, base, rows = [], [], 1
    for h, w in shapes:
        size += [(float(w), float(h))] * points
        base += [(1.0, float(rows))] * points
        rows += int(h) + 1
    dt, dev = loc.dtype, loc.device
    size_t = torch.tensor(size, dtype=dt, device=dev)  # (L·K)×2: (W_l, H_l)
    heads = torch.arange(m, dtype=dt, device=dev)[:, None, None] * torch.tensor(
        [float(w_max + 1), 0.0], dtype=dt, device=dev
    )
    base_t = torch.tensor(base, dtype=dt, device=dev) + heads  # M×(L·K)×2: the block's origin on the canvas
    px = torch.minimum(torch.maximum(loc * size_t - 0.5, torch.full_like(size_t, -1.0)), size_t)
    return px + base_t, (h_c, w_c)


def ms_deform_sample(
    value: torch.Tensor, shapes: Sequence[tuple[int, int]], loc: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """Multi-scale deformable sampling: ``out[b, q, m] = Σ_{l,k} A[b,q,m,lk] · bilinear(V_l^m, loc[b,q,m,lk])``.

    Args:
        value: B×N×M×D, the levels' pixels row-major, finest first (N = Σ H_l·W_l), split into M heads of D.
        shapes: the levels' (H_l, W_l), static ints.
        loc: B×Q×M×(L·K)×2 sampling locations (x, y), normalised: 0 and 1 are the outer edges of the border
            pixels (Deformable DETR's convention, ``align_corners=False``); outside reads zeros.
        weights: B×Q×M×(L·K) attention weights (level-major: index l·K + k).

    Returns:
        B×Q×(M·D), the heads' sums side by side.
    """
    points = _check(value, shapes, loc, weights)
    if portable(*GATHER_SAMPLING_FORM.targets):
        return ms_deform_sample_portable(value, shapes, loc, weights)
    b, q, m, lk, _ = loc.shape
    d = value.shape[3]
    canvas = _canvas(value, shapes)
    xy, (h_c, w_c) = _canvas_xy(loc, shapes, points)
    scale = torch.tensor([2.0 / w_c, 2.0 / h_c], dtype=loc.dtype, device=loc.device)
    grid = (xy * scale + (scale * 0.5 - 1.0)).reshape(b, q, m * lk, 2)  # align_corners=False: (2x + 1)/W − 1
    sampled = F.grid_sample(canvas, grid, mode="bilinear", padding_mode="zeros", align_corners=False)  # B×D×Q×(M·LK)
    out = (sampled.reshape(b, d, q, m, lk) * weights.unsqueeze(1)).sum(-1)  # B×D×Q×M
    return out.permute(0, 2, 3, 1).reshape(b, q, m * d)


def ms_deform_sample_portable(
    value: torch.Tensor, shapes: Sequence[tuple[int, int]], loc: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """:func:`ms_deform_sample` without ``grid_sample``: the four taps of every point by ``floor``, gathered as rows
    of the channels-last canvas (``index_select``), weighted by bilinear × attention weights in one matmul."""
    points = _check(value, shapes, loc, weights)
    b, q, m, lk, _ = loc.shape
    d = value.shape[3]
    table = _canvas(value, shapes).permute(0, 2, 3, 1)  # B×H_c×W_c×D
    xy, (h_c, w_c) = _canvas_xy(loc, shapes, points)
    x, y = xy.unbind(-1)  # B×Q×M×LK each, within [0, W_c − 1] × [0, H_c − 1]
    x0, y0 = x.floor(), y.floor()
    fx, fy = x - x0, y - y0
    x1, y1 = torch.clamp(x0 + 1, max=w_c - 1), torch.clamp(y0 + 1, max=h_c - 1)  # weight 0 where clamped
    batch = (torch.arange(b, device=loc.device, dtype=loc.dtype) * float(h_c * w_c)).reshape(b, 1, 1, 1)
    r0, r1 = batch + y0 * w_c, batch + y1 * w_c
    idx = torch.cat([r0 + x0, r0 + x1, r1 + x0, r1 + x1], -1).to(torch.int64)  # B×Q×M×4LK
    wy0, wy1 = (1 - fy) * weights, fy * weights
    w = torch.cat([wy0 * (1 - fx), wy0 * fx, wy1 * (1 - fx), wy1 * fx], -1)  # B×Q×M×4LK
    rows = table.reshape(b * h_c * w_c, d).index_select(0, idx.reshape(-1))  # (B·Q·M·4LK)×D
    out = torch.bmm(w.reshape(b * q * m, 1, 4 * lk), rows.reshape(b * q * m, 4 * lk, d))  # (B·Q·M)×1×D
    return out.reshape(b, q, m * d)

"""Bilinear sampling of a pyramid at per-head points: the kernel of multi-scale deformable attention.

Deformable DETR samples every level ``l`` of a value pyramid at ``K`` points per query, level and head, bilinearly
with zero padding and ``align_corners=False`` (``grid = 2·loc − 1``: location 0 and 1 are the outer edges of the
border pixels, pixel centres sit at ``(i + 0.5) / W``), and sums the samples with attention weights.  Its PyTorch
fallback (``ms_deform_attn_core_pytorch``) calls ``grid_sample`` once per level and stacks the samples into
6-axis tensors, which ncnn (at most 4 axes besides the batch) cannot hold.

Here the levels of each (batch, head) pair are laid out once on one zero-bordered **canvas** B·M×D×H_c×W_c: level
``l`` occupies a band of rows, one row / column of zeros borders every band.  A sampling point is moved into its
band and clamped to the band's zero border (``x ∈ [−1, W_l]`` in pixel units): outside that range both bilinear
taps read zeros in the padded level, and on the border they read the zeros the canvas holds, so every value (and
every gradient) is the one of zero padding.  All points of all levels then take **one** ``grid_sample`` call,
with tensors of at most 5 axes: ONNX Runtime, OpenVINO and ncnn (GridSample) run it.  The clamp has tensor
bounds (autograd keeps one copy of the points); ncnn takes it as a maximum and a minimum (:data:`CLAMP_FORM`:
pnnx converts ``clamp`` with scalar bounds only).  In float32 the canvas coordinates (up to H_c, a
little more than the sum of the level heights) round about 2–3× more than per-level coordinates do (~1e-5
relative on unit-scale values at levels 40², 20², 10²).

:func:`ms_deform_sample_portable` computes the same sums with ``floor``, one row gather (``index_select``) on the
channels-last canvas and one batched matmul: for ONNX consumers without GridSample (it needs opset 16, and N-D
only from opset 20: TensorRT before 8.5, TFLite / CoreML converters), the graph holds only Gather and MatMul.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from ..tracing import PortableForm, portable

__all__ = ["ms_deform_sample", "ms_deform_sample_portable", "GATHER_SAMPLING_FORM", "CLAMP_FORM"]

#: The portable form of a module that samples with :func:`ms_deform_sample` (declare it in its registration).
GATHER_SAMPLING_FORM = PortableForm(
    targets=("onnx",),
    marker="aten::index_select",
    reason="ONNX GridSample needs opset 16 (4-D only before opset 20), which many ONNX consumers (TensorRT before "
    "8.5, the TFLite and CoreML converters) lack; the gather form is floor, one row Gather and one MatMul",
)

#: The ncnn form of the clamp to the bands' borders (declare it with :data:`GATHER_SAMPLING_FORM`).
CLAMP_FORM = PortableForm(
    targets=("ncnn",),
    marker="aten::maximum",
    reason="pnnx converts clamp with scalar bounds only; the clamp to each level's border as maximum and minimum",
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
    """The zero-bordered canvas B'×D×H_c×W_c of ``value`` (B'×N×D, one head per batch entry): level l in rows
    ``r_l … r_l+H_l−1`` with ``r_l = 1 + Σ_{j<l}(H_j + 1)`` and columns ``1 … W_l``, zeros elsewhere
    (H_c = 1 + Σ(H_l + 1), W_c = W_max + 2)."""
    bm, _, d = value.shape
    w_max = max(int(w) for _, w in shapes)
    bands, start = [], 0
    for h, w in shapes:
        h, w = int(h), int(w)
        v = value[:, start : start + h * w].transpose(1, 2).reshape(bm, d, h, w)
        bands.append(F.pad(v, (1, w_max + 1 - w, 0, 1)))  # zero column left, zeros right to W_max + 2, zero row below
        start += h * w
    return F.pad(torch.cat(bands, 2), (0, 0, 1, 0))  # the top row


def _canvas_points(
    loc: torch.Tensor, shapes: Sequence[tuple[int, int]], points: int, normalised: bool, portable_clamp: bool
) -> tuple[torch.Tensor, tuple[int, int]]:
    """The locations B'×Q×(L·K)×2 on the canvas, each clamped to its band's zero border (pixel x ∈ [−1, W_l]),
    and the canvas size (H_c, W_c).

    ``normalised``: grid_sample coordinates ``g = (2x' + 1)/W_c − 1 = loc·2W_l/W_c + 2·origin/W_c − 1``, one
    multiply-add on the location (few roundings at canvas scale); else canvas pixels ``x' = loc·W_l − 0.5 + origin``
    (the band's origin: column 1, row r_l).  The clamp is one ``clamp`` with tensor bounds (autograd keeps one
    input), or with ``portable_clamp`` a maximum and a minimum (pnnx converts ``clamp`` with scalar bounds only)."""
    w_max = max(int(w) for _, w in shapes)
    h_c, w_c = 1 + sum(int(h) + 1 for h, _ in shapes), w_max + 2
    scale, shift, lo, hi, rows = [], [], [], [], 1
    for h, w in shapes:
        h, w = int(h), int(w)
        if normalised:
            s, c = (2.0 * w / w_c, 2.0 * h / h_c), (2.0 / w_c - 1.0, 2.0 * rows / h_c - 1.0)
        else:
            s, c = (float(w), float(h)), (0.5, rows - 0.5)
        scale += [s] * points
        shift += [c] * points
        # loc ∈ [−0.5/W_l, (W_l + 0.5)/W_l] (pixel x ∈ [−1, W_l]) on the canvas
        lo += [(c[0] - 0.5 * s[0] / w, c[1] - 0.5 * s[1] / h)] * points
        hi += [(c[0] + s[0] * (w + 0.5) / w, c[1] + s[1] * (h + 0.5) / h)] * points
        rows += h + 1
    dt, dev = loc.dtype, loc.device

    def const(rows_: list[tuple[float, float]]) -> torch.Tensor:  # (L·K)×2
        return torch.tensor(rows_, dtype=dt, device=dev)

    xy = loc * const(scale) + const(shift)
    if portable_clamp:
        return torch.minimum(torch.maximum(xy, const(lo)), const(hi)), (h_c, w_c)
    return torch.clamp(xy, min=const(lo), max=const(hi)), (h_c, w_c)


def _fold_heads(
    value: torch.Tensor, loc: torch.Tensor, weights: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The heads moved into the batch: B·M×N×D, B·M×Q×LK×2, B·M×Q×LK."""
    b, n, m, d = value.shape
    q, lk = loc.shape[1], loc.shape[3]
    return (
        value.transpose(1, 2).reshape(b * m, n, d),
        loc.transpose(1, 2).reshape(b * m, q, lk, 2),
        weights.transpose(1, 2).reshape(b * m, q, lk),
    )


def _unfold_heads(out: torch.Tensor, b: int) -> torch.Tensor:
    """B·M×Q×D → B×Q×(M·D)."""
    bm, q, d = out.shape
    return out.reshape(b, bm // b, q, d).transpose(1, 2).reshape(b, q, bm // b * d)


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
    b = value.shape[0]
    value, loc, weights = _fold_heads(value, loc, weights)
    canvas = _canvas(value, shapes)
    grid, _ = _canvas_points(loc, shapes, points, True, portable(*CLAMP_FORM.targets))
    sampled = F.grid_sample(canvas, grid, mode="bilinear", padding_mode="zeros", align_corners=False)  # B'×D×Q×LK
    out = (sampled * weights.unsqueeze(1)).sum(-1)  # B'×D×Q
    return _unfold_heads(out.transpose(1, 2), b)


def ms_deform_sample_portable(
    value: torch.Tensor, shapes: Sequence[tuple[int, int]], loc: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """:func:`ms_deform_sample` without ``grid_sample``: the four taps of every point by ``floor``, gathered as rows
    of the channels-last canvas (``index_select``), weighted by bilinear × attention weights in one matmul."""
    points = _check(value, shapes, loc, weights)
    b0 = value.shape[0]
    value, loc, weights = _fold_heads(value, loc, weights)
    b, q, lk, _ = loc.shape
    d = value.shape[2]
    table = _canvas(value, shapes).permute(0, 2, 3, 1)  # B'×H_c×W_c×D
    xy, (h_c, w_c) = _canvas_points(loc, shapes, points, False, True)
    x, y = xy.unbind(-1)  # B'×Q×LK each, within [0, W_c − 1] × [0, H_c − 1]
    x0, y0 = x.floor(), y.floor()
    fx, fy = x - x0, y - y0
    x1, y1 = torch.clamp(x0 + 1, max=w_c - 1), torch.clamp(y0 + 1, max=h_c - 1)  # weight 0 where clamped
    batch = (torch.arange(b, device=loc.device, dtype=loc.dtype) * float(h_c * w_c)).reshape(b, 1, 1)
    r0, r1 = batch + y0 * w_c, batch + y1 * w_c
    idx = torch.cat([r0 + x0, r0 + x1, r1 + x0, r1 + x1], -1).to(torch.int64)  # B'×Q×4LK
    wy0, wy1 = (1 - fy) * weights, fy * weights
    w = torch.cat([wy0 * (1 - fx), wy0 * fx, wy1 * (1 - fx), wy1 * fx], -1)  # B'×Q×4LK
    rows = table.reshape(b * h_c * w_c, d).index_select(0, idx.reshape(-1))  # (B'·Q·4LK)×D
    out = torch.bmm(w.reshape(b * q, 1, 4 * lk), rows.reshape(b * q, 4 * lk, d))  # (B'·Q)×1×D
    return _unfold_heads(out.reshape(b, q, d), b0)

"""Vision Transformer with Deformable Attention (Xia, Pan, Song, Li, Huang; CVPR 2022), https://arxiv.org/abs/2201.00520,
with the continuous log-spaced position bias of DAT++ (Xia et al.; arXiv 2023), https://arxiv.org/abs/2309.01430.

Keys and values are sampled (``grid_sample``) at a grid of reference points moved by offsets that a small
network predicts from the queries; every query attends to all sampled points.  The position bias is a function
of the continuous query–sample displacement (no table tied to a resolution), so any H×W works.
"""

from __future__ import annotations

import math
from typing import ClassVar, cast

import torch
import torch.nn.functional as F
from torch import nn

from ..capture import capture_target
from ..layers import (
    KERNEL_BOUND,
    TABLE_BOUND,
    AttnModule,
    SizeBound,
    attention,
    check_arg,
    check_choice,
    check_nchw,
    fx_leaf,
    odd_kernel,
    positive_int,
)
from ..layers.checks import check_attention_args
from ..registry import register
from ..tracing import PortableForm, portable

__all__ = ["DeformableAttention", "reference_points"]


def reference_points(
    length: int, stride: int, device: torch.device | None = None, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """Centres (pixel coordinates, pixel centres at integers) of the ⌈length / stride⌉ cells of ``stride`` pixels
    along one axis; the last cell is cut at the border and its centre moves with it."""
    i = torch.arange((length + stride - 1) // stride, device=device)
    end = torch.clamp((i + 1) * stride, max=length)
    return ((i * stride + end - 1).to(dtype or torch.float32)) / 2


def _normalise(p: torch.Tensor, length: int) -> torch.Tensor:
    """Pixel coordinate → ``grid_sample`` coordinate (align_corners=False)."""
    return (p * 2 + 1) / length - 1


@fx_leaf
def _sample_positions(offset: torch.Tensor, h: int, w: int, stride: int, factor: float) -> torch.Tensor:
    """Raw offsets (B·G)×2×Hk×Wk (dy, dx) → sampling positions (B·G)×Hk×Wk×2 as normalised (y, x)."""
    hk, wk = offset.shape[2], offset.shape[3]
    dt = offset.dtype
    ry = reference_points(h, stride, offset.device, dt)[:, None]
    rx = reference_points(w, stride, offset.device, dt)[None, :]
    dy, dx = offset[:, 0], offset[:, 1]
    if factor >= 0:  # amplitude factor / 2 key-grid cells, as the official normalised range
        dy, dx = dy.tanh() * (factor * stride / 2), dx.tanh() * (factor * stride / 2)
        py, px = ry + dy, rx + dx
    else:  # unbounded offsets, positions clamped to the map (official offset_range_factor < 0)
        py, px = (ry + dy).clamp(0, h - 1), (rx + dx).clamp(0, w - 1)
    return torch.stack((_normalise(py, h), _normalise(px, w)), dim=-1).view(-1, hk, wk, 2)


_LOG2_E_THIRD = 1.0 / (3.0 * math.log(2.0))


def _sample(x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of x (B'×C'×H×W) at the normalised (y, x) positions pos (B'×Hk×Wk×2): B'×C'×Hk×Wk."""
    return F.grid_sample(x, pos.flip(-1).to(x.dtype), mode="bilinear", padding_mode="zeros", align_corners=False)


@fx_leaf
def _query_axes(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised y of every row and x of every column of x: (H,), (W,)."""
    h, w = x.shape[-2:]
    return (
        _normalise(torch.arange(h, device=x.device, dtype=x.dtype), h),
        _normalise(torch.arange(w, device=x.device, dtype=x.dtype), w),
    )


@register(
    "deformable_attention",
    family="local",
    paper="Vision Transformer with Deformable Attention (Xia, Pan, Song, Li, Huang; CVPR 2022)",
    url="https://arxiv.org/abs/2201.00520",
    complexity="O(N²/stride²)",
    summary="Keys/values sampled with grid_sample at reference points + query-predicted offsets; continuous position bias.",
    test_kwargs={"heads": 2, "groups": 2, "kernel_size": 3},
    maps=("attn",),
    forms=(
        PortableForm(
            targets=("ncnn",),
            marker="aten::chunk",
            reason="with groups > 1 the eager form folds the offset groups into the batch (B·G) for the offset "
            "network, grid_sample and the position bias; ncnn has no batch axis (pnnx's graph failed to extract), "
            "so each group is sampled on its own channel slice and the results concatenated",
            cases=({}, {"position_bias": "log_cpb"}, {"groups": 2, "heads": 4, "stride": 2}, {"position_bias": None}),
        ),
    ),
)
class DeformableAttention(AttnModule):
    """Deformable multi-head attention (DAT); B×C×H×W → B×C×H×W.

    q = W_q x; per group of channels, offsets Δp = θ(q) with θ = depthwise k×k conv (stride ``stride``) →
    LayerNorm → GELU → 1×1 conv to 2 channels (shared by the groups, as the official code); reference points p
    are the centres of the stride×stride cells (⌈H/s⌉×⌈W/s⌉); x̃ = bilinear ``grid_sample`` of x at p + Δp with
    Δp = ``offset_range_factor``·s/2·tanh(·) pixels; k = W_k x̃, v = W_v x̃; per head
    ``softmax(q kᵀ · d^-0.5 + φ(q_pos − p − Δp)) v``, output 1×1 conv.  φ is a continuous function of the
    normalised query–sample displacement, never tied to the input resolution: ``"table"`` (DAT) reads a
    (2T−1)×(2T−1) table per head by bilinear interpolation at Δ/2; ``"log_cpb"`` (DAT++) is Linear(2, 32) → ReLU
    → Linear(32, heads per group) on sign(4Δ)·log2(1+|4Δ|)/3.  No norm or residual inside.

    Differences from the official DAT (v1): its table has the construction size (2H−1)×(2W−1) of the input
    (here a fixed ``table_size``, read the same way at any input size); reference points and offsets use
    pixel-centre coordinates (``align_corners=False``) so they are defined for every size including 1 (the
    official normalisation divides by H_k − 1).  Cost: O(N·N_k·heads) for the table, O(N·N_k·32) for log-CPB;
    see docs/provenance/deformable_attention.md.

    Args:
        channels: C.
        heads: heads (a divisor of C and a multiple of ``groups``).
        groups: offset groups (each predicts its own offset field; a divisor of ``heads``).
        offset_range_factor: amplitude of the offsets (official 2; a negative value = unbounded, positions clamped).
        stride: stride of the reference grid (N_k = ⌈H/s⌉·⌈W/s⌉; official 8, 4, 2, 1 by stage).
        kernel_size: odd kernel of the offset network's depthwise conv (official 9, 7, 5, 3 by stage).
        position_bias: ``"table"`` (DAT, default), ``"log_cpb"`` (DAT++) or None.
        table_size: T of the ``"table"`` bias ((2T−1)² entries per head; 14 = DAT's stage-3 size at 224²).
        attn_drop, proj_drop: dropout on the probabilities and after the output projection.

    Attention maps: ``"attn"`` B×heads×N×N_k.
    """

    size_bounds: ClassVar[dict[str, SizeBound]] = {
        "kernel_size": SizeBound(KERNEL_BOUND, "kernel side"),
        "table_size": SizeBound(TABLE_BOUND, "position-bias table side"),
    }

    def __init__(
        self,
        channels: int,
        heads: int = 8,
        groups: int = 1,
        offset_range_factor: float = 2.0,
        stride: int = 1,
        kernel_size: int = 5,
        position_bias: str | None = "table",
        table_size: int = 14,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        owner = self.owner
        _, self.attn_drop, proj_drop = check_attention_args(
            owner, channels, heads, attn_drop=attn_drop, proj_drop=proj_drop
        )
        positive_int(groups, owner, "groups")
        check_arg(heads % groups == 0, owner, "groups", f"a divisor of heads={heads}", groups)
        ok = (
            isinstance(offset_range_factor, (int, float))
            and not isinstance(offset_range_factor, bool)
            and math.isfinite(offset_range_factor)
        )
        check_arg(
            ok, owner, "offset_range_factor", "a finite number (negative = unbounded offsets)", offset_range_factor
        )
        positive_int(stride, owner, "stride")
        odd_kernel(kernel_size, owner)
        check_choice(position_bias, ("table", "log_cpb", None), owner, "position_bias")
        positive_int(table_size, owner, "table_size")
        self.channels, self.heads, self.groups = channels, heads, groups
        self.offset_range_factor, self.stride, self.kernel_size = float(offset_range_factor), stride, kernel_size
        self.position_bias, self.table_size = position_bias, table_size
        self.dim_head = channels // heads
        self.scale = self.dim_head**-0.5
        cg = channels // groups
        self.conv_offset = nn.Conv2d(cg, cg, kernel_size, stride, kernel_size // 2, groups=cg)
        self.offset_norm = nn.LayerNorm(cg)
        self.offset_proj = nn.Conv2d(cg, 2, 1, bias=False)
        self.proj_q = nn.Conv2d(channels, channels, 1)
        self.proj_k = nn.Conv2d(channels, channels, 1)
        self.proj_v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)
        self.proj_drop = nn.Dropout(proj_drop)
        self.rpe: nn.Sequential | None = None
        self.rpe_table: nn.Parameter | None = None
        if position_bias == "table":  # DAT: a (2T-1)² table per head, read by bilinear interpolation
            self.rpe_table = nn.Parameter(torch.zeros(heads, 2 * table_size - 1, 2 * table_size - 1))
            nn.init.trunc_normal_(self.rpe_table, std=0.01, a=-2.0, b=2.0)
        elif position_bias == "log_cpb":  # DAT++: an MLP of the log-spaced displacement
            self.rpe = nn.Sequential(
                nn.Linear(2, 32), nn.ReLU(inplace=True), nn.Linear(32, heads // groups, bias=False)
            )

    def offsets(self, q: torch.Tensor) -> torch.Tensor:
        """Raw offsets (B·G)×2×Hk×Wk from the queries B×C×H×W."""
        b, c, h, w = q.shape
        return self._offset_net(q.reshape(b * self.groups, c // self.groups, h, w))

    def _offset_net(self, q: torch.Tensor) -> torch.Tensor:
        """θ on the queries of one group per batch row: B'×C/G×H×W → B'×2×Hk×Wk."""
        t = self.conv_offset(q)
        t = F.gelu(self.offset_norm(t.permute(0, 2, 3, 1))).permute(0, 3, 1, 2)
        return self.offset_proj(t)

    def bias(self, x: torch.Tensor, pos: torch.Tensor, group: int | None = None) -> torch.Tensor:
        """Continuous position bias B×heads×N×Ns of the queries of x and the sampling positions pos.

        ``"table"``: bilinear interpolation of a (2T−1)×(2T−1) table per head at Δ/2 (normalised displacement,
        DAT).  ``"log_cpb"``: φ(Δ) = W₂·ReLU(W₁·f(Δ) + b₁) with f(Δ) = sign(4Δ)·log2(1 + |4Δ|)/3 per coordinate.  The first layer is
        evaluated per axis (rows × samples and columns × samples) and broadcast-added, which is exactly W₁·f(Δ)
        + b₁ without the N×Ns×2 displacement tensor or a K=2 matmul.

        ``group`` (the portable form): ``pos`` is B×Hk×Wk×2 of that one offset group, and the bias of its
        heads (B×heads/G×N×Ns) is returned."""
        b, _, h, w = x.shape
        g, ns = (self.groups, pos.shape[1] * pos.shape[2]) if group is None else (1, pos.shape[1] * pos.shape[2])
        heads = self.heads if group is None else self.heads // self.groups
        if self.rpe_table is not None:  # bilinear read of the table at the displacement / 2 (in [-1, 1])
            qy, qx = _query_axes(x)
            p = pos.reshape(b * g, 1, 1, ns, 2).to(self.rpe_table.dtype)
            dy = (qy.to(p.dtype)[None, :, None, None] - p[..., 0]) * 0.5  # (B·G)×H×1×Ns
            dx = (qx.to(p.dtype)[None, None, :, None] - p[..., 1]) * 0.5  # (B·G)×1×W×Ns
            grid = torch.stack((dx.expand(b * g, h, w, ns), dy.expand(b * g, h, w, ns)), dim=-1).reshape(
                b * g, h * w, ns, 2
            )
            side = self.rpe_table.shape[-1]
            rows = self.rpe_table if group is None else self.rpe_table.chunk(self.groups, 0)[group]
            table = rows.reshape(1, heads, side, side).expand(b, -1, -1, -1).reshape(b * g, heads // g, side, side)
            out = F.grid_sample(table, grid, mode="bilinear", padding_mode="zeros", align_corners=True)  # (B·G)×hg×N×Ns
            return out.reshape(b, heads, h * w, ns)
        lin1, lin2 = (
            cast(nn.Linear, cast(nn.Sequential, self.rpe)[0]),
            cast(nn.Linear, cast(nn.Sequential, self.rpe)[2]),
        )
        dt = lin1.weight.dtype
        qy, qx = _query_axes(x)
        p = pos.reshape(b * g, 1, ns, 2).to(dt)

        def f(d: torch.Tensor) -> torch.Tensor:
            d = d * 4.0
            return torch.sign(d) * torch.log(d.abs() + 1.0) * _LOG2_E_THIRD  # log2 as log: ncnn has no log2

        fy = f(qy.to(dt)[None, :, None] - p[..., 0])  # (B·G)×H×Ns
        fx = f(qx.to(dt)[None, :, None] - p[..., 1])  # (B·G)×W×Ns
        ay = fy[..., None] * lin1.weight[:, 0] + lin1.bias  # (B·G)×H×Ns×32
        ax = fx[..., None] * lin1.weight[:, 1]  # (B·G)×W×Ns×32
        hidden = (ay[:, :, None] + ax[:, None]).relu_()  # (B·G)×H×W×Ns×32
        out = hidden @ lin2.weight.t()  # (B·G)×H×W×Ns×(heads/G)
        return out.reshape(b * g, h * w, ns, -1).permute(0, 3, 1, 2).reshape(b, heads, h * w, ns)

    def _groups_portable(self, x: torch.Tensor, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The ncnn form with groups > 1: the samples B×C×Hk×Wk and the bias B×heads×N×Ns, each offset group
        computed on its own channel slice of q and x (the eager form folds the groups into the batch, B·G)."""
        h, w = x.shape[-2:]
        parts, biases = [], []
        for i, (qg, xg) in enumerate(zip(q.chunk(self.groups, 1), x.chunk(self.groups, 1))):
            pos = _sample_positions(self._offset_net(qg), h, w, self.stride, self.offset_range_factor)
            parts.append(_sample(xg, pos))
            if self.position_bias is not None:
                biases.append(self.bias(x, pos, group=i))
        return torch.cat(parts, 1), torch.cat(biases, 1) if biases else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        b, c, h, w = x.shape
        g, heads, d = self.groups, self.heads, self.dim_head
        q = self.proj_q(x)
        bias: torch.Tensor | None
        if g > 1 and portable("ncnn"):  # each group on its own channel slice: no B·G batch
            sampled, bias = self._groups_portable(x, q)
        else:
            # (B·G)×Hk×Wk×2 sampling positions (y, x)
            pos = _sample_positions(self.offsets(q), h, w, self.stride, self.offset_range_factor)
            sampled = _sample(x.reshape(b * g, c // g, h, w), pos).reshape(b, c, pos.shape[1], pos.shape[2])
            bias = None if self.position_bias is None else self.bias(x, pos)
        hk, wk = sampled.shape[2], sampled.shape[3]
        n, ns = h * w, hk * wk
        qh = q.permute(0, 2, 3, 1).reshape(b, n, heads, d).transpose(1, 2)
        kh = self.proj_k(sampled).permute(0, 2, 3, 1).reshape(b, ns, heads, d).transpose(1, 2)
        vh = self.proj_v(sampled).permute(0, 2, 3, 1).reshape(b, ns, heads, d).transpose(1, 2)
        out = attention(
            qh,
            kh,
            vh,
            mask=None if bias is None else bias.to(qh.dtype),
            scale=self.scale,
            dropout_p=self.attn_drop if self.training else 0.0,
            module=capture_target(self),
            key="attn",
        )
        out = out.transpose(2, 3).reshape(b, c, h, w)
        return self.proj_drop(self.proj_out(out))

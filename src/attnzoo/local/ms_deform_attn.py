"""Multi-scale deformable attention (Deformable DETR) as an encoder layer over a feature pyramid.

Paper: Deformable DETR: Deformable Transformers for End-to-End Object Detection (Zhu, Su, Lu, Li, Wang, Dai;
ICLR 2021), https://arxiv.org/abs/2010.04159.  Official code: fundamentalvision/Deformable-DETR (Apache-2.0; a
CUDA op and a PyTorch core "for debug and test only").  Written from the paper (docs/provenance/ms_deform_attn.md).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..functional.positional import detr_sine_table
from ..functional.sampling import CLAMP_FORM, GATHER_SAMPLING_FORM, ms_deform_sample
from ..layers import (
    AttnModule,
    SizeBound,
    check_arg,
    check_dropout,
    check_heads,
    check_level_channels,
    check_pyramid,
    group_norm_groups,
    positive_int,
    positive_number,
)
from ..registry import register
from ..tracing import fx_leaf, traced_size

__all__ = ["MultiScaleDeformableAttention", "DeformableEncoderLayer"]


class MultiScaleDeformableAttention(AttnModule):
    """The attention core of Deformable DETR on token sequences (not registered; the encoder layer's ``self_attn``).

    ``MSDA(z_q, p̂_q, {x_l}) = W_o Σ_m [Σ_l Σ_k A_mlqk · V_l^m(p̂_q + Δp_mlqk / (W_l, H_l))]`` with the value
    ``V = W_v x`` split into ``heads`` heads, the offsets Δp (in pixels of level l) and the logits of A predicted by
    linear maps of the query, A softmax over the L·K (level, point) pairs of each head, and bilinear sampling with
    zero padding, ``align_corners=False`` (:func:`attnzoo.functional.sampling.ms_deform_sample`).

    The paper's initialisation: Δp weight 0 and bias the head's direction ``(cos θ_m, sin θ_m)`` scaled to unit
    max-norm times (k + 1); A weight and bias 0 (uniform over levels and points); ``W_v``, ``W_o`` Xavier-uniform,
    biases 0.  Parameter names and layouts as the official ``MSDeformAttn`` (``sampling_offsets``,
    ``attention_weights``, ``value_proj``, ``output_proj``), so its checkpoints load.

    ``forward(query B×Q×C, reference B×Q×2 (or 1×Q×2), value B×N×C, shapes [(H_l, W_l)])`` → B×Q×C; the
    reference points are normalised (x, y) in [0, 1], shared by all levels.
    """

    def __init__(self, channels: int, levels: int, heads: int = 8, points: int = 4) -> None:
        super().__init__()
        self.channels, self.levels, self.heads, self.points = channels, levels, heads, points
        self.sampling_offsets = nn.Linear(channels, heads * levels * points * 2)
        self.attention_weights = nn.Linear(channels, heads * levels * points)
        self.value_proj = nn.Linear(channels, channels)
        self.output_proj = nn.Linear(channels, channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.sampling_offsets.weight)
        theta = torch.arange(self.heads, dtype=torch.float64) * (2.0 * math.pi / self.heads)
        direction = torch.stack([theta.cos(), theta.sin()], -1)
        direction = direction / direction.abs().max(-1, keepdim=True).values  # M×2, max-norm 1
        scale = torch.arange(1, self.points + 1, dtype=torch.float64)[None, None, :, None]  # (k + 1)
        bias = direction[:, None, None, :] * scale * torch.ones(1, self.levels, 1, 1, dtype=torch.float64)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(bias.reshape(-1))
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        for lin in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(
        self, query: torch.Tensor, reference: torch.Tensor, value: torch.Tensor, shapes: Sequence[tuple[int, int]]
    ) -> torch.Tensor:
        b, q, _ = query.shape
        m, lk = self.heads, self.levels * self.points
        v = self.value_proj(value).reshape(b, value.shape[1], m, self.channels // m)
        offsets = self.sampling_offsets(query).reshape(b, q, m, lk, 2)
        weights = torch.softmax(self.attention_weights(query).reshape(b, q, m, lk), -1)
        # (W_l, H_l) of each (level, point) pair: offsets are in pixels of their level
        size = torch.tensor(
            [(float(w), float(h)) for h, w in shapes for _ in range(self.points)],
            dtype=query.dtype,
            device=query.device,
        )
        loc = reference.reshape(reference.shape[0], q, 1, 1, 2) + offsets / size
        return self.output_proj(ms_deform_sample(v, shapes, loc, weights))


class _EncoderBody(nn.Module):
    """Deformable DETR's encoder layer on tokens: post-norm MSDA and ReLU FFN (official names)."""

    def __init__(self, d: int, levels: int, heads: int, points: int, dim_feedforward: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = MultiScaleDeformableAttention(d, levels, heads, points)
        self.norm1 = nn.LayerNorm(d)
        self.linear1 = nn.Linear(d, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d)
        self.norm2 = nn.LayerNorm(d)
        self.drop = nn.Dropout(dropout)
        for lin in (self.linear1, self.linear2):  # DeformableTransformer._reset_parameters: Xavier on every matrix
            nn.init.xavier_uniform_(lin.weight)

    def forward(
        self, src: torch.Tensor, pos: torch.Tensor, reference: torch.Tensor, shapes: Sequence[tuple[int, int]]
    ) -> torch.Tensor:
        src = self.norm1(src + self.drop(self.self_attn(src + pos, reference, src, shapes)))
        return self.norm2(src + self.drop(self.linear2(self.drop(F.relu(self.linear1(src))))))


@fx_leaf
def _encode(
    srcs: list[torch.Tensor], level_embed: torch.Tensor, body: _EncoderBody, temperature: float
) -> list[torch.Tensor]:
    """Flatten the projected levels to one token sequence (queries = every pixel of every level), add the sine
    positions and level embeddings, run the encoder layer and cut the tokens back into maps."""
    b, d = srcs[0].shape[0], srcs[0].shape[1]
    shapes = [traced_size(s) for s in srcs]
    dt, dev = srcs[0].dtype, srcs[0].device
    pos, ref = [], []
    for lvl, (h, w) in enumerate(shapes):
        pos.append(detr_sine_table(int(h), int(w), d, temperature, dev, dt) + level_embed[lvl])
        ys = (torch.arange(int(h), dtype=dt, device=dev) + 0.5) / float(h)  # the pixel centres, normalised
        xs = (torch.arange(int(w), dtype=dt, device=dev) + 0.5) / float(w)
        ref.append(torch.stack([xs[None, :].expand(int(h), int(w)), ys[:, None].expand(int(h), int(w))], -1))
    tokens = torch.cat([s.flatten(2) for s in srcs], 2).transpose(1, 2)  # B×N×d
    reference = torch.cat([r.reshape(-1, 2) for r in ref], 0)[None]  # 1×N×2
    out = body(tokens, torch.cat(pos, 0)[None], reference, shapes).transpose(1, 2)  # B×d×N
    sizes = [int(h) * int(w) for h, w in shapes]
    return [t.reshape(b, d, int(h), int(w)) for t, (h, w) in zip(out.split(sizes, 2), shapes)]


def _output_shapes(module: Any, levels: Sequence[torch.Tensor]) -> list[tuple[Any, ...]]:
    return [(t.shape[0], module.out_channels, t.shape[2], t.shape[3]) for t in levels]


@register(
    "ms_deform_attn",
    family="local",
    paper="Deformable DETR: Deformable Transformers for End-to-End Object Detection (Zhu, Su, Lu, Li, Wang, Dai; ICLR 2021)",
    url="https://arxiv.org/abs/2010.04159",
    layout="pyramid",
    complexity="O(N·L·K)",
    summary="Deformable DETR encoder layer over a pyramid: every pixel of every level attends to K bilinearly "
    "sampled points per level and head around its reference point; one grid_sample, ≤5-D, exportable.",
    output_shape=_output_shapes,
    forms=(GATHER_SAMPLING_FORM, CLAMP_FORM),
    test_kwargs={"out_channels": 16, "heads": 2, "points": 2, "dim_feedforward": 32},
)
class DeformableEncoderLayer(AttnModule):
    """Deformable DETR's encoder layer with multi-scale deformable self-attention over a pyramid; list in, list out.

    Input ``[x_0, …, x_{L−1}]`` (B×C_l×H_l×W_l, finest first, any sizes that do not grow); output ``out_channels``
    maps at the input sizes.  As Deformable DETR's encoder: each level is projected (``input_proj``: 1×1 conv with
    bias + GroupNorm with 32 groups, the paper's 8 channels per group at d = 256; below that, the largest divisor
    of d that keeps at least 8 channels per group, so that a 1×1 map still normalises more than one value), the levels' pixels form one token sequence
    (the queries and the values), the query is the token plus its level's normalised 2-D sine position
    (:func:`attnzoo.functional.positional.detr_sine_table`) plus a learned level embedding (normal init), the
    reference point of a pixel is its normalised centre ``((j + 0.5)/W_l, (i + 0.5)/H_l)`` on every level, then
    ``t = LN₁(t + MSDA(t + pos, ref, t))``, ``t = LN₂(t + W₂ ReLU(W₁ t))`` (post-norm, FFN ``dim_feedforward``).
    The attention core is :class:`MultiScaleDeformableAttention` (the paper's initialisation).

    Defaults as the paper: d = 256, 8 heads, 4 points, FFN 1024, temperature 10000; ``dropout`` 0 (the paper
    trains with 0.1).  One layer (the paper stacks 6).  The sampling is one ``grid_sample`` over a zero-bordered
    canvas of all levels and heads (at most 5-D tensors, no batch folding): ONNX Runtime, OpenVINO and ncnn run it;
    under ``export_target("onnx")`` a gather form (Gather and MatMul only, no GridSample) is taken.

    Args:
        channels: input channels per level, finest first (at least 2 levels).
        out_channels: the model width d (a multiple of 4 and of ``heads``).
        heads: attention heads M.
        points: sampling points K per head and level.
        dim_feedforward: FFN hidden width.
        dropout: dropout on both residual branches and inside the FFN.
        temperature: the sine positions' temperature T.
    """

    size_bounds: ClassVar[dict[str, SizeBound]] = {
        "points": SizeBound(64, "sampling points per head and level"),
    }

    def __init__(
        self,
        channels: Sequence[int],
        out_channels: int = 256,
        heads: int = 8,
        points: int = 4,
        dim_feedforward: int = 1024,
        dropout: float = 0.0,
        temperature: float = 10000.0,
    ) -> None:
        super().__init__()
        owner = self.owner
        self.channels = check_level_channels(channels, owner)
        d = positive_int(out_channels, owner, "out_channels")
        check_arg(d % 4 == 0, owner, "out_channels", "a multiple of 4 (the sine positions have d/2 per axis)", d)
        self.out_channels = d
        self.heads = check_heads(heads, d, owner, "out_channels")
        self.points = positive_int(points, owner, "points")
        self.dim_feedforward = positive_int(dim_feedforward, owner, "dim_feedforward")
        self.dropout = check_dropout(dropout, owner)
        self.temperature = positive_number(temperature, owner, "temperature")
        n = len(self.channels)
        self.input_proj = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, d, 1), nn.GroupNorm(group_norm_groups(d, max(1, min(32, d // 8))), d))
            for c in self.channels
        )
        for proj in self.input_proj.modules():
            if isinstance(proj, nn.Conv2d) and proj.bias is not None:
                nn.init.xavier_uniform_(proj.weight, gain=1)
                nn.init.zeros_(proj.bias)
        self.level_embed = nn.Parameter(torch.empty(n, d))
        nn.init.normal_(self.level_embed)
        self.layer = _EncoderBody(d, n, self.heads, self.points, self.dim_feedforward, self.dropout)

    def forward(self, xs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        xs = check_pyramid(xs, self.channels, self.owner, False)
        srcs = [proj(xs[i]) for i, proj in enumerate(self.input_proj)]
        return _encode(srcs, self.level_embed, self.layer, self.temperature)

    def extra_repr(self) -> str:
        return (
            f"channels={list(self.channels)}, out_channels={self.out_channels}, heads={self.heads}, "
            f"points={self.points}, dim_feedforward={self.dim_feedforward}"
        )

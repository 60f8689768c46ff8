"""Gold-YOLO's gather-and-distribute neck and its information injection (Wang et al.; NeurIPS 2023).

Paper: Gold-YOLO: Efficient Object Detector via Gather-and-Distribute Mechanism (Wang, He, Nie, Guo, Liu, Han, Wang;
NeurIPS 2023), https://arxiv.org/abs/2309.11331.  Written from the paper and attnzoo's reference notes; the official
code (huawei-noah/Efficient-Computing, Detection/Gold-YOLO) is GPL-3.0 and was not read or copied
(docs/provenance/gd_neck.md).
"""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..capture import record
from ..functional.pooling import EXACT_POOL_FORM, adaptive_pool2d
from ..layers import (
    DEPTH_BOUND,
    RATIO_BOUND,
    AttnModule,
    ConvBN,
    SizeBound,
    attention,
    check_arg,
    check_context,
    check_nchw,
    check_pyramid,
    fx_leaf,
    positive_int,
    positive_number,
    traced_size,
)
from ..layers.batchnorm import PooledBatchNorm2d
from ..layers.checks import width_or
from ..layers.pyramid import check_level_channels, resize_to
from ..registry import OUT_CHANNELS, register

__all__ = ["InformationInjection", "GatherDistributeNeck"]

_PAPER = "Gold-YOLO: Efficient Object Detector via Gather-and-Distribute Mechanism (Wang et al.; NeurIPS 2023)"
_URL = "https://arxiv.org/abs/2309.11331"


@fx_leaf
def pool_to(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Exact adaptive average pooling of ``x`` to ``ref``'s spatial size (PyTorch's bins in every runtime)."""
    return adaptive_pool2d(x, traced_size(ref), "avg")


@fx_leaf
def resize_global(x: torch.Tensor, ref: torch.Tensor, gate: bool, legacy_pool_gate: bool) -> torch.Tensor:
    """The injection's resize R of a global map to the local one's size, then (``gate``) the hard sigmoid.

    R is the exact adaptive average pool when the global map is at least as large on both sides (and larger on
    one), else bilinear resizing (identity at equal sizes).  ``legacy_pool_gate`` skips the hard sigmoid on
    the pooling branch, as the official code does.
    """
    h, w = traced_size(ref)
    gh, gw = x.shape[-2], x.shape[-1]
    pooled = gh >= h and gw >= w and (gh > h or gw > w)
    y = adaptive_pool2d(x, (h, w), "avg") if pooled else resize_to(x, ref, "bilinear")
    if not gate or (pooled and legacy_pool_gate):
        return y
    return F.hardsigmoid(y)


@register(
    "gd_inject",
    family="fusion",
    paper=_PAPER,
    url=_URL,
    layout="pair",
    complexity="O(N)",
    summary="Gold-YOLO information injection: local 1×1 ConvBN ⊙ hard-sigmoid gate of the global map + the "
    "global feature, both resized to the local map (exact pooling or bilinear).",
    shape=OUT_CHANNELS,
    maps=("gate",),
)
class InformationInjection(AttnModule):
    """Gold-YOLO's information injection module; ``forward(x_local, x_global)`` → B×out_channels×H×W.

    ``out = BN(Conv₁ₓ₁ x_l) ⊙ hσ(R(BN(Conv₁ₓ₁ x_g))) + R(BN(Conv'₁ₓ₁ x_g))`` with two separate 1×1 ConvBNs
    on the global map (gate and feature, no activation), hσ the hard sigmoid ``ReLU6(x + 3) / 6`` and R the
    resize to the local map's size: the exact adaptive average pool when the global map is larger, bilinear
    interpolation when it is smaller (the global map may have any size).

    ``legacy_pool_gate=True`` reproduces the official code, whose pooling branch leaves the gate un-activated
    (hσ is applied only when the global map is upsampled): use it to run its checkpoints unchanged.

    Args:
        channels: C of the local map.
        context_channels: channels of the global map (default C).
        out_channels: output channels (default C).
        legacy_pool_gate: skip hσ on the pooling branch (the official code).

    Captured map: ``"gate"`` B×out_channels×H×W (the gate at the local size).
    """

    def __init__(
        self,
        channels: int,
        context_channels: int | None = None,
        out_channels: int | None = None,
        legacy_pool_gate: bool = False,
    ) -> None:
        super().__init__()
        owner = self.owner
        self.channels = positive_int(channels, owner, "channels")
        self.context_channels = width_or(context_channels, channels, owner, "context_channels")
        self.out_channels = width_or(out_channels, channels, owner, "out_channels")
        check_arg(isinstance(legacy_pool_gate, bool), owner, "legacy_pool_gate", "a bool", legacy_pool_gate)
        self.legacy_pool_gate = legacy_pool_gate
        self.local_embedding = ConvBN(self.channels, self.out_channels, act=False)
        self.global_embedding = ConvBN(self.context_channels, self.out_channels, act=False)
        self.global_act = ConvBN(self.context_channels, self.out_channels, act=False)

    def inject(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """The injection on unchecked inputs (used by :class:`GatherDistributeNeck`)."""
        local = self.local_embedding(x)
        gate = resize_global(self.global_act(g), local, True, self.legacy_pool_gate)
        record(self, "gate", gate)
        return local * gate + resize_global(self.global_embedding(g), local, False, False)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        context = check_context(context, x, self.context_channels, self.owner)
        return self.inject(x, context)


class RepVGGBlock(nn.Module):
    """RepVGG's training-time block: ``ReLU(BN(Conv₃ₓ₃ x) + BN(Conv₁ₓ₁ x) + BN(x))`` (the identity branch only
    when the widths agree).  Gold-YOLO's (YOLOv6's) ``RepBlock`` stacks them; the three branches fold into one
    3×3 conv for inference."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.dense = ConvBN(in_channels, out_channels, 3, act=False)
        self.pointwise = ConvBN(in_channels, out_channels, 1, act=False)
        self.identity = PooledBatchNorm2d(in_channels) if in_channels == out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dense(x) + self.pointwise(x)
        if self.identity is not None:
            y = y + self.identity(x)
        return F.relu(y)


def rep_block(in_channels: int, out_channels: int, n: int) -> nn.Sequential:
    """``n`` RepVGG blocks, the first changing the width."""
    return nn.Sequential(*[RepVGGBlock(in_channels if i == 0 else out_channels, out_channels) for i in range(n)])


class LocalFusion(nn.Module):
    """Gold-YOLO's low-stage local fusion (LAF, "SimFusion"): the finer neighbour exactly avg-pooled to the middle
    level's size, the middle level through a 1×1 ConvBN, the (already reduced) coarser neighbour bilinearly
    upsampled; concatenated and fused by a 1×1 ConvBN.  Without a finer neighbour (three input levels) only the
    two others are fused."""

    def __init__(self, fine: int, mid: int, out: int) -> None:
        super().__init__()
        self.mid = ConvBN(mid, out, act="relu")
        self.fuse = ConvBN(fine + 2 * out, out, act="relu")

    def forward(self, fine: torch.Tensor | None, mid: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        m = self.mid(mid)
        parts = (
            [m, resize_to(coarse, m, "bilinear")]
            if fine is None
            else [pool_to(fine, m), m, resize_to(coarse, m, "bilinear")]
        )
        return self.fuse(torch.cat(parts, dim=1))


class TopAttention(nn.Module):
    """The high stage's attention (TopFormer's): 1×1 ConvBN q, k (``heads·d_k``) and v (``heads·d_v``),
    ``softmax(qᵀk / √d_k)`` over all positions, ReLU6, 1×1 ConvBN back (BN weight 0 at init)."""

    def __init__(self, dim: int, heads: int, d_k: int, d_v: int) -> None:
        super().__init__()
        self.heads, self.d_k, self.d_v = heads, d_k, d_v
        self.q = ConvBN(dim, heads * d_k, act=False)
        self.k = ConvBN(dim, heads * d_k, act=False)
        self.v = ConvBN(dim, heads * d_v, act=False)
        self.proj = ConvBN(heads * d_v, dim, act=False, bn_weight_init=0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        q = self.q(x).reshape(b, self.heads, self.d_k, h * w).transpose(-1, -2)
        k = self.k(x).reshape(b, self.heads, self.d_k, h * w).transpose(-1, -2)
        v = self.v(x).reshape(b, self.heads, self.d_v, h * w).transpose(-1, -2)
        out = attention(q, k, v, module=self)  # B×heads×N×d_v
        return self.proj(F.relu6(out.transpose(-1, -2).reshape(b, self.heads * self.d_v, h, w)))


class TopBlock(nn.Module):
    """``x + attn(x)``, then ``x + MLP(x)`` with MLP = 1×1 ConvBN → depthwise 3×3 conv → ReLU6 → 1×1 ConvBN."""

    def __init__(self, dim: int, heads: int, d_k: int, d_v: int, mlp_ratio: float) -> None:
        super().__init__()
        hidden = max(1, int(dim * mlp_ratio))
        self.attn = TopAttention(dim, heads, d_k, d_v)
        self.mlp = nn.Sequential(
            ConvBN(dim, hidden, act=False),
            nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden),
            nn.ReLU6(),
            ConvBN(hidden, dim, act=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x)
        return x + self.mlp(x)


@fx_leaf
def pyramid_pool_agg(xs: Sequence[torch.Tensor], ref: torch.Tensor) -> torch.Tensor:
    """The high stage's gather: every map exactly avg-pooled to ⌈H/2⌉×⌈W/2⌉ of ``ref`` (the coarsest level),
    concatenated."""
    h, w = traced_size(ref)
    size = ((h + 1) // 2, (w + 1) // 2)
    return torch.cat([adaptive_pool2d(t, size, "avg") for t in xs], dim=1)


def _gd_output_shapes(module: Any, levels: Sequence[torch.Tensor]) -> list[tuple[Any, ...]]:
    outs = levels[len(levels) - 3 :]
    return [(t.shape[0], c, t.shape[2], t.shape[3]) for t, c in zip(outs, module.out_channels)]


@register(
    "gd_neck",
    family="fusion",
    paper=_PAPER,
    url=_URL,
    layout="pyramid",
    complexity="O(N)",
    summary="Gold-YOLO gather-and-distribute neck: a low stage gathers all levels at P4 (RepVGG fusion) and a high "
    "stage at P5/2 (transformer), each injects its global information into every output level.",
    output_shape=_gd_output_shapes,
    forms=(EXACT_POOL_FORM,),
    test_kwargs={"num_repeats": 1, "num_blocks": 1, "num_layers": 1, "heads": 2, "d_k": 4, "d_v": 4},
    exceptions={
        "gradients": "at the contract's 7×5 input the coarsest level is 2×2 and the high stage gathers at its half "
        "size, 1×1: one token, whose softmax over one key is constant, so the attention's q and k get zero gradient "
        "(every other parameter gets one; from two gathered tokens up all do)",
    },
)
class GatherDistributeNeck(AttnModule):
    """Gold-YOLO's gather-and-distribute (GD) neck; ``[c2, c3, c4, c5]`` → ``[p3, n4, n5]`` at the sizes of the
    last three levels, with ``out_channels`` (default their input widths ``(C₁, C₂, C₃)``).

    Low stage (gather at c4's size):
    ``g = IFM(cat(pool(c2), pool(c3), c4, bilinear(c5)))`` with IFM = 1×1 ConvBN → ``num_blocks`` RepVGG blocks →
    1×1 ConvBN, split into ``g₀`` (O₂) and ``g₁`` (O₁);
    ``p4 = Rep(Inject(LAF(c3, c4, ½c5), g₀))``, ``p3 = Rep(Inject(LAF(c2, c3, ½p4), g₁))`` where ½ is a 1×1
    ConvBN reduction, LAF the local fusion (:class:`LocalFusion`) and Rep ``num_repeats`` RepVGG blocks.
    High stage (gather at ⌈H₅/2⌉×⌈W₅/2⌉): ``h = 1×1 ConvBN(Transformer(cat(pool(p3), pool(p4), pool(c5))))``
    with ``num_layers`` TopFormer blocks, split into ``h₀`` (O₂) and ``h₁`` (O₃);
    ``n4 = Rep(Inject(cat(pool(p3 → p4), ½p4), h₀))``, ``n5 = Rep(Inject(cat(pool(n4 → c5), ½c5), h₁))``.
    Every pooling is exact adaptive average pooling (also in the exported graph, where the official
    ``onnx_AdaptiveAvgPool2d`` differs from PyTorch unless the sizes divide); every injection gates both resize
    branches (:class:`InformationInjection`); SimConv-style ConvBNs use ReLU, as Gold-YOLO.

    Three input levels ``[c3, c4, c5]`` (a P3–P5 backbone) give ``[p3, n4, n5]`` at their own sizes: the low
    gather and p3's local fusion then have no finer level.

    Args:
        channels: 4 (or 3) input widths, finest first.
        out_channels: the three output widths (default the last three input widths).
        num_repeats: RepVGG blocks after each injection.
        num_blocks: RepVGG blocks in the low stage's fusion (IFM).
        hidden_channels: width of the low stage's fusion (default O₁ + O₂).
        num_layers: transformer blocks of the high stage.
        heads, d_k, d_v: the high stage's attention heads and per-head key and value widths.
        mlp_ratio: hidden width of the transformer blocks' MLP.
    """

    size_bounds: ClassVar[dict[str, SizeBound]] = {
        "num_repeats": SizeBound(DEPTH_BOUND, "repeated blocks"),
        "num_blocks": SizeBound(DEPTH_BOUND, "repeated blocks"),
        "num_layers": SizeBound(DEPTH_BOUND, "layers"),
        "mlp_ratio": SizeBound(RATIO_BOUND, "MLP ratio"),
    }

    def __init__(
        self,
        channels: Sequence[int],
        out_channels: Sequence[int] | None = None,
        num_repeats: int = 4,
        num_blocks: int = 3,
        hidden_channels: int | None = None,
        num_layers: int = 2,
        heads: int = 4,
        d_k: int = 8,
        d_v: int = 16,
        mlp_ratio: float = 1.0,
    ) -> None:
        super().__init__()
        owner = self.owner
        chs = self.channels = check_level_channels(channels, owner)
        check_arg(len(chs) in (3, 4), owner, "channels", "4 levels (c2..c5) or 3 (c3..c5), finest first", list(chs))
        if out_channels is None:
            out_channels = chs[-3:]
        ok = (
            isinstance(out_channels, (list, tuple))
            and len(out_channels) == 3
            and all(isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in out_channels)
        )
        check_arg(ok, owner, "out_channels", "None or 3 positive ints (p3, n4, n5)", out_channels)
        o1, o2, o3 = self.out_channels = tuple(int(c) for c in out_channels)
        self.num_repeats = positive_int(num_repeats, owner, "num_repeats")
        self.num_blocks = positive_int(num_blocks, owner, "num_blocks")
        hidden = o1 + o2 if hidden_channels is None else positive_int(hidden_channels, owner, "hidden_channels")
        self.num_layers = positive_int(num_layers, owner, "num_layers")
        self.heads = positive_int(heads, owner, "heads")
        self.d_k = positive_int(d_k, owner, "d_k")
        self.d_v = positive_int(d_v, owner, "d_v")
        self.mlp_ratio = positive_number(mlp_ratio, owner, "mlp_ratio")
        fine = chs[0] if len(chs) == 4 else 0
        c3, c4, c5 = chs[-3:]
        # low stage
        self.low_ifm = nn.Sequential(
            ConvBN(sum(chs), hidden, act="relu"),
            *[RepVGGBlock(hidden, hidden) for _ in range(self.num_blocks)],
            ConvBN(hidden, o2 + o1, act="relu"),
        )
        self.reduce_c5 = ConvBN(c5, o2, act="relu")
        self.laf_p4 = LocalFusion(c3, c4, o2)
        self.inject_p4 = InformationInjection(o2, o2, o2)
        self.rep_p4 = rep_block(o2, o2, self.num_repeats)
        self.reduce_p4 = ConvBN(o2, o1, act="relu")
        self.laf_p3 = LocalFusion(fine, c3, o1)
        self.inject_p3 = InformationInjection(o1, o1, o1)
        self.rep_p3 = rep_block(o1, o1, self.num_repeats)
        # high stage
        width = o1 + o2 + c5
        self.high_ifm = nn.Sequential(*[TopBlock(width, heads, d_k, d_v, mlp_ratio) for _ in range(self.num_layers)])
        self.high_proj = ConvBN(width, o2 + o3, act="relu")
        self.inject_n4 = InformationInjection(2 * o1, o2, o2)
        self.rep_n4 = rep_block(o2, o2, self.num_repeats)
        self.inject_n5 = InformationInjection(2 * o2, o3, o3)
        self.rep_n5 = rep_block(o3, o3, self.num_repeats)

    def forward(self, x: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        x = check_pyramid(x, self.channels, self.owner, False)
        o1, o2, o3 = self.out_channels
        c2 = x[0] if len(self.channels) == 4 else None
        c3, c4, c5 = x[len(self.channels) - 3], x[len(self.channels) - 2], x[len(self.channels) - 1]
        # low stage: gather at c4's size, distribute to p4 and p3
        finer = [pool_to(x[i], c4) for i in range(len(self.channels) - 2)]
        g = self.low_ifm(torch.cat([*finer, c4, resize_to(c5, c4, "bilinear")], dim=1))
        g0, g1 = g[:, :o2], g[:, o2:]
        c5_half = self.reduce_c5(c5)
        p4 = self.rep_p4(self.inject_p4.inject(self.laf_p4(c3, c4, c5_half), g0))
        p4_half = self.reduce_p4(p4)
        p3 = self.rep_p3(self.inject_p3.inject(self.laf_p3(c2, c3, p4_half), g1))
        # high stage: gather at c5's half size, distribute to n4 and n5
        h = self.high_proj(self.high_ifm(pyramid_pool_agg([p3, p4, c5], c5)))
        h0, h1 = h[:, :o2], h[:, o2:]
        n4 = self.rep_n4(self.inject_n4.inject(torch.cat([pool_to(p3, p4_half), p4_half], dim=1), h0))
        n5 = self.rep_n5(self.inject_n5.inject(torch.cat([pool_to(n4, c5_half), c5_half], dim=1), h1))
        return [p3, n4, n5]

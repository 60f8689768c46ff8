"""YOLO12's area attention and its A2C2f block (residual-efficient layer aggregation), any H×W.

Paper: YOLOv12: Attention-Centric Real-Time Object Detectors (Tian, Ye, Doermann; arXiv 2025),
https://arxiv.org/abs/2502.12524.  Written from the paper and the block equations; the public code (YOLOv12,
Ultralytics) is AGPL-3.0 and was not copied (docs/provenance/area_attention.md).
"""

from __future__ import annotations

import functools
from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..capture import capture_target
from ..layers import (
    DEPTH_BOUND,
    RATIO_BOUND,
    AttnModule,
    ConvBN,
    SizeBound,
    attention,
    check_arg,
    check_choice,
    check_heads,
    check_nchw,
    init_weights,
    positive_int,
    traced_size,
)
from ..layers.hosts import Inner, build_inner, check_inner_output
from ..registry import OUT_CHANNELS, register
from ..tracing import PortableForm, fx_leaf, portable

__all__ = ["AreaAttention", "AreaBlock", "A2C2f"]

_PAPER = "YOLOv12: Attention-Centric Real-Time Object Detectors (Tian, Ye, Doermann; arXiv 2025)"
_URL = "https://arxiv.org/abs/2502.12524"
#: What area attention and A2C2f register alike.
_register = functools.partial(
    register, family="self_attention", paper=_PAPER, url=_URL, test_kwargs={"heads": 2, "area": 2}
)
_VARIANTS = ("v1", "turbo")


def _area_heads(heads: int | None, channels: int, owner: str) -> int:
    heads = max(1, channels // 32) if heads is None else heads
    return check_heads(heads, channels, owner, note="; pass heads=", paren=True)


@_register(
    "area_attention",
    complexity="O(N^2/a)",
    summary="YOLO12 area attention: multi-head attention inside `area` horizontal strips + a depthwise positional conv.",
    maps=("attn",),
    forms=(
        PortableForm(
            targets=("ncnn",),
            marker="aten::split",
            reason="ncnn has at most 4 axes: the strips cannot be folded into a 5-axis batch view, so each strip "
            "attends on its own (the last one short instead of padded and masked)",
            cases=({}, {"area": 4}, {"area": 1, "variant": "turbo"}),
        ),
    ),
)
class AreaAttention(AttnModule):
    """YOLO12's area attention; B×C×H×W → B×C×H×W.

    The map's rows are cut into ``area`` horizontal strips (the row-major tokens in ``area`` contiguous chunks)
    and multi-head attention (head width C / heads) runs inside each strip; the output adds a depthwise ConvBN
    of v over the whole map and passes a 1×1 ConvBN.  ``area=1`` is global attention.

    ``variant="v1"`` (YOLOv12 v1.0 and Ultralytics): one 1×1 ConvBN to q, k, v laid out per head
    ``[q_h, k_h, v_h]``, a 7×7 depthwise positional conv on v.  ``"turbo"`` (the official repository since
    2025-03): separate q|k and v ConvBNs, a 5×5 positional conv computed on v before the strips are cut.

    Any H×W: when ``area`` does not divide H the strips have ⌈H/area⌉ rows and the last one is padded with
    masked keys (the upstream reshape fails when H·W is not divisible by ``area``, and cuts strips that wrap rows
    when only H·W is); a map with fewer rows than ``area`` gets one strip per row.

    Args:
        channels: C.
        heads: heads (default ``C // 32``, at least 1).
        area: number of strips.
        variant: ``"v1"`` or ``"turbo"``.

    Captured map: ``"attn"`` (B·strips)×heads×n×n, n = tokens per strip.
    """

    def __init__(self, channels: int, heads: int | None = None, area: int = 1, variant: str = "v1") -> None:
        super().__init__()
        owner = self.owner
        positive_int(channels, owner, "channels")
        self.channels, self.area = channels, positive_int(area, owner, "area")
        self.heads = _area_heads(heads, channels, owner)
        self.variant = check_choice(variant, _VARIANTS, owner, "variant")
        self.head_dim = channels // self.heads
        if variant == "v1":
            self.qkv = ConvBN(channels, 3 * channels, act=False)
        else:
            self.qk = ConvBN(channels, 2 * channels, act=False)
            self.v = ConvBN(channels, channels, act=False)
        self.proj = ConvBN(channels, channels, act=False)
        self.pe = ConvBN(channels, channels, 7 if variant == "v1" else 5, groups=channels, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        b, c, h, w = x.shape
        if self.variant == "v1":
            qkv = self.qkv(x).view(b, self.heads, 3 * self.head_dim, h * w)  # per head [q, k, v]
            d = self.head_dim
            q, k, v = (qkv[:, :, i * d : (i + 1) * d].reshape(b, c, h, w) for i in range(3))
            return self.proj(strip_attention(q, k, v, self.heads, self.area, capture_target(self)) + self.pe(v))
        q, k = self.qk(x).split((c, c), 1)
        v = self.v(x)
        return self.proj(strip_attention(q, k, v, self.heads, self.area, capture_target(self)) + self.pe(v))


def strip_attention_portable(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, rows: int, strips: int, module: nn.Module | None
) -> torch.Tensor:
    """One attention per strip with at most 4 axes (ncnn has no 5-axis reshape); the last strip is short."""
    b, c = q.shape[0], q.shape[1]
    h, w = traced_size(q)
    d = c // heads
    outs = []
    for parts in zip(*(t.split(rows, 2) for t in (q, k, v))):  # strips of `rows` rows, the last one short
        n = parts[0].shape[2] * w
        tq, tk, tv = (t.reshape(b, heads, d, n).transpose(-1, -2) for t in parts)
        out = attention(tq, tk, tv, scale=d**-0.5, module=module)
        outs.append(out.transpose(-1, -2).reshape(b, c, n // w, w))
    return torch.cat(outs, 2)


@fx_leaf
def strip_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, area: int, module: nn.Module | None = None
) -> torch.Tensor:
    """Multi-head attention of B×C×H×W q, k, v inside horizontal strips of ⌈H/area⌉ rows (the last one padded,
    its padded keys masked); B×C×H×W out."""
    b, c, _, _ = q.shape
    h, w = traced_size(q)
    rows = -(-h // area)
    strips = -(-h // rows)
    pad = strips * rows - h
    d = c // heads
    if portable("ncnn"):
        return strip_attention_portable(q, k, v, heads, rows, strips, module)

    def split(t: torch.Tensor) -> torch.Tensor:  # → (B·strips)×heads×(rows·W)×d
        if pad:
            t = F.pad(t, (0, 0, 0, pad))
        t = t.reshape(b, heads, d, strips, rows * w).permute(0, 3, 1, 4, 2)
        return t.reshape(b * strips, heads, rows * w, d)

    mask = None
    if pad:
        valid = torch.arange(strips * rows, device=q.device).view(strips, 1, rows, 1) < h
        mask = valid.expand(strips, 1, rows, w).reshape(1, strips, 1, 1, rows * w)
        mask = mask.expand(b, strips, 1, 1, rows * w).reshape(b * strips, 1, 1, rows * w)
    out = attention(split(q), split(k), split(v), mask=mask, scale=d**-0.5, module=module)
    out = out.reshape(b, strips, heads, rows * w, d).permute(0, 2, 4, 1, 3)
    return out.reshape(b, c, strips * rows, w)[:, :, :h]


def _init_convs(module: nn.Module) -> None:
    """YOLOv12's init of an area block: conv weights ~ truncated N(0, 0.02), biases 0."""
    init_weights(module, {nn.Conv2d: lambda m: nn.init.trunc_normal_(m.weight, std=0.02)})


class AreaBlock(nn.Module):
    """``x + attn(x)``, then ``x + MLP(x)`` with MLP = ConvBN(C→C·mlp_ratio, SiLU) → ConvBN(→C); ``attn``
    pluggable (default :class:`AreaAttention`)."""

    def __init__(
        self, channels: int, heads: int, mlp_ratio: float, area: int, variant: str, attn: Inner, host: str
    ) -> None:
        super().__init__()
        self.host = host
        hidden = int(channels * mlp_ratio)
        self.attn = build_inner(attn, channels, host, "attn", lambda: AreaAttention(channels, heads, area, variant))
        self.mlp = nn.Sequential(ConvBN(channels, hidden), ConvBN(hidden, channels, act=False))
        _init_convs(self.mlp)
        if attn is None:
            _init_convs(self.attn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + check_inner_output(self.attn(x), x, self.host, "attn")
        return x + self.mlp(x)


@_register(
    "a2c2f",
    complexity="O(N^2/a)",
    summary="YOLO12's A2C2f: 1×1, n pairs of area-attention blocks, all intermediate maps concatenated, 1×1; attn= pluggable.",
    shape=OUT_CHANNELS,
    maps=(),
    forms=(
        PortableForm(
            targets=("ncnn",),
            marker="aten::split",
            reason="its area attention's ncnn form: ncnn has at most 4 axes, so each strip attends on its own",
            cases=({}, {"area": 4}),
        ),
    ),
)
class A2C2f(AttnModule):
    """YOLO12's A2C2f block (residual efficient layer aggregation with area attention); B×C×H×W → B×C'×H×W.

    ``y₀ = ConvBN₁ₓ₁(x) → c`` with ``c = int(C' · expansion)``, ``y_i = AreaBlock(AreaBlock(y_{i−1}))`` for
    i = 1 … ``num_repeats``, ``out = ConvBN₁ₓ₁(cat(y₀ … y_n)) → C'``; with ``residual=True`` (YOLO12-l/x)
    ``out = x + γ ⊙ out`` with a per-channel γ initialised to 0.01 (needs C' = C).  ``heads=None`` → c / 32,
    which needs c to be a multiple of 32 (``ValueError`` otherwise; pass ``heads`` for other widths).

    ``attn`` replaces the area attention inside every block (the residuals and MLPs stay): a registered module
    name (built with c channels), an ``nn.Module`` (copied per block) or a factory.  The state-dict keys are
    YOLO12's (``cv1``, ``cv2``, ``gamma``, ``m.{i}.{j}.attn.qkv`` …).

    Args:
        channels: C.
        out_channels: C' (default C).
        num_repeats: pairs of area blocks (YAML ``n``).
        area: strips of the area attention (YOLO12: 4 at P4, 1 at P5).
        residual: the γ-scaled residual of the large models.
        mlp_ratio: MLP width ratio (YOLO12: 2.0; 1.5 in the l/x models).
        expansion: inner width ratio ``e``.
        heads: attention heads (default c / 32).
        variant: area attention ``"v1"`` or ``"turbo"``.
        attn: the attention inside (None: area attention).

    Captured map (default attention): ``"attn"`` per block under ``"m.{i}.{j}.attn"``.
    """

    size_bounds: ClassVar[dict[str, SizeBound]] = {
        "num_repeats": SizeBound(DEPTH_BOUND, "repeated blocks"),
        "mlp_ratio": SizeBound(RATIO_BOUND, "MLP ratio"),
    }

    def __init__(
        self,
        channels: int,
        out_channels: int | None = None,
        num_repeats: int = 1,
        area: int = 1,
        residual: bool = False,
        mlp_ratio: float = 2.0,
        expansion: float = 0.5,
        heads: int | None = None,
        variant: str = "v1",
        attn: Inner = None,
    ) -> None:
        super().__init__()
        owner = self.owner
        positive_int(channels, owner, "channels")
        out = channels if out_channels is None else positive_int(out_channels, owner, "out_channels")
        positive_int(num_repeats, owner, "num_repeats")
        check_arg(isinstance(residual, bool), owner, "residual", "a bool", residual)
        check_arg(not residual or out == channels, owner, "out_channels", f"{channels} with residual=True", out)
        ok = isinstance(expansion, (int, float)) and not isinstance(expansion, bool) and 0 < expansion <= 1
        check_arg(ok, owner, "expansion", "a number in (0, 1]", expansion)
        ok = isinstance(mlp_ratio, (int, float)) and not isinstance(mlp_ratio, bool) and mlp_ratio > 0
        check_arg(ok, owner, "mlp_ratio", "a positive number", mlp_ratio)
        c = int(out * expansion)
        if heads is None and attn is None:
            check_arg(
                c >= 32 and c % 32 == 0,
                owner,
                "expansion",
                "a hidden width int(out_channels · expansion) that is a multiple of 32 (heads = width / 32), or "
                "pass heads=; width",
                c,
            )
            heads = c // 32
        elif heads is not None:
            check_heads(heads, c, owner, "the hidden width", paren=True)
        check_arg(
            int(c * mlp_ratio) >= 1,
            owner,
            "mlp_ratio",
            f"a ratio giving a hidden MLP width ≥ 1 at width {c}",
            mlp_ratio,
        )
        check_choice(variant, _VARIANTS, owner, "variant")  # checked here too: the error names A2C2f
        self.channels, self.out_channels, self.num_repeats, self.area = channels, out, num_repeats, area
        self.residual, self.mlp_ratio, self.expansion, self.heads, self.variant = (
            residual,
            mlp_ratio,
            expansion,
            heads,
            variant,
        )
        self.width = c
        self.cv1 = ConvBN(channels, c)
        self.cv2 = ConvBN((1 + num_repeats) * c, out)
        self.gamma = nn.Parameter(torch.full((out,), 0.01)) if residual else None
        self.m = nn.ModuleList(
            nn.Sequential(*(AreaBlock(c, heads or 1, mlp_ratio, area, variant, attn, owner) for _ in range(2)))
            for _ in range(num_repeats)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        ys = [self.cv1(x)]
        for blocks in self.m:
            ys.append(blocks(ys[-1]))
        out = self.cv2(torch.cat(ys, 1))
        if self.gamma is not None:
            return x + self.gamma.view(1, -1, 1, 1) * out
        return out

"""YOLOv10's partial self-attention (PSA) and YOLO11's C2PSA, with a pluggable attention inside.

Paper: YOLOv10: Real-Time End-to-End Object Detection (Wang et al.; NeurIPS 2024), https://arxiv.org/abs/2405.14458.
C2PSA has no paper (Ultralytics YOLO11, 2024).  Written from the paper and the block equations; the public code
(YOLOv10, Ultralytics) is AGPL-3.0 and was not copied (docs/provenance/psa.md).
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn as nn

from ..layers import (
    DEPTH_BOUND,
    AttnModule,
    ConvBN,
    SizeBound,
    attention,
    check_arg,
    check_heads,
    check_nchw,
    positive_int,
)
from ..layers.hosts import Inner, build_inner, check_inner_output
from ..registry import register

__all__ = ["PSAAttention", "PSABlock", "PSA", "C2PSA"]

_PAPER = "YOLOv10: Real-Time End-to-End Object Detection (Wang et al.; NeurIPS 2024)"
_URL = "https://arxiv.org/abs/2405.14458"


def default_heads(width: int) -> int:
    """YOLOv10's head count ``width // 64``, never 0 (the upstream rule gives 0 heads below 64 channels)."""
    return max(1, width // 64)


def inner_width(channels: int, expansion: float, owner: str) -> int:
    """The width of the attention branch, ``int(channels · expansion)`` (at least 1)."""
    positive_int(channels, owner, "channels")
    ok = isinstance(expansion, (int, float)) and not isinstance(expansion, bool) and 0 < expansion <= 1
    check_arg(ok, owner, "expansion", "a number in (0, 1]", expansion)
    width = int(channels * expansion)
    check_arg(width >= 2, owner, "expansion", f"a ratio giving at least 2 channels of {channels}", expansion)
    return width


class PSAAttention(AttnModule):
    """YOLOv10's attention: per-head q, k (``key_dim = head_dim · attn_ratio``) and v (``head_dim``) from one 1×1
    ConvBN, ``softmax(qᵀk / √key_dim)`` over all positions, plus a depthwise 3×3 ConvBN of v as positions,
    then a 1×1 ConvBN.  B×C×H×W → B×C×H×W; captured map ``"attn"`` B×heads×N×N.

    The q/k/v channels are laid out per head, ``[q_h (key_dim), k_h (key_dim), v_h (head_dim)]`` for each head h
    (the checkpoint layout of YOLOv10 and YOLO11).
    """

    maps = ("attn",)  # what it records (an inner block: not registered, so declared here)

    def __init__(self, channels: int, heads: int = 8, attn_ratio: float = 0.5) -> None:
        super().__init__()
        owner = self.owner
        positive_int(channels, owner, "channels")
        check_heads(heads, channels, owner, paren=True)
        self.channels, self.heads, self.attn_ratio = channels, heads, attn_ratio
        self.head_dim = channels // heads
        self.key_dim = int(self.head_dim * attn_ratio)
        check_arg(self.key_dim >= 1, owner, "heads", f"at most {channels // 2} for channels {channels}", heads)
        self.scale = self.key_dim**-0.5
        self.qkv = ConvBN(channels, channels + 2 * self.key_dim * heads, act=False)
        self.proj = ConvBN(channels, channels, act=False)
        self.pe = ConvBN(channels, channels, 3, groups=channels, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        b, c, h, w = x.shape
        qkv = self.qkv(x).reshape(b, self.heads, 2 * self.key_dim + self.head_dim, h * w)
        q, k, v = qkv.split([self.key_dim, self.key_dim, self.head_dim], dim=2)  # B×heads×d×N each
        out = attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2), scale=self.scale, module=self)
        v_map = v.reshape(b, c, h, w)
        return self.proj(out.transpose(-1, -2).reshape(b, c, h, w) + self.pe(v_map))


class PSABlock(nn.Module):
    """``x + attn(x)`` then ``x + FFN(x)`` with FFN = ConvBN(C→2C, SiLU) → ConvBN(2C→C); ``attn`` pluggable."""

    def __init__(self, channels: int, heads: int, attn: Inner = None, host: str = "PSABlock") -> None:
        super().__init__()
        self.host = host
        self.attn = build_inner(attn, channels, host, "attn", lambda: PSAAttention(channels, heads, 0.5))
        self.ffn = nn.Sequential(ConvBN(channels, 2 * channels), ConvBN(2 * channels, channels, act=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return psa_step(x, self.attn, self.ffn, self.host)


def psa_step(x: torch.Tensor, attn: nn.Module, ffn: nn.Module, host: str) -> torch.Tensor:
    """One PSA block: ``x + attn(x)``, then ``+ ffn(·)``."""
    x = x + check_inner_output(attn(x), x, host, "attn")
    return x + ffn(x)


def _heads(heads: int | None, width: int, owner: str) -> int:
    if heads is None:
        return default_heads(width)
    check_heads(heads, width, owner, "the attention width", paren=True)
    check_arg(width // heads >= 2, owner, "heads", f"at most {width // 2} (head width ≥ 2)", heads)
    return heads


@register(
    "c2psa",
    family="self_attention",
    paper="Ultralytics YOLO11 C2PSA (2024), after " + _PAPER,
    url="https://arxiv.org/abs/2410.17725",
    complexity="O(N^2)",
    summary="YOLO11's C2PSA: split, PSA blocks (attention + FFN, residual) on one half, concat, 1×1; attn= pluggable.",
    test_kwargs={"heads": 2},
    maps=(),
)
class C2PSA(AttnModule):
    """YOLO11's C2PSA block; B×C×H×W → B×C×H×W.

    ``a, b = split(ConvBN₁ₓ₁(x) → 2c)`` with ``c = int(C · expansion)``; ``b`` passes ``num_repeats`` PSA blocks
    (``b += attn(b)``, ``b += FFN(b)``); ``out = ConvBN₁ₓ₁(cat(a, b)) → C``.  Every ConvBN has SiLU except the
    attention's and the FFN's last.  ``heads=None`` → ``max(1, c // 64)`` (the upstream ``c // 64`` is 0 below
    128 input channels and crashes).

    ``attn`` replaces the attention inside each PSA block while the residuals and FFN stay: a registered module
    name (e.g. ``"ema"``, ``"cbam"``, ``"simam"``, ``"ela"``, built with ``c`` channels), an ``nn.Module`` (copied
    per block) or a factory ``c -> nn.Module``.  Its maps are captured under its own qualified name
    (``"...m.0.attn"``).  The state-dict keys are YOLO11's (``cv1``, ``cv2``, ``m.{i}.attn.qkv`` …), so its
    checkpoints load as they are.

    Args:
        channels: C, in and out.
        num_repeats: number of PSA blocks (YAML ``n``).
        heads: attention heads (default ``max(1, c // 64)``).
        expansion: width ratio of the attention half (``e``).
        attn: the attention inside (None: YOLOv10's).

    Captured map (default attention): ``"attn"`` B×heads×N×N per block, under ``"m.{i}.attn"``.
    """

    size_bounds: ClassVar[dict[str, SizeBound]] = {
        "num_repeats": SizeBound(DEPTH_BOUND, "repeated blocks"),
    }

    def __init__(
        self,
        channels: int,
        num_repeats: int = 1,
        heads: int | None = None,
        expansion: float = 0.5,
        attn: Inner = None,
    ) -> None:
        super().__init__()
        owner = self.owner
        c = inner_width(channels, expansion, owner)
        positive_int(num_repeats, owner, "num_repeats")
        self.channels, self.num_repeats, self.expansion, self.width = channels, num_repeats, expansion, c
        self.heads = _heads(heads, c, owner) if attn is None else heads
        self.cv1 = ConvBN(channels, 2 * c)
        self.cv2 = ConvBN(2 * c, channels)
        self.m = nn.Sequential(*(PSABlock(c, self.heads or 1, attn, owner) for _ in range(num_repeats)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        a, b = self.cv1(x).split((self.width, self.width), 1)
        return self.cv2(torch.cat((a, self.m(b)), 1))


@register(
    "psa",
    family="self_attention",
    paper=_PAPER,
    url=_URL,
    complexity="O(N^2)",
    summary="YOLOv10's partial self-attention: split, attention + FFN (residual) on one half, concat, 1×1; attn= pluggable.",
    test_kwargs={"heads": 2},
    maps=(),
)
class PSA(AttnModule):
    """YOLOv10's PSA block; B×C×H×W → B×C×H×W.  The same computation as :class:`C2PSA` with one block (its
    state-dict keys are YOLOv10's: ``attn`` and ``ffn`` sit on the block itself, not under ``m.0``).

    Args:
        channels: C, in and out.
        heads: attention heads (default ``max(1, c // 64)``, c = ``int(C · expansion)``).
        expansion: width ratio of the attention half.
        attn: the attention inside (None: YOLOv10's); see :class:`C2PSA`.

    Captured map (default attention): ``"attn"`` B×heads×N×N under ``"attn"``.
    """

    def __init__(self, channels: int, heads: int | None = None, expansion: float = 0.5, attn: Inner = None) -> None:
        super().__init__()
        owner = self.owner
        c = inner_width(channels, expansion, owner)
        self.channels, self.expansion, self.width = channels, expansion, c
        self.heads = _heads(heads, c, owner) if attn is None else heads
        self.cv1 = ConvBN(channels, 2 * c)
        self.cv2 = ConvBN(2 * c, channels)
        block = PSABlock(c, self.heads or 1, attn, owner)
        self.attn, self.ffn = block.attn, block.ffn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        a, b = self.cv1(x).split((self.width, self.width), 1)
        return self.cv2(torch.cat((a, psa_step(b, self.attn, self.ffn, self.owner)), 1))

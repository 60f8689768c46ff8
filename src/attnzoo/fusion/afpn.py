"""AFPN: Asymptotic Feature Pyramid Network for Object Detection (Yang, Lan, Wang, Huang, Liang; IEEE SMC 2023).
Paper: https://arxiv.org/abs/2306.15988"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, cast

import torch
import torch.nn.functional as F
from torch import nn

from ..capture import record
from ..layers import (
    DEPTH_BOUND,
    ActLayer,
    AttnModule,
    SizeBound,
    check_arg,
    check_level_channels,
    check_pyramid,
    fit_to,
    get_act,
    hidden_width,
    init_weights,
    non_negative_int,
    pad_to_multiple,
    positive_int,
    softmax_fp32,
)
from ..layers.batchnorm import PooledBatchNorm2d
from ..registry import register

__all__ = ["AsymptoticFPN"]


class _ConvBNAct(nn.Sequential):
    """The official ``BasicConv``: Conv (no bias, 'same' padding for odd k, none for even k) → BN → act."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, act: ActLayer, owner: str) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, (k - 1) // 2 if k % 2 else 0, bias=False)
        self.bn = PooledBatchNorm2d(cout)
        self.act = get_act(act, owner)


class _ResBlock(nn.Module):
    """The official ``BasicBlock``: act(x + BN(Conv3×3(act(BN(Conv3×3(x)))))) (convs without bias here)."""

    def __init__(self, c: int, act: ActLayer, owner: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = PooledBatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = PooledBatchNorm2d(c)
        self.act = get_act(act, owner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.bn2(self.conv2(self.act(self.bn1(self.conv1(x))))))


class _Down(nn.Module):
    """Official ``Downsample_x{2,4,8}``: a k×k stride-k conv (k = 2^d) → BN → act; the input is zero-padded
    to a multiple of k first (so odd sizes give ⌈H/k⌉), then fitted to the target level."""

    def __init__(self, cin: int, cout: int, factor: int, act: ActLayer, owner: str) -> None:
        super().__init__()
        self.factor = factor
        self.conv = _ConvBNAct(cin, cout, factor, factor, act, owner)

    def forward(self, x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        return fit_to(self.conv(pad_to_multiple(x, self.factor)), ref)


class _Up(nn.Module):
    """Official ``Upsample``: 1×1 conv → BN → act, then bilinear ×2^d (``scale_factor``, align_corners=False),
    then cropped / edge-padded to the target level (exact sizes: no-op)."""

    def __init__(self, cin: int, cout: int, factor: int, act: ActLayer, owner: str) -> None:
        super().__init__()
        self.factor = float(factor)
        self.conv = _ConvBNAct(cin, cout, 1, 1, act, owner)

    def forward(self, x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        y = F.interpolate(self.conv(x), scale_factor=self.factor, mode="bilinear", align_corners=False)
        return fit_to(y, ref)


class _ASFF(nn.Module):
    """The official ``ASFF_n``: per-pixel softmax weights over n same-size inputs from 1×1 compress convs
    (``compress_c`` = 8) and a 1×1 conv with bias, weighted sum, then a 3×3 ``BasicConv``."""

    def __init__(self, c: int, n: int, compress: int, act: ActLayer, owner: str) -> None:
        super().__init__()
        self.weight_level = nn.ModuleList(_ConvBNAct(c, compress, 1, 1, act, owner) for _ in range(n))
        self.weight_levels = nn.Conv2d(compress * n, n, 1)
        self.conv = _ConvBNAct(c, c, 3, 1, act, owner)

    def forward(self, xs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.weight_levels(torch.cat([f(x) for f, x in zip(self.weight_level, xs)], 1))
        w = softmax_fp32(logits, 1).to(xs[0].dtype)
        fused = xs[0] * w[:, 0:1]
        for j in range(1, len(xs)):
            fused = fused + xs[j] * w[:, j : j + 1]
        return self.conv(fused), w


class _Stage(nn.Module):
    """Fusion of levels 0..n-1 (n ≥ 2): every level j is resampled to level i, ASFF_n at level i, then
    ``num_blocks`` residual blocks."""

    def __init__(
        self, hidden: Sequence[int], n: int, compress: int, num_blocks: int, act: ActLayer, owner: str
    ) -> None:
        super().__init__()
        self.n = n
        resample = []
        for i in range(n):
            row = nn.ModuleList()
            for j in range(n):
                if j < i:
                    row.append(_Down(hidden[j], hidden[i], 2 ** (i - j), act, owner))
                elif j > i:
                    row.append(_Up(hidden[j], hidden[i], 2 ** (j - i), act, owner))
                else:
                    row.append(nn.Identity())
            resample.append(row)
        self.resample = nn.ModuleList(resample)
        self.asff = nn.ModuleList(_ASFF(hidden[i], n, compress, act, owner) for i in range(n))
        self.blocks = nn.ModuleList(
            nn.Sequential(*[_ResBlock(hidden[i], act, owner) for _ in range(num_blocks)]) for i in range(n)
        )

    def forward(self, xs: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        outs, weights = [], []
        for i in range(self.n):
            row = cast(nn.ModuleList, self.resample[i])
            ins = [xs[j] if j == i else row[j](xs[j], xs[i]) for j in range(self.n)]
            fused, w = self.asff[i](ins)
            outs.append(self.blocks[i](fused))
            weights.append(w)
        return outs, weights


def _afpn_output_shapes(module: Any, levels: Sequence[torch.Tensor]) -> list[tuple[Any, ...]]:
    return [(t.shape[0], c, t.shape[2], t.shape[3]) for t, c in zip(levels, module.level_out_channels)]


@register(
    "afpn",
    family="fusion",
    paper="AFPN: Asymptotic Feature Pyramid Network for Object Detection (Yang, Lan, Wang, Huang, Liang; IEEE SMC 2023)",
    url="https://arxiv.org/abs/2306.15988",
    layout="pyramid",
    complexity="O(N)",
    summary="Asymptotic FPN: fuses the two finest levels first, then adds one coarser level per stage, each "
    "fusion an ASFF-style per-pixel softmax over levels followed by residual blocks.",
    output_shape=_afpn_output_shapes,
    test_kwargs={"out_channels": 16, "reduction": 2, "num_blocks": 1},
    maps=("weights_*",),
)
class AsymptoticFPN(AttnModule):
    """Asymptotic FPN (AFPN; official gyyang23/AFPN): 3 or 4 levels (finest first) → as many levels.

    1. ``x_i = BasicConv1×1(C_i → h_i)`` with ``h_i = C_i // reduction`` (8 in the mmdetection neck, 4 in the
       YOLO neck), then another ``BasicConv1×1(h_i → h_i)``.
    2. Stages k = 2 … L: levels 0..k−1 are fused at each of those levels i by ASFF_k: every other level j is
       brought to level i (finer: k×k stride-k conv, k = 2^(i−j); coarser: 1×1 conv then bilinear ×2^(j−i)),
       ``w = softmax_levels(Conv1×1([Conv1×1_{8}(x_j)]_j))`` per pixel, ``Σ_j w_j x_j`` → 3×3 BasicConv →
       ``num_blocks`` residual blocks.  Level k−1 joins at stage k (asymptotic: adjacent levels first).
    3. ``P_i = BasicConv1×1(h_i → out_channels)``.

    ``BasicConv`` = conv (no bias) → BN → ``act`` (ReLU in the mmdetection neck, SiLU in the YOLO neck).
    Init as the official: conv weights Xavier-normal with gain 0.02, BN weight N(1, 0.02), bias 0.
    Sizes that are not exact multiples are zero-padded before the strided convs and cropped / edge-padded
    after resampling, so odd sizes work.  Differences: residual-block convs without bias (a bias before BN is
    absorbed by it); the same ``num_blocks`` at every level (the mmdetection code has 3 blocks at level 0 of
    the first residual stage, 4 elsewhere); no extra max-pool P6 level.  See docs/provenance/afpn.md.

    Args:
        channels: input channels per level, finest first (3 or 4 levels).
        out_channels: output width (int, or one per level).
        reduction: ``h_i = max(C_i // reduction, 1)``.
        num_blocks: residual blocks after each ASFF (4 mmdetection, 3 YOLO).
        compress_channels: width of the weight branches (8).
        act: activation (``"relu"``).

    Captured maps: ``"weights_s{k}_l{i}"``: B×k×H_i×W_i per-pixel level weights of the ASFF at level i of stage k.
    """

    size_bounds: ClassVar[dict[str, SizeBound]] = {
        "num_blocks": SizeBound(DEPTH_BOUND, "repeated blocks"),
    }

    def __init__(
        self,
        channels: Sequence[int],
        out_channels: int | Sequence[int] = 256,
        reduction: int = 8,
        num_blocks: int = 4,
        compress_channels: int = 8,
        act: ActLayer = "relu",
    ) -> None:
        super().__init__()
        self.channels = check_level_channels(channels, self.owner)
        n = len(self.channels)
        check_arg(n in (3, 4), self.owner, "channels", "3 or 4 levels (finest first)", channels)
        if isinstance(out_channels, (list, tuple)):
            check_arg(len(out_channels) == n, self.owner, "out_channels", f"an int or {n} ints", out_channels)
            outs = tuple(positive_int(c, self.owner, "out_channels") for c in out_channels)
            self.out_channels: int | tuple[int, ...] = outs
        else:
            self.out_channels = positive_int(out_channels, self.owner, "out_channels")
            outs = (self.out_channels,) * n
        self.level_out_channels = outs
        self.reduction = positive_int(reduction, self.owner, "reduction")
        self.num_blocks = non_negative_int(num_blocks, self.owner, "num_blocks")
        self.compress_channels = positive_int(compress_channels, self.owner, "compress_channels")
        get_act(act, self.owner)
        hidden = [hidden_width(c, reduction, None, 1, self.owner) for c in self.channels]
        self.hidden = tuple(hidden)
        self.input_convs = nn.ModuleList(_ConvBNAct(c, h, 1, 1, act, self.owner) for c, h in zip(self.channels, hidden))
        self.first_convs = nn.ModuleList(_ConvBNAct(h, h, 1, 1, act, self.owner) for h in hidden)
        self.stages = nn.ModuleList(
            _Stage(hidden, k, compress_channels, num_blocks, act, self.owner) for k in range(2, n + 1)
        )
        self.output_convs = nn.ModuleList(_ConvBNAct(h, o, 1, 1, act, self.owner) for h, o in zip(hidden, outs))
        init_weights(
            self,
            {
                nn.Conv2d: lambda m: nn.init.xavier_normal_(m.weight, gain=0.02),
                nn.BatchNorm2d: lambda m: nn.init.normal_(m.weight, 1.0, 0.02),
            },
        )

    def forward(self, x: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        x = check_pyramid(x, self.channels, self.owner, True)
        n = len(self.channels)
        feats = [self.first_convs[i](self.input_convs[i](x[i])) for i in range(n)]
        for k, stage in enumerate(self.stages, start=2):
            fused, weights = stage(feats[:k])
            for i, w in enumerate(weights):
                record(self, f"weights_s{k}_l{i}", w)
            feats = fused + feats[k:]
        return [self.output_convs[i](feats[i]) for i in range(n)]

"""Adaptively Spatial Feature Fusion (ASFF; Liu, Huang, Wang; 2019).  Paper: https://arxiv.org/abs/1911.09516"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F

from ..capture import record
from ..layers import (
    ActLayer,
    AttnModule,
    ConvNormAct,
    MaxPool3x3s2,
    NormLayer,
    check_arg,
    check_level_channels,
    check_pyramid,
    fit_to,
    positive_int,
    softmax_fp32,
)
from ..registry import register

__all__ = ["AdaptiveSpatialFeatureFusion"]


def _asff_output_shapes(module: Any, levels: Sequence[torch.Tensor]) -> list[tuple[Any, ...]]:
    t = levels[module.level]
    shapes = [(t.shape[0], module.out_channels, t.shape[2], t.shape[3])]
    if module.return_weights:
        shapes.append((t.shape[0], len(module.channels), t.shape[2], t.shape[3]))
    return shapes


@register(
    "asff",
    family="fusion",
    paper="Learning Spatial Fusion for Single-Shot Object Detection (Liu, Huang, Wang; arXiv 2019)",
    url="https://arxiv.org/abs/1911.09516",
    layout="pyramid",
    complexity="O(N)",
    summary="Resize every level to one level, fuse with per-pixel softmax weights over levels, 3×3 expand conv.",
    output_shape=_asff_output_shapes,
    test_kwargs={"level": 1},
    maps=("weights",),
)
class AdaptiveSpatialFeatureFusion(AttnModule):
    """Adaptively Spatial Feature Fusion (Liu, Huang, Wang, 2019) for one output level; list in, one map out.

    For output level ``l`` (an index into the input list, **0 = finest**; the official code counts from the
    coarsest) with ``inter_channels`` = ``channels[l]`` by default:

    1. resize every level j to level l's size and ``inter_channels`` (``add_conv`` = conv → norm → act):
       j = l: as is (a 1×1 ``add_conv`` only if ``inter_channels`` differs);
       j finer by 2^k: (k−1) × ``max_pool(3, stride 2, pad 1)`` then a 3×3 stride-2 ``add_conv``
       (official: k = 1 conv, k = 2 max-pool then conv);
       j coarser by 2^k: a 1×1 ``add_conv`` if the channels differ, then nearest ×2^k (official
       ``scale_factor``: coarse pixel i covers fine pixels 2^k·i … 2^k·i + 2^k − 1).
       Sizes that do not divide exactly are then cropped (bottom / right) or edge-padded to level l's size:
       for exact sizes this is the official computation, and never a silent mismatch.  Without autograd the
       max-pools run as separable strided maxima (same values, several times faster on CPU).
    2. ``λ = softmax_over_levels(Conv1×1_bias(cat_j add_conv_1×1(x_j → compress_channels)))``: B×L×H×W,
       summing to 1 at every pixel (computed in float32 at least).
    3. ``y = expand(Σ_j λ_j ⊙ x_j)`` with ``expand`` a 3×3 ``add_conv`` to ``out_channels``.

    Official YOLOv3 configuration (``GOATmessi7/ASFF``, ``models/network_blocks.py``): inputs of 256 / 256 /
    512 channels at strides 8 / 16 / 32 and outputs of 256 / 512 / 1024 channels, BN, LeakyReLU(0.1),
    ``compress_c`` 16 (8 with RFB): ``AdaptiveSpatialFeatureFusion([256, 256, 512], level=l,
    out_channels=(256, 512, 1024)[l])`` or :meth:`yolov3` (``l`` here = 2 − the official ``level``).

    Differences from the common community ASFF: the softmax over levels is kept (not sigmoid), the weight
    fusion is a plain conv with bias (the community code's is conv + BN + SiLU), LeakyReLU as the official, any number
    of levels and channels, and odd sizes work (``scale_factor`` resizing alone breaks on them).

    Args:
        channels: input channels per level, finest first (at least 2 levels).
        level: output level (index into the input list; negative counts from the coarsest).
        inter_channels: fusion width (default ``channels[level]``).
        out_channels: output channels of the 3×3 expand conv (default ``inter_channels``).
        compress_channels: width of each level's weight branch (``compress_c``, 16).
        norm: normalisation in every ``add_conv`` (``"bn"``; ``None`` gives convs with bias).
        act: activation in every ``add_conv`` (``"leaky_relu"`` = LeakyReLU(0.1)).
        return_weights: forward returns ``(output, weights)`` with weights B×L×H_l×W_l.
    """

    def __init__(
        self,
        channels: Sequence[int],
        level: int = 0,
        inter_channels: int | None = None,
        out_channels: int | None = None,
        compress_channels: int = 16,
        norm: NormLayer = "bn",
        act: ActLayer = "leaky_relu",
        return_weights: bool = False,
    ) -> None:
        super().__init__()
        self.channels = check_level_channels(channels, self.owner)
        n = len(self.channels)
        check_arg(
            isinstance(level, int) and not isinstance(level, bool) and -n <= level < n,
            self.owner,
            "level",
            f"an index into the {n} input levels (0 = finest, -{n}..{n - 1})",
            level,
        )
        self.level = level % n
        inter = (
            self.channels[self.level]
            if inter_channels is None
            else positive_int(inter_channels, self.owner, "inter_channels")
        )
        self.inter_channels = inter
        self.out_channels = inter if out_channels is None else positive_int(out_channels, self.owner, "out_channels")
        self.compress_channels = positive_int(compress_channels, self.owner, "compress_channels")
        check_arg(isinstance(return_weights, bool), self.owner, "return_weights", "a bool", return_weights)
        self.return_weights = return_weights

        l = self.level
        self.scale_factors = tuple(float(2 ** (j - l)) if j > l else 1.0 for j in range(n))
        resize: list[nn.Module] = []
        for j, c in enumerate(self.channels):
            if j < l:  # finer: (k-1) max-pools then a stride-2 conv
                resize.append(
                    nn.Sequential(
                        *[MaxPool3x3s2() for _ in range(l - j - 1)],
                        ConvNormAct(c, inter, 3, 2, norm, act, self.owner),
                    )
                )
            elif c != inter:  # same level with another width, or coarser: 1×1 compress (then nearest, in forward)
                resize.append(ConvNormAct(c, inter, 1, 1, norm, act, self.owner))
            else:
                resize.append(nn.Identity())
        self.resize = nn.ModuleList(resize)
        self.weight = nn.ModuleList(
            ConvNormAct(inter, compress_channels, 1, 1, norm, act, self.owner) for _ in range(n)
        )
        self.weight_levels = nn.Conv2d(compress_channels * n, n, 1)
        self.expand = ConvNormAct(inter, self.out_channels, 3, 1, norm, act, self.owner)

    @classmethod
    def yolov3(cls, level: int, rfb: bool = False, return_weights: bool = False) -> "AdaptiveSpatialFeatureFusion":
        """The official YOLOv3 ASFF for output ``level`` (0 = stride 8, 256 → 256 channels; 1 = stride 16,
        256 → 512; 2 = stride 32, 512 → 1024) on inputs of 256 / 256 / 512 channels; ``rfb`` → compress 8."""
        check_arg(
            level in (0, 1, 2) and not isinstance(level, bool), cls.__name__, "level", "0, 1 or 2 for yolov3()", level
        )
        return cls(
            [256, 256, 512],
            level=level,
            out_channels=(256, 512, 1024)[level],
            compress_channels=8 if rfb else 16,
            return_weights=return_weights,
        )

    def forward(self, x: Sequence[torch.Tensor]) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        x = check_pyramid(x, self.channels, self.owner, True)
        target = x[self.level]
        resized = []
        for j, resize in enumerate(self.resize):
            y = resize(x[j])
            if j > self.level:
                y = F.interpolate(y, scale_factor=self.scale_factors[j], mode="nearest")
            if j != self.level:
                y = fit_to(y, target)
            resized.append(y)
        logits = self.weight_levels(torch.cat([w(y) for w, y in zip(self.weight, resized)], 1))
        weights = softmax_fp32(logits, 1)
        fused = resized[0] * weights[:, 0:1]
        for j in range(1, len(resized)):
            fused = fused + resized[j] * weights[:, j : j + 1]
        out = self.expand(fused)
        record(self, "weights", weights)
        if self.return_weights:
            return out, weights
        return out

"""Path Aggregation Network (PANet; Liu et al.; CVPR 2018): FPN plus a bottom-up path.

Paper: https://arxiv.org/abs/1803.01534
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F

from ..layers import (
    ActLayer,
    AttnModule,
    ConvNormAct,
    NormLayer,
    check_choice,
    check_level_channels,
    check_pyramid,
    fit_to,
    get_act,
    init_caffe2_xavier,
    make_norm,
    positive_int,
)
from ..registry import register
from .fpn import FeaturePyramidNetwork, fpn_output_shapes

__all__ = ["PathAggregationNetwork"]


@register(
    "panet",
    family="fusion",
    paper="Path Aggregation Network for Instance Segmentation (Liu, Qi, Qin, Shi, Jia; CVPR 2018)",
    url="https://arxiv.org/abs/1803.01534",
    layout="pyramid",
    complexity="O(N)",
    summary="FPN top-down path, then a bottom-up path N_{i+1} = conv3×3(conv3×3_s2(N_i) + P_{i+1}).",
    output_shape=fpn_output_shapes,
    test_kwargs={"out_channels": 16},
)
class PathAggregationNetwork(AttnModule):
    """PANet neck: FPN + bottom-up path augmentation (Liu et al., CVPR 2018); list in, list out.

    ``P = FPN(C)`` (see :class:`FeaturePyramidNetwork`), then ``N_0 = P_0`` and
    ``N_{i+1} = fuse_i(down_i(N_i) + P_{i+1})`` with ``down_i`` a 3×3 stride-2 conv and ``fuse_i`` a 3×3 conv,
    all ``out_channels`` wide; output ``[N_0, ..., N_{L-1}]`` at the inputs' sizes (the stride-2 result is
    cropped to P_{i+1} when the backbone rounded sizes down).

    Official code (``ShuLiu1993/PANet``, ``lib/modeling/FPN.py``): without GroupNorm each bottom-up conv is a
    plain conv with bias (the default here: ``norm=None, act=None``); the released GN configuration is
    ``norm="gn", act="relu"`` (bottom-up: conv → GN(32) → ReLU; FPN laterals and outputs: conv → GN, as the
    official ``USE_GN`` FPN).  Init Caffe2 XavierFill = ``kaiming_uniform_(a=1)``, bias 0.
    ``extra_levels="maxpool"`` appends ``max_pool2d(N_top, 1, stride 2)`` (the official RPN level).

    Differences from the common community "PAN" (YOLOv4/v5): addition, not concatenation, and single 3×3
    convs, not CSP blocks; the paper is Liu et al. 2018, not the few-shot segmentation PANet (ICCV 2019).

    Args:
        channels: input channels per level, finest first (at least 2 levels).
        out_channels: channels of every level (256 in the paper).
        norm: normalisation after every conv (``None``, ``"bn"``, ``"gn"`` or a callable).
        act: activation after the bottom-up convs (``None`` or a name such as ``"relu"``).
        extra_levels: ``None`` or ``"maxpool"``.
    """

    def __init__(
        self,
        channels: Sequence[int],
        out_channels: int = 256,
        norm: NormLayer = None,
        act: ActLayer = None,
        extra_levels: str | None = None,
    ) -> None:
        super().__init__()
        self.channels = check_level_channels(channels, self.owner)
        self.out_channels = positive_int(out_channels, self.owner, "out_channels")
        check_choice(extra_levels, (None, "maxpool"), self.owner, "extra_levels", "None or 'maxpool'")
        self.extra_levels = extra_levels
        make_norm(norm, out_channels, self.owner)  # validate with this class's name in the error
        get_act(act, self.owner)
        self.fpn = FeaturePyramidNetwork(self.channels, out_channels, norm=norm)
        n = len(self.channels)
        self.down = nn.ModuleList(
            ConvNormAct(out_channels, out_channels, 3, 2, norm, act, self.owner) for _ in range(n - 1)
        )
        self.fuse = nn.ModuleList(
            ConvNormAct(out_channels, out_channels, 3, 1, norm, act, self.owner) for _ in range(n - 1)
        )
        init_caffe2_xavier(self.down)
        init_caffe2_xavier(self.fuse)

    def forward(self, x: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        x = check_pyramid(x, self.channels, self.owner, True)
        p = self.fpn.top_down([x[i] for i in range(len(self.channels))])
        outs = [p[0]]
        for i, (down, fuse) in enumerate(zip(self.down, self.fuse)):
            outs.append(fuse(fit_to(down(outs[i]), p[i + 1]) + p[i + 1]))
        if self.extra_levels == "maxpool":
            outs.append(F.max_pool2d(outs[-1], kernel_size=1, stride=2, padding=0))
        return outs

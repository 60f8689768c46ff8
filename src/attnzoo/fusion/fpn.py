"""Feature Pyramid Networks (Lin et al.; CVPR 2017), with RetinaNet's P6/P7 (Lin et al.; ICCV 2017).

Paper: https://arxiv.org/abs/1612.03144
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Mapping, Sequence

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F

from ..layers import (
    AttnModule,
    ConvNormAct,
    NormLayer,
    check_arg,
    check_choice,
    check_level_channels,
    check_pyramid,
    init_caffe2_xavier,
    positive_int,
    stride2_size,
)
from ..registry import register

__all__ = ["FeaturePyramidNetwork"]


def fpn_output_shapes(module: Any, levels: Sequence[torch.Tensor]) -> list[tuple[Any, ...]]:
    """One map of ``out_channels`` per level, then the stride-2 extra levels (``"maxpool"``: 1, ``"p6p7"``: 2)."""
    oc = module.out_channels
    shapes = [(t.shape[0], oc, t.shape[2], t.shape[3]) for t in levels]
    b, _, h, w = shapes[-1]
    extra = {"maxpool": 1, "p6p7": 2}.get(module.extra_levels, 0)
    for _ in range(extra):
        h, w = stride2_size(h), stride2_size(w)
        shapes.append((b, oc, h, w))
    return shapes


@register(
    "fpn",
    family="fusion",
    paper="Feature Pyramid Networks for Object Detection (Lin, Dollár, Girshick, He, Hariharan, Belongie; CVPR 2017)",
    url="https://arxiv.org/abs/1612.03144",
    layout="pyramid",
    complexity="O(N)",
    summary="Top-down pathway with 1×1 laterals and 3×3 output convs; optional P6 (max-pool) or RetinaNet P6/P7.",
    output_shape=fpn_output_shapes,
    test_kwargs={"out_channels": 16},
)
class FeaturePyramidNetwork(AttnModule):
    """Feature Pyramid Network (Lin et al., CVPR 2017), numerically equal to ``torchvision.ops.FeaturePyramidNetwork``.

    Input ``[C_0, ..., C_{L-1}]`` (finest first, e.g. ResNet C2..C5), output ``[P_0, ..., P_{L-1}]`` with
    ``out_channels`` channels each and the inputs' sizes, plus the extra levels:

    ``inner_{L-1} = lateral_{L-1}(C_{L-1})``, ``inner_i = lateral_i(C_i) + nearest(inner_{i+1}, size of C_i)``,
    ``P_i = output_i(inner_i)`` with 1×1 lateral and 3×3 output convs (bias, no non-linearity; with ``norm``,
    conv without bias then norm, as torchvision's ``norm_layer``).  Init ``kaiming_uniform_(a=1)``, bias 0
    (= Detectron's XavierFill).

    Extra levels (``extra_levels``):
        ``"maxpool"``: P6 = ``max_pool2d(P_top, kernel 1, stride 2)`` (FPN's RPN level; torchvision
        ``LastLevelMaxPool``, named ``"pool"``).
        ``"p6p7"``: RetinaNet: P6 = Conv3×3/s2(C_top) (``p6_from="c5"``, the paper and torchvision's
        RetinaNet v2) or Conv3×3/s2(P_top) (``p6_from="p5"``, torchvision's RetinaNet v1), P7 =
        Conv3×3/s2(ReLU(P6)) (torchvision ``LastLevelP6P7``, named ``"p6"``, ``"p7"``).  torchvision decides
        "from P5" by ``in_channels == out_channels``; here it is explicit.

    Differences from the common community FPN: upsampling goes to the lateral's exact size (not
    ``scale_factor=2``, which fails on odd sizes), no BN/ReLU inside unless asked for, one 3×3 conv per level
    (not shared), and P6 for RetinaNet from C5 as the paper.

    Args:
        channels: input channels per level, finest first (at least 2 levels).
        out_channels: channels d of every output level (256 in the paper).
        norm: ``None`` (paper), ``"bn"``, ``"gn"`` or a callable ``norm(channels)`` after every conv.
        extra_levels: ``None``, ``"maxpool"`` or ``"p6p7"``.
        p6_from: ``"c5"`` (default) or ``"p5"``; only with ``extra_levels="p6p7"``.

    Forward: a list/tuple of maps → list; an ``OrderedDict`` of maps → ``OrderedDict`` with the same keys
    (plus ``"pool"`` or ``"p6"``, ``"p7"``), as torchvision.
    """

    def __init__(
        self,
        channels: Sequence[int],
        out_channels: int = 256,
        norm: NormLayer = None,
        extra_levels: str | None = None,
        p6_from: str | None = None,
    ) -> None:
        super().__init__()
        self.channels = check_level_channels(channels, self.owner)
        self.out_channels = positive_int(out_channels, self.owner, "out_channels")
        check_choice(extra_levels, (None, "maxpool", "p6p7"), self.owner, "extra_levels", "None, 'maxpool' or 'p6p7'")
        if extra_levels == "p6p7":
            p6_from = "c5" if p6_from is None else p6_from
            check_choice(p6_from, ("c5", "p5"), self.owner, "p6_from", "'c5' or 'p5'")
        else:
            check_arg(p6_from is None, self.owner, "p6_from", "None unless extra_levels='p6p7'", p6_from)
        self.extra_levels = extra_levels
        self.p6_from = p6_from
        self.lateral = nn.ModuleList(
            ConvNormAct(c, out_channels, 1, norm=norm, owner=self.owner) for c in self.channels
        )
        self.output = nn.ModuleList(
            ConvNormAct(out_channels, out_channels, 3, norm=norm, owner=self.owner) for _ in self.channels
        )
        if extra_levels == "p6p7":
            p6_in = self.channels[-1] if p6_from == "c5" else out_channels
            self.p6 = nn.Conv2d(p6_in, out_channels, 3, 2, 1)
            self.p7 = nn.Conv2d(out_channels, out_channels, 3, 2, 1)
        init_caffe2_xavier(self)

    @property
    def extra_names(self) -> list[str]:
        """Names of the extra output levels in an ``OrderedDict`` output (torchvision's)."""
        return {None: [], "maxpool": ["pool"], "p6p7": ["p6", "p7"]}[self.extra_levels]

    def top_down(self, feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """P_0..P_{L-1} from unchecked inputs (used by :class:`PathAggregationNetwork`)."""
        n = len(self.channels)
        inner = self.lateral[n - 1](feats[n - 1])
        results = [self.output[n - 1](inner)]
        for i in range(n - 2, -1, -1):
            lateral = self.lateral[i](feats[i])
            inner = lateral + F.interpolate(inner, size=lateral.shape[-2:], mode="nearest")
            results.insert(0, self.output[i](inner))
        return results

    def _extra(self, results: list[torch.Tensor], feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        if self.extra_levels == "maxpool":
            results.append(F.max_pool2d(results[-1], kernel_size=1, stride=2, padding=0))
        elif self.extra_levels == "p6p7":
            p6 = self.p6(feats[len(self.channels) - 1] if self.p6_from == "c5" else results[-1])
            results.extend([p6, self.p7(F.relu(p6))])
        return results

    def _forward_list(self, x: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        x = check_pyramid(x, self.channels, self.owner, False)
        feats = [x[i] for i in range(len(self.channels))]
        return self._extra(self.top_down(feats), feats)

    def forward(
        self, x: Sequence[torch.Tensor] | Mapping[str, torch.Tensor]
    ) -> list[torch.Tensor] | OrderedDict[str, torch.Tensor]:
        if isinstance(x, Mapping):
            names = [*x.keys(), *self.extra_names]
            return OrderedDict(zip(names, self._forward_list(list(x.values()))))
        return self._forward_list(x)

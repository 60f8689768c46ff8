"""EfficientDet: Scalable and Efficient Object Detection (Tan, Pang, Le; CVPR 2020) — BiFPN.
Paper: https://arxiv.org/abs/1911.09070"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

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
    check_choice,
    check_level_channels,
    check_pyramid,
    fit_to,
    fx_leaf,
    get_act,
    positive_int,
    positive_number,
    traced_size,
)
from ..layers.batchnorm import PooledBatchNorm2d
from ..registry import register
from .weighted_fusion import FUSIONS, fusion_weights, weighted_sum

__all__ = ["BiFPN", "down_to", "max_pool_same_3x3_s2", "up_to"]

_BN: dict[str, Any] = {"eps": 1e-3, "momentum": 0.01}  # EfficientDet's BatchNorm (TF momentum 0.99, epsilon 1e-3)


@fx_leaf
def max_pool_same_3x3_s2(x: torch.Tensor) -> torch.Tensor:
    """3×3 stride-2 max-pool with TensorFlow "SAME" padding (EfficientDet's downsampling): output ⌈H/2⌉×⌈W/2⌉,
    padding (H mod 2) rows on top and 1 at the bottom (likewise for W); padded cells never win."""
    h, w = traced_size(x)
    ph, pw = h % 2, w % 2
    # the dtype's lowest finite value: -inf does not fit in ncnn's parameter files
    x = F.pad(x, (pw, 1, ph, 1), value=torch.finfo(x.dtype).min)
    return F.max_pool2d(x, 3, 2)


@fx_leaf
def up_to(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Nearest upsampling of ``x`` to the exact spatial size of ``ref``."""
    return F.interpolate(x, size=(ref.shape[-2], ref.shape[-1]), mode="nearest")


@fx_leaf
def down_to(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """SAME 3×3/s2 max-pool of ``x``, then crop / edge-pad to the exact spatial size of ``ref``."""
    return fit_to(max_pool_same_3x3_s2(x), ref)


class SeparableConvBlock(nn.Module):
    """Depthwise 3×3 → pointwise 1×1 → BN (→ act with ``variant="paper"``); pointwise without bias (a bias
    before BN is absorbed by it)."""

    def __init__(self, channels: int, act: nn.Module | None) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(channels, channels, 3, 1, 1, groups=channels, bias=False)
        self.pointwise = nn.Conv2d(channels, channels, 1, bias=False)
        self.bn = PooledBatchNorm2d(channels, **_BN)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.pointwise(self.depthwise(x)))
        return x if self.act is None else self.act(x)


def _projection(cin: int, cout: int) -> nn.Module:
    """EfficientDet's input resampling conv when the widths differ: 1×1 conv + BN (no activation)."""
    if cin == cout:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(cin, cout, 1), PooledBatchNorm2d(cout, **_BN))


class BiFPNLayer(nn.Module):
    """One BiFPN layer over L levels (finest first): a top-down path of nodes ``td_i`` (i = L−2 … 0; ``td_0`` is
    output 0), then a bottom-up path ``out_i`` (i = 1 … L−1) with the skip edge from the layer's input."""

    def __init__(
        self,
        channels: Sequence[int],
        out_channels: int,
        variant: str,
        fusion: str,
        act: ActLayer,
        eps: float,
        owner: str,
    ) -> None:
        super().__init__()
        n, d = len(channels), out_channels
        self.levels, self.variant, self.fusion, self.eps = n, variant, fusion, eps
        self.proj_td = nn.ModuleList(_projection(c, d) for c in channels)  # edges into the top-down path
        self.proj_skip = nn.ModuleList(_projection(c, d) for c in channels[1:])  # skip edges into out_1..out_{L-1}
        learned = fusion != "sum"
        self.w_td = nn.Parameter(torch.ones(n - 1, 2)) if learned else None
        self.w_mid = nn.Parameter(torch.ones(n - 2, 3)) if learned and n > 2 else None
        self.w_top = nn.Parameter(torch.ones(2)) if learned else None
        self.pre_act = get_act(act, owner) if variant == "official" else None
        self.conv_td = nn.ModuleList(
            SeparableConvBlock(d, get_act(act, owner) if variant == "paper" else None) for _ in range(n - 1)
        )
        self.conv_out = nn.ModuleList(
            SeparableConvBlock(d, get_act(act, owner) if variant == "paper" else None) for _ in range(n - 1)
        )

    def _node(
        self, conv: nn.Module, w: torch.Tensor | None, xs: list[torch.Tensor], owner: nn.Module, key: str
    ) -> torch.Tensor:
        wn = fusion_weights(w, self.fusion, self.eps, len(xs), xs[0])
        record(owner, key, wn)
        y = weighted_sum(xs, wn.to(xs[0].dtype))
        if self.pre_act is not None:
            y = self.pre_act(y)
        return conv(y)

    def forward(self, x: Sequence[torch.Tensor], owner: nn.Module, prefix: str) -> list[torch.Tensor]:
        n = self.levels
        ins = [self.proj_td[i](x[i]) for i in range(n)]
        td: list[torch.Tensor] = [ins[n - 1]] * n
        prev = ins[n - 1]
        for i in range(n - 2, -1, -1):
            w = None if self.w_td is None else self.w_td[i]
            prev = self._node(self.conv_td[i], w, [ins[i], up_to(prev, ins[i])], owner, f"{prefix}td{i}")
            td[i] = prev
        outs = [td[0]]
        for i in range(1, n):
            skip = self.proj_skip[i - 1](x[i])
            down = down_to(outs[i - 1], skip)
            if i < n - 1:
                w = None if self.w_mid is None else self.w_mid[i - 1]
                outs.append(self._node(self.conv_out[i - 1], w, [skip, td[i], down], owner, f"{prefix}out{i}"))
            else:
                outs.append(self._node(self.conv_out[i - 1], self.w_top, [skip, down], owner, f"{prefix}out{i}"))
        return outs


@register(
    "bifpn",
    family="fusion",
    paper="EfficientDet: Scalable and Efficient Object Detection (Tan, Pang, Le; CVPR 2020)",
    url="https://arxiv.org/abs/1911.09070",
    layout="pyramid",
    complexity="O(N)",
    summary="Bidirectional FPN: top-down then bottom-up paths of fast-normalised weighted fusion nodes, each "
    "followed by a depthwise-separable conv + BN + SiLU; repeated num_repeats times.",
    test_kwargs={"out_channels": 16},
    maps=("weights_*",),
)
class BiFPN(AttnModule):
    """BiFPN (EfficientDet, CVPR 2020): list of L ≥ 2 maps (finest first) → list of L maps with ``out_channels``.

    Per layer: inputs with another width get a 1×1 conv + BN per edge (first layer only, as the official
    code); top-down nodes ``td_i = Conv(w̃·[P_i, up(td_{i+1})])`` (``td_{L-1}`` = P_{L-1}) and bottom-up nodes
    ``out_i = Conv(w̃·[P_i, td_i, down(out_{i-1})])`` (``out_0 = td_0``, ``out_{L-1}`` without ``td``), with
    fast normalised fusion ``w̃ = ReLU(w)/(Σ ReLU(w) + 1e-4)`` (weights init 1) and ``Conv`` = depthwise
    3×3 → pointwise 1×1 → BN(eps 1e-3, momentum 0.01) → SiLU.  ``up`` is nearest to the exact size of the
    finer level, ``down`` a 3×3/s2 max-pool with TF "SAME" padding then crop/pad to the exact size, so odd
    sizes work.  ``num_repeats`` layers are stacked (EfficientDet-D0: 3 layers on 5 levels, 64 channels).

    Variants: ``"paper"`` (conv → BN → act, the paper's text); ``"official"`` (act → conv → BN, google/automl's
    default ``conv_bn_act_pattern=False``).  The popular YOLO "BiFPN" copies drop the ReLU on the weights;
    YOLOv5's ``yolov5-bifpn.yaml`` is a plain Concat.  See docs/provenance/bifpn.md.

    Args:
        channels: input channels per level, finest first (at least 2 levels).
        out_channels: width of every BiFPN level (64 in D0).
        num_repeats: number of stacked BiFPN layers.
        variant: ``"paper"`` or ``"official"``.
        fusion: ``"fast"``, ``"softmax"`` or ``"sum"`` (see :class:`WeightedFusion`).
        act: activation (``"silu"`` = swish).
        eps: fast fusion epsilon (1e-4).

    Captured maps: ``"weights_r{k}_td{i}"`` and ``"weights_r{k}_out{i}"``: the normalised weights of every node.
    """

    size_bounds: ClassVar[dict[str, SizeBound]] = {
        "num_repeats": SizeBound(DEPTH_BOUND, "repeated blocks"),
    }

    def __init__(
        self,
        channels: Sequence[int],
        out_channels: int = 64,
        num_repeats: int = 1,
        variant: str = "paper",
        fusion: str = "fast",
        act: ActLayer = "silu",
        eps: float = 1e-4,
    ) -> None:
        super().__init__()
        self.channels = check_level_channels(channels, self.owner)
        self.out_channels = positive_int(out_channels, self.owner, "out_channels")
        self.num_repeats = positive_int(num_repeats, self.owner, "num_repeats")
        check_arg(num_repeats <= 64, self.owner, "num_repeats", "an integer in 1..64", num_repeats)
        self.variant = check_choice(variant, ("paper", "official"), self.owner, "variant")
        self.fusion = check_choice(fusion, FUSIONS, self.owner, "fusion")
        self.eps = float(positive_number(eps, self.owner, "eps"))
        get_act(act, self.owner)  # validate
        n = len(self.channels)
        self.layers = nn.ModuleList(
            BiFPNLayer(
                self.channels if k == 0 else [out_channels] * n,
                out_channels,
                variant,
                fusion,
                act,
                self.eps,
                self.owner,
            )
            for k in range(num_repeats)
        )

    def forward(self, x: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        x = check_pyramid(x, self.channels, self.owner, False)
        feats = [x[i] for i in range(len(self.channels))]
        for k, layer in enumerate(self.layers):
            feats = layer(feats, self, f"weights_r{k}_")
        return feats

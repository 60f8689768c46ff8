"""Fusion necks (layout ``pyramid``): FPN with RetinaNet P6/P7, PANet's bottom-up path, ASFF.

Every module takes a list (or tuple) of maps ``[x_0, ..., x_{L-1}]``, x_i: B×C_i×H_i×W_i, **finest first**,
with ``C_i = channels[i]``, and returns a list of maps (ASFF: one map, optionally with its fusion weights).
``FeaturePyramidNetwork`` also accepts an ``OrderedDict`` (torchvision style) and then returns one.

Sizes: level i+1 must be no larger than level i.  FPN accepts any such sizes (as torchvision: the top-down
path upsamples to the exact size of the finer lateral, so odd sizes work — the common community code's
``scale_factor=2`` breaks on them).  PANet and ASFF resample with stride-2 operations, so they also need each
level to halve the previous one, rounded either way (⌈H/2⌉ as stride-2 convs with padding give, or ⌊H/2⌋ as
unpadded pooling gives); the ±1 pixel differences are cropped / edge-padded away.

Input checks live in :func:`_check_pyramid` (wrapped with ``torch.fx.wrap``, so FX graphs keep them).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Mapping, Sequence, Union

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F

from .capture import record
from .layers import ActLayer, check_arg, get_act, positive_int
from .registry import register

__all__ = ["FeaturePyramidNetwork", "PathAggregationNetwork", "AdaptiveSpatialFeatureFusion"]

#: A normalisation: ``None``, ``"bn"`` (BatchNorm2d), ``"gn"`` (GroupNorm, 32 groups or the largest divisor of
#: the channels below 32, as Detectron's ``get_group_gn``) or a callable ``norm(channels) -> nn.Module``
#: (torchvision's ``norm_layer`` convention, e.g. ``nn.BatchNorm2d``).
NormLayer = Union[str, Callable[[int], nn.Module], None]

_FPN = "FeaturePyramidNetwork"
_PAN = "PathAggregationNetwork"
_ASFF = "AdaptiveSpatialFeatureFusion"


# --------------------------------------------------------------------------------------------------------------
# shared pieces


def group_norm_groups(channels: int, max_groups: int = 32) -> int:
    """The largest divisor of ``channels`` that is at most ``max_groups`` (32 groups for 256 channels)."""
    return max(g for g in range(1, min(max_groups, channels) + 1) if channels % g == 0)


def make_norm(norm: NormLayer, channels: int, owner: str) -> nn.Module | None:
    """Build the normalisation layer ``norm`` for ``channels`` channels (``None`` → no layer)."""
    if norm is None:
        return None
    if isinstance(norm, str):
        key = norm.lower()
        if key in ("bn", "batchnorm", "batch_norm"):
            return nn.BatchNorm2d(channels)
        if key in ("gn", "groupnorm", "group_norm"):
            return nn.GroupNorm(group_norm_groups(channels), channels)
        raise ValueError(f"{owner}: norm must be None, 'bn', 'gn' or a callable norm(channels), got {norm!r}")
    if isinstance(norm, nn.Module) or not callable(norm):
        raise ValueError(f"{owner}: norm must be None, 'bn', 'gn' or a callable norm(channels), got {norm!r}")
    return norm(channels)


class ConvNormAct(nn.Sequential):
    """``Conv2d(k, stride, padding k//2) → norm → act`` (``conv``, optional ``norm``, optional ``act``).

    The conv has a bias only without a norm (as torchvision's ``Conv2dNormActivation`` and the official ASFF
    ``add_conv``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        norm: NormLayer = None,
        act: ActLayer = None,
        owner: str = "ConvNormAct",
    ) -> None:
        super().__init__()
        norm_layer = make_norm(norm, out_channels, owner)
        self.add_module(
            "conv",
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=norm_layer is None),
        )
        if norm_layer is not None:
            self.add_module("norm", norm_layer)
        if act is not None:
            self.add_module("act", get_act(act, owner))


def _init_caffe2_xavier(module: nn.Module) -> None:
    """``kaiming_uniform_(a=1)``, bias 0 on every conv: torchvision's FPN init, equal to Caffe2's XavierFill
    (U(±√(3/fan_in))) used by Detectron's FPN and the official PANet code."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_uniform_(m.weight, a=1)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _check_channels(channels: Sequence[int], owner: str) -> tuple[int, ...]:
    ok = (
        isinstance(channels, (list, tuple))
        and len(channels) >= 2
        and all(isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in channels)
    )
    check_arg(ok, owner, "channels", "a list of at least 2 positive ints (channels per level, finest first)", channels)
    return tuple(int(c) for c in channels)


def _halves(big: int, small: int) -> bool:
    return small in (big // 2, (big + 1) // 2)


@torch.fx.wrap
def _check_pyramid(xs: Sequence[torch.Tensor], channels: tuple[int, ...], owner: str, halving: bool) -> Sequence[torch.Tensor]:
    """Check a list of maps against ``channels`` (finest first); return it unchanged.

    Raises ``ValueError`` naming the module, the level, what was expected and what was received: wrong type or
    number of levels, a level that is not B×C_i×H×W, levels not ordered from fine to coarse (or, with
    ``halving``, not halving from one level to the next), mismatched batch sizes.
    """
    if torch.jit.is_tracing():  # shapes are baked into a trace; the check ran when the trace was recorded
        return xs
    n = len(channels)
    layout = f"a list of {n} maps B×C_i×H_i×W_i with C = {list(channels)}, finest first"
    if not isinstance(xs, (list, tuple)):
        raise ValueError(f"{owner}: expected {layout}, got {type(xs).__name__}")
    if len(xs) != n:
        raise ValueError(f"{owner}: expected {n} pyramid levels ({layout}), got {len(xs)} levels")
    for i, (t, c) in enumerate(zip(xs, channels)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{owner}: level {i} expected a tensor B×{c}×H×W, got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(f"{owner}: level {i} expected a 4-D tensor B×{c}×H×W, got shape {tuple(t.shape)}")
        if t.numel() == 0:
            raise ValueError(f"{owner}: level {i} expected a non-empty tensor B×{c}×H×W, got shape {tuple(t.shape)}")
    for i in range(1, n):
        (h0, w0), (h1, w1) = xs[i - 1].shape[-2:], xs[i].shape[-2:]
        if h1 > h0 or w1 > w0:
            raise ValueError(
                f"{owner}: levels must be ordered finest first: expected level {i} no larger than level {i - 1} "
                f"({h0}×{w0}), got {h1}×{w1} (sizes {[tuple(t.shape[-2:]) for t in xs]})"
            )
        if halving and not (_halves(h0, h1) and _halves(w0, w1)):
            raise ValueError(
                f"{owner}: each level must halve the previous one: expected level {i} of size "
                f"{sorted({h0 // 2, (h0 + 1) // 2})}×{sorted({w0 // 2, (w0 + 1) // 2})} after level {i - 1} "
                f"({h0}×{w0}), got {h1}×{w1}"
            )
    for i, (t, c) in enumerate(zip(xs, channels)):
        if t.shape[1] != c:
            raise ValueError(f"{owner}: level {i} expected {c} channels (B×{c}×H×W), got {t.shape[1]} (shape {tuple(t.shape)})")
        if t.shape[0] != xs[0].shape[0]:
            raise ValueError(f"{owner}: level {i} expected batch size {xs[0].shape[0]} (as level 0), got {t.shape[0]}")
    return xs


@torch.fx.wrap
def _fit_to(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Crop (bottom / right) or edge-pad ``x`` to the spatial size of ``ref``; ``x`` itself when they agree."""
    h, w = ref.shape[-2], ref.shape[-1]
    if x.shape[-2] > h or x.shape[-1] > w:
        x = x[..., :h, :w]
    ph, pw = h - x.shape[-2], w - x.shape[-1]
    if ph > 0 or pw > 0:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x


@torch.fx.wrap
def _softmax_fp32(logits: torch.Tensor, dim: int) -> torch.Tensor:
    """Softmax in at least float32 (bfloat16 / float16 logits are upcast; float64 stays float64)."""
    return torch.softmax(logits, dim, dtype=torch.promote_types(logits.dtype, torch.float32))


@torch.fx.wrap
def max_pool_3x3_s2(x: torch.Tensor) -> torch.Tensor:
    """``F.max_pool2d(x, 3, stride=2, padding=1)``.

    When no gradient is needed it is computed as separable maxima of stride-2 views of the (-inf)-padded map:
    the same values, about 5× faster than PyTorch's CPU ``max_pool2d`` on NCHW maps (which also computes
    argmax indices).  With autograd it is ``F.max_pool2d`` itself (the official op and its gradient).
    """
    if x.requires_grad and torch.is_grad_enabled():
        return F.max_pool2d(x, 3, 2, 1)
    ho, wo = (x.shape[-2] + 1) // 2, (x.shape[-1] + 1) // 2
    xp = F.pad(x, (1, 1, 1, 1), value=float("-inf"))
    y = torch.maximum(torch.maximum(xp[..., 0 : 2 * ho : 2, :], xp[..., 1 : 2 * ho + 1 : 2, :]), xp[..., 2 : 2 * ho + 2 : 2, :])
    return torch.maximum(torch.maximum(y[..., 0 : 2 * wo : 2], y[..., 1 : 2 * wo + 1 : 2]), y[..., 2 : 2 * wo + 2 : 2])


class MaxPool3x3s2(nn.MaxPool2d):
    """``nn.MaxPool2d(3, stride=2, padding=1)`` running :func:`max_pool_3x3_s2` (faster without autograd)."""

    def __init__(self) -> None:
        super().__init__(3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return max_pool_3x3_s2(x)


def _stride2_size(n: int) -> int:
    return (n + 1) // 2


# --------------------------------------------------------------------------------------------------------------
# FPN


def _fpn_output_shapes(module: nn.Module, levels: Sequence[torch.Tensor]) -> list[tuple[int, ...]]:
    oc = module.out_channels
    shapes = [(t.shape[0], oc, t.shape[2], t.shape[3]) for t in levels]
    b, _, h, w = shapes[-1]
    extra = {"maxpool": 1, "p6p7": 2}.get(module.extra_levels, 0)
    for _ in range(extra):
        h, w = _stride2_size(h), _stride2_size(w)
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
    output_shape=_fpn_output_shapes,
    test_kwargs={"out_channels": 16},
)
class FeaturePyramidNetwork(nn.Module):
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
        self.channels = _check_channels(channels, _FPN)
        self.out_channels = positive_int(out_channels, _FPN, "out_channels")
        check_arg(extra_levels in (None, "maxpool", "p6p7"), _FPN, "extra_levels", "None, 'maxpool' or 'p6p7'", extra_levels)
        if extra_levels == "p6p7":
            p6_from = "c5" if p6_from is None else p6_from
            check_arg(p6_from in ("c5", "p5"), _FPN, "p6_from", "'c5' or 'p5'", p6_from)
        else:
            check_arg(p6_from is None, _FPN, "p6_from", "None unless extra_levels='p6p7'", p6_from)
        self.extra_levels = extra_levels
        self.p6_from = p6_from
        self.lateral = nn.ModuleList(ConvNormAct(c, out_channels, 1, norm=norm, owner=_FPN) for c in self.channels)
        self.output = nn.ModuleList(ConvNormAct(out_channels, out_channels, 3, norm=norm, owner=_FPN) for _ in self.channels)
        if extra_levels == "p6p7":
            p6_in = self.channels[-1] if p6_from == "c5" else out_channels
            self.p6 = nn.Conv2d(p6_in, out_channels, 3, 2, 1)
            self.p7 = nn.Conv2d(out_channels, out_channels, 3, 2, 1)
        _init_caffe2_xavier(self)

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
        x = _check_pyramid(x, self.channels, _FPN, False)
        feats = [x[i] for i in range(len(self.channels))]
        return self._extra(self.top_down(feats), feats)

    def forward(
        self, x: Sequence[torch.Tensor] | Mapping[str, torch.Tensor]
    ) -> list[torch.Tensor] | OrderedDict[str, torch.Tensor]:
        if isinstance(x, Mapping):
            names = [*x.keys(), *self.extra_names]
            return OrderedDict(zip(names, self._forward_list(list(x.values()))))
        return self._forward_list(x)


# --------------------------------------------------------------------------------------------------------------
# PANet


def _panet_output_shapes(module: nn.Module, levels: Sequence[torch.Tensor]) -> list[tuple[int, ...]]:
    oc = module.out_channels
    shapes = [(t.shape[0], oc, t.shape[2], t.shape[3]) for t in levels]
    if module.extra_levels == "maxpool":
        b, _, h, w = shapes[-1]
        shapes.append((b, oc, _stride2_size(h), _stride2_size(w)))
    return shapes


@register(
    "panet",
    family="fusion",
    paper="Path Aggregation Network for Instance Segmentation (Liu, Qi, Qin, Shi, Jia; CVPR 2018)",
    url="https://arxiv.org/abs/1803.01534",
    layout="pyramid",
    complexity="O(N)",
    summary="FPN top-down path, then a bottom-up path N_{i+1} = conv3×3(conv3×3_s2(N_i) + P_{i+1}).",
    output_shape=_panet_output_shapes,
    test_kwargs={"out_channels": 16},
)
class PathAggregationNetwork(nn.Module):
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
        self.channels = _check_channels(channels, _PAN)
        self.out_channels = positive_int(out_channels, _PAN, "out_channels")
        check_arg(extra_levels in (None, "maxpool"), _PAN, "extra_levels", "None or 'maxpool'", extra_levels)
        self.extra_levels = extra_levels
        make_norm(norm, out_channels, _PAN)  # validate with this class's name in the error
        get_act(act, _PAN)
        self.fpn = FeaturePyramidNetwork(self.channels, out_channels, norm=norm)
        n = len(self.channels)
        self.down = nn.ModuleList(ConvNormAct(out_channels, out_channels, 3, 2, norm, act, _PAN) for _ in range(n - 1))
        self.fuse = nn.ModuleList(ConvNormAct(out_channels, out_channels, 3, 1, norm, act, _PAN) for _ in range(n - 1))
        _init_caffe2_xavier(self.down)
        _init_caffe2_xavier(self.fuse)

    def forward(self, x: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        x = _check_pyramid(x, self.channels, _PAN, True)
        p = self.fpn.top_down([x[i] for i in range(len(self.channels))])
        outs = [p[0]]
        for i, (down, fuse) in enumerate(zip(self.down, self.fuse)):
            outs.append(fuse(_fit_to(down(outs[i]), p[i + 1]) + p[i + 1]))
        if self.extra_levels == "maxpool":
            outs.append(F.max_pool2d(outs[-1], kernel_size=1, stride=2, padding=0))
        return outs


# --------------------------------------------------------------------------------------------------------------
# ASFF


def _asff_output_shapes(module: nn.Module, levels: Sequence[torch.Tensor]) -> list[tuple[int, ...]]:
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
)
class AdaptiveSpatialFeatureFusion(nn.Module):
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
    fusion is a plain conv with bias (the seed's is conv + BN + SiLU), LeakyReLU as the official, any number
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
        self.channels = _check_channels(channels, _ASFF)
        n = len(self.channels)
        check_arg(
            isinstance(level, int) and not isinstance(level, bool) and -n <= level < n,
            _ASFF, "level", f"an index into the {n} input levels (0 = finest, -{n}..{n - 1})", level,
        )
        self.level = level % n
        inter = self.channels[self.level] if inter_channels is None else positive_int(inter_channels, _ASFF, "inter_channels")
        self.inter_channels = inter
        self.out_channels = inter if out_channels is None else positive_int(out_channels, _ASFF, "out_channels")
        self.compress_channels = positive_int(compress_channels, _ASFF, "compress_channels")
        check_arg(isinstance(return_weights, bool), _ASFF, "return_weights", "a bool", return_weights)
        self.return_weights = return_weights

        l = self.level
        self.scale_factors = tuple(float(2 ** (j - l)) if j > l else 1.0 for j in range(n))
        resize = []
        for j, c in enumerate(self.channels):
            if j < l:  # finer: (k-1) max-pools then a stride-2 conv
                resize.append(nn.Sequential(
                    *[MaxPool3x3s2() for _ in range(l - j - 1)],
                    ConvNormAct(c, inter, 3, 2, norm, act, _ASFF),
                ))
            elif c != inter:  # same level with another width, or coarser: 1×1 compress (then nearest, in forward)
                resize.append(ConvNormAct(c, inter, 1, 1, norm, act, _ASFF))
            else:
                resize.append(nn.Identity())
        self.resize = nn.ModuleList(resize)
        self.weight = nn.ModuleList(ConvNormAct(inter, compress_channels, 1, 1, norm, act, _ASFF) for _ in range(n))
        self.weight_levels = nn.Conv2d(compress_channels * n, n, 1)
        self.expand = ConvNormAct(inter, self.out_channels, 3, 1, norm, act, _ASFF)

    @classmethod
    def yolov3(cls, level: int, rfb: bool = False, return_weights: bool = False) -> "AdaptiveSpatialFeatureFusion":
        """The official YOLOv3 ASFF for output ``level`` (0 = stride 8, 256 → 256 channels; 1 = stride 16,
        256 → 512; 2 = stride 32, 512 → 1024) on inputs of 256 / 256 / 512 channels; ``rfb`` → compress 8."""
        check_arg(level in (0, 1, 2) and not isinstance(level, bool), _ASFF, "level", "0, 1 or 2 for yolov3()", level)
        return cls([256, 256, 512], level=level, out_channels=(256, 512, 1024)[level],
                   compress_channels=8 if rfb else 16, return_weights=return_weights)

    def forward(self, x: Sequence[torch.Tensor]) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        x = _check_pyramid(x, self.channels, _ASFF, True)
        target = x[self.level]
        resized = []
        for j, resize in enumerate(self.resize):
            y = resize(x[j])
            if j > self.level:
                y = F.interpolate(y, scale_factor=self.scale_factors[j], mode="nearest")
            if j != self.level:
                y = _fit_to(y, target)
            resized.append(y)
        logits = self.weight_levels(torch.cat([w(y) for w, y in zip(self.weight, resized)], 1))
        weights = _softmax_fp32(logits, 1)
        fused = resized[0] * weights[:, 0:1]
        for j in range(1, len(resized)):
            fused = fused + resized[j] * weights[:, j : j + 1]
        out = self.expand(fused)
        record(self, "weights", weights)
        if self.return_weights:
            return out, weights
        return out

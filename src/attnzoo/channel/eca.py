"""ECA-Net: Efficient Channel Attention (Wang et al.; CVPR 2020), and timm's circular ECA (``ceca``).

Paper: https://arxiv.org/abs/1910.03151
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..functional.gating import SPATIAL_MEAN_FORM, spatial_mean
from ..layers import Gate, SizeBound, as_map, check_arg, check_channels_rank, odd_kernel, positive_number
from ..registry import register

__all__ = ["CircularECA", "EfficientChannelAttention", "eca_kernel_size"]


def pad_channels(s: torch.Tensor, c: int, p: int, circular: bool) -> torch.Tensor:
    """Pad a B×C vector (C = ``c``) by ``p`` on both ends of the channel axis: zeros, or circularly (channel −1 is C − 1,
    channel C is 0).  Circular padding by slices and one concatenation (``F.pad(mode="circular")`` refuses
    p > C); a pad wider than C wraps around as often as it needs to."""
    if not circular:
        return F.pad(s, (p, p))
    if p <= c:
        return torch.cat([s[:, c - p :], s, s[:, :p]], dim=1)
    reps = -(-p // c)  # whole copies needed on each side
    return s.repeat(1, 2 * reps + 1)[:, reps * c - p : reps * c + c + p]


def eca_kernel_size(channels: int, gamma: float = 2.0, beta: float = 1.0, minimum: int = 3) -> int:
    """ECA-Net's adaptive kernel ψ(C) = |log2(C)/γ + b/γ|_odd, at least ``minimum`` (3: the rounding of timm's
    ``EcaModule``; MLCA takes 1).

    C = 64, 256, 512, 2048 → 3, 5, 5, 7.
    """
    t = int(abs(math.log2(channels) + beta) / gamma)
    return max(t if t % 2 else t + 1, minimum)


@register(
    "eca",
    family="channel",
    paper="ECA-Net: Efficient Channel Attention for Deep CNNs (Wang et al.; CVPR 2020)",
    url="https://arxiv.org/abs/1910.03151",
    complexity="O(N)",
    summary="Global average pool → 1-D conv across channels (adaptive kernel) → sigmoid gate.",
    maps=("gate",),
    forms=(SPATIAL_MEAN_FORM,),
    dims=(1, 2, 3),
)
class EfficientChannelAttention(Gate):
    """ECA gate: local cross-channel interaction without dimensionality reduction; B×C×H×W → B×C×H×W
    (B×C×L or B×C×D×H×W with ``dims=1`` or ``3``).

    ``y = x * sigmoid(Conv1d_k(GAP(x)))`` over the channel axis (zero padded).  ``kernel_size=None`` uses the
    adaptive ψ(C) with γ=2, b=1 (odd, ≥ 3); the conv has no bias, as the official ``eca_layer``.  In 1-D and 3-D
    the pool averages every spatial axis (timm_3d's ``EcaModule``); the channel conv and ψ(C) do not change.

    Args:
        channels: input channels C.
        kernel_size: odd 1-D kernel size ≤ 2·C − 1, or ``None`` for ψ(C) (a ψ(C) above max(3, 2·C − 1), from a
            tiny ``gamma``, raises).
        gamma, beta: the constants of ψ.
        dims: spatial rank of the maps (1, 2 or 3).

    Captured map: ``"gate"`` B×C×1×1 (B×C×1 / B×C×1×1×1).
    """

    size_bounds: ClassVar[dict[str, SizeBound]] = {
        "kernel_size": SizeBound(lambda c: 2 * c - 1, "wider taps never see a channel", "2·C − 1"),
    }

    #: pad the channel axis circularly (``ceca``) instead of with zeros
    circular = False

    def __init__(
        self, channels: int, kernel_size: int | None = None, gamma: float = 2.0, beta: float = 1.0, *, dims: int = 2
    ) -> None:
        super().__init__()
        self.channels, self.dims = check_channels_rank(channels, dims, self.owner)
        if kernel_size is None:
            positive_number(gamma, self.owner, "gamma")
            finite = isinstance(beta, (int, float)) and not isinstance(beta, bool) and math.isfinite(beta)
            check_arg(finite, self.owner, "beta", "a finite number", beta)
            kernel_size = eca_kernel_size(channels, gamma, beta)
            # ψ's floor of 3 stays allowed on 1 channel; beyond it a tap would never see a channel
            bound = max(3, 2 * channels - 1)
            check_arg(
                kernel_size <= bound,
                self.owner,
                "gamma",
                f"large enough that ψ(C) ≤ max(3, 2·C − 1) = {bound} taps (it gives {kernel_size})",
                gamma,
            )
        else:
            odd_kernel(kernel_size, self.owner)
            bound = 2 * channels - 1
            check_arg(
                kernel_size <= bound,
                self.owner,
                "kernel_size",
                f"at most 2·C − 1 = {bound} (wider taps never see a channel)",
                kernel_size,
            )
        odd_kernel(kernel_size, self.owner)
        self.kernel_size = kernel_size
        self.conv = nn.Conv1d(1, 1, kernel_size, padding=(kernel_size - 1) // 2, bias=False)

    def gate_map(self, x: torch.Tensor) -> torch.Tensor:
        """The gate, B×C×1×1."""
        k = self.kernel_size
        p = (k - 1) // 2
        # The k-tap cross-correlation over the channel axis (zero or circularly padded), from k shifted views of the padded B×C
        # vector: the values of F.conv1d(s, weight, padding=p) without a oneDNN convolution
        # call, whose fixed cost (and thread start-up) dwarfs a B×C input (fwd+bwd 2.6× faster on one thread,
        # 70× on two loaded threads).
        # The k shifted views stacked (B×C×k, tiny) times the k taps: one small matmul, counted as the conv's
        # 2·B·C·k FLOPs.  Slices, not Tensor.unfold: the legacy TorchScript ONNX exporter (Ultralytics' export)
        # cannot size an unfold.
        c = self.channels
        s = pad_channels(spatial_mean(x, dims=self.dims), c, p, self.circular)
        y = torch.stack([s[:, i : i + c] for i in range(k)], dim=-1) @ self.conv.weight.view(k)
        return as_map(torch.sigmoid(y), self.dims)


@register(
    "ceca",
    family="channel",
    paper="Circular ECA: ECA-Net with circular channel padding (timm CecaModule; ECA-Net: Wang et al., CVPR 2020)",
    url="https://github.com/huggingface/pytorch-image-models/blob/main/timm/layers/eca.py",
    complexity="O(N)",
    summary="ECA whose 1-D conv across channels pads circularly: the first and last channels are neighbours.",
    maps=("gate",),
    forms=(SPATIAL_MEAN_FORM,),
)
class CircularECA(EfficientChannelAttention):
    """Circular ECA (timm ``CecaModule``); B×C×H×W → B×C×H×W.

    ``y = x * sigmoid(Conv1d_k(GAP(x)))`` as :class:`EfficientChannelAttention`, but the channel axis is padded
    circularly (channel −1 is channel C − 1): the gate treats the channels as a ring, so rolling the input's
    channels by r rolls the gate and the output by r (zero-padded ECA is not equivariant at the two ends).
    Same kernel rule ψ(C) (γ = 2, b = 1, odd, ≥ 3), no conv bias, sigmoid.  timm's ``act_layer`` only switches
    on a conv bias and never applies an activation; it is left out.  See docs/provenance/ceca.md.

    Args:
        channels: input channels C.
        kernel_size: odd 1-D kernel size, or ``None`` for ψ(C); a kernel wider than C wraps around the ring.
        gamma, beta: the constants of ψ.

    Captured map: ``"gate"`` B×C×1×1.
    """

    size_bounds: ClassVar[dict[str, SizeBound]] = {
        "kernel_size": SizeBound(lambda c: 2 * c - 1, "wider taps never see a channel", "2·C − 1"),
    }

    circular = True

"""Channel attention: Squeeze-and-Excitation, ECA, Selective Kernel and Coordinate Attention.

All modules take and return B×C×H×W (``SelectiveKernel`` may change C and H×W through ``out_channels`` and
``stride``).  Gates return ``x * attention`` with no residual inside: the residual belongs to the host block.
Pooling is a plain ``mean`` reduction that broadcasts back, so no expanded gate is materialised.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import layers
from .layers import ActLayer, check_arg, get_act, positive_int
from .capture import record
from .registry import register

__all__ = ["SqueezeExcite", "EfficientChannelAttention", "SelectiveKernel", "CoordinateAttention", "eca_kernel_size"]


def reduced_width(channels: int, reduction: float, hidden: int | None, min_hidden: int, owner: str) -> int:
    """Hidden width of a bottleneck: ``hidden`` if given, else ``max(channels // reduction, min(min_hidden, channels))``."""
    positive_int(channels, owner, "channels")
    if hidden is not None:
        return positive_int(hidden, owner, "hidden_channels")
    check_arg(reduction > 0, owner, "reduction", "positive", reduction)
    return max(int(channels // reduction), min(min_hidden, channels), 1)


@register(
    "se",
    family="channel",
    paper="Squeeze-and-Excitation Networks (Hu, Shen, Sun; CVPR 2018)",
    url="https://arxiv.org/abs/1709.01507",
    complexity="O(N)",
    summary="Global average pool → FC → ReLU → FC → sigmoid channel gate.",
)
class SqueezeExcite(nn.Module):
    """Squeeze-and-Excitation gate (Hu et al., CVPR 2018).

    ``y = x * sigmoid(W2 relu(W1 GAP(x)))``; input and output B×C×H×W.

    As the official Caffe models, both FCs have a bias and the reduction is 16.  The hidden width is
    ``C // reduction`` but never below ``min(min_hidden, C)``: the common community code (External-Attention's
    ``SEAttention``) drops the biases and silently builds a zero-width layer (a constant 0.5 gate) when
    ``C < reduction``.  The FCs are 1×1 convolutions, so weights load into timm's ``SEModule``.

    Args:
        channels: input channels C.
        reduction: bottleneck ratio r (hidden = C // r).
        hidden_channels: explicit hidden width (overrides ``reduction``).
        min_hidden: floor of the hidden width.
        act: hidden activation.
        gate: gate activation (``"sigmoid"``; ``"hard_sigmoid"`` for MobileNetV3-style SE).
    """

    def __init__(
        self,
        channels: int,
        reduction: float = 16,
        hidden_channels: int | None = None,
        min_hidden: int = 8,
        act: ActLayer = "relu",
        gate: ActLayer = "sigmoid",
    ) -> None:
        super().__init__()
        hidden = reduced_width(channels, reduction, hidden_channels, min_hidden, "SqueezeExcite")
        self.channels = channels
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=True)
        self.act = get_act(act, "SqueezeExcite")
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=True)
        self.gate = get_act(gate, "SqueezeExcite")

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """The gate, B×C×1×1."""
        # The 1×1 convs act on one B×C vector: F.linear on their weights is the same product without the
        # convolution's per-call overhead (it dominated this gate's time on small maps).
        s = x.mean((2, 3))
        h = self.act(F.linear(s, self.fc1.weight.flatten(1), self.fc1.bias))
        return self.gate(F.linear(h, self.fc2.weight.flatten(1), self.fc2.bias))[:, :, None, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = layers.check_nchw(x, self.channels, "SqueezeExcite")
        gate = self.attention(x)
        record(self, "gate", gate)
        return x * gate


def eca_kernel_size(channels: int, gamma: float = 2.0, beta: float = 1.0) -> int:
    """ECA-Net's adaptive kernel ψ(C) = |log2(C)/γ + b/γ|_odd, at least 3 (the rounding of timm's ``EcaModule``).

    C = 64, 256, 512, 2048 → 3, 5, 5, 7.
    """
    t = int(abs(math.log2(channels) + beta) / gamma)
    return max(t if t % 2 else t + 1, 3)


@register(
    "eca",
    family="channel",
    paper="ECA-Net: Efficient Channel Attention for Deep CNNs (Wang et al.; CVPR 2020)",
    url="https://arxiv.org/abs/1910.03151",
    complexity="O(N)",
    summary="Global average pool → 1-D conv across channels (adaptive kernel) → sigmoid gate.",
)
class EfficientChannelAttention(nn.Module):
    """ECA gate (Wang et al., CVPR 2020): local cross-channel interaction without dimensionality reduction.

    ``y = x * sigmoid(Conv1d_k(GAP(x)))`` over the channel axis (zero padded); input and output B×C×H×W.

    ``kernel_size=None`` uses the adaptive ψ(C) with γ=2, b=1 (odd, ≥ 3); the conv has no bias, as the
    official ``eca_layer``.  The community ``ECAAttention`` fixes k=3, adds a bias and has no channel argument,
    so it cannot adapt the kernel.

    Args:
        channels: input channels C.
        kernel_size: odd 1-D kernel size, or ``None`` for ψ(C).
        gamma, beta: the constants of ψ.
    """

    def __init__(self, channels: int, kernel_size: int | None = None, gamma: float = 2.0, beta: float = 1.0) -> None:
        super().__init__()
        positive_int(channels, "EfficientChannelAttention", "channels")
        if kernel_size is None:
            kernel_size = eca_kernel_size(channels, gamma, beta)
        layers.odd_kernel(kernel_size, "EfficientChannelAttention")
        self.channels = channels
        self.kernel_size = kernel_size
        self.conv = nn.Conv1d(1, 1, kernel_size, padding=(kernel_size - 1) // 2, bias=False)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """The gate, B×C×1×1."""
        b, k = x.shape[0], self.kernel_size
        y = F.conv1d(x.mean((2, 3)).view(b, 1, self.channels), self.conv.weight, padding=(k - 1) // 2)
        return torch.sigmoid(y).view(b, self.channels, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = layers.check_nchw(x, self.channels, "EfficientChannelAttention")
        gate = self.attention(x)
        record(self, "gate", gate)
        return x * gate


def _conv_bn_act(cin: int, cout: int, k: int, stride: int = 1, dilation: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride=stride, padding=dilation * (k - 1) // 2, dilation=dilation, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


@register(
    "sk",
    family="channel",
    paper="Selective Kernel Networks (Li, Wang, Hu, Yang; CVPR 2019)",
    url="https://arxiv.org/abs/1903.06586",
    complexity="O(N)",
    summary="Branches with different receptive fields fused by a softmax over branches (per channel).",
)
class SelectiveKernel(nn.Module):
    """Selective Kernel convolution (Li et al., CVPR 2019); B×C×H×W → B×C_out×⌈H/s⌉×⌈W/s⌉.

    Official SKNet-50 unit: two branches, a grouped 3×3 conv and a grouped 3×3 conv with dilation 2 (the
    paper's "5×5"), each Conv(no bias)+BN+ReLU with stride applied in both; ``s = GAP(U1 + U2)``;
    ``z = ReLU(BN(W s))`` with ``d = max(C/r, L)``, r=16, L=32; one 1×1 conv d → M·C (no bias) and a softmax
    over the M branches; output ``Σ a_m ⊙ U_m``.  The module returns the attention-weighted branches, no
    residual.

    ``kernels`` are the nominal kernel sizes; with ``keep_3x3=True`` (official) a kernel k > 3 is a 3×3 conv
    with dilation (k−1)/2.  The seed's ``kernels=(1, 3, 5, 7)`` works too (set ``keep_3x3=False`` for real
    5×5/7×7 kernels).  The community ``SKAttention`` uses dense (groups=1) convs with bias, no BN+ReLU in the
    selector and stacks all branches; here groups default to 32 (falling back to the largest common divisor
    of the channel counts) and branches are never stacked.

    Args:
        channels: input channels C.
        out_channels: output channels (default C).
        kernels: nominal kernel sizes of the branches (odd), default (3, 5).
        stride: stride of every branch.
        groups: groups of the branch convs (reduced to a divisor of both channel counts).
        reduction: r in d = max(C_out / r, min_attn_channels).
        min_attn_channels: L in the same formula.
        keep_3x3: express kernels > 3 as dilated 3×3 convs (official).
    """

    def __init__(
        self,
        channels: int,
        out_channels: int | None = None,
        kernels: Sequence[int] = (3, 5),
        stride: int = 1,
        groups: int = 32,
        reduction: float = 16,
        min_attn_channels: int = 32,
        keep_3x3: bool = True,
    ) -> None:
        super().__init__()
        owner = "SelectiveKernel"
        positive_int(channels, owner, "channels")
        out_channels = channels if out_channels is None else positive_int(out_channels, owner, "out_channels")
        positive_int(stride, owner, "stride")
        positive_int(groups, owner, "groups")
        kernels = tuple(kernels)
        check_arg(len(kernels) >= 2, owner, "kernels", "at least two kernel sizes", kernels)
        for k in kernels:
            layers.odd_kernel(k, owner, "each kernel in kernels")
        groups = math.gcd(math.gcd(groups, channels), out_channels)
        self.channels, self.out_channels, self.num_paths = channels, out_channels, len(kernels)
        self.paths = nn.ModuleList()
        for k in kernels:
            ksize, dilation = (3, (k - 1) // 2) if keep_3x3 and k > 3 else (k, 1)
            self.paths.append(_conv_bn_act(channels, out_channels, ksize, stride, dilation, groups))
        attn = max(int(out_channels / reduction), min_attn_channels)
        self.fc_reduce = nn.Conv2d(out_channels, attn, 1, bias=False)
        self.bn = nn.BatchNorm2d(attn)
        self.act = nn.ReLU(inplace=True)
        self.fc_select = nn.Conv2d(attn, out_channels * self.num_paths, 1, bias=False)

    def attention(self, branches: list[torch.Tensor]) -> torch.Tensor:
        """Softmax weights over branches, B×M×C_out×1×1."""
        total = branches[0]
        for u in branches[1:]:
            total = total + u
        s = total.mean((2, 3), keepdim=True)
        z = self.act(self.bn(self.fc_reduce(s)))
        logits = self.fc_select(z).view(s.shape[0], self.num_paths, self.out_channels, 1, 1)
        return logits.softmax(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = layers.check_nchw(x, self.channels, "SelectiveKernel")
        branches = [path(x) for path in self.paths]
        a = self.attention(branches)
        record(self, "branch_weights", a)
        out = branches[0] * a[:, 0]
        for m in range(1, self.num_paths):
            out = out + branches[m] * a[:, m]
        return out


@register(
    "coord",
    family="channel",
    paper="Coordinate Attention for Efficient Mobile Network Design (Hou, Zhou, Feng; CVPR 2021)",
    url="https://arxiv.org/abs/2103.02907",
    complexity="O(N)",
    summary="Direction-aware pooling along H and W → shared 1×1 conv → two sigmoid gates a_h ⊙ a_w.",
)
class CoordinateAttention(nn.Module):
    """Coordinate Attention (Hou et al., CVPR 2021); B×C×H×W → B×C×H×W.

    ``x_h = mean over W`` (B×C×H×1), ``x_w = mean over H`` (B×C×1×W); concatenated along the spatial axis
    through a 1×1 conv C → mip (bias) + BN + h_swish, split back, ``a_h = σ(conv_h)``, ``a_w = σ(conv_w)``
    (1×1 convs with bias), ``y = x ⊙ a_h ⊙ a_w``.  ``mip = max(min_hidden, C // reduction)`` with the official
    reduction 32 and floor 8.  Same computation as the official ``coordatt.py``; the community copy also takes
    an ``oup`` argument that crashes for ``oup != inp`` — output channels always equal input channels here.

    Args:
        channels: input channels C.
        reduction: r in mip = max(min_hidden, C // r).
        min_hidden: floor of mip (8 in the official code).
    """

    def __init__(self, channels: int, reduction: float = 32, min_hidden: int = 8) -> None:
        super().__init__()
        positive_int(channels, "CoordinateAttention", "channels")
        check_arg(reduction > 0, "CoordinateAttention", "reduction", "positive", reduction)
        mip = max(min_hidden, int(channels // reduction))
        self.channels = channels
        self.conv1 = nn.Conv2d(channels, mip, 1, bias=True)
        self.bn1 = nn.BatchNorm2d(mip)
        self.act = layers.HardSwish()
        self.conv_h = nn.Conv2d(mip, channels, 1, bias=True)
        self.conv_w = nn.Conv2d(mip, channels, 1, bias=True)

    def attention(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The two gates: a_h (B×C×H×1) and a_w (B×C×1×W)."""
        h, w = x.shape[2], x.shape[3]
        x_h = x.mean(3, keepdim=True)  # B, C, H, 1
        x_w = x.mean(2, keepdim=True).transpose(2, 3)  # B, C, W, 1
        y = self.act(self.bn1(self.conv1(torch.cat([x_h, x_w], dim=2))))
        y_h, y_w = torch.split(y, [h, w], dim=2)
        return torch.sigmoid(self.conv_h(y_h)), torch.sigmoid(self.conv_w(y_w.transpose(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = layers.check_nchw(x, self.channels, "CoordinateAttention")
        a_h, a_w = self.attention(x)
        record(self, "gate_h", a_h)
        record(self, "gate_w", a_w)
        out = x * a_w
        # Without autograd the product (this module's own buffer) takes the second gate in place.
        return out.mul_(a_h) if layers.inplace_ok() else out * a_h

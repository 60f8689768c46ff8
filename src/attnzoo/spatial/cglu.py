"""TransNeXt's convolutional GLU (CGLU): a gated feed-forward whose gate sees a 3×3 neighbourhood.

Paper: TransNeXt: Robust Foveal Visual Perception for Vision Transformers (Dai Shi; CVPR 2024),
https://arxiv.org/abs/2311.17132.  Official code: DaiShiResearch/TransNeXt (MIT).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..layers import AttnModule, check_arg, check_dropout, check_nchw, positive_int
from ..registry import register

__all__ = ["ConvolutionalGLU"]


@register(
    "cglu",
    family="spatial",
    paper="TransNeXt: Robust Foveal Visual Perception for Vision Transformers (Dai Shi; CVPR 2024)",
    url="https://arxiv.org/abs/2311.17132",
    complexity="O(N)",
    summary="Convolutional GLU: 1×1 to 2h, GELU(depthwise 3×3 of one half) ⊙ the other half, 1×1 back.",
)
class ConvolutionalGLU(AttnModule):
    """TransNeXt's convolutional gated linear unit; B×C×H×W → B×C×H×W.

    ``h = int(2 · hidden_channels / 3)``; ``[a, v] = split(W₁ x)`` (1×1, C → 2h, bias);
    ``y = GELU(DW₃ₓ₃(a)) ⊙ v``; ``out = W₂ y`` (1×1, h → C), with dropout after the gate and after W₂.  The
    official module works on tokens (Linear layers around a depthwise conv on the reshaped map); here the
    Linears are 1×1 convs with the same weights (``fc1.weight`` reshaped to 2h×C×1×1).  ``residual=True`` returns
    ``x + CGLU(x)``, what the YOLO "C2f-CGLU" copies do (the paper's block adds the residual outside).

    Args:
        channels: C (in and out).
        hidden_channels: the FFN width before the 2/3 rule (default C, so h = int(2C/3)).
        dropout: dropout rate (official ``drop``).
        residual: add the input.
    """

    def __init__(
        self, channels: int, hidden_channels: int | None = None, dropout: float = 0.0, residual: bool = False
    ) -> None:
        super().__init__()
        owner = self.owner
        positive_int(channels, owner, "channels")
        hidden = channels if hidden_channels is None else positive_int(hidden_channels, owner, "hidden_channels")
        h = int(2 * hidden / 3)
        check_arg(h >= 1, owner, "hidden_channels", "at least 2 (the gate width is int(2·hidden/3))", hidden)
        check_arg(isinstance(residual, bool), owner, "residual", "a bool", residual)
        self.channels, self.hidden_channels, self.residual = channels, hidden, residual
        self.dropout = check_dropout(dropout, owner)
        self.gate_channels = h
        self.fc1 = nn.Conv2d(channels, 2 * h, 1)
        self.dwconv = nn.Conv2d(h, h, 3, padding=1, groups=h)
        self.fc2 = nn.Conv2d(h, channels, 1)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        a, v = self.fc1(x).chunk(2, 1)
        y = self.drop(self.fc2(self.drop(F.gelu(self.dwconv(a)) * v)))
        return x + y if self.residual else y

"""FreqFusion: Frequency-aware Feature Fusion for Dense Image Prediction (Chen, Fu, Gu, Yan, Harada, Huang; TPAMI
2024).  Paper: https://arxiv.org/abs/2408.12879

Written from the paper and attnzoo's reference notes; the official code (Linwei-Chen/FreqFusion) has no licence
and was not read or copied (docs/provenance/freqfusion.md).  The reassembly is attnzoo's exportable CARAFE.
"""

from __future__ import annotations

import math
from typing import ClassVar, cast

import torch
import torch.nn.functional as F
from torch import nn

from ..capture import is_capturing, record
from ..layers import (
    KERNEL_BOUND,
    AttnModule,
    SizeBound,
    check_arg,
    check_context,
    check_nchw,
    fx_leaf,
    odd_kernel,
    positive_int,
)
from ..layers.checks import width_or
from ..layers.pyramid import softmax_fp32
from ..registry import register
from ..resample.carafe import CARAFE_GROUPS_REASON, CARAFE_GROUPS_TARGETS, carafe_reassemble
from ..tracing import PortableForm, is_tracing

__all__ = ["FreqFusion", "hamming_window"]


def hamming_window(k: int) -> torch.Tensor:
    """The k×k Hamming window ``w(u)·w(v)``, ``w(n) = 0.54 − 0.46·cos(2πn/(k − 1))`` (``np.hamming``; 1 for k = 1)."""
    if k == 1:
        return torch.ones(1, 1, dtype=torch.float64)
    n = torch.arange(k, dtype=torch.float64)
    w = 0.54 - 0.46 * torch.cos(2 * math.pi * n / (k - 1))
    return w[:, None] * w[None, :]


@fx_leaf
def check_coarse_size(coarse: torch.Tensor, fine: torch.Tensor, owner: str) -> torch.Tensor:
    """The coarse map must be at ⌈H/2⌉×⌈W/2⌉ of the fine one (what a stride-2 level with padding gives)."""
    if is_tracing():
        return coarse
    h, w = fine.shape[-2], fine.shape[-1]
    want = ((h + 1) // 2, (w + 1) // 2)
    if (coarse.shape[-2], coarse.shape[-1]) != want:
        raise ValueError(
            f"{owner}: expected the coarse map at half the fine map's size {want} (fine {h}×{w}), got "
            f"{tuple(coarse.shape[-2:])}"
        )
    return coarse


@fx_leaf
def upsample_kernels(kernels: torch.Tensor, lr: torch.Tensor) -> torch.Tensor:
    """Kernels of the ×2 upsampling, given per fine pixel (B×(G·k²)×H×W), in the layout of
    :func:`carafe_reassemble` at the coarse map's size: zero-padded to 2h×2w (rows and columns the crop drops)
    and pixel-unshuffled, so channel (group, tap)·4 + sub-pixel."""
    h, w = lr.shape[-2], lr.shape[-1]
    kh, kw = kernels.shape[-2], kernels.shape[-1]
    if (kh, kw) != (2 * h, 2 * w):
        kernels = F.pad(kernels, (0, 2 * w - kw, 0, 2 * h - kh))
    return F.pixel_unshuffle(kernels, 2)


@fx_leaf
def crop_to(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """``x`` cropped at the bottom / right to ``ref``'s spatial size."""
    h, w = ref.shape[-2], ref.shape[-1]
    if (x.shape[-2], x.shape[-1]) == (h, w):
        return x
    return x[..., :h, :w]


@register(
    "freqfusion",
    family="fusion",
    paper="Frequency-aware Feature Fusion for Dense Image Prediction (Chen et al.; TPAMI 2024)",
    url="https://arxiv.org/abs/2408.12879",
    layout="pair",
    complexity="O(N)",
    summary="FreqFusion: an adaptive low-pass (Hamming-weighted, softmax-normalised CARAFE kernels) ×2 upsampling "
    "of the coarse map plus the fine map sharpened by an adaptive high-pass, both predicted from the fused "
    "compressed features; zero padding, exportable.",
    test_kwargs={"compressed_channels": 8},
    maps=("kernels",),
    forms=(
        PortableForm(
            targets=CARAFE_GROUPS_TARGETS,
            marker="aten::chunk",
            reason=CARAFE_GROUPS_REASON + " (its two CARAFE reassemblies)",
            cases=({"groups": 2}, {"groups": 2, "k_lp": 3, "hamming": False}),
        ),
    ),
)
class FreqFusion(AttnModule):
    """FreqFusion; ``forward(fine, coarse)`` → B×C×H×W (the fine map's shape).

    Both maps are compressed by 1×1 convs to ``compressed_channels``; their initial fusion
    ``z = comp(fine) + up₂(comp(coarse))`` (nearest, cropped to H×W) feeds two content encoders (``k_enc`` convs).
    Adaptive low-pass filter: per fine pixel a k_lp×k_lp kernel ``softmax(logits + log w)`` (w the Hamming
    window: the softmax weights times w, renormalised), which upsamples the coarse map ×2 by CARAFE reassembly
    (zero padding; the upsampled map cropped to H×W at odd sizes).  Adaptive high-pass filter: a softmax
    k_hp×k_hp kernel L per fine pixel, ``fine′ = fine + (fine − L ∗ fine)``.  Returns ``fine′ + up(coarse)``
    (the official block returns the pair and its callers add them).

    With the content encoders zeroed the low-pass kernel is the normalised Hamming window: the coarse branch
    is a fixed zero-padded Hamming blur, nearest-upsampled (the reference's property, tested).  Init as
    CARAFE: Xavier-uniform compressors, N(0, 0.001) encoders, zero biases.  The optional offset resampler of
    the paper (off by default upstream) is not included.

    Args:
        channels: C of the fine map (and of the output).
        context_channels: channels of the coarse map (default C; must equal C, since the two maps are added).
        compressed_channels: width of the compressed features (64).
        k_lp: low-pass kernel size (odd; 5).
        k_hp: high-pass kernel size (odd; 3).
        k_enc: content-encoder kernel size (odd; 3).
        groups: kernel groups (channels share a kernel within a group; 1).
        hamming: weight the low-pass kernels by the Hamming window (True).

    Captured map: ``"kernels"`` B×(groups·k_lp²)×H×W (the low-pass weights of every fine pixel).
    """

    size_bounds: ClassVar[dict[str, SizeBound]] = {
        "k_lp": SizeBound(KERNEL_BOUND, "kernel side"),
        "k_hp": SizeBound(KERNEL_BOUND, "kernel side"),
        "k_enc": SizeBound(KERNEL_BOUND, "kernel side"),
    }

    def __init__(
        self,
        channels: int,
        context_channels: int | None = None,
        compressed_channels: int = 64,
        k_lp: int = 5,
        k_hp: int = 3,
        k_enc: int = 3,
        groups: int = 1,
        hamming: bool = True,
    ) -> None:
        super().__init__()
        owner = self.owner
        self.channels = positive_int(channels, owner, "channels")
        self.context_channels = width_or(context_channels, channels, owner, "context_channels")
        check_arg(
            self.context_channels == channels,
            owner,
            "context_channels",
            f"channels={channels} (the output adds the upsampled coarse map to the fine one)",
            context_channels,
        )
        self.compressed_channels = positive_int(compressed_channels, owner, "compressed_channels")
        self.k_lp = odd_kernel(k_lp, owner, "k_lp")
        self.k_hp = odd_kernel(k_hp, owner, "k_hp")
        self.k_enc = odd_kernel(k_enc, owner, "k_enc")
        self.groups = positive_int(groups, owner, "groups")
        check_arg(channels % groups == 0, owner, "groups", f"a divisor of channels={channels}", groups)
        check_arg(isinstance(hamming, bool), owner, "hamming", "a bool", hamming)
        self.hamming = hamming
        cc, g = compressed_channels, groups
        self.fine_compressor = nn.Conv2d(channels, cc, 1)
        self.coarse_compressor = nn.Conv2d(self.context_channels, cc, 1)
        self.lowpass_encoder = nn.Conv2d(cc, g * k_lp * k_lp, k_enc, padding=k_enc // 2)
        self.highpass_encoder = nn.Conv2d(cc, g * k_hp * k_hp, k_enc, padding=k_enc // 2)
        for conv in (self.fine_compressor, self.coarse_compressor):
            nn.init.xavier_uniform_(conv.weight)
        for conv in (self.lowpass_encoder, self.highpass_encoder):
            nn.init.normal_(conv.weight, 0.0, 0.001)
        for conv in (self.fine_compressor, self.coarse_compressor, self.lowpass_encoder, self.highpass_encoder):
            nn.init.zeros_(cast(torch.Tensor, conv.bias))
        # log of the Hamming window, added to the logits: softmax(l + log w) = softmax(l)·w / Σ softmax(l)·w
        log_w = hamming_window(k_lp).log() if hamming else torch.zeros(k_lp, k_lp, dtype=torch.float64)
        self.register_buffer("log_window", log_w.reshape(1, 1, k_lp * k_lp, 1, 1).float(), persistent=False)

    def _kernels(self, logits: torch.Tensor, k: int, bias: torch.Tensor | None) -> torch.Tensor:
        """Softmax over the k² taps of each group (plus ``bias``, the log window), B×(G·k²)×H×W."""
        b, _, h, w = logits.shape
        t = logits.reshape(b, self.groups, k * k, h, w)
        if bias is not None:
            t = t + bias.to(t.dtype)
        return softmax_fp32(t, 2).to(logits.dtype).reshape(b, self.groups * k * k, h, w)

    def forward(self, fine: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        fine = check_nchw(fine, self.channels, self.owner)
        coarse = check_context(coarse, fine, self.context_channels, self.owner)
        coarse = check_coarse_size(coarse, fine, self.owner)
        comp_c = self.coarse_compressor(coarse)
        z = self.fine_compressor(fine) + crop_to(F.interpolate(comp_c, scale_factor=2.0, mode="nearest"), fine)
        lowpass = self._kernels(
            self.lowpass_encoder(z), self.k_lp, cast(torch.Tensor, self.log_window)
        )  # B×(G·k_lp²)×H×W
        highpass = self._kernels(self.highpass_encoder(z), self.k_hp, None)
        if is_capturing(self):
            record(self, "kernels", lowpass)
        smooth = carafe_reassemble(fine, highpass, self.k_hp, 1, self.groups)
        up = carafe_reassemble(coarse, upsample_kernels(lowpass, coarse), self.k_lp, 2, self.groups)
        return 2 * fine - smooth + crop_to(up, fine)

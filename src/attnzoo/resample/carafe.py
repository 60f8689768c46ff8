"""CARAFE: Content-Aware ReAssembly of FEatures (Wang, Chen, Xu, Liu, Loy, Lin; ICCV 2019).
Paper: https://arxiv.org/abs/1905.02188"""

from __future__ import annotations

from typing import ClassVar, cast

import torch
import torch.nn.functional as F
from torch import nn

from .. import tracing
from ..capture import is_capturing, record
from ..layers import (
    KERNEL_BOUND,
    AttnModule,
    SizeBound,
    check_arg,
    check_nchw,
    fx_leaf,
    inplace_ok,
    odd_kernel,
    positive_int,
    softmax_fp32,
)
from ..registry import ShapeRule, register, upsampled
from ..tracing import PortableForm

__all__ = ["CARAFE", "carafe_reassemble", "carafe_groups_portable"]


@fx_leaf
def carafe_reassemble(x: torch.Tensor, kernels: torch.Tensor, k_up: int, scale: int, groups: int = 1) -> torch.Tensor:
    """CARAFE's reassembly: ``y[c, s·i + a, s·j + b] = Σ_{u,v} K[g(c), u·k + v, a·s + b, i, j] · x[c, i + u − k//2, j + v − k//2]``
    (x zero outside), i.e. mmcv's ``carafe`` op.

    ``x``: B×C×H×W; ``kernels``: B×(G·k²·s²)×H×W ordered (group, kernel tap, sub-pixel a·s + b) — the
    content encoder's output before ``pixel_shuffle``, normalised over the k² taps.  Computed at the input
    resolution, never with a k²-times larger buffer at the output resolution: for inference, k² shifted-view
    multiply-adds into a B×C×s²×H×W accumulator (the output itself), then one ``pixel_shuffle``; under eager
    autograd, a batched matmul (C×k²)·(k²×s²) per input pixel over an input-resolution unfold (k²·C·H·W
    elements = k²/s² × the output), whose backward is one fold.
    """
    b, c, h, w = x.shape
    s2, kk, r = scale * scale, k_up * k_up, k_up // 2
    if torch.is_grad_enabled() and (x.requires_grad or kernels.requires_grad) and tracing.eager_only(x):
        cols = F.unfold(x, k_up, padding=r).view(b * groups, c // groups, kk, h * w).permute(0, 3, 1, 2)
        kern = kernels.reshape(b * groups, kk, s2, h * w).permute(0, 3, 1, 2)
        out = torch.matmul(cols, kern).permute(0, 2, 3, 1)  # (B·G)×(C/G)×s²×HW
        return F.pixel_shuffle(out.reshape(b, c * s2, h, w), scale)
    if groups > 1 and tracing.portable(*CARAFE_GROUPS_TARGETS):
        return carafe_groups_portable(x, kernels, k_up, scale, groups)
    xp = F.pad(x, (r, r, r, r))
    kern = kernels.reshape(b * groups, kk, s2, h, w)
    xg = xp.reshape(b * groups, c // groups, 1, h + 2 * r, w + 2 * r)
    out = xg[..., 0:h, 0:w] * kern[:, 0:1]
    inplace = inplace_ok()
    for t in range(1, kk):
        u, v = divmod(t, k_up)
        if inplace:
            out.addcmul_(xg[..., u : u + h, v : v + w], kern[:, t : t + 1])
        else:
            out = out + xg[..., u : u + h, v : v + w] * kern[:, t : t + 1]
    return F.pixel_shuffle(out.reshape(b, c * s2, h, w), scale)


#: The export targets of :func:`carafe_groups_portable` (carafe and freqfusion with groups > 1).
CARAFE_GROUPS_TARGETS = ("ncnn",)
CARAFE_GROUPS_REASON = (
    "with groups > 1 the reassembly folds the kernel groups into the batch (B·G) of 5-axis products; ncnn has no "
    "batch axis (pnnx: 'binaryop tensor0 with rank 5 is not supported'), so each group is reassembled on its own "
    "channel slice"
)


def carafe_groups_portable(x: torch.Tensor, kernels: torch.Tensor, k_up: int, scale: int, groups: int) -> torch.Tensor:
    """:func:`carafe_reassemble` with ``groups`` > 1, one group at a time (no B·G batch): the groups' channel
    slices of ``x`` with their kernels, concatenated along the channels before the ``pixel_shuffle``."""
    b, c, h, w = x.shape
    s2, kk, r = scale * scale, k_up * k_up, k_up // 2
    xp = F.pad(x, (r, r, r, r))
    outs = []
    for xg, kg in zip(xp.chunk(groups, 1), kernels.chunk(groups, 1)):
        xg = xg.unsqueeze(2)  # B×(C/G)×1×H'×W'
        kern = kg.reshape(b, kk, s2, h, w)
        out = xg[..., 0:h, 0:w] * kern[:, 0:1]
        for t in range(1, kk):
            u, v = divmod(t, k_up)
            out = out + xg[..., u : u + h, v : v + w] * kern[:, t : t + 1]
        outs.append(out)
    return F.pixel_shuffle(torch.cat(outs, 1).reshape(b, c * s2, h, w), scale)


@register(
    "carafe",
    family="resample",
    paper="CARAFE: Content-Aware ReAssembly of FEatures (Wang, Chen, Xu, Liu, Loy, Lin; ICCV 2019)",
    url="https://arxiv.org/abs/1905.02188",
    complexity="O(N)",
    summary="Content-aware upsampler: predicts a softmax-normalised k_up×k_up kernel per output pixel and "
    "reassembles the input neighbourhood with it (pure PyTorch, exportable).",
    shape=ShapeRule(size=upsampled("scale"), text="upsamples H×W by `scale`"),
    test_kwargs={"compressed_channels": 8, "k_up": 3},
    maps=("kernels",),
    forms=(
        PortableForm(
            targets=CARAFE_GROUPS_TARGETS,
            marker="aten::chunk",
            reason=CARAFE_GROUPS_REASON,
            cases=({"groups": 2}, {"groups": 2, "k_up": 5, "scale": 3}),
        ),
    ),
)
class CARAFE(AttnModule):
    """CARAFE upsampler (mmcv's ``CARAFEPack``) in pure PyTorch; B×C×H×W → B×C×sH×sW.

    ``K = softmax_{k_up²}(pixel_shuffle(Conv_{k_enc}(Conv1×1(x))))`` (channel compressor to
    ``compressed_channels``, content encoder to ``groups·k_up²·s²`` channels), then each output pixel
    ``(s·i + a, s·j + b)`` is ``Σ K · x`` over the k_up×k_up neighbourhood of input pixel ``(i, j)``
    (zero-padded).  Init as mmcv: Xavier-uniform compressor, N(0, 0.001) encoder, zero biases.  With the encoder
    zeroed the kernels are uniform: the output is the zero-padded k_up×k_up box average, nearest-upsampled.

    Differences: runs on CPU and exports to ONNX (mmcv's op is CUDA-only); aggregates at the input resolution
    with shifted views.  See docs/provenance/carafe.md.

    Args:
        channels: input channels C.
        scale: upsampling factor s.
        k_up: reassembly kernel size (odd; 5).
        k_enc: content-encoder kernel size (odd; 3).
        compressed_channels: width of the channel compressor (64).
        groups: kernel groups (``up_group``; channels share a kernel within a group; 1).

    Captured map: ``"kernels"`` B×(groups·k_up²)×sH×sW (softmax weights of every output pixel).
    """

    size_bounds: ClassVar[dict[str, SizeBound]] = {
        "scale": SizeBound(16, "upsampling factor: s²·k_up² kernel channels"),
        "k_up": SizeBound(KERNEL_BOUND, "reassembly kernel side"),
        "k_enc": SizeBound(KERNEL_BOUND, "encoder kernel side"),
    }

    def __init__(
        self,
        channels: int,
        scale: int = 2,
        k_up: int = 5,
        k_enc: int = 3,
        compressed_channels: int = 64,
        groups: int = 1,
    ) -> None:
        super().__init__()
        self.channels = positive_int(channels, self.owner, "channels")
        self.scale = positive_int(scale, self.owner, "scale")
        check_arg(scale <= 16, self.owner, "scale", "an integer in 1..16", scale)
        self.k_up = odd_kernel(k_up, self.owner, "k_up")
        self.k_enc = odd_kernel(k_enc, self.owner, "k_enc")
        self.compressed_channels = positive_int(compressed_channels, self.owner, "compressed_channels")
        self.groups = positive_int(groups, self.owner, "groups")
        check_arg(channels % groups == 0, self.owner, "groups", f"a divisor of channels={channels}", groups)
        self.channel_compressor = nn.Conv2d(channels, compressed_channels, 1)
        self.content_encoder = nn.Conv2d(
            compressed_channels, groups * k_up * k_up * scale * scale, k_enc, padding=(k_enc - 1) // 2
        )
        nn.init.xavier_uniform_(self.channel_compressor.weight)
        nn.init.zeros_(cast(torch.Tensor, self.channel_compressor.bias))
        nn.init.normal_(self.content_encoder.weight, 0.0, 0.001)
        nn.init.zeros_(cast(torch.Tensor, self.content_encoder.bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        b, _, h, w = x.shape
        g, kk, s2 = self.groups, self.k_up * self.k_up, self.scale * self.scale
        logits = self.content_encoder(self.channel_compressor(x))  # B×(G·k²·s²)×H×W
        kernels = softmax_fp32(logits.reshape(b * g, kk, s2 * h, w), 1).to(x.dtype).reshape(b, g * kk * s2, h, w)
        if is_capturing(self):
            record(self, "kernels", F.pixel_shuffle(kernels, self.scale))
        return carafe_reassemble(x, kernels, self.k_up, self.scale, g)

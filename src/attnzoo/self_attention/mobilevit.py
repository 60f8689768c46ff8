"""MobileViT v1 block: local convolutions, a transformer across 2×2 patches, fusion with the input.

Paper: MobileViT: Light-weight, General-purpose, and Mobile-friendly Vision Transformer (Mehta, Rastegari;
ICLR 2022), https://arxiv.org/abs/2110.02178.  Official code: apple/ml-cvnets (Apple sample-code licence): written
from the paper and the reference notes, not copied (docs/provenance/mobilevit.md).
"""

from __future__ import annotations

from typing import Callable, ClassVar, NamedTuple

import torch
import torch.nn as nn

from ..functional.gating import BATCH_AXIS
from ..functional.patches import fit_to_patches, from_patches, resize_back, to_patches
from ..layers import (
    DEPTH_BOUND,
    KERNEL_BOUND,
    RATIO_BOUND,
    AttnModule,
    ConvBN,
    SizeBound,
    attention,
    check_arg,
    check_dropout,
    check_heads,
    check_nchw,
    odd_kernel,
    positive_int,
    positive_number,
)
from ..layers.checks import output_width
from ..registry import OUT_CHANNELS, register
from ..tracing import PortableForm, portable

__all__ = ["PatchAttention", "MobileViTBlock"]


#: The portable form of :class:`PatchAttention` (declared by the blocks that use it).
HEADS_FORM = PortableForm(
    targets=("ncnn",),
    marker="aten::split_with_sizes",
    reason="the eager head layout reshapes the batch axis into B·P rows; " + BATCH_AXIS,
)


class PatchArgs(NamedTuple):
    num_layers: int
    mlp_ratio: float
    patch_size: int
    kernel_size: int
    attn_drop: float
    dropout: float


def patch_transformer_args(
    width: int,
    num_layers: object,
    mlp_ratio: object,
    patch_size: object,
    kernel_size: object,
    attn_drop: object,
    dropout: object,
    owner: str,
) -> PatchArgs:
    """The checked arguments of a MobileViT block (v1 and v2) whose transformer is ``width`` wide."""
    ratio = positive_number(mlp_ratio, owner, "mlp_ratio")
    check_arg(int(width * ratio) >= 1, owner, "mlp_ratio", "a ratio giving an MLP width ≥ 1", mlp_ratio)
    return PatchArgs(
        positive_int(num_layers, owner, "num_layers"),
        ratio,
        positive_int(patch_size, owner, "patch_size"),
        odd_kernel(kernel_size, owner),
        check_dropout(attn_drop, owner, "attn_drop"),
        check_dropout(dropout, owner),
    )


class PatchAttention(AttnModule):
    """Multi-head self-attention across the patches, separately for each in-patch position.

    x: B×P×N×d (P in-patch positions, N patches) → B×P×N×d.  One fused SDPA call on strided views of the qkv
    projection with B·P batch rows (as timm); for ncnn the heads of all P positions are one axis instead
    (:data:`HEADS_FORM`), and the tokens come as B×(P·N)×d (``patches`` = P): ncnn runs a Linear on a 4-axis
    tensor through a slow shape-referencing reshape.  Captured map ``"attn"`` (B·P)×heads×N×N (B×(P·heads)×N×N in
    the ncnn form).
    """

    maps = ("attn",)

    def __init__(self, dim: int, heads: int, attn_drop: float, proj_drop: float, patches: int = 1) -> None:
        super().__init__()
        self.dim, self.heads, self.patches = dim, heads, patches
        self.qkv = nn.Linear(dim, 3 * dim)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d, h = self.dim, self.heads  # Python ints: the head width stays static under tracing
        drop = self.attn_drop if self.training else 0.0
        qkv = self.qkv(x)  # B×P×N×3d, or B×(P·N)×3d in the ncnn form
        # The rank is read only in the portable form (traced with real tensors; FX never takes this branch).
        if portable(*HEADS_FORM.targets) and x.dim() == 3:  # MobileViTBlock's B×(P·N)×d: Linear on 3 axes
            b, p = x.shape[0], self.patches
            out = self.attend_portable(qkv, b, p, x.shape[1] // p, drop).reshape(b, x.shape[1], d)
            return self.proj_drop(self.proj(out))
        b, p, n = x.shape[0], x.shape[1], x.shape[2]
        if portable(*HEADS_FORM.targets):
            out = self.attend_portable(qkv, b, p, n, drop)
        else:  # strided views of qkv with B·P batch rows: SDPA saves no copies of q, k, v for backward
            q, k, v = qkv.reshape(b * p, n, 3, h, d // h).permute(2, 0, 3, 1, 4).unbind(0)
            out = attention(q, k, v, dropout_p=drop, module=self).transpose(1, 2).reshape(b, p, n, d)
        return self.proj_drop(self.proj(out))

    def attend_portable(self, qkv: torch.Tensor, b: int, p: int, n: int, drop: float) -> torch.Tensor:
        """The ncnn form: the heads of all P positions as one axis (B×(P·heads)×N×d_h copies), the batch axis
        kept first and at most 5 axes."""
        d, h = self.dim, self.heads

        def heads(t: torch.Tensor) -> torch.Tensor:  # B×P×N×d → B×(P·h)×N×d_h
            return t.reshape(b, p, n, h, d // h).transpose(2, 3).reshape(b, p * h, n, d // h)

        q, k, v = qkv.split((d, d, d), dim=-1)
        out = attention(heads(q), heads(k), heads(v), dropout_p=drop, module=self)
        return out.reshape(b, p, h, n, d // h).transpose(2, 3).reshape(b, p, n, d)


class PatchMlp(nn.Module):
    """``fc2(SiLU(fc1(x)))`` with dropout after each; ``fc1`` and ``fc2`` are ``linear`` layers (``nn.Linear`` on
    B×P×N×d tokens in v1, a 1×1 conv on B×d×P×N maps in v2)."""

    def __init__(self, dim: int, hidden: int, dropout: float, linear: Callable[[int, int], nn.Module] = nn.Linear):
        super().__init__()
        self.fc1 = linear(dim, hidden)
        self.act = nn.SiLU()
        self.drop = nn.Dropout(dropout)
        self.fc2 = linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class PreNormLayer(nn.Module):
    """The pre-norm residual layer of both MobileViT blocks: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``;
    subclasses build ``norm1``, ``attn``, ``norm2`` and ``mlp``."""

    norm1: nn.Module
    attn: nn.Module
    norm2: nn.Module
    mlp: nn.Module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class _TransformerLayer(PreNormLayer):
    """Pre-norm ViT layer on B×P×N×d (or B×(P·N)×d, the ncnn form; ``patches`` = P): ``x + attn(LN(x))``, then
    ``x + MLP(LN(x))`` (SiLU)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, attn_drop: float, dropout: float, patches: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = PatchAttention(dim, heads, attn_drop, dropout, patches)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = PatchMlp(dim, int(dim * mlp_ratio), dropout)


@register(
    "mobilevit",
    family="self_attention",
    paper="MobileViT: Light-weight, General-purpose, and Mobile-friendly Vision Transformer (Mehta, Rastegari; ICLR 2022)",
    url="https://arxiv.org/abs/2110.02178",
    complexity="O(N²/P)",
    summary="MobileViT v1 block: 3×3 and 1×1 convs, a transformer across 2×2 patches per in-patch position, 1×1 back, 3×3 fusion with the input.",
    test_kwargs={"heads": 2},
    shape=OUT_CHANNELS,
    maps=(),
    forms=(HEADS_FORM,),
)
class MobileViTBlock(AttnModule):
    """The MobileViT v1 block; B×C×H×W → B×out_channels×H×W.

    ``y = Conv1×1(ConvBN SiLU 3×3(x))`` (C → d); unfold into p×p patches; for each of the P = p² in-patch
    positions, ``num_layers`` pre-norm transformer layers (``heads``, MLP ×``mlp_ratio`` with SiLU, LayerNorm)
    attend across the N/P patches (cost O(N²/P)); LayerNorm; fold; ``ConvBN SiLU 1×1`` (d → out_channels);
    fusion ``ConvBN SiLU 3×3(cat(x, ·))`` → out_channels.

    Any H×W: y is resized (bilinear, ``align_corners=False``) up to the next multiples of p before the unfold and
    back to H×W after the fold, as the official code and timm do (no padding, so no masking).  The state-dict keys
    are timm's ``MobileVitBlock`` keys.

    Args:
        channels: input channels C.
        out_channels: output channels (default C).
        hidden_channels: transformer width d (default C, timm's class default; the networks use 1.5–2·C).
        heads: attention heads (must divide d).
        num_layers: transformer layers L.
        mlp_ratio: MLP hidden width as a ratio of d.
        patch_size: patch side p.
        kernel_size: the local conv and the fusion conv (odd).
        attn_drop: dropout on the attention probabilities.
        dropout: dropout after the attention projection and in the MLP.

    Captured map: ``"attn"`` (B·P)×heads×(N/P)×(N/P) per layer, under ``"transformer.{i}.attn"``.
    """

    size_bounds: ClassVar[dict[str, SizeBound]] = {
        "num_layers": SizeBound(DEPTH_BOUND, "layers"),
        "mlp_ratio": SizeBound(RATIO_BOUND, "MLP ratio"),
        "patch_size": SizeBound(KERNEL_BOUND, "patch side"),
        "kernel_size": SizeBound(KERNEL_BOUND, "kernel side"),
    }

    def __init__(
        self,
        channels: int,
        out_channels: int | None = None,
        hidden_channels: int | None = None,
        heads: int = 4,
        num_layers: int = 2,
        mlp_ratio: float = 2.0,
        patch_size: int = 2,
        kernel_size: int = 3,
        attn_drop: float = 0.0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        owner = self.owner
        self.channels = positive_int(channels, owner, "channels")
        self.out_channels = output_width(channels, out_channels, owner)
        self.hidden_channels = d = positive_int(
            channels if hidden_channels is None else hidden_channels, owner, "hidden_channels"
        )
        self.heads = check_heads(heads, d, owner, "hidden_channels")
        args = patch_transformer_args(d, num_layers, mlp_ratio, patch_size, kernel_size, attn_drop, dropout, owner)
        self.num_layers, self.mlp_ratio, self.patch_size, self.kernel_size, attn_drop, dropout = args
        self.conv_kxk = ConvBN(channels, channels, kernel_size)
        self.conv_1x1 = nn.Conv2d(channels, d, 1, bias=False)
        self.transformer = nn.Sequential(
            *(
                _TransformerLayer(d, self.heads, mlp_ratio, attn_drop, dropout, self.patch_size**2)
                for _ in range(num_layers)
            )
        )
        self.norm = nn.LayerNorm(d)
        self.conv_proj = ConvBN(d, self.out_channels)
        self.conv_fusion = ConvBN(channels + self.out_channels, self.out_channels, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        p = self.patch_size
        y = self.conv_1x1(self.conv_kxk(x))
        z = fit_to_patches(y, p, False)
        h, w = z.shape[-2], z.shape[-1]
        t = to_patches(z, p)  # B×d×P×N
        if portable(*HEADS_FORM.targets):  # tokens on 3 axes, B×(P·N)×d: ncnn's Linear on 4 axes is ~20× slower
            b, d, pp, n = t.shape
            t = self.norm(self.transformer(t.reshape(b, d, pp * n).transpose(1, 2)))
            t = t.transpose(1, 2).reshape(b, d, pp, n)
        else:
            t = self.norm(self.transformer(t.permute(0, 2, 3, 1))).permute(0, 3, 1, 2)  # B×P×N×d → B×d×P×N
        y = resize_back(from_patches(t, p, h, w), y, False)
        return self.conv_fusion(torch.cat((x, self.conv_proj(y)), 1))

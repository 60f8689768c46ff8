"""Beyond Self-attention: External Attention using Two Linear Layers for Visual Tasks (Guo, Liu, Mu, Hu; TPAMI 2022).

Paper: https://arxiv.org/abs/2105.02358 — official code: https://github.com/MenghaoGuo/EANet (``attention.py``,
``External_attention``).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from ..capture import capture_target, record
from ..layers import (
    AttnModule,
    SizeBound,
    check_arg,
    check_nchw,
    fx_leaf,
    inplace_ok,
    positive_int,
)
from ..layers.batchnorm import PooledBatchNorm2d
from ..registry import register

__all__ = ["ExternalAttention"]


@register(
    "external_attention",
    family="self_attention",
    paper="Beyond Self-attention: External Attention using Two Linear Layers for Visual Tasks (Guo et al.; TPAMI 2022)",
    url="https://arxiv.org/abs/2105.02358",
    complexity="O(N)",
    summary="Attention to S learnable external memory units with double normalisation; official block with 1×1 convs, BN, residual, ReLU.",
    test_kwargs={"memory": 8},
    maps=("attn",),
)
class ExternalAttention(AttnModule):
    """External attention block (EANet, the official segmentation block); B×C×H×W → B×C×H×W.

    ``u = conv1×1(x)`` (with bias); ``A = M_k u`` (S×N logits against ``memory`` = S external key units, a linear
    layer without bias); double normalisation ``A ← softmax over the N positions``, then
    ``A ← A / (1e-9 + Σ_S A)`` (ℓ1 over the memory units); ``F = M_v A`` (C×N, linear without bias);
    ``y = ReLU(x + BN(conv1×1(F)))`` (conv without bias).  Cost linear in N.  ``M_v`` starts as the transpose
    of ``M_k`` (the official initialisation) and is trained independently.

    Args:
        channels: C.
        memory: S, the number of external memory units (official 64).

    Captured map: ``"attn"`` B×S×H×W (after the double normalisation).  Differences from community copies:
    see docs/provenance/external_attention.md.
    """

    size_bounds: ClassVar[dict[str, SizeBound]] = {
        "memory": SizeBound(1 << 16, "memory units"),
    }

    def __init__(self, channels: int, memory: int = 64) -> None:
        super().__init__()
        owner = self.owner
        positive_int(channels, owner, "channels")
        positive_int(memory, owner, "memory")
        check_arg(memory <= 1 << 16, owner, "memory", "at most 65536", memory)
        self.channels, self.memory = channels, memory
        self.conv_in = nn.Conv2d(channels, channels, 1)
        self.mk = nn.Conv1d(channels, memory, 1, bias=False)
        self.mv = nn.Conv1d(memory, channels, 1, bias=False)
        with torch.no_grad():
            self.mv.weight.copy_(self.mk.weight.transpose(0, 1))
        self.conv_out = nn.Conv2d(channels, channels, 1, bias=False)
        self.norm = PooledBatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        y = self.norm(self.conv_out(_external_attention(x, self.conv_in, self.mk, self.mv, capture_target(self))))
        if inplace_ok():  # inference: reuse the block's own buffer for the residual and the ReLU
            return y.add_(x).relu_()
        return torch.relu(x + y)

    def extra_repr(self) -> str:
        return f"{self.channels}, memory={self.memory}"


@fx_leaf
def _external_attention(
    x: torch.Tensor, conv_in: nn.Module, mk: nn.Module, mv: nn.Module, owner: nn.Module | None
) -> torch.Tensor:
    """conv_in → M_k → softmax over positions → ℓ1 over memory units → M_v, back to B×C×H×W."""
    size = (x.shape[2], x.shape[3])
    logits = mk(conv_in(x).flatten(2))  # B×S×N
    dtype = logits.dtype
    attn = logits.to(torch.promote_types(dtype, torch.float32)).softmax(-1)  # over the positions
    del logits  # the B×S×N temporaries go as soon as they are used (the peak of an inference call)
    units = 1e-9 + attn.sum(1, keepdim=True)
    attn = (attn.div_(units) if inplace_ok() else attn / units).to(dtype)  # ℓ1 over the memory units
    record(owner, "attn", attn.unflatten(2, size))
    return mv(attn).unflatten(2, size)

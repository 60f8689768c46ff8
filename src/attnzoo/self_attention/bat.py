"""Non-Local Neural Networks With Grouped Bilinear Attentional Transforms (Chi, Yuan, Jiang, Wang, Luo, Wang;
CVPR 2020): the BAT non-local block as timm's ``BatNonLocalAttn``.

Paper: https://openaccess.thecvf.com/content_CVPR_2020/html/Chi_Non-Local_Neural_Networks_With_Grouped_Bilinear_Attentional_Transforms_CVPR_2020_paper.html
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..functional.pooling import pool_bins
from ..layers import (
    AttnModule,
    ConvNormAct,
    SizeBound,
    check_arg,
    check_dropout,
    check_nchw,
    fx_leaf,
    inplace_ok,
    positive_int,
    positive_number,
)
from ..layers.pooling import pad_to_multiple
from ..registry import register
from ..tracing import PortableForm, portable, traced_size

__all__ = ["BATNonLocal"]


#: ONNX: PyTorch's adaptive max pooling to k row (column) blocks as static slices, at every size.
_BLOCK_POOL_FORM = PortableForm(
    targets=("onnx",),
    marker="aten::narrow",
    reason="adaptive max pooling to k blocks that need not divide the map (or exceed it): the TorchScript ONNX "
    "exporter refuses it and the dynamo exporter has no adaptive max pooling; the same bins as static slices",
)


def block_max_portable(x: torch.Tensor, k: int, dim: int) -> torch.Tensor:
    """``F.adaptive_max_pool2d`` to k bins along ``dim`` (-2 or -1) and 1 along the other axis, as static slices
    (PyTorch's bins, :func:`~attnzoo.functional.pooling.pool_bins`)."""
    x = x.amax(-1 if dim == -2 else -2, keepdim=True)
    n = int(traced_size(x)[0 if dim == -2 else 1])
    return torch.cat([x.narrow(dim, s, e - s).amax(dim, keepdim=True) for s, e in pool_bins(n, k)], dim)


def block_max(x: torch.Tensor, k: int, dim: int) -> torch.Tensor:
    """Max pooling of B×C×H×W to k×1 (``dim=-2``) or 1×k (``dim=-1``) with PyTorch's adaptive bins."""
    if portable(*_BLOCK_POOL_FORM.targets):
        return block_max_portable(x, k, dim)
    return F.adaptive_max_pool2d(x, (k, 1) if dim == -2 else (1, k))


def conv_bn_relu(m: ConvNormAct, x: torch.Tensor) -> torch.Tensor:
    """``m(x)`` for a conv → BN → ReLU ``ConvNormAct``; without autograd the ReLU runs in place on the BN output
    (this module's own intermediate: one full-size buffer less, as timm's fused BN + act)."""
    y = m[1](m[0](x))  # conv, norm
    return y.relu_() if inplace_ok() else m[2](y)


def _make_divisible(v: float, divisor: int = 8) -> int:
    """timm's ``make_divisible``: the nearest multiple of ``divisor`` (at least ``divisor``), never below 0.9·v."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


def _per_channel(m: torch.Tensor, channels: int, g: int) -> torch.Tensor:
    """B×g×k×k matrices (one per group) → B×C×k×k (each group's matrix for its C/g channels), 4-D ops only."""
    if g == 1:
        return m.expand(-1, channels, -1, -1)
    return torch.cat([m[:, i : i + 1].expand(-1, channels // g, -1, -1) for i in range(g)], dim=1)


@fx_leaf
def bilinear_transform(x: torch.Tensor, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``(P ⊗ I_t) x (Q ⊗ I_s)`` per channel for x: B×C×H×W and P, Q: B×C×k×k, without the H×H and W×W matrices.

    H and W are zero-padded to multiples of k (t = ⌈H/k⌉ rows per block, s = ⌈W/k⌉ columns), so row i·t + a of the
    result mixes rows j·t + a of x with weights P[i, j] (and the columns likewise with Q[j, i]); the padding is
    cropped off.  ``P ⊗ I_t`` applied as one k×k matmul on the view B×C×k×(t·W) (O(k·N), not O(H·N))."""
    h, w = traced_size(x)
    k = p.shape[-1]
    c = x.shape[1]
    xp = pad_to_multiple(x, k)
    hp, wp = xp.shape[-2], xp.shape[-1]
    y = (p @ xp.reshape(-1, c, k, (hp // k) * wp)).reshape(-1, c, hp, wp)
    yt = y.transpose(2, 3).reshape(-1, c, k, (wp // k) * hp)  # columns first: Q acts from the right
    y = (q.transpose(2, 3) @ yt).reshape(-1, c, wp, hp).transpose(2, 3)
    if hp != h or wp != w:
        y = y[:, :, :h, :w]
    return y


class BilinearAttnTransform(nn.Module):
    """BAT's grouped bilinear attentional transform on B×C×H×W (C = the block's reduced width)."""

    def __init__(self, channels: int, block_size: int, groups: int, owner: str) -> None:
        super().__init__()
        k = block_size
        self.block_size, self.groups, self.channels = block_size, groups, channels
        self.conv1 = ConvNormAct(channels, groups, 1, norm="bn", act="relu", owner=owner)
        self.conv_p = nn.Conv2d(groups, k * k * groups, (k, 1))
        self.conv_q = nn.Conv2d(groups, k * k * groups, (1, k))
        self.conv2 = ConvNormAct(channels, channels, 1, norm="bn", act="relu", owner=owner)

    def matrices(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """P (rows sum to 1) and Q (columns sum to 1), B×groups×k×k, from max pools of the group map."""
        k, g = self.block_size, self.groups
        out = conv_bn_relu(self.conv1, x)
        rp = block_max(out, k, -2).flatten(1)  # B×(g·k): the k row blocks of each group
        cp = block_max(out, k, -1).flatten(1)
        # the (k×1) and (1×k) convs see their whole input: F.linear on the flattened weights
        p = torch.sigmoid(F.linear(rp, self.conv_p.weight.flatten(1), self.conv_p.bias)).view(-1, g, k, k)
        q = torch.sigmoid(F.linear(cp, self.conv_q.weight.flatten(1), self.conv_q.bias)).view(-1, g, k, k)
        return p / p.sum(dim=3, keepdim=True), q / q.sum(dim=2, keepdim=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p, q = self.matrices(x)
        c = self.channels
        y = bilinear_transform(x, _per_channel(p, c, self.groups), _per_channel(q, c, self.groups))
        return conv_bn_relu(self.conv2, y)


@register(
    "bat",
    family="self_attention",
    paper="Non-Local Neural Networks With Grouped Bilinear Attentional Transforms (Chi et al.; CVPR 2020)",
    url="https://openaccess.thecvf.com/content_CVPR_2020/html/Chi_Non-Local_Neural_Networks_With_Grouped_Bilinear_"
    "Attentional_Transforms_CVPR_2020_paper.html",
    complexity="O(N·k)",
    summary="Non-local block whose attention is a pair of k×k bilinear transforms of the row and column blocks.",
    forms=(_BLOCK_POOL_FORM,),
)
class BATNonLocal(AttnModule):
    """BAT non-local block (timm ``BatNonLocalAttn``); B×C×H×W → B×C×H×W.

    ``x_l = ReLU(BN(W₁ x))`` (C → d); per group, ``P = rownorm(σ(Conv_{k×1}(maxpool_{k×1}(a))))`` and
    ``Q = colnorm(σ(Conv_{1×k}(maxpool_{1×k}(a))))`` with ``a = ReLU(BN(W_a x_l))`` (d → groups); the transform
    ``T = ReLU(BN(W_t ((P ⊗ I_t) x_l (Q ⊗ I_s))))`` mixes the k row blocks and k column blocks of x_l (t = H/k rows
    per block); ``y = x + Dropout2d(ReLU(BN(W₂ T)))`` (d → C).  d = make_divisible(C / ``reduction``, 8) as timm.

    Any H×W: timm asserts that k divides H and W; here x_l is zero-padded at the bottom/right to multiples of k
    (t = ⌈H/k⌉), transformed and cropped, and the pools use PyTorch's adaptive bins on the unpadded map (bins of
    one or two rows when H < k): equal to timm wherever k divides H and W.  The transform is applied as k×k
    matmuls on block views, O(k·N), where timm builds the H×H and W×W Kronecker matrices (O((H + W)·N)).
    Dropout defaults to 0 (timm: 0.2).  No zero init (timm's; the block starts as x + f(x), not the identity).

    Args:
        channels: input channels C.
        block_size: k, the number of row (and column) blocks.
        groups: groups of the transform (each has its own P and Q); divides d.
        reduction: d = make_divisible(C / reduction, 8).
        hidden_channels: explicit d.
        dropout: Dropout2d rate on the block's output (before the residual sum).
    """

    size_bounds: ClassVar[dict[str, SizeBound]] = {
        "block_size": SizeBound(32, "block side"),
    }

    def __init__(
        self,
        channels: int,
        block_size: int = 7,
        groups: int = 2,
        reduction: float = 4,
        hidden_channels: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        owner = self.owner
        positive_int(channels, owner, "channels")
        positive_int(block_size, owner, "block_size")
        positive_int(groups, owner, "groups")
        if hidden_channels is None:
            positive_number(reduction, owner, "reduction")
            hidden = _make_divisible(channels / reduction)
        else:
            hidden = positive_int(hidden_channels, owner, "hidden_channels")
        check_arg(hidden % groups == 0, owner, "groups", f"a divisor of the reduced width {hidden}", groups)
        self.channels, self.block_size, self.groups = channels, block_size, groups
        self.reduction, self.hidden_channels, self.dropout = reduction, hidden_channels, check_dropout(dropout, owner)
        self.conv1 = ConvNormAct(channels, hidden, 1, norm="bn", act="relu", owner=owner)
        self.ba = BilinearAttnTransform(hidden, block_size, groups, owner)
        self.conv2 = ConvNormAct(hidden, channels, 1, norm="bn", act="relu", owner=owner)
        self.drop = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        y = self.drop(conv_bn_relu(self.conv2, self.ba(conv_bn_relu(self.conv1, x))))
        return y.add_(x) if inplace_ok() else x + y

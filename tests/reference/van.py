"""Reference for Large Kernel Attention (VAN, arXiv 2202.09741) and Large Separable Kernel Attention (LSKA,
arXiv 2309.01439), written from the papers and the official code (Visual-Attention-Network, Apache-2.0;
StevenLauHKHK/Large-Separable-Kernel-Attention, Apache-2.0).

Every convolution is the explicit sum over kernel taps of shifted, zero-padded copies of the input (no
``F.conv2d``): out[b, o, y, x] = bias[o] + Σ_{c, i, j} w[o, c, i, j] · x_pad[b, g·C_g + c, y + i·d_h, x + j·d_w].
The LKA/LSKA forward is ``x · attention`` with no sigmoid.  :func:`lska_dense_kernel` builds the single dense
depthwise k×k kernel that the LSKA strips factorise.
"""

from __future__ import annotations

import torch
from torch import nn


def conv2d_taps(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: tuple[int, int],
                dilation: tuple[int, int] = (1, 1), groups: int = 1) -> torch.Tensor:
    """Stride-1 2-D convolution as an explicit loop over the kernel taps."""
    b, cin, h, w = x.shape
    cout, cin_g, kh, kw = weight.shape
    ph, pw = padding
    dh, dw = dilation
    xp = torch.zeros(b, cin, h + 2 * ph, w + 2 * pw, dtype=x.dtype)
    xp[:, :, ph:ph + h, pw:pw + w] = x
    ho, wo = h + 2 * ph - dh * (kh - 1), w + 2 * pw - dw * (kw - 1)
    out = torch.zeros(b, cout, ho, wo, dtype=x.dtype)
    cout_g = cout // groups
    for g in range(groups):
        xs = xp[:, g * cin_g:(g + 1) * cin_g]
        ws = weight[g * cout_g:(g + 1) * cout_g]
        for i in range(kh):
            for j in range(kw):
                patch = xs[:, :, i * dh:i * dh + ho, j * dw:j * dw + wo]
                out[:, g * cout_g:(g + 1) * cout_g] += torch.einsum("oc,bchw->bohw", ws[:, :, i, j], patch)
    if bias is not None:
        out += bias[None, :, None, None]
    return out


def conv_ref(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` through :func:`conv2d_taps` with the layer's weights and hyper-parameters."""
    return conv2d_taps(x, conv.weight.detach(), None if conv.bias is None else conv.bias.detach(),
                       conv.padding, conv.dilation, conv.groups)


@torch.no_grad()
def lka(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """VAN's LKA: attn = conv1(conv_spatial(conv0(x))) (5×5 dw, 7×7 dw dilation 3, 1×1); return x · attn."""
    attn = conv_ref(module.conv1, conv_ref(module.conv_spatial, conv_ref(module.conv0, x)))
    return x * attn


@torch.no_grad()
def lska(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """LSKA: 1×k0, k0×1, 1×kd (dilation d), kd×1 (dilation d) depthwise strips, then 1×1; return x · attn."""
    a = x
    for name in ("conv0h", "conv0v", "conv_spatial_h", "conv_spatial_v", "conv1"):
        a = conv_ref(getattr(module, name), a)
    return x * a


#: The official table (models/van.py of the LSKA code): k → (k0, kd, d).
LSKA_TABLE = {7: (3, 3, 2), 11: (3, 5, 2), 23: (5, 7, 3), 35: (5, 11, 3), 41: (5, 13, 3), 53: (5, 17, 3)}


@torch.no_grad()
def lska_dense_kernel(module: nn.Module) -> torch.Tensor:
    """The C×1×k×k depthwise kernel equal to the four strips (biases aside): the outer product of the plain
    strips, full-convolved with the outer product of the dilated strips spread on a grid of step d."""
    k0, kd, d = LSKA_TABLE[module.kernel_size]
    c = module.channels
    h0 = module.conv0h.weight.reshape(c, k0)
    v0 = module.conv0v.weight.reshape(c, k0)
    hd = module.conv_spatial_h.weight.reshape(c, kd)
    vd = module.conv_spatial_v.weight.reshape(c, kd)
    small = v0[:, :, None] * h0[:, None, :]  # C×k0×k0
    span = d * (kd - 1) + 1
    big = torch.zeros(c, span, span, dtype=small.dtype)
    big[:, ::d, ::d] = vd[:, :, None] * hd[:, None, :]
    k = k0 + span - 1
    dense = torch.zeros(c, k, k, dtype=small.dtype)
    for i in range(k0):  # full 2-D convolution of the two kernels, written as placed copies
        for j in range(k0):
            dense[:, i:i + span, j:j + span] += small[:, i, j, None, None] * big
    return dense[:, None]

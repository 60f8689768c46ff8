"""MANO multipole attention: the official level loop."""

from __future__ import annotations

import torch
import torch.nn as nn

from attnzoo.local import MultipoleAttention
from reference.local_window import ref_loop_window


def ref_multipole(x: torch.Tensor, m: MultipoleAttention, levels: int) -> torch.Tensor:
    """MANO Multipole_Attention2D with the window loop reference (sizes divisible by r at every level for the
    conv down-sampling; ceil-mode average pooling and a crop after up-sampling otherwise).

    Level maps: x_0 = x, x_l = down(x_{l-1}) (nn.AvgPool2d(r) or the module's conv); o_l = LocalAttention(x_l);
    V-cycle: res = o_{L-1}; for l, o in enumerate(reversed(o_0..o_{L-2})): res = o + 1/(l+1) · up(res).
    """
    r, k, s = m.sampling_rate, m.kernel_size, m.stride
    # ceil_mode / the crop below only matter when a size does not divide by r (the reference needs it to divide)
    down = nn.AvgPool2d(r, r, ceil_mode=True) if m.down is None else m.down
    up = nn.Upsample(scale_factor=r, mode="nearest") if m.up is None else m.up
    outs, cur = [], x
    for level in range(levels):
        if level > 0:
            cur = down(cur)
        body = m.attention[0] if m.shared else m.attention[level]
        outs.append(ref_loop_window(cur, body, k, s))
    res = outs.pop()
    for l, o in enumerate(outs[::-1]):
        res = o + (1 / (l + 1)) * up(res)[:, :, : o.shape[2], : o.shape[3]]
    return res


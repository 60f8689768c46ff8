"""CGNL (Yue et al., NeurIPS 2018): explicit (c'N)×(c'N) kernel of the official ``SpatialCGNL``."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from reference.common import conv


def ref_cgnl(m, x):
    """cgnl-network.pytorch ``SpatialCGNL`` / ``SpatialCGNLx``: split into groups, per-group kernel with bmm."""
    residual = x
    t, p, g = conv(x, m.t), conv(x, m.p), conv(x, m.g)
    b, c, h, w = t.shape
    _c = c // m.groups
    outs = []
    for ts, ps, gs in zip(t.split(_c, 1), p.split(_c, 1), g.split(_c, 1)):
        tv, pv, gv = ts.reshape(b, 1, _c * h * w), ps.reshape(b, 1, _c * h * w), gs.reshape(b, _c * h * w, 1)
        if m.kernel_type == "dot":
            att = torch.bmm(pv, gv)
            if m.use_scale:
                att = att.div((_c * h * w) ** 0.5)
            outs.append(torch.bmm(att, tv).view(b, _c, h, w))
        else:
            gamma = torch.tensor([m.gamma], dtype=torch.float64)
            beta = torch.exp(-2 * gamma)
            t_taylor, p_taylor = [], []
            for order in range(m.order + 1):
                alpha = torch.sqrt(torch.pow(2 * gamma, order) / math.factorial(order) * beta)
                t_taylor.append(tv.pow(order).mul(alpha))
                p_taylor.append(pv.pow(order).mul(alpha))
            t_taylor, p_taylor = torch.cat(t_taylor, 1), torch.cat(p_taylor, 1)
            att = torch.bmm(p_taylor, gv)
            if m.use_scale:
                att = att.div((_c * h * w) ** 0.5)
            att = att.view(b, 1, m.order + 1)
            outs.append(torch.bmm(att, t_taylor).view(b, _c, h, w))
    y = torch.cat(outs, 1)
    z = conv(y, m.z)
    z = F.group_norm(z, m.groups, m.gn.weight, m.gn.bias, m.gn.eps)
    return z + residual


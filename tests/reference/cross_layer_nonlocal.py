"""Cross-layer non-local: explicit softmax attention per context map."""

from __future__ import annotations

import torch

from reference.common import bn_eval, conv


def ref_cnl(m, query, contexts):
    """CNL-ICIP2020 ``CNL_5.aggregate`` summed over the context maps, plus the residual (with the attended
    values transposed back to planes×H×W as the Non-local code does)."""
    out = query
    t = conv(query, m.theta)
    b, c, h, w = t.shape
    t = t.view(b, c, -1).permute(0, 2, 1)
    for ctx, phi, g, bn in zip(contexts, m.phi, m.g, m.bn):
        p = conv(ctx, phi).view(b, c, -1)
        gv = conv(ctx, g).view(b, c, -1).permute(0, 2, 1)
        att = torch.softmax(torch.bmm(t, p).div(c**0.5), dim=2)
        y = torch.bmm(att, gv).permute(0, 2, 1).reshape(b, c, h, w)
        out = out + bn_eval(bn, conv(y, m.out))
    return out


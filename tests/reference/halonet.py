"""HaloNet blocked local attention written out (Vaswani et al., CVPR 2021), per query.

Query (y, x) lies in block (y // b, x // b); its neighbourhood is the block grown by the halo h on every side,
cut to the image (positions outside the image are never attended: the padding is masked).  Per head:
softmax over the neighbourhood of q·k/√d + q·r_h[Y − y + h + b − 1] + q·r_w[X − x + h + b − 1] (timm's
relative logits, not scaled), times v.  Explicit loops: clarity over speed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def halo(m, x):
    bsz, _, hh, ww = x.shape
    b, halo_, heads, d, dv = m.block_size, m.halo_size, m.heads, m.dim_head, m.dim_head_v
    q = F.conv2d(x, m.q.weight, m.q.bias)  # B×(heads·d)×H×W
    kv = F.conv2d(x, m.kv.weight, m.kv.bias)  # per head [k | v]
    out = torch.zeros(bsz, heads * dv, hh, ww, dtype=x.dtype)
    for y in range(hh):
        for xx in range(ww):
            by, bx = y // b, xx // b
            rows = [r for r in range(by * b - halo_, by * b + b + halo_) if 0 <= r < hh]
            cols = [s for s in range(bx * b - halo_, bx * b + b + halo_) if 0 <= s < ww]
            keys = [(r, s) for r in rows for s in cols]
            for hd in range(heads):
                qv = q[:, hd * d : (hd + 1) * d, y, xx]  # B×d
                base = hd * (d + dv)
                kk = torch.stack([kv[:, base : base + d, r, s] for r, s in keys], -1)  # B×d×L
                vv = torch.stack([kv[:, base + d : base + d + dv, r, s] for r, s in keys], -1)
                rel = torch.stack([m.height_rel[r - y + halo_ + b - 1] for r, s in keys], -1)  # d×L
                rew = torch.stack([m.width_rel[s - xx + halo_ + b - 1] for r, s in keys], -1)
                logits = torch.einsum("bd,bdl->bl", qv, kk) * d**-0.5 + qv @ rel + qv @ rew
                a = logits.softmax(-1)
                out[:, hd * dv : (hd + 1) * dv, y, xx] = torch.einsum("bl,bdl->bd", a, vv)
    return out

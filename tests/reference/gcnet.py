"""GC block (GCNet, Cao et al. 2019), written from the paper (Fig. 4 / Eq. 3) and the official ``ContextBlock``:

    context = Σ_j softmax_j(W_k x_j) · x_j          (pooling="attention";  "avg": the mean over positions)
    t(c)    = W_v2 ReLU(LN(W_v1 c))                  (LayerNorm over the hidden×1×1 tensor)
    y       = x · σ(t_mul(c))  (if mul)  then  + t_add(c)  (if add)

Loops over batch and positions, explicit 1×1 convs on the B×C×1×1 context; reads the module's weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _transform(t, c: torch.Tensor) -> torch.Tensor:
    """c: C×1×1 → C×1×1 through conv → LayerNorm([hidden, 1, 1]) → ReLU → conv."""
    h = F.conv2d(c[None], t.conv1.weight, t.conv1.bias)[0]
    h = F.layer_norm(h, tuple(h.shape), t.norm.weight, t.norm.bias, t.norm.eps)
    h = torch.relu(h)
    return F.conv2d(h[None], t.conv2.weight, t.conv2.bias)[0]


@torch.no_grad()
def gc_block(module, x: torch.Tensor) -> torch.Tensor:
    b, _, h, w = x.shape
    out = torch.empty_like(x)
    for i in range(b):
        xi = x[i]
        if module.pooling == "attention":
            logits = torch.stack([
                (module.conv_mask.weight[0, :, 0, 0] * xi[:, p // w, p % w]).sum() + module.conv_mask.bias[0]
                for p in range(h * w)
            ])
            a = torch.exp(logits - logits.max())
            a = a / a.sum()
            ctx = sum(a[p] * xi[:, p // w, p % w] for p in range(h * w))
        else:
            ctx = xi.sum((1, 2)) / (h * w)
        ctx = ctx[:, None, None]
        yi = xi
        if module.mul is not None:
            yi = yi * torch.sigmoid(_transform(module.mul, ctx))
        if module.add is not None:
            yi = yi + _transform(module.add, ctx)
        out[i] = yi
    return out

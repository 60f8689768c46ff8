"""BiFPN (EfficientDet) written node by node from the paper (Fig. 2d, eq. fast normalised fusion) and
google/automl's ``efficientdet/efficientdet_arch.py`` / ``fpn_configs``: explicit per-node weights, explicit
nearest index maps, TF-SAME max-pool by explicit padding, eval-mode BN written out."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bn_eval(bn, x):
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return x * scale.view(1, -1, 1, 1) + (bn.bias - bn.running_mean * scale).view(1, -1, 1, 1)


def project(p, x):
    if isinstance(p, torch.nn.Identity):
        return x
    conv, bn = p[0], p[1]
    return bn_eval(bn, F.conv2d(x, conv.weight, conv.bias))


def fast_fusion(w, xs, eps=1e-4, fusion="fast"):
    """Σ_i w̃_i x_i, the weights normalised one scalar at a time."""
    n = len(xs)
    if fusion == "sum":
        ws = [1.0] * n
    elif fusion == "softmax":
        e = [torch.exp(w[i] - w.max()) for i in range(n)]
        ws = [e[i] / sum(e) for i in range(n)]
    else:
        r = [max(float(w[i]), 0.0) for i in range(n)]
        ws = [r[i] / (sum(r) + eps) for i in range(n)]
    out = 0
    for i in range(n):
        out = out + float(ws[i]) * xs[i]
    return out


def nearest_to(x, h, w):
    """out[i, j] = x[floor(i·H/h), floor(j·W/w)] (PyTorch 'nearest')."""
    H, W = x.shape[-2:]
    ri = torch.tensor([int(i * H / h) for i in range(h)])
    ci = torch.tensor([int(j * W / w) for j in range(w)])
    return x[..., ri, :][..., ci]


def maxpool_same(x):
    """3×3 stride 2, TF 'SAME': out = ⌈n/2⌉, total pad = max((out−1)·2 + 3 − n, 0), top = total // 2."""
    H, W = x.shape[-2:]
    oh, ow = (H + 1) // 2, (W + 1) // 2
    th, tw = max((oh - 1) * 2 + 3 - H, 0), max((ow - 1) * 2 + 3 - W, 0)
    xp = F.pad(x, (tw // 2, tw - tw // 2, th // 2, th - th // 2), value=float("-inf"))
    out = torch.empty(*x.shape[:2], oh, ow, dtype=x.dtype)
    for i in range(oh):
        for j in range(ow):
            out[..., i, j] = xp[..., 2 * i : 2 * i + 3, 2 * j : 2 * j + 3].amax((-2, -1))
    return out


def fit(x, h, w):
    x = x[..., :h, :w]
    return F.pad(x, (0, w - x.shape[-1], 0, h - x.shape[-2]), mode="replicate") if x.shape[-2:] != (h, w) else x


def sep_conv(block, x, act, variant):
    if variant == "official":
        x = act(x)
    y = F.conv2d(x, block.depthwise.weight, None, 1, 1, 1, x.shape[1])
    y = bn_eval(block.bn, F.conv2d(y, block.pointwise.weight))
    return act(y) if variant == "paper" else y


def bifpn_layer(layer, x, variant, fusion, act=F.silu):
    L = len(x)
    P_td_in = [project(layer.proj_td[i], x[i]) for i in range(L)]
    td = {L - 1: P_td_in[L - 1]}
    for i in range(L - 2, -1, -1):  # top-down: P_i^td = conv(w1 P_i + w2 up(P_{i+1}^td))
        up = nearest_to(td[i + 1], *P_td_in[i].shape[-2:])
        w = None if layer.w_td is None else layer.w_td[i].detach()
        td[i] = sep_conv(layer.conv_td[i], fast_fusion(w, [P_td_in[i], up], fusion=fusion), act, variant)
    out = {0: td[0]}
    for i in range(1, L):  # bottom-up: P_i^out = conv(w1 P_i + w2 P_i^td + w3 down(P_{i-1}^out))
        skip = project(layer.proj_skip[i - 1], x[i])
        down = fit(maxpool_same(out[i - 1]), *skip.shape[-2:])
        if i < L - 1:
            w = None if layer.w_mid is None else layer.w_mid[i - 1].detach()
            fused = fast_fusion(w, [skip, td[i], down], fusion=fusion)
        else:
            w = None if layer.w_top is None else layer.w_top.detach()
            fused = fast_fusion(w, [skip, down], fusion=fusion)
        out[i] = sep_conv(layer.conv_out[i - 1], fused, act, variant)
    return [out[i] for i in range(L)]


@torch.no_grad()
def bifpn_reference(module, x):
    """What ``BiFPN`` (in eval mode) must return on the list ``x``."""
    feats = list(x)
    for layer in module.layers:
        feats = bifpn_layer(layer, feats, module.variant, module.fusion)
    return feats

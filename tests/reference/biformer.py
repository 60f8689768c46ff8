"""Bi-level routing attention written the way the official BiFormer code does it (``ops/bra_legacy.py``:
region partition, mean-pooled region queries/keys, ``torch.topk`` routing, ``torch.gather`` of the routed
regions' key/value tokens from an expanded view, explicit softmax, LCE on V, output Linear), plus plain full
attention (what BRA is when every region is routed).  The official code needs H and W divisible by ``n_win``;
so does :func:`bra_official`.  Takes a ``BiLevelRoutingAttention`` and reads its weights."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _lce(m, v_map: torch.Tensor) -> torch.Tensor:
    return F.conv2d(v_map, m.lepe.weight, m.lepe.bias, padding=m.kernel_size // 2, groups=m.channels)


def bra_official(m, x: torch.Tensor, topk: int | None = None) -> torch.Tensor:
    """Official-style BRA (no padding: H, W must be multiples of ``m.n_win``)."""
    b, c, h, w = x.shape
    nw, heads, topk = m.n_win, m.heads, m.topk if topk is None else topk
    assert h % nw == 0 and w % nw == 0, "the official code needs sizes divisible by n_win"
    rh, rw = h // nw, w // nw
    r, l2 = nw * nw, rh * rw
    qkv = F.linear(x.permute(0, 2, 3, 1), m.qkv.weight, m.qkv.bias)  # B×H×W×3C
    # 'n (j h) (i w) c -> n (j i) h w c'
    win = qkv.reshape(b, nw, rh, nw, rw, 3 * c).permute(0, 1, 3, 2, 4, 5).reshape(b, r, rh, rw, 3 * c)
    q, kv = win[..., :c], win[..., c:]
    q_pix = q.reshape(b, r, l2, c)
    kv_pix = kv.reshape(b, r, l2, 2 * c)
    q_win, k_win = q.mean([2, 3]), kv[..., :c].mean([2, 3])  # B×R×C
    v_map = qkv[..., 2 * c:].permute(0, 3, 1, 2)
    lepe = _lce(m, v_map).permute(0, 2, 3, 1)
    logit = (q_win.detach() * m.scale) @ k_win.detach().transpose(-2, -1)
    _, idx = torch.topk(logit, k=topk, dim=-1)  # B×R×topk
    # KVGather (official): gather from an R-times expanded view
    sel = torch.gather(kv_pix.view(b, 1, r, l2, 2 * c).expand(-1, r, -1, -1, -1), dim=2,
                       index=idx.view(b, r, topk, 1, 1).expand(-1, -1, -1, l2, 2 * c))  # B×R×topk×L×2C
    k_sel, v_sel = sel[..., :c], sel[..., c:]
    d = c // heads
    k_sel = k_sel.reshape(b, r, topk, l2, heads, d).permute(0, 1, 4, 5, 2, 3).reshape(b * r, heads, d, topk * l2)
    v_sel = v_sel.reshape(b, r, topk, l2, heads, d).permute(0, 1, 4, 2, 3, 5).reshape(b * r, heads, topk * l2, d)
    q_pix = q_pix.reshape(b, r, l2, heads, d).permute(0, 1, 3, 2, 4).reshape(b * r, heads, l2, d)
    attn = ((q_pix * m.scale) @ k_sel).softmax(-1)
    out = (attn @ v_sel).reshape(b, nw, nw, heads, rh, rw, d).permute(0, 1, 4, 2, 5, 3, 6).reshape(b, h, w, c)
    out = out + lepe
    return F.linear(out, m.proj.weight, m.proj.bias).permute(0, 3, 1, 2)


def full_attention(m, x: torch.Tensor) -> torch.Tensor:
    """Every token attends to every token (per head, scale C^-0.5), + LCE, output Linear: BRA with all regions routed."""
    b, c, h, w = x.shape
    qkv = F.linear(x.permute(0, 2, 3, 1).reshape(b, h * w, c), m.qkv.weight, m.qkv.bias)
    q, k, v = (t.reshape(b, h * w, m.heads, -1).transpose(1, 2) for t in qkv.chunk(3, -1))
    out = ((q @ k.transpose(-2, -1)) * m.scale).softmax(-1) @ v
    out = out.transpose(1, 2).reshape(b, h, w, c)
    out = out + _lce(m, v.transpose(1, 2).reshape(b, h, w, c).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    return F.linear(out, m.proj.weight, m.proj.bias).permute(0, 3, 1, 2)

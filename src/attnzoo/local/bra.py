"""BiFormer: Vision Transformer with Bi-Level Routing Attention (Zhu, Wang, Ke, Zhang, Lau; CVPR 2023),
https://arxiv.org/abs/2303.08810.

Bi-level routing attention: the map is cut into regions; a region-level affinity (mean-pooled queries against
mean-pooled keys) picks the ``topk`` most relevant regions of every region, and the tokens of a region attend
to the tokens of its routed regions only.  A depthwise convolution on V (local context enhancement, LCE) is
added before the output projection.  Any H×W: the map is padded to whole regions and padded tokens are masked
out (of the region means and as keys).
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..capture import capture_target, record
from ..layers import (
    KERNEL_BOUND,
    AttnModule,
    SizeBound,
    attention,
    check_arg,
    check_nchw,
    fx_leaf,
    odd_kernel,
    positive_int,
)
from ..layers.checks import check_attention_args
from ..registry import register
from ..tracing import PortableForm, portable

__all__ = ["BiLevelRoutingAttention", "region_grid", "routing_attention"]

#: The export targets that take the dense portable form (:func:`_routing_dense`): ncnn has no topk.
_TARGETS: tuple[str, ...] = ("ncnn",)


def region_grid(length: int, n_win: int) -> tuple[int, int]:
    """``(regions, region_size)`` along one axis: regions of size ⌈length / n_win⌉, as many as cover the axis
    (``n_win`` when it divides ``length``; fewer for short axes, so no region is only padding)."""
    size = (length + n_win - 1) // n_win
    return (length + size - 1) // size, size


def _to_regions(t: torch.Tensor, nh: int, rh: int, nw: int, rw: int) -> torch.Tensor:
    """B×Hp×Wp×C → B×(nh·nw)×(rh·rw)×C (two 4-D reshapes around one permute)."""
    b, c = t.shape[0], t.shape[-1]
    t = t.reshape(b * nh, rh, nw, rw * c).permute(0, 2, 1, 3)
    return t.reshape(b, nh * nw, rh * rw, c)


def _from_regions(t: torch.Tensor, b: int, nh: int, rh: int, nw: int, rw: int) -> torch.Tensor:
    """B×(nh·nw)×(rh·rw)×C → B×Hp×Wp×C."""
    c = t.shape[-1]
    t = t.reshape(b * nh, nw, rh, rw * c).permute(0, 2, 1, 3)
    return t.reshape(b, nh * rh, nw * rw, c)


def _pad_to_regions(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, n_win: int
) -> tuple[tuple[torch.Tensor, ...], tuple[int, int, int, int], bool]:
    """q, k, v (B×H×W×C) zero-padded at the bottom / right to whole regions; (nh, rh, nw, rw); whether padded."""
    h, w = q.shape[1], q.shape[2]
    nh, rh = region_grid(h, n_win)
    nw, rw = region_grid(w, n_win)
    hp, wp = nh * rh, nw * rw
    padded = hp != h or wp != w
    if padded:
        q, k, v = (F.pad(t, (0, 0, 0, wp - w, 0, hp - h)) for t in (q, k, v))
    return (q, k, v), (nh, rh, nw, rw), padded


@fx_leaf
def routing_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    n_win: int,
    topk: int,
    heads: int,
    scale: float,
    dropout_p: float = 0.0,
    module: nn.Module | None = None,
) -> torch.Tensor:
    """Bi-level routing attention of q, k, v: B×H×W×C (channels last, any strides) → B×H×W×C.

    Regions: :func:`region_grid` per axis; ``topk`` is clamped to the number of regions.  Captured maps
    (``module`` capturing): ``"routing"`` B×R×topk region indices (as float), ``"attn"`` (B·R)×heads×L×(topk·L).
    """
    b, h, w, c = q.shape
    (q, k, v), (nh, rh, nw, rw), padded = _pad_to_regions(q, k, v, n_win)
    hp, wp = nh * rh, nw * rw
    r, length = nh * nw, rh * rw
    topk = min(topk, r)
    qr, kr, vr = (_to_regions(t, nh, rh, nw, rw) for t in (q, k, v))  # B×R×L×C
    # region level: mean of the valid tokens (padding is zero, so a sum over the count of valid tokens)
    if padded:
        valid = (torch.arange(hp, device=q.device) < h)[:, None] & (torch.arange(wp, device=q.device) < w)[None, :]
        valid = _to_regions(valid[None, :, :, None], nh, rh, nw, rw).reshape(r, length)
        count = valid.sum(-1).to(q.dtype)[None, :, None]
        q_mean, k_mean = qr.sum(2) / count, kr.sum(2) / count
    else:
        valid = None
        q_mean, k_mean = qr.mean(2), kr.mean(2)
    affinity = q_mean.detach() @ k_mean.detach().transpose(1, 2)  # B×R×R (routing carries no gradient)
    route = affinity.topk(topk, dim=-1).indices  # B×R×topk
    if module is not None:
        record(module, "routing", route.to(q.dtype))
    # token level: gather the routed regions' keys and values
    flat = (route + torch.arange(b, device=q.device)[:, None, None] * r).reshape(-1)  # (B·R·topk)
    d = c // heads
    ks = kr.reshape(b * r, length, c).index_select(0, flat).view(b * r, topk * length, heads, d).transpose(1, 2)
    vs = vr.reshape(b * r, length, c).index_select(0, flat).view(b * r, topk * length, heads, d).transpose(1, 2)
    qs = qr.reshape(b * r, length, heads, d).transpose(1, 2)
    mask = None
    if valid is not None:  # padded keys never attended (additive mask, the dtype's most negative finite value)
        keep = valid.index_select(0, route.reshape(-1)).view(b * r, 1, 1, topk * length)
        mask = torch.zeros(keep.shape, dtype=q.dtype, device=q.device).masked_fill(~keep, torch.finfo(q.dtype).min)
    out = attention(qs, ks, vs, mask=mask, scale=scale, dropout_p=dropout_p, module=module, key="attn")
    out = _from_regions(out.transpose(1, 2).reshape(b, r, length, c), b, nh, rh, nw, rw)
    return out[:, :h, :w] if padded else out


def _greater_than_zero(t: torch.Tensor) -> torch.Tensor:
    """1.0 where t > 0, else 0.0, by arithmetic (ncnn has no comparison op): ceil(clamp(t, 0, 1))."""
    return torch.ceil(torch.clamp(t, 0.0, 1.0))


def _routing_dense(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, n_win: int, topk: int, heads: int, scale: float
) -> torch.Tensor:
    """:func:`routing_attention` in the dense portable form (ncnn has no topk, gather or comparison and no batch
    axis).

    The routed regions are not gathered: every region's tokens attend to all tokens, and keys outside the
    top-k regions of the query's region get a most-negative logit (probability exactly 0), so the result is
    the same.  Region j is routed from region i when fewer than ``topk`` regions have a strictly larger
    affinity (comparisons as arithmetic); the logit offset rides on R extra q/k columns (the query's region
    one-hot · the key's column of offsets), not on an N×N mask.  Only on exact ties at the top-k boundary,
    where ``torch.topk``'s choice is itself unspecified, are all tied regions kept.  Cost O(N²) (eager
    O(N²·topk/R)).
    """
    b, h, w, c = q.shape
    (q, k, v), (nh, rh, nw, rw), padded = _pad_to_regions(q, k, v, n_win)
    hp, wp = nh * rh, nw * rw
    r, length = nh * nw, rh * rw
    n, d = r * length, c // heads

    def regions(t: torch.Tensor) -> torch.Tensor:  # B×Hp×Wp×C → B×R×L×C, at most 5 axes
        t = t.reshape(b, nh, rh, nw, rw * c).permute(0, 1, 3, 2, 4)
        return t.reshape(b, r, length, c)

    qr, kr, vr = regions(q), regions(k), regions(v)
    big = torch.finfo(q.dtype).max / 4  # two offsets and a logit stay finite
    if padded:
        valid = (torch.arange(hp, device=q.device) < h)[:, None] & (torch.arange(wp, device=q.device) < w)[None, :]
        valid = valid.reshape(nh, rh, nw, rw).permute(0, 2, 1, 3).reshape(r, length)
        inv_count = (1.0 / valid.sum(-1).to(q.dtype)).reshape(1, r, 1)
        q_mean, k_mean = qr.sum(2) * inv_count, kr.sum(2) * inv_count
    else:
        q_mean, k_mean = qr.mean(2), kr.mean(2)
    affinity = q_mean @ k_mean.transpose(1, 2)  # B×R×R
    # rank of region j in row i: the regions with a strictly larger affinity
    rank = _greater_than_zero(affinity[:, :, None, :] - affinity[:, :, :, None]).sum(-1)  # B×R×R
    routed = _greater_than_zero(topk - rank)  # 1 where rank < topk
    offset = (routed - 1.0) * big  # B×R(query region)×R(key region): 0 or −big
    k_extra = offset.transpose(1, 2)[:, :, None, :].expand(b, r, length, r).reshape(b, n, r)
    if padded:  # padded keys: −big as well
        k_extra = k_extra + (valid.reshape(n, 1).to(q.dtype) - 1.0) * big
    eye = torch.eye(r, dtype=q.dtype, device=q.device)
    q_extra = eye[:, None, :].expand(r, length, r).reshape(1, 1, n, r).expand(b, heads, n, r)
    qs = torch.cat([qr.reshape(b, n, heads, d).transpose(1, 2), q_extra], dim=-1)
    ks = torch.cat([kr.reshape(b, n, heads, d).transpose(1, 2), k_extra[:, None].expand(b, heads, n, r)], dim=-1)
    vs = vr.reshape(b, n, heads, d).transpose(1, 2)
    out = attention(qs, ks, vs, scale=scale)  # B×heads×N×d
    out = out.transpose(1, 2).reshape(b, nh, nw, rh, rw * c).permute(0, 1, 3, 2, 4).reshape(b, hp, wp, c)
    return out[:, :h, :w] if padded else out


@register(
    "bra",
    family="local",
    paper="BiFormer: Vision Transformer with Bi-Level Routing Attention (Zhu, Wang, Ke, Zhang, Lau; CVPR 2023)",
    url="https://arxiv.org/abs/2303.08810",
    complexity="O(N²·topk/n_win²)",
    summary="Region-level top-k routing, then token attention inside the routed regions, plus a depthwise-conv LCE on V.",
    test_kwargs={"heads": 2, "n_win": 2, "topk": 2},
    maps=("attn", "routing"),
    forms=(
        PortableForm(
            targets=_TARGETS,
            marker="aten::ceil",
            reason="ncnn has no topk, gather or comparison: the dense form attends to every region with the "
            "non-routed ones masked, O(N²) instead of O(N²·topk/R); it differs from topk only on exact affinity "
            "ties at the top-k boundary, where it keeps every tied region (inference only)",
            cases=({}, {"n_win": 3, "topk": 2}, {"heads": 4, "n_win": 4, "topk": 1}),
            eval_only=True,
        ),
    ),
)
class BiLevelRoutingAttention(AttnModule):
    """Bi-level routing attention (BiFormer); B×C×H×W → B×C×H×W.

    q, k, v = one Linear (with bias); the map is cut into ``n_win``×``n_win`` regions; region affinity
    A^r = mean(q)·mean(k)ᵀ per region, routed regions I^r = topk(A^r) (no gradient, as the official code);
    each token attends, per head, to all tokens of its ``topk`` routed regions with
    ``softmax(q kᵀ · C^-0.5) v`` (the official scale uses the whole width C, not the head width); then
    ``O + LCE(V)`` (depthwise k×k conv on V, k = 5 in BiFormer) and the output Linear.  No norm or residual.

    Any H×W: regions of size ⌈H / n_win⌉ × ⌈W / n_win⌉ (``n_win`` per axis when it divides the size, fewer on
    small maps so no region is only padding); the map is zero-padded to whole regions, region means count valid
    tokens only and padded tokens are masked out as keys (the official ``auto_pad`` lets queries attend to
    them).  ``topk`` above ``n_win²`` raises; on maps with fewer regions it is clamped to their number.
    See docs/provenance/bra.md.

    Export: graphs recorded for ncnn (``attnzoo.export_target("ncnn")``, or a plain ``torch.jit.trace``, which
    pnnx users run) take a dense form in eval mode, since ncnn has no topk: every region's tokens attend to all
    tokens, the non-routed keys masked out, at O(N²) cost.  It equals the top-k routing except on exact affinity
    ties at the top-k boundary, where ``torch.topk`` picks one region and the dense form keeps every tied one.
    ``torch.compile``, ``torch.export`` and ONNX / OpenVINO exports keep the sparse routing.

    Args:
        channels: C.
        n_win: regions per axis (BiFormer: 7).
        topk: routed regions per region (BiFormer: 1, 4, 16 in stages 1-3; 4 by default).
        heads: attention heads (a divisor of C).
        qkv_bias: bias of the qkv Linear (official: True).
        kernel_size: kernel of the LCE depthwise conv (odd; BiFormer's ``side_dwconv=5``).
        attn_drop, proj_drop: dropout on the probabilities and after the output projection.

    Attention maps: ``"attn"`` (B·R)×heads×L×(topk·L) (R regions of L tokens), ``"routing"`` B×R×topk.
    """

    size_bounds: ClassVar[dict[str, SizeBound]] = {
        "kernel_size": SizeBound(KERNEL_BOUND, "kernel side"),
    }

    def __init__(
        self,
        channels: int,
        n_win: int = 7,
        topk: int = 4,
        heads: int = 8,
        qkv_bias: bool = True,
        kernel_size: int = 5,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        owner = self.owner
        _, self.attn_drop, proj_drop = check_attention_args(
            owner, channels, heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=proj_drop
        )
        positive_int(n_win, owner, "n_win")
        positive_int(topk, owner, "topk")
        check_arg(topk <= n_win * n_win, owner, "topk", f"at most the number of regions n_win²={n_win * n_win}", topk)
        odd_kernel(kernel_size, owner)
        self.channels, self.n_win, self.topk, self.heads = channels, n_win, topk, heads
        self.qkv_bias, self.kernel_size = qkv_bias, kernel_size
        self.scale = channels**-0.5
        self.qkv = nn.Linear(channels, 3 * channels, bias=qkv_bias)
        self.lepe = nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels)
        self.proj = nn.Linear(channels, channels)
        self.proj_drop = nn.Dropout(proj_drop)

    def _forward_portable(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        # projections on B×N×C tokens (a Linear on 4 axes costs ncnn a slow shape-referencing reshape)
        q, k, v = self.qkv(x.flatten(2).transpose(1, 2)).reshape(b, h, w, 3 * c).chunk(3, dim=-1)
        out = _routing_dense(q, k, v, self.n_win, self.topk, self.heads, self.scale)
        out = out + self.lepe(v.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return self.proj(out.reshape(b, h * w, c)).transpose(1, 2).reshape(b, c, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        # The dense portable form for the targets without topk / gather (declared in the registry); every other
        # graph (torch.compile, torch.export, ONNX) keeps the sparse top-k routing.
        if portable(*_TARGETS) and not self.training and capture_target(self) is None:
            return self._forward_portable(x)
        q, k, v = self.qkv(x.permute(0, 2, 3, 1)).chunk(3, dim=-1)  # B×H×W×C views
        out = routing_attention(
            q,
            k,
            v,
            self.n_win,
            self.topk,
            self.heads,
            self.scale,
            self.attn_drop if self.training else 0.0,
            capture_target(self),
        )
        out = out + self.lepe(v.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return self.proj_drop(self.proj(out)).permute(0, 3, 1, 2)

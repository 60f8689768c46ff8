"""An Empirical Study of Spatial Attention Mechanisms in Deep Networks (Zhu, Cheng, Zhang, Lin, Dai; ICCV 2019).

Paper: https://arxiv.org/abs/1904.05873.  Official code: mmcv ``mmcv/cnn/bricks/generalized_attention.py``
(``GeneralizedAttention``, Apache-2.0): read, not copied; the parity oracle.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..capture import capture_target
from ..functional.relative_logits import factorised_logits, factorised_mask
from ..layers import TABLE_BOUND, AttnModule, SizeBound, attention, check_arg, check_nchw, fx_leaf, positive_int
from ..registry import register

__all__ = ["GeneralizedAttention"]


def _position_tables(
    n_q: int, n_kv: int, q_stride: int, kv_stride: int, magnitude: float, dim: int, dtype: torch.dtype, device
) -> torch.Tensor:
    """n_q×n_kv×(2·⌈dim/4⌉) sin|cos embedding of the offset ``(i·q_stride − j·kv_stride) · magnitude`` with
    wavelengths ``1000^(4f/dim)`` (mmcv's ``get_position_embedding`` along one axis)."""
    work = torch.float64 if dtype == torch.float64 else torch.float32
    diff = (
        torch.arange(n_q, device=device, dtype=work)[:, None] * q_stride
        - torch.arange(n_kv, device=device, dtype=work)[None, :] * kv_stride
    ) * magnitude
    freq = 1000.0 ** ((4.0 / dim) * torch.arange(math.ceil(dim / 4), device=device, dtype=work))
    angle = diff[:, :, None] / freq
    return torch.cat([angle.sin(), angle.cos()], -1).to(dtype)


@fx_leaf
def _local_mask(
    h: int, w: int, h_kv: int, w_kv: int, spatial_range: int, kv_stride: int, x: torch.Tensor
) -> torch.Tensor:
    """1×1×N×N_kv additive mask (0 inside, dtype minimum outside) of mmcv's ``spatial_range`` constraint: query
    (y, x) sees key rows [max(y − r, 0) // s, (y + r + 1) // s + 1) and the same columns."""

    def axis(n: int, n_kv: int) -> torch.Tensor:
        i = torch.arange(n, device=x.device)[:, None]
        j = torch.arange(n_kv, device=x.device)[None, :]
        return (j >= (i - spatial_range).clamp(min=0) // kv_stride) & (j < (i + spatial_range + 1) // kv_stride + 1)

    ok = axis(h, h_kv)[:, None, :, None] & axis(w, w_kv)[None, :, None, :]
    mask = torch.zeros(ok.shape, dtype=x.dtype, device=x.device).masked_fill(~ok, torch.finfo(x.dtype).min)
    return mask.reshape(1, 1, h * w, h_kv * w_kv)


@fx_leaf
def _position_mask(
    q: torch.Tensor | None,
    g: torch.Tensor | None,
    fc: tuple[torch.Tensor, torch.Tensor],
    sizes: tuple[int, int, int, int, int, int],
    embedding: tuple[int, int, float, int],
    x: torch.Tensor,
) -> torch.Tensor:
    """E2 + E4: ``(q + g) · (P_x[x, x'] + P_y[y, y'])`` as a B×heads×N×N_kv additive mask in x's dtype (computed in
    float32 under autocast); ``q``: B×heads×N×d or None (E4 alone), ``g``: the geometry bias or None (E2
    alone), ``fc``: the x and y Linear weights."""
    h, w, h_kv, w_kv, heads, d = sizes
    q_stride, kv_stride, magnitude, dim = embedding
    work = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    emb_x = _position_tables(w, w_kv, q_stride, kv_stride, magnitude, dim, work, x.device)
    emb_y = _position_tables(h, h_kv, q_stride, kv_stride, magnitude, dim, work, x.device)
    # heads×w×w'×d and heads×h×h'×d, divided by √2 as mmcv
    p_x = (emb_x @ fc[0].to(work).t()).reshape(w, w_kv, heads, d).permute(2, 0, 1, 3) / math.sqrt(2)
    p_y = (emb_y @ fc[1].to(work).t()).reshape(h, h_kv, heads, d).permute(2, 0, 1, 3) / math.sqrt(2)
    gb = None if g is None else g.to(work).view(1, heads, 1, d)
    if q is None:
        assert gb is not None
        qp = gb.expand(x.shape[0], heads, h * w, d)
    else:
        qp = q.to(work) if gb is None else q.to(work) + gb
    a_h, a_w = factorised_logits(qp, p_y, p_x, h, w)
    return factorised_mask(a_h, a_w).to(x.dtype)


def _kaiming(module: nn.Conv2d | nn.Linear) -> None:
    """mmcv's ``kaiming_init(mode='fan_in', nonlinearity='leaky_relu', bias=0)`` (normal distribution)."""
    nn.init.kaiming_normal_(module.weight, a=0, mode="fan_in", nonlinearity="leaky_relu")
    if module.bias is not None:
        nn.init.zeros_(module.bias)


@register(
    "generalized_attention",
    family="self_attention",
    paper="An Empirical Study of Spatial Attention Mechanisms in Deep Networks (Zhu et al.; ICCV 2019)",
    url="https://arxiv.org/abs/1904.05873",
    complexity="O(N^2/s^2)",
    summary="mmcv GeneralizedAttention: x + γ·proj(softmax(E1 q·k + E2 q·pos + E3 u·k + E4 v·pos) v) over "
    "sub-sampled keys/values; γ = 0 (identity at init).",
    test_kwargs={"heads": 2},
    identity_at_init=True,
    maps=("attn",),
)
class GeneralizedAttention(AttnModule):
    """mmcv's generalized attention; B×C×H×W → B×C×H×W.

    Per head (d = C // heads channels for q, k and v), the logit of query i and key j is the sum of the terms
    switched on by ``attn_type`` (four bits, "E1 E2 E3 E4"): E1 ``q_i·k_j`` (query and key content), E2
    ``q_i·(P_x[x_i, x_j] + P_y[y_i, y_j])`` (query content and relative position), E3 ``u·k_j`` (key content
    only), E4 ``v·(P_x + P_y)`` (relative position only), where ``P_x``, ``P_y`` are two bias-free Linear maps
    of a sin|cos embedding of the coordinate differences (wavelength 1000, divided by √2).  No 1/√d scale (as
    mmcv).  Keys and values are sub-sampled with stride ``kv_stride`` (every s-th pixel, mmcv's
    ``AvgPool2d(1, s)``), queries with ``q_stride`` (the output then upsampled bilinearly).  Softmax over the
    keys, values summed, heads merged, a 1×1 conv back to C, ``out = x + γ·(·)`` with γ = 0 at init (the
    identity).  ``spatial_range ≥ 0`` restricts each query to the keys within that range (mmcv's local
    constraint).

    The content term reaches SDPA as queries (q + u) and keys k, the position terms as an additive float mask
    (exact), built from two factors with at most 5 axes.  Differences from mmcv: any C (mmcv builds its
    position Linear maps for C/2 inputs and its embedding for 2·⌈C/4⌉, so C must be a multiple of 4, and its
    ``spatial_range`` needs C ∈ {256, 512}, a map of at most 84 or 42 pixels, and stores the constraint map in
    the state dict); the constraint is computed per input size; finite masks.

    Args:
        channels: C.
        heads: attention heads (mmcv 9); q/k/v width per head C // heads (at least 1).
        attn_type: the four bits "E1 E2 E3 E4" as a string of 0/1 (mmcv ``attention_type``).
        kv_stride: key/value sub-sampling stride.
        q_stride: query sub-sampling stride.
        spatial_range: local range of the keys (-1: global).
        position_embedding_dim: width of the sin|cos offset embedding (-1: C).
        position_magnitude: multiplier of the coordinate differences.

    Captured map: ``"attn"`` B×heads×N_q×N_kv.  See docs/provenance/generalized_attention.md.
    """

    size_bounds: ClassVar[dict[str, SizeBound]] = {
        "position_embedding_dim": SizeBound(lambda c: max(TABLE_BOUND, c), "offset embedding width", "max(1024, C)"),
        "spatial_range": SizeBound(TABLE_BOUND, "local key range"),
    }

    def __init__(
        self,
        channels: int,
        heads: int = 9,
        attn_type: str = "1111",
        kv_stride: int = 2,
        q_stride: int = 1,
        spatial_range: int = -1,
        position_embedding_dim: int = -1,
        position_magnitude: float = 1,
    ) -> None:
        super().__init__()
        owner = self.owner
        positive_int(channels, owner, "channels")
        positive_int(heads, owner, "heads")
        check_arg(heads <= channels, owner, "heads", f"at most channels ({channels})", heads)
        ok = isinstance(attn_type, str) and len(attn_type) == 4 and set(attn_type) <= {"0", "1"} and "1" in attn_type
        check_arg(ok, owner, "attn_type", "four 0/1 characters with at least one 1, e.g. '1111'", attn_type)
        positive_int(kv_stride, owner, "kv_stride")
        positive_int(q_stride, owner, "q_stride")
        ok = isinstance(spatial_range, int) and not isinstance(spatial_range, bool) and spatial_range >= -1
        check_arg(ok, owner, "spatial_range", "an int ≥ 0, or -1 (global)", spatial_range)
        ok = isinstance(position_embedding_dim, int) and not isinstance(position_embedding_dim, bool)
        check_arg(
            ok and (position_embedding_dim > 0 or position_embedding_dim == -1),
            owner,
            "position_embedding_dim",
            "a positive int or -1 (channels)",
            position_embedding_dim,
        )
        ok = isinstance(position_magnitude, (int, float)) and not isinstance(position_magnitude, bool)
        check_arg(ok and position_magnitude > 0, owner, "position_magnitude", "a positive number", position_magnitude)
        self.channels, self.heads, self.attn_type = channels, heads, attn_type
        self.kv_stride, self.q_stride, self.spatial_range = kv_stride, q_stride, spatial_range
        self.position_embedding_dim = position_embedding_dim
        self.position_magnitude = position_magnitude
        self.terms = tuple(c == "1" for c in attn_type)
        e1, e2, e3, e4 = self.terms
        self.dim_head = channels // heads
        self.pos_dim = channels if position_embedding_dim == -1 else position_embedding_dim
        width = self.dim_head * heads
        if e1 or e2:
            self.query_conv = nn.Conv2d(channels, width, 1, bias=False)
        if e1 or e3:
            self.key_conv = nn.Conv2d(channels, width, 1, bias=False)
        self.value_conv = nn.Conv2d(channels, width, 1, bias=False)
        if e2 or e4:
            embed = 2 * math.ceil(self.pos_dim / 4)
            self.appr_geom_fc_x = nn.Linear(embed, width, bias=False)
            self.appr_geom_fc_y = nn.Linear(embed, width, bias=False)
        stdv = 1.0 / math.sqrt(self.dim_head * 2)
        if e3:
            self.appr_bias = nn.Parameter(torch.empty(width).uniform_(-stdv, stdv))
        if e4:
            self.geom_bias = nn.Parameter(torch.empty(width).uniform_(-stdv, stdv))
        self.proj_conv = nn.Conv2d(width, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))
        for m in self.children():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                _kaiming(m)
        self._embedding_args = (q_stride, kv_stride, float(position_magnitude), self.pos_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        e1, e2, e3, e4 = self.terms
        heads, d = self.heads, self.dim_head
        x_q = F.avg_pool2d(x, 1, self.q_stride) if self.q_stride > 1 else x
        x_kv = F.avg_pool2d(x, 1, self.kv_stride) if self.kv_stride > 1 else x
        b, _, h, w = x_q.shape
        h_kv, w_kv = x_kv.shape[-2:]
        n, n_kv = h * w, h_kv * w_kv
        q = self.query_conv(x_q).reshape(b, heads, d, n).transpose(-1, -2) if e1 or e2 else None
        k = self.key_conv(x_kv).reshape(b, heads, d, n_kv).transpose(-1, -2) if e1 or e3 else None
        v = self.value_conv(x_kv).reshape(b, heads, d, n_kv).transpose(-1, -2)
        # content terms E1 + E3 = (q + u)·k: the SDPA queries and keys (no 1/√d, as mmcv)
        if k is not None:
            u = self.appr_bias.view(1, heads, 1, d) if e3 else None
            qc = q + u if q is not None and u is not None else q if q is not None else u.expand(b, heads, n, d)  # type: ignore[union-attr]
            kc = k
        else:  # no content term: zero columns (SDPA then sees the position mask alone)
            qc, kc = x.new_zeros(b, heads, n, 1), x.new_zeros(b, heads, n_kv, 1)
        mask = None
        if e2 or e4:
            g = self.geom_bias if e4 else None
            fc = (self.appr_geom_fc_x.weight, self.appr_geom_fc_y.weight)
            sizes = (h, w, h_kv, w_kv, heads, d)
            mask = _position_mask(q if e2 else None, g, fc, sizes, self._embedding_args, x)
        if self.spatial_range >= 0:
            local = _local_mask(h, w, h_kv, w_kv, self.spatial_range, self.kv_stride, x if mask is None else mask)
            mask = local if mask is None else mask + local
        out = attention(qc, kc, v, mask=mask, scale=1.0, module=capture_target(self))
        out = self.proj_conv(out.transpose(-1, -2).reshape(b, heads * d, h, w))
        if self.q_stride > 1:
            out = F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return x + self.gamma * out

    def extra_repr(self) -> str:
        return (
            f"{self.channels}, heads={self.heads}, attn_type={self.attn_type!r}, kv_stride={self.kv_stride}, "
            f"q_stride={self.q_stride}, spatial_range={self.spatial_range}"
        )

"""Agent attention: a few pooled agent tokens relay global softmax attention at linear cost.

Paper: Agent Attention: On the Integration of Softmax and Linear Attention (Han, Ye, Han, Xia, Pan, Wan, Song,
Huang; ECCV 2024), https://arxiv.org/abs/2312.08874.  Official code: LeapLabTHU/Agent-Attention (no licence at
its root): written from the paper and the reference notes, not copied (docs/provenance/agent_attention.md).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..functional.pooling import EXACT_POOL_FORM, adaptive_pool2d
from ..layers import TABLE_BOUND, AttnModule, SizeBound, attention, check_arg, check_nchw, positive_int
from ..layers.checks import check_attention_args
from ..registry import register
from ..tracing import fx_leaf

__all__ = ["AgentAttention"]


@fx_leaf
def pool_agents(q_map: torch.Tensor, s: int) -> torch.Tensor:
    """The s×s agents of a B×C×H×W query map, B×(s·s)×C: PyTorch's adaptive average pooling (exact bins, the
    ONNX form of :func:`adaptive_pool2d` where a bin size does not divide).  A side of 1 is repeated s times
    first (the pooling of one value to s bins, written as the repeat so that no runtime needs the up-pooling)."""
    if q_map.shape[-2] == 1 or q_map.shape[-1] == 1:
        hs = s if q_map.shape[-2] == 1 else q_map.shape[-2]
        ws = s if q_map.shape[-1] == 1 else q_map.shape[-1]
        q_map = q_map.expand(q_map.shape[0], q_map.shape[1], hs, ws)
    return adaptive_pool2d(q_map, s).flatten(2).transpose(1, 2)


@fx_leaf
def resized_biases(
    agent_bias: torch.Tensor, row_bias: torch.Tensor, col_bias: torch.Tensor, h: int, w: int
) -> torch.Tensor:
    """The position bias of one direction for an H×W map, heads×agents×(H·W).

    ``agent_bias`` heads×n×s×s (a per-agent grid) is resized bilinearly to H×W; ``row_bias`` heads×n×T and
    ``col_bias`` heads×n×T (the row and column terms of the T×T training grid) are resized linearly to H and W
    and broadcast-added (the official code fixes H = W = T at construction).
    """
    heads, n = agent_bias.shape[0], agent_bias.shape[1]
    grid = F.interpolate(agent_bias, size=(h, w), mode="bilinear", align_corners=False)
    rows = row_bias if row_bias.shape[-1] == h else F.interpolate(row_bias, size=h, mode="linear", align_corners=False)
    cols = col_bias if col_bias.shape[-1] == w else F.interpolate(col_bias, size=w, mode="linear", align_corners=False)
    return (grid + rows.unsqueeze(-1) + cols.unsqueeze(-2)).reshape(heads, n, h * w)


@register(
    "agent_attention",
    family="self_attention",
    paper="Agent Attention: On the Integration of Softmax and Linear Attention (Han et al.; ECCV 2024)",
    url="https://arxiv.org/abs/2312.08874",
    complexity="O(N)",
    summary="n = 49 agents pooled from the queries: agents attend to all keys, queries attend to the agents (two softmaxes), plus a depthwise 3×3 conv of v.",
    test_kwargs={"heads": 2},
    maps=("agent_attn", "query_attn"),
    forms=(EXACT_POOL_FORM,),
)
class AgentAttention(AttnModule):
    """Agent attention over all positions of the map; B×C×H×W → B×C×H×W.

    ``q, k, v = Linear(tokens)``; agents ``A = AdaptiveAvgPool_{√n×√n}(Q)`` (n = ``agents`` = 49, exact PyTorch
    bins at every size); ``V_A = softmax(A Kᵀ/√d + B₁) V``; ``O = softmax(Q Aᵀ/√d + B₂) V_A + DWC₃ₓ₃(V)``;
    ``out = Linear(O)``.  Cost O(N·n).  Both softmaxes run through the fused SDPA entry point with the biases as
    additive masks.

    Biases (per head): B₁ from a √n×√n grid per agent resized bilinearly to H×W, plus per-agent row and column
    terms over a ``table_size``² training grid resized linearly to H and W; B₂ likewise (query side).  The official
    code sizes the row/column terms and the token grid at construction (square maps of that side only); here any
    H×W works, the terms being interpolated (equal to the official biases at H = W = ``table_size``).

    Args:
        channels: input channels C.
        heads: heads (default ``max(1, C // 32)``, must divide C).
        agents: number of agents n (a perfect square: pooled to √n×√n).
        table_size: side T of the training grid of the row / column bias terms.
        qkv_bias: bias in the q/k/v projection.
        attn_drop: dropout on both attention maps.
        proj_drop: dropout after the output projection.

    Captured maps: ``"agent_attn"`` B×heads×n×N (agents over positions), ``"query_attn"`` B×heads×N×n.
    """

    size_bounds: ClassVar[dict[str, SizeBound]] = {
        "agents": SizeBound(TABLE_BOUND, "agent tokens: heads·n² bias entries"),
        "table_size": SizeBound(TABLE_BOUND, "bias table side"),
    }

    def __init__(
        self,
        channels: int,
        heads: int | None = None,
        agents: int = 49,
        table_size: int = 14,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        owner = self.owner
        self.channels = c = positive_int(channels, owner, "channels")
        self.heads = max(1, c // 32) if heads is None else heads
        _, self.attn_drop, proj_drop = check_attention_args(
            owner, c, self.heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=proj_drop
        )
        self.agents = positive_int(agents, owner, "agents")
        self.pool_size = math.isqrt(agents)
        check_arg(self.pool_size**2 == agents, owner, "agents", "a perfect square (agents pooled to √n×√n)", agents)
        self.table_size = positive_int(table_size, owner, "table_size")
        self.qkv = nn.Linear(c, 3 * c, bias=qkv_bias)
        self.proj = nn.Linear(c, c)
        self.proj_drop = nn.Dropout(proj_drop)
        self.dwc = nn.Conv2d(c, c, 3, padding=1, groups=c)
        h, n, s, t = self.heads, agents, self.pool_size, table_size
        self.an_bias = nn.Parameter(torch.zeros(h, n, s, s))  # agents → positions (B₁)
        self.na_bias = nn.Parameter(torch.zeros(h, n, s, s))  # positions → agents (B₂)
        self.ah_bias = nn.Parameter(torch.zeros(h, n, t))
        self.aw_bias = nn.Parameter(torch.zeros(h, n, t))
        self.ha_bias = nn.Parameter(torch.zeros(h, n, t))
        self.wa_bias = nn.Parameter(torch.zeros(h, n, t))
        for p in (self.an_bias, self.na_bias, self.ah_bias, self.aw_bias, self.ha_bias, self.wa_bias):
            nn.init.trunc_normal_(p, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_nchw(x, self.channels, self.owner)
        b, c, h, w = x.shape
        heads, dh = self.heads, c // self.heads
        q, k, v = self.qkv(x.flatten(2).transpose(1, 2)).split((c, c, c), dim=-1)  # B×N×C each
        q_map = q.transpose(1, 2).reshape(b, c, h, w)
        agent = pool_agents(q_map, self.pool_size)  # B×n×C

        def split(t: torch.Tensor) -> torch.Tensor:  # B×L×C → B×heads×L×d
            return t.reshape(b, -1, heads, dh).transpose(1, 2)

        qh, kh, vh, ah = split(q), split(k), split(v), split(agent)
        bias1 = resized_biases(self.an_bias, self.ah_bias, self.aw_bias, h, w).to(q.dtype)  # heads×n×N
        bias2 = resized_biases(self.na_bias, self.ha_bias, self.wa_bias, h, w).to(q.dtype).transpose(1, 2)  # heads×N×n
        drop = self.attn_drop if self.training else 0.0
        agent_v = attention(ah, kh, vh, mask=bias1, dropout_p=drop, module=self, key="agent_attn")  # B×heads×n×d
        out = attention(qh, ah, agent_v, mask=bias2, dropout_p=drop, module=self, key="query_attn")  # B×heads×N×d
        out = out.transpose(1, 2).reshape(b, h * w, c) + self.dwc(v.transpose(1, 2).reshape(b, c, h, w)).flatten(
            2
        ).transpose(1, 2)
        return self.proj_drop(self.proj(out)).transpose(1, 2).reshape(b, c, h, w)

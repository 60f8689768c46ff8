"""Attention blocks as the widely copied community code writes them (explicit softmax(q kᵀ) v)."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from attnzoo.self_attention import (
    EfficientSelfAttention,
    SpatialSelfAttention,
)


class CommunityAttentionBlock(nn.Module):
    """The community ``AttentionBlock`` (tokens B×N×C), as written in the note (rearranges spelled out)."""

    def __init__(self, dim: int, heads: int, dim_head: int, qkv_bias: bool = False) -> None:
        super().__init__()
        inner = heads * dim_head
        self.project_out = not (heads == 1 and dim_head == dim)
        self.heads, self.scale = heads, dim_head ** -0.5
        self.norm = nn.LayerNorm(dim)
        self.to_qkv = nn.Linear(dim, inner * 3, bias=qkv_bias)
        self.to_out = nn.Linear(inner, dim) if self.project_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        b, n, _ = x.shape
        q, k, v = (t.reshape(b, n, self.heads, -1).permute(0, 2, 1, 3) for t in self.to_qkv(x).chunk(3, dim=-1))
        attn = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * self.scale, dim=-1)
        out = torch.matmul(attn, v).permute(0, 2, 1, 3).reshape(b, n, -1)
        return self.to_out(out)


class CommunitySelfAttention(nn.Module):
    """The community ``SelfAttention`` (tokens): qkv Linear, reshape(B, N, 3, h, d), proj."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = False) -> None:
        super().__init__()
        self.num_heads, self.scale = num_heads, (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        attn = ((qkv[0] @ qkv[1].transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj((attn @ qkv[2]).transpose(1, 2).reshape(b, n, c))


class CommunitySpatialSelfAttention(nn.Module):
    """The community ``SpatialSelfAttention`` with its q/k/v/out 1×1 convs; heads split explicitly (h = 1: the community code)."""

    def __init__(self, channels: int, out_channels: int, heads: int, reduction_ratio: int) -> None:
        super().__init__()
        r = max(1, channels // reduction_ratio)
        self.r, self.heads = r, heads
        self.q_conv = nn.Conv2d(channels, r, 1, bias=False)
        self.k_conv = nn.Conv2d(channels, r, 1, bias=False)
        self.v_conv = nn.Conv2d(channels, r, 1, bias=False)
        self.out_conv = nn.Conv2d(r, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        outs = []
        d = self.r // self.heads
        q, k, v = (c(x).flatten(2).permute(0, 2, 1) for c in (self.q_conv, self.k_conv, self.v_conv))  # B×N×r
        for i in range(self.heads):
            sl = slice(i * d, (i + 1) * d)
            attn = F.softmax((q[..., sl] @ k[..., sl].transpose(-2, -1)) / math.sqrt(d), dim=-1)
            outs.append(attn @ v[..., sl])
        out = torch.cat(outs, -1).permute(0, 2, 1).reshape(b, self.r, h, w)
        return self.out_conv(out)


class CommunityEfficientSelfAttention(nn.Module):
    """The community ``EfficientSelfAttention`` (1×1 convs with bias, avg-pooled keys/values) with heads split
    explicitly; the pooling keeps partial windows (``window_means``), equal to the seed's ``avg_pool2d`` when
    sr divides H and W."""

    def __init__(self, cin: int, key: int, value: int, out: int, scale: int, heads: int) -> None:
        super().__init__()
        self.scale, self.heads = scale, heads
        self.query_conv = nn.Conv2d(cin, key, 1)
        self.key_conv = nn.Conv2d(cin, key, 1)
        self.value_conv = nn.Conv2d(cin, value, 1)
        self.out_conv = nn.Conv2d(value, out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        query = self.query_conv(x)
        xs = window_means(x, self.scale) if self.scale > 1 else x
        key, value = self.key_conv(xs), self.value_conv(xs)
        query = query.flatten(2).permute(0, 2, 1)
        key = key.flatten(2)
        value = value.flatten(2).permute(0, 2, 1)
        dk, dv = key.shape[1] // self.heads, value.shape[2] // self.heads
        outs = []
        for i in range(self.heads):
            sim = torch.matmul(query[..., i * dk:(i + 1) * dk], key[:, i * dk:(i + 1) * dk])
            sim = (sim / math.sqrt(dk)).softmax(dim=-1)
            outs.append(torch.matmul(sim, value[..., i * dv:(i + 1) * dv]))
        context = torch.cat(outs, -1).permute(0, 2, 1).reshape(b, -1, h, w)
        return self.out_conv(context)


@torch.no_grad()
def community_spatial_from(m: SpatialSelfAttention) -> CommunitySpatialSelfAttention:
    ref = CommunitySpatialSelfAttention(m.channels, m.out_channels, m.heads, m.channels // m.reduced_channels).double()
    r = m.reduced_channels
    for i, conv in enumerate((ref.q_conv, ref.k_conv, ref.v_conv)):
        conv.weight.copy_(conv1x1_from(m.qkv.weight[i * r:(i + 1) * r]))
    ref.out_conv.weight.copy_(conv1x1_from(m.proj.weight))
    ref.out_conv.bias.copy_(m.proj.bias)
    return ref


@torch.no_grad()
def community_efficient_from(m: EfficientSelfAttention) -> CommunityEfficientSelfAttention:
    ref = CommunityEfficientSelfAttention(m.channels, m.key_channels, m.value_channels, m.out_channels, m.sr_ratio, m.heads).double()
    kc = m.key_channels
    ref.query_conv.weight.copy_(conv1x1_from(m.q.weight))
    ref.query_conv.bias.copy_(m.q.bias)
    ref.key_conv.weight.copy_(conv1x1_from(m.kv.weight[:kc]))
    ref.key_conv.bias.copy_(m.kv.bias[:kc])
    ref.value_conv.weight.copy_(conv1x1_from(m.kv.weight[kc:]))
    ref.value_conv.bias.copy_(m.kv.bias[kc:])
    ref.out_conv.weight.copy_(conv1x1_from(m.proj.weight))
    ref.out_conv.bias.copy_(m.proj.bias)
    return ref



def window_means(x: torch.Tensor, r: int) -> torch.Tensor:
    """Mean of every r×r window (bottom/right windows clipped to the map), by explicit loops."""
    h, w = x.shape[-2:]
    rows = []
    for i in range(0, h, r):
        rows.append(torch.stack([x[..., i:i + r, j:j + r].mean((-2, -1)) for j in range(0, w, r)], -1))
    return torch.stack(rows, -2)


def conv1x1_from(lin_weight: torch.Tensor) -> torch.Tensor:
    return lin_weight.reshape(*lin_weight.shape, 1, 1)


@torch.no_grad()
def bn_eval(x: torch.Tensor, bn: nn.BatchNorm2d) -> torch.Tensor:
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)


"""Faithfulness tests for global_attention, spatial_self_attention, efficient_self_attention,
self_attention_block and cot.

Each module is compared with a slow reference written from the paper / official code (or the community code
where the module follows it), with weights copied from the module under test; plus the invariants the
issue lists (permutation equivariance, fused attention kernel, capture) and the argument checks.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import attnzoo
from attnzoo.functional import local_aggregation
from attnzoo.self_attention import (
    EfficientSelfAttention,
    GlobalAttention,
    SelfAttentionBlock,
    SpatialSelfAttention,
)
from helpers import rand, randomize, require
from reference.community_attention import (
    CommunityAttentionBlock,
    CommunitySelfAttention,
    bn_eval,
    community_efficient_from,
    community_spatial_from,
    window_means,
)

FLASH = "aten::_scaled_dot_product_flash_attention_for_cpu"
MATH = "aten::_scaled_dot_product_attention_math"


def to_tokens(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(2).transpose(1, 2)


def to_map(t: torch.Tensor, h: int, w: int) -> torch.Tensor:
    return t.transpose(1, 2).reshape(t.shape[0], t.shape[2], h, w)


def close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-10) -> None:
    torch.testing.assert_close(a, b, atol=tol, rtol=tol)


# ----------------------------------------------------------------------------------------------------------
# references written from the seeds / official code (explicit softmax(q kᵀ) v, N×N matrices and all)


class PVTAttention(nn.Module):
    """Official PVT ``Attention`` (whai362/PVT classification/pvt.py), on tokens with (H, W).

    ``pad=True`` zero-pads the map to a multiple of sr before the reduction conv (attnzoo's extension for
    sizes PVT cannot take); at divisible sizes it changes nothing.
    """

    def __init__(self, dim: int, num_heads: int, sr_ratio: int, qkv_bias: bool = True) -> None:
        super().__init__()
        self.num_heads, self.sr_ratio = num_heads, sr_ratio
        self.scale = (dim // num_heads) ** -0.5
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, dim * 2, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, kernel_size=sr_ratio, stride=sr_ratio)
            self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, H: int, W: int, pad: bool = False) -> torch.Tensor:
        B, N, C = x.shape
        q = self.q(x).reshape(B, N, self.num_heads, C // self.num_heads).permute(0, 2, 1, 3)
        if self.sr_ratio > 1:
            x_ = x.permute(0, 2, 1).reshape(B, C, H, W)
            if pad:
                x_ = F.pad(x_, (0, (-W) % self.sr_ratio, 0, (-H) % self.sr_ratio))
            x_ = self.sr(x_).reshape(B, C, -1).permute(0, 2, 1)
            x_ = self.norm(x_)
            kv = self.kv(x_).reshape(B, -1, 2, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        else:
            kv = self.kv(x).reshape(B, -1, 2, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        k, v = kv[0], kv[1]
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(B, N, C)
        return self.proj(x)


@torch.no_grad()
def pvt_from(m: EfficientSelfAttention) -> PVTAttention:
    ref = PVTAttention(m.channels, m.heads, m.sr_ratio).double()
    for name in ("q", "kv", "proj") + (("sr", "norm") if m.sr_ratio > 1 else ()):
        getattr(ref, name).load_state_dict(getattr(m, name).state_dict())
    return ref


# ----------------------------------------------------------------------------------------------------------
# global_attention


@pytest.mark.faithful("global_attention")
@pytest.mark.parametrize("heads, dim_head, qkv_bias", [(2, 8, False), (3, 5, True), (1, 12, False)])
@pytest.mark.parametrize("size", [(7, 5), (1, 1), (4, 9)])
def test_global_attention_matches_seed_attention_block(heads, dim_head, qkv_bias, size):
    c = 12
    m = randomize(GlobalAttention(c, heads=heads, dim_head=dim_head, qkv_bias=qkv_bias)).double().eval()
    ref = CommunityAttentionBlock(c, heads, dim_head, qkv_bias).double()
    ref.norm.load_state_dict(m.norm.state_dict())
    ref.to_qkv.load_state_dict(m.to_qkv.state_dict())
    if ref.project_out:
        ref.to_out.load_state_dict(m.to_out[0].state_dict())
    else:
        assert isinstance(m.to_out, nn.Identity)  # heads == 1 and dim_head == C: the community code drops the projection
    x = rand(2, c, *size)
    close(m(x), to_map(ref(to_tokens(x)), *size))
    close(m.train()(x), to_map(ref(to_tokens(x)), *size))  # dropout defaults to 0


def test_global_attention_permutation_equivariant():
    m = randomize(GlobalAttention(16, heads=4, dim_head=8)).double().eval()
    x = rand(2, 16, 6, 7)
    perm = torch.randperm(42, generator=torch.Generator().manual_seed(5))
    xp = x.flatten(2)[:, :, perm].reshape(x.shape)
    close(m(xp).flatten(2), m(x).flatten(2)[:, :, perm])
    # and it is not trivially position-independent: outputs differ across positions
    assert (m(x).flatten(2).std(-1) > 1e-3).all()


def test_global_attention_project_out_flag():
    m = GlobalAttention(16, heads=2, dim_head=8, project_out=False)
    assert isinstance(m.to_out, nn.Identity)
    m = GlobalAttention(16, heads=1, dim_head=16, project_out=True)
    assert isinstance(m.to_out, nn.Sequential)


# ----------------------------------------------------------------------------------------------------------
# spatial_self_attention


@pytest.mark.faithful("spatial_self_attention")
@pytest.mark.parametrize("heads, reduction_ratio, out_channels", [(1, 8, None), (2, 4, None), (4, 2, 10)])
@pytest.mark.parametrize("size", [(7, 5), (1, 1), (3, 8)])
def test_spatial_self_attention_matches_seed(heads, reduction_ratio, out_channels, size):
    m = randomize(SpatialSelfAttention(32, out_channels=out_channels, heads=heads, reduction=reduction_ratio))
    m = m.double().eval()
    ref = community_spatial_from(m)
    x = rand(2, 32, *size)
    y = m(x)
    assert y.shape == (2, out_channels or 32, *size)
    close(y, ref(x))


def test_spatial_self_attention_heads_are_used():
    """heads=2 is a different function from heads=1 with the same weights (the community code ignores num_heads)."""
    a = SpatialSelfAttention(32, heads=1, reduction=4).double()
    b = SpatialSelfAttention(32, heads=2, reduction=4).double()
    b.load_state_dict(a.state_dict())
    x = rand(1, 32, 5, 6)
    assert (a(x) - b(x)).abs().max() > 1e-3


def test_spatial_self_attention_permutation_equivariant():
    m = randomize(SpatialSelfAttention(32, heads=2, reduction=4)).double()
    x = rand(2, 32, 5, 4)
    perm = torch.randperm(20, generator=torch.Generator().manual_seed(1))
    close(m(x.flatten(2)[:, :, perm].reshape(x.shape)).flatten(2), m(x).flatten(2)[:, :, perm])


# ----------------------------------------------------------------------------------------------------------
# efficient_self_attention


@pytest.mark.faithful("efficient_self_attention")
@pytest.mark.parametrize("sr, heads, size", [(4, 2, (8, 12)), (2, 4, (6, 6)), (1, 2, (5, 7)), (8, 1, (16, 8))])
def test_efficient_conv_matches_official_pvt(sr, heads, size):
    c = 16
    m = randomize(EfficientSelfAttention(c, heads=heads, sr_ratio=sr, sr_mode="conv")).double().eval()
    ref = pvt_from(m)
    x = rand(2, c, *size)
    close(m(x), to_map(ref(to_tokens(x), *size), *size))


@pytest.mark.parametrize("sr, size", [(4, (9, 6)), (3, (7, 5)), (8, (3, 5)), (8, (1, 1)), (5, (5, 11))])
def test_efficient_conv_pads_sizes_pvt_cannot_take(sr, size):
    """Non-divisible and smaller-than-sr maps: zero-padded bottom/right before the strided conv."""
    c = 8
    m = randomize(EfficientSelfAttention(c, heads=2, sr_ratio=sr, sr_mode="conv")).double().eval()
    ref = pvt_from(m)
    x = rand(2, c, *size)
    close(m(x), to_map(ref(to_tokens(x), *size, pad=True), *size))
    assert m.reduce(x).shape[-2:] == (math.ceil(size[0] / sr), math.ceil(size[1] / sr))


@pytest.mark.parametrize("key, value", [(8, 12), (12, 4)])  # head widths differ: q/k or v are padded for SDPA
@pytest.mark.parametrize("sr, heads, size", [(2, 2, (8, 6)), (3, 2, (7, 5)), (4, 1, (2, 3)), (8, 4, (9, 17)), (1, 2, (4, 5))])
def test_efficient_avg_matches_seed(sr, heads, size, key, value):
    m = EfficientSelfAttention(16, heads=heads, sr_ratio=sr, sr_mode="avg", key_channels=key, value_channels=value,
                               out_channels=10)
    m = randomize(m).double().eval()
    ref = community_efficient_from(m)
    x = rand(2, 16, *size)
    close(m(x), ref(x))


def test_avg_reduction_is_avg_pool_when_divisible_and_window_mean_otherwise():
    m = EfficientSelfAttention(4, sr_ratio=3, sr_mode="avg").double()
    x = rand(1, 4, 9, 6)
    close(m.reduce(x), F.avg_pool2d(x, 3))
    x = rand(1, 4, 10, 4)
    close(m.reduce(x), window_means(x, 3))
    x = rand(1, 4, 2, 2)
    close(m.reduce(x), x.mean((2, 3), keepdim=True))


# ----------------------------------------------------------------------------------------------------------
# self_attention_block


@pytest.mark.faithful("self_attention_block")
@pytest.mark.parametrize("size", [(7, 5), (1, 1), (16, 16)])
def test_block_standard_matches_seed(size):
    m = randomize(SelfAttentionBlock(16, attn_type="standard", heads=4, qkv_bias=True)).double().eval()
    ref = CommunitySelfAttention(16, 4, qkv_bias=True).double()
    ref.qkv.load_state_dict(m.attention.to_qkv.state_dict())
    ref.proj.load_state_dict(m.attention.to_out[0].state_dict())
    norm = m.attention.norm
    x = rand(2, 16, *size)
    t = F.layer_norm(to_tokens(x), (16,), norm.weight, norm.bias, norm.eps)
    close(m(x), x + to_map(ref(t), *size))


@pytest.mark.parametrize("size", [(7, 5), (1, 1)])
def test_block_spatial_matches_seed(size):
    m = randomize(SelfAttentionBlock(32, attn_type="spatial", heads=2, reduction=4)).double().eval()
    ref = community_spatial_from(m.attention)
    x = rand(2, 32, *size)
    close(m(x), x + ref(bn_eval(x, m.norm)))


@pytest.mark.parametrize("size", [(16, 16), (9, 7), (3, 2)])
def test_block_efficient_matches_seed(size):
    m = randomize(SelfAttentionBlock(32, attn_type="efficient")).double().eval()
    att = m.attention
    assert (att.key_channels, att.value_channels, att.sr_mode, att.sr_ratio) == (4, 16, "avg", 8)  # seed widths
    ref = community_efficient_from(att)
    x = rand(2, 32, *size)
    close(m(x), x + ref(bn_eval(x, m.norm)))


# ----------------------------------------------------------------------------------------------------------
# cot: unfold-based reference of the official CotLayer


def cot_reference(m: nn.Module, x: torch.Tensor, training: bool = False) -> torch.Tensor:
    """JDAI-CV/CoTNet ``CotLayer.forward`` with the CuPy ``LocalConvolution`` written as unfold + gather.

    Hard-codes the official structure: key conv groups 4, share_planes 8, factor 2, radix 2, and the
    weight-channel index ``c % (C/8)`` of ``aggregation_zeropad.py``.
    """
    b, c, h, w = x.shape
    k = m.kernel_size
    g = c // 8

    def bn(t: torch.Tensor, mod: nn.BatchNorm2d) -> torch.Tensor:
        return F.batch_norm(t, mod.running_mean.clone(), mod.running_var.clone(), mod.weight, mod.bias, training, 0.1, mod.eps)

    k1 = F.relu(bn(F.conv2d(x, m.key_embed[0].weight, padding=k // 2, groups=4), m.key_embed[1]))
    qk = torch.cat([x, k1], dim=1)
    e = m.embed
    hid = F.relu(bn(F.conv2d(qk, e[0].weight), e[1]))
    wts = F.group_norm(F.conv2d(hid, e[3].weight, e[3].bias), g, e[4].weight, e[4].bias, e[4].eps)
    wts = wts.view(b, 1, -1, k * k, h, w)  # official view: (b, 1, C/8, k², H, W)
    v = bn(F.conv2d(x, m.conv1x1[0].weight), m.conv1x1[1])
    cols = F.unfold(v, k, padding=k // 2).view(b, c, k * k, h, w)
    weight_channel = torch.arange(c) % g  # LocalConvolution: weight[..., c % weight_channels, ...]
    k2 = (cols * wts[:, 0, weight_channel]).sum(2)
    k2 = F.silu(bn(k2, m.bn))
    gap = torch.stack([k2, k1], 2).sum(2).mean((2, 3), keepdim=True)
    s = m.se
    logits = F.conv2d(F.relu(bn(F.conv2d(gap, s[0].weight, s[0].bias), s[1])), s[3].weight, s[3].bias).view(b, 2 * c)
    l0, l1 = logits[:, 0::2], logits[:, 1::2]  # view(B, C, radix): logit 2c → radix 0 (k2), 2c+1 → radix 1 (k1)
    a0 = 1.0 / (1.0 + torch.exp(l1 - l0))
    a1 = 1.0 / (1.0 + torch.exp(l0 - l1))
    return a0[..., None, None] * k2 + a1[..., None, None] * k1


@pytest.mark.faithful("cot")
@pytest.mark.parametrize("c, k, size", [(32, 3, (7, 5)), (16, 3, (1, 1)), (64, 5, (6, 9)), (32, 3, (2, 13))])
def test_cot_matches_official_cotlayer(c, k, size):
    m = randomize(attnzoo.create("cot", c, kernel_size=k)).double()
    x = rand(2, c, *size)
    close(m.eval()(x), cot_reference(m, x, training=False))
    close(m.train()(x), cot_reference(m, x, training=True))


def test_cot_official_widths():
    m = attnzoo.create("cot", 64)
    assert m.key_embed[0].groups == 4 and m.key_embed[0].kernel_size == (3, 3)
    assert m.embed[0].out_channels == 32 and m.embed[3].out_channels == 9 * 64 // 8
    assert m.embed[4].num_groups == 8
    assert m.se[0].out_channels == max(64 * 2 // 4, 32) and m.se[3].out_channels == 128
    assert attnzoo.create("cot", 256).se[0].out_channels == 128


def test_local_aggregation_is_a_depthwise_conv_for_static_kernels():
    """With spatially constant kernels the aggregation is a depthwise conv whose filter for channel c is
    kernel c % G — an independent check of the interleaved sharing and of the zero padding."""
    b, c, g, k, h, w = 2, 12, 4, 3, 5, 7
    v = rand(b, c, h, w)
    ker = rand(g, k * k, seed=1)
    wts = ker[None, :, :, None, None].expand(b, g, k * k, h, w)
    depthwise = ker[torch.arange(c) % g].view(c, 1, k, k)
    close(local_aggregation(v, wts, k), F.conv2d(v, depthwise, padding=k // 2, groups=c))
    blocked = ker[torch.arange(c) // (c // g)].view(c, 1, k, k)  # the other sharing pattern must differ
    assert (local_aggregation(v, wts, k) - F.conv2d(v, blocked, padding=k // 2, groups=c)).abs().max() > 1e-3


# ----------------------------------------------------------------------------------------------------------
# fused attention kernel, capture


def op_names(fn) -> set[str]:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    return {e.name for e in prof.events()}


ATTENTION_CASES = [
    ("global_attention", {"heads": 2, "dim_head": 8}),
    ("spatial_self_attention", {"heads": 2, "reduction": 4}),
    ("efficient_self_attention", {"heads": 2, "sr_ratio": 2, "sr_mode": "conv"}),
    ("efficient_self_attention", {"heads": 2, "sr_ratio": 3, "sr_mode": "avg"}),
    ("self_attention_block", {"attn_type": "standard", "heads": 2}),
    ("self_attention_block", {"attn_type": "spatial"}),
    ("self_attention_block", {"attn_type": "efficient", "sr_ratio": 2}),  # key C/8 ≠ value C/2
    ("efficient_self_attention", {"heads": 2, "sr_ratio": 2, "key_channels": 16, "value_channels": 8}),
]


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("name, kwargs", ATTENTION_CASES)
def test_flash_kernel_is_used(name, kwargs, channels_last):
    m = attnzoo.create(name, 32, **kwargs).train()
    x = torch.randn(2, 32, 20, 19)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()

    def step():
        m(x).square().sum().backward()

    names = op_names(step)
    assert FLASH in names and FLASH + "_backward" in names, sorted(n for n in names if "attention" in n)
    assert MATH not in names and "aten::_softmax" not in names  # no N×N probabilities anywhere


def test_channels_last_output_stays_channels_last():
    m = GlobalAttention(16, heads=2, dim_head=8)
    x = torch.randn(2, 16, 5, 6)
    assert m(x).is_contiguous()
    assert m(x.contiguous(memory_format=torch.channels_last)).is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("name, kwargs", ATTENTION_CASES)
def test_capture_records_attention_maps(name, kwargs):
    m = randomize(attnzoo.create(name, 32, **kwargs)).eval()
    x = torch.randn(2, 32, 7, 9)
    y = m(x)
    with attnzoo.capture_attention(m) as maps:
        yc = m(x)
    torch.testing.assert_close(yc, y, atol=1e-5, rtol=1e-4)
    (qual, got), = maps.items()
    assert qual == ("attention" if name == "self_attention_block" else "")
    attn = got["attn"]
    heads = kwargs.get("heads", 1)
    assert attn.shape[:3] == (2, heads, 63)
    torch.testing.assert_close(attn.sum(-1), torch.ones(2, heads, 63))


def test_captured_global_map_is_the_reference_softmax():
    m = randomize(GlobalAttention(8, heads=2, dim_head=4)).double()
    x = rand(1, 8, 3, 4)
    with attnzoo.capture_attention(m) as maps:
        m(x)
    t = m.norm(to_tokens(x))
    q, k, _ = (u.reshape(1, 12, 2, 4).transpose(1, 2) for u in m.to_qkv(t).chunk(3, -1))
    # layers.attention computes captured logits in float32 (also for float64 inputs), hence 1e-6
    close(maps[""]["attn"], (q @ k.transpose(-1, -2) / 2.0).softmax(-1), tol=1e-6)


def test_cot_capture():
    m = randomize(attnzoo.create("cot", 16)).eval()
    x = torch.randn(2, 16, 5, 4)
    with attnzoo.capture_attention(m) as maps:
        m(x)
    assert maps[""]["kernels"].shape == (2, 2, 9, 5, 4)
    radix = maps[""]["radix"]
    assert radix.shape == (2, 16, 2)
    torch.testing.assert_close(radix.sum(-1), torch.ones(2, 16))


# ----------------------------------------------------------------------------------------------------------
# other configurations through the contract's tracing / gradient checks (the contract runs the defaults)


VARIANTS = [
    ("self_attention_block", {"attn_type": "standard", "heads": 2}),
    ("self_attention_block", {"attn_type": "efficient", "sr_ratio": 3, "sr_mode": "conv", "heads": 2}),
    ("efficient_self_attention", {"sr_ratio": 4, "sr_mode": "avg", "heads": 2}),
    ("efficient_self_attention", {}),  # defaults: sr 8, conv
    ("spatial_self_attention", {"heads": 2, "reduction": 4, "out_channels": 8}),
    ("cot", {"kernel_size": 5, "key_groups": 8}),
]


@pytest.mark.parametrize("name, kwargs", VARIANTS)
def test_variants_trace_and_any_size(name, kwargs):
    m = randomize(attnzoo.create(name, 16, **kwargs)).eval()
    out_c = kwargs.get("out_channels", 16)
    for size in [(1, 1), (2, 3), (9, 7), (5, 17)]:
        x = torch.randn(2, 16, *size)
        y = m(x)
        assert y.shape == (2, out_c, *size) and torch.isfinite(y).all()
        torch.testing.assert_close(m(x.contiguous(memory_format=torch.channels_last)), y, atol=1e-5, rtol=1e-4)
    x = torch.randn(2, 16, 9, 7)
    gm = torch.fx.symbolic_trace(m)
    torch.testing.assert_close(gm(x), m(x), atol=0, rtol=0)
    with pytest.raises(ValueError):
        gm(torch.randn(2, 15, 9, 7))
    traced = torch.jit.trace(m, (x,), check_trace=False)
    x2 = torch.randn(2, 16, 9, 7)
    torch.testing.assert_close(traced(x2), m(x2), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name, kwargs", VARIANTS)
def test_variants_gradcheck(name, kwargs):
    m = randomize(attnzoo.create(name, 16, **kwargs)).double().train()
    x = rand(2, 16, 5, 4).requires_grad_()
    assert torch.autograd.gradcheck(m, (x,), eps=1e-6, atol=1e-5, rtol=1e-3, fast_mode=True)


@pytest.mark.slow
@pytest.mark.parametrize("name, kwargs", VARIANTS[:3])
def test_variants_export_and_onnx(name, kwargs, tmp_path):
    ort = require("onnxruntime")
    m = randomize(attnzoo.create(name, 16, **kwargs)).eval()
    x = torch.randn(2, 16, 9, 7)
    ep = torch.export.export(m, (x,))
    torch.testing.assert_close(ep.module()(x), m(x), atol=1e-5, rtol=1e-4)
    path = tmp_path / "m.onnx"
    torch.onnx.export(m, (x,), str(path), dynamo=True, verbose=False)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    torch.testing.assert_close(torch.from_numpy(got), m(x), atol=1e-4, rtol=1e-4)


# ----------------------------------------------------------------------------------------------------------
# argument checks


BAD_ARGS = [
    (GlobalAttention, (16,), {"heads": 0}, "heads"),
    (GlobalAttention, (16,), {"dim_head": 0}, "dim_head"),
    (GlobalAttention, (16,), {"heads": 2, "dim_head": 4, "project_out": False}, "output projection"),
    (GlobalAttention, (16,), {"dropout": 1.5}, "dropout"),
    (SpatialSelfAttention, (64,), {"heads": 3}, "heads"),  # C_r = 8
    (SpatialSelfAttention, (16,), {"heads": 4}, "heads"),  # C_r = 2
    (SpatialSelfAttention, (16,), {"reduction": 0}, "reduction"),
    (SpatialSelfAttention, (0,), {}, "channels"),
    (EfficientSelfAttention, (16,), {"heads": 3}, "heads"),
    (EfficientSelfAttention, (16,), {"heads": 4, "value_channels": 6}, "heads"),
    (EfficientSelfAttention, (16,), {"sr_ratio": 0}, "sr_ratio"),
    (EfficientSelfAttention, (16,), {"sr_mode": "max"}, "sr_mode"),
    (EfficientSelfAttention, (16,), {"attn_drop": -0.1}, "attn_drop"),
    (SelfAttentionBlock, (16,), {"attn_type": "local"}, "attn_type"),
    (SelfAttentionBlock, (16,), {"attn_type": "standard", "heads": 3}, "heads"),
    (SelfAttentionBlock, (16,), {"attn_type": "spatial", "sr_ratio": 2}, "sr_ratio"),
    (SelfAttentionBlock, (16,), {"attn_type": "spatial", "qkv_bias": True}, "qkv_bias"),
    (SelfAttentionBlock, (16,), {"attn_type": "standard", "reduction": 2}, "reduction"),
    (SelfAttentionBlock, (16,), {"attn_type": "efficient", "reduction": 2}, "reduction"),
    (SelfAttentionBlock, (16,), {"attention": "efficient", "heads": 4}, "heads"),  # key C//8 = 2
]


@pytest.mark.parametrize("cls, args, kwargs, what", BAD_ARGS)
def test_bad_arguments(cls, args, kwargs, what):
    with pytest.raises(ValueError, match=cls.__name__) as err:
        cls(*args, **kwargs)
    assert what in str(err.value) and "must be" in str(err.value) and "got" in str(err.value)


@pytest.mark.parametrize("kwargs, what", [
    ({}, "channels"),  # 20 is not divisible by share_planes 8
    ({"kernel_size": 4}, "kernel_size"),
    ({"key_groups": 5}, "key_groups"),
    ({"factor": 0}, "factor"),
])
def test_cot_bad_arguments(kwargs, what):
    c = 20 if not kwargs else 24
    with pytest.raises(ValueError, match="ContextualTransformer") as err:
        attnzoo.create("cot", c, **kwargs)
    assert what in str(err.value)


def test_unknown_keyword_is_rejected():
    with pytest.raises(TypeError):
        attnzoo.create("global_attention", 16, num_heads=2)
    with pytest.raises(TypeError):
        attnzoo.create("self_attention_block", 16, scale=2)


def test_wrong_input_channels_name_the_module():
    for name, cls in [("global_attention", "GlobalAttention"), ("cot", "ContextualTransformer"),
                      ("self_attention_block", "SelfAttentionBlock")]:
        m = attnzoo.create(name, 16, **attnzoo.info(name).test_kwargs)
        with pytest.raises(ValueError, match=f"{cls}.*expected 16"):
            m(torch.randn(1, 8, 4, 4))

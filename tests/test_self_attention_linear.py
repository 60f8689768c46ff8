"""Linear-cost and mobile vision-transformer attention (lite_mla, mobilevit_v2, mobilevit, focal_modulation):
parity with timm after copying weights, the explicit forms written out, argument errors."""

from __future__ import annotations

import pytest
import torch

import attnzoo
from attnzoo.testing import randomize
from helpers import rand, require
from reference.agent_attention import agent_attention as agent_attention_reference
from reference.common import bn_eval

timm = require("timm")


def make(name, channels=16, seed=1, scale=0.3, **kw):
    torch.manual_seed(0)
    return randomize(attnzoo.create(name, channels, **kw), seed=seed, scale=scale).double().eval()


# ---------------------------------------------------------------------------------------------- lite_mla


def _timm_lite_mla(m):
    from timm.models.efficientvit_mit import LiteMLA as TimmLiteMLA

    peer = TimmLiteMLA(m.channels, m.out_channels, heads=m.heads, dim=m.dim_head, scales=m.kernels, eps=m.eps)
    peer = peer.double().eval()
    with torch.no_grad():
        peer.qkv.conv.weight.copy_(m.qkv.weight)
        for ours, theirs in zip(m.aggreg, peer.aggreg):
            theirs[0].weight.copy_(ours[0].weight)
            theirs[1].weight.copy_(ours[1].weight)
        peer.proj.conv.weight.copy_(m.proj.conv.weight)
        peer.proj.norm.load_state_dict(m.proj.bn.state_dict())
    return peer


def _lite_mla_explicit(m, x):
    """The paper's equation with the N×N ReLU-kernel similarity written out (heads of every scale)."""
    qkv = m.qkv(x)
    multi = torch.cat([qkv] + [op(qkv) for op in m.aggreg], 1)
    b, _, h, w = x.shape
    d = m.dim_head
    t = multi.reshape(b, -1, 3 * d, h * w)
    q, k, v = torch.relu(t[:, :, :d]), torch.relu(t[:, :, d : 2 * d]), t[:, :, 2 * d :]
    sim = q.transpose(-1, -2) @ k  # B×heads×N×N, sim[i, j] = φq_i·φk_j
    out = (sim @ v.transpose(-1, -2)) / (sim.sum(-1, keepdim=True) + m.eps)
    out = out.transpose(-1, -2).reshape(b, -1, h, w)
    return bn_eval(m.proj.bn, torch.nn.functional.conv2d(out, m.proj.conv.weight))


@pytest.mark.faithful("lite_mla")
def test_lite_mla_matches_timm_and_the_explicit_form():
    """timm computes its attention in float32 whatever the input (float64 too): the parity runs in float32,
    the explicit N×N form in float64."""
    m = make("lite_mla", 16, kernels=(5, 3))
    x = rand(2, 16, 7, 5)
    with torch.no_grad():
        torch.testing.assert_close(m(x), _lite_mla_explicit(m, x))
        torch.testing.assert_close(m.float()(x.float()), _timm_lite_mla(m).float()(x.float()))
    m1 = make("lite_mla", 24, out_channels=8, heads=2, dim_head=4).float()  # 1×1 map, other widths
    x1 = rand(1, 24, 1, 1, dtype=torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(m1(x1), _timm_lite_mla(m1).float()(x1))


def test_lite_mla_defaults_float32_and_errors():
    m = attnzoo.create("lite_mla", 32)
    assert (m.heads, m.dim_head, m.kernels, m.eps) == (4, 8, (5,), 1e-15)
    assert m.aggreg[0][1].groups == 12 and m.proj.conv.in_channels == 64
    x = rand(1, 32, 6, 5, dtype=torch.float32) * 100
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = m(x)
    assert y.dtype == torch.bfloat16 and torch.isfinite(y).all()
    with pytest.raises(ValueError, match="LiteMLA"):
        attnzoo.create("lite_mla", 4)  # fewer channels than dim_head: 0 heads
    with pytest.raises(ValueError, match="LiteMLA"):
        attnzoo.create("lite_mla", 16, kernels=(4,))


# ------------------------------------------------------------------------------------------ mobilevit_v2


def _timm_layers():
    from functools import partial

    from timm.layers import ConvNormAct
    from timm.models.byobnet import LayerFn

    return LayerFn(conv_norm_act=partial(ConvNormAct, act_layer=torch.nn.SiLU), act=torch.nn.SiLU)


def _timm_mobilevit_v2(m):
    from timm.models.mobilevit import MobileVitV2Block

    peer = MobileVitV2Block(m.channels, m.out_channels, kernel_size=m.kernel_size, group_size=1, mlp_ratio=m.mlp_ratio,
                            transformer_dim=m.hidden_channels, transformer_depth=m.num_layers, patch_size=m.patch_size,
                            layers=_timm_layers())
    peer.load_state_dict(m.state_dict())
    return peer.double().eval()


@pytest.mark.faithful("mobilevit_v2")
def test_mobilevit_v2_matches_timm():
    """Equal to timm's MobileVitV2Block (weights loaded as they are) on multiples of the patch; elsewhere timm
    resizes the input up and returns the enlarged map, which attnzoo resizes back; each layer's attention is timm's
    LinearSelfAttention."""
    from timm.models.mobilevit import LinearSelfAttention

    m = make("mobilevit_v2", 16, out_channels=12)
    peer = _timm_mobilevit_v2(m)
    x = rand(2, 16, 6, 8)
    with torch.no_grad():
        torch.testing.assert_close(m(x), peer(x))
        x = rand(1, 16, 5, 3)
        torch.testing.assert_close(
            m(x), torch.nn.functional.interpolate(peer(x), size=(5, 3), mode="bilinear", align_corners=True))
        attn = LinearSelfAttention(m.hidden_channels).double()
        attn.load_state_dict(m.transformer[0].attn.state_dict())
        t = rand(2, m.hidden_channels, 4, 9)
        torch.testing.assert_close(m.transformer[0].attn(t), attn(t))


def test_mobilevit_v2_defaults_and_patches():
    m = attnzoo.create("mobilevit_v2", 64)
    assert (m.hidden_channels, m.num_layers, m.patch_size, m.mlp_ratio) == (32, 2, 2, 2.0)
    assert attnzoo.create("mobilevit_v2", 16).hidden_channels == 8
    # attention runs across patches at equal in-patch offsets: permuting whole 2×2 patches of the (conv-free)
    # transformer input permutes its output
    t = rand(2, 8, 4, 6)
    perm = torch.randperm(6, generator=torch.Generator().manual_seed(0))
    layer = make("mobilevit_v2", 16).transformer
    with torch.no_grad():
        torch.testing.assert_close(layer(t)[..., perm], layer(t[..., perm]))
    with pytest.raises(ValueError, match="MobileViTV2Block"):
        attnzoo.create("mobilevit_v2", 16, patch_size=0)


# -------------------------------------------------------------------------------------- focal_modulation


@pytest.mark.faithful("focal_modulation")
@pytest.mark.parametrize("kw", [{}, {"focal_level": 3, "normalize_modulator": True, "use_post_norm": True}])
def test_focal_modulation_matches_timm(kw):
    """timm's FocalModulation with the module's state dict (its post-norm ε set to the official 1e-5); the
    forward stores nothing on the module."""
    from timm.models.focalnet import FocalModulation as TimmFocal

    m = make("focal_modulation", 16, **kw)
    peer = TimmFocal(16, focal_window=3, focal_level=m.focal_level, normalize_modulator=m.normalize_modulator,
                     use_post_norm=m.use_post_norm).double().eval()
    peer.load_state_dict(m.state_dict())
    if m.use_post_norm:
        peer.norm.eps = m.norm.eps  # the official nn.LayerNorm's 1e-5 (timm's LayerNorm2d: 1e-6)
    x = rand(2, 16, 9, 6)
    before = dict(vars(m))
    with torch.no_grad():
        torch.testing.assert_close(m(x), peer(x))
    assert vars(m).keys() == before.keys() and not any(isinstance(v, torch.Tensor) for v in vars(m).values())


@pytest.mark.faithful("focal_modulation")
def test_focal_modulation_is_local_without_the_global_gate():
    """With the global gate channel zeroed, out[p] depends on the 7×7 neighbourhood only (3×3 then 5×5)."""
    m = make("focal_modulation", 8)
    with torch.no_grad():
        m.f.weight[-1].zero_()
        m.f.bias[-1].zero_()
    x = rand(1, 8, 11, 11).requires_grad_()
    m(x)[0, :, 5, 5].sum().backward()
    hit = x.grad[0].abs().sum(0) > 0
    assert hit[2:9, 2:9].all() and hit.sum() == 49
    assert sum(p.numel() for p in attnzoo.create("focal_modulation", 16).parameters()) == (
        16 * 35 + 35 + 16 * 9 + 16 * 25 + 2 * (16 * 16 + 16))


# --------------------------------------------------------------------------------------------- mobilevit


@pytest.mark.faithful("mobilevit")
@pytest.mark.parametrize("size", [(6, 4), (5, 7)])
def test_mobilevit_matches_timm(size):
    """timm's MobileVitBlock with the module's state dict: 2×2 patches; odd sides resized up and back (bilinear)
    around the transformer by both."""
    from timm.models.mobilevit import MobileVitBlock

    m = make("mobilevit", 16, hidden_channels=8, heads=2, out_channels=12)
    peer = MobileVitBlock(16, 12, transformer_dim=8, transformer_depth=2, patch_size=2, num_heads=2,
                          layers=_timm_layers()).double().eval()
    peer.load_state_dict(m.state_dict())
    x = rand(2, 16, *size)
    with torch.no_grad():
        torch.testing.assert_close(m(x), peer(x))


@pytest.mark.faithful("mobilevit")
def test_mobilevit_attends_across_patches_at_equal_offsets():
    """Without the fusion, permuting whole 2×2 patches of the transformer's input permutes its output."""
    m = make("mobilevit", 16, heads=2)
    t = rand(2, 4, 6, 16)  # B×P×N×d
    perm = torch.randperm(6, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(m.transformer(t)[:, :, perm], m.transformer(t[:, :, perm]))
    with attnzoo.capture_attention(m) as maps:
        m(rand(1, 16, 4, 6))
    assert maps["transformer.0.attn"]["attn"].shape == (4, 2, 6, 6)  # (B·P)×heads×N×N
    with pytest.raises(ValueError, match="MobileViTBlock"):
        attnzoo.create("mobilevit", 16, heads=3)


# --------------------------------------------------------------------------------------- agent_attention


@pytest.mark.faithful("agent_attention")
@pytest.mark.parametrize("size", [(5, 5), (9, 4), (2, 3)])
def test_agent_attention_matches_the_paper(size):
    """The two-softmax composition with explicit matrices (tests/reference/agent_attention.py): at the training
    grid (5×5 = table_size) the official biases exactly; elsewhere the biases resized; maps of 2×3 pool to 3×3
    agents with repeated bins."""
    m = make("agent_attention", 16, heads=2, agents=9, table_size=5)
    x = rand(2, 16, *size)
    with torch.no_grad():
        torch.testing.assert_close(m(x), agent_attention_reference(m, x))


def test_agent_attention_maps_and_errors():
    m = make("agent_attention", 16, heads=2)
    assert m.agents == 49 and m.pool_size == 7 and attnzoo.create("agent_attention", 64).heads == 2
    with attnzoo.capture_attention(m) as maps, torch.no_grad():
        m(rand(1, 16, 8, 6))
    assert maps[""]["agent_attn"].shape == (1, 2, 49, 48) and maps[""]["query_attn"].shape == (1, 2, 48, 49)
    torch.testing.assert_close(maps[""]["query_attn"].sum(-1), torch.ones(1, 2, 48, dtype=torch.float64))
    with pytest.raises(ValueError, match="AgentAttention"):
        attnzoo.create("agent_attention", 16, agents=10)

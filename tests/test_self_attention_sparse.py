"""Faithfulness of the global-but-sparse self-attention modules (criss_cross, double_attention,
external_attention, axial, halo): slow references written from the papers / official code (tests/reference/),
parity with the peers after copying weights (External-Attention / fightingcv-attention, timm ``HaloAttn``),
the defining invariants (criss-cross and halo locality by gradients, identity at init, the normalisations),
no N×N tensors, attention-map capture and argument errors."""

from __future__ import annotations

import importlib

import pytest
import torch
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

import attnzoo
from attnzoo.self_attention.external_attention import _external_attention
from helpers import rand, randomize
from reference import a2net, axial, ccnet, eanet, halonet


def make(name, channels=16, dtype=torch.float64, scale=0.3, **kw):
    torch.manual_seed(0)
    m = attnzoo.create(name, channels, **kw)
    return randomize(m, scale=scale).to(dtype).eval()


def fcv(module, name):
    return getattr(importlib.import_module(f"fightingcv_attention.attention.{module}"), name)


class MaxNumel(TorchDispatchMode):
    """Largest tensor produced by any op during a forward."""

    def __init__(self):
        super().__init__()
        self.max = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self.max = max(self.max, t.numel())
        return out


def dependence(m, x, pos):
    """|∂ out[:, :, pos] / ∂ x| summed over batch and channels: an H×W map of which inputs the output at ``pos`` sees."""
    x = x.clone().requires_grad_()
    out = m(x)
    out[:, :, pos[0], pos[1]].sum().backward()
    return x.grad.abs().sum((0, 1))


SIZES = [(5, 6), (1, 4), (3, 1), (7, 7)]

# ------------------------------------------------------------------------------------------------ criss_cross


@pytest.mark.faithful("criss_cross")
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("recurrence", [1, 2])
def test_criss_cross_matches_reference(size, recurrence):
    m = make("criss_cross", 16, recurrence=recurrence)
    x = rand(2, 16, *size)
    torch.testing.assert_close(m(x), ccnet.criss_cross(m, x))


@pytest.mark.faithful("criss_cross")
def test_criss_cross_matches_external_attention_copy():
    """The community copy (CCNet-Pure-Pytorch in External-Attention) with the same weights, on CPU."""
    m = make("criss_cross", 16, dtype=torch.float32)
    peer = fcv("CrissCrossAttention", "CrissCrossAttention")(16)
    c = m.hidden_channels
    w, b = m.qkv_weight.detach(), m.qkv_bias.detach()
    with torch.no_grad():
        for conv, s in ((peer.query_conv, slice(0, c)), (peer.key_conv, slice(c, 2 * c)), (peer.value_conv, slice(2 * c, None))):
            conv.weight.copy_(w[s, :, None, None])
            conv.bias.copy_(b[s])
        peer.gamma.copy_(m.gamma)
    x = rand(2, 16, 6, 9, dtype=torch.float32)
    torch.testing.assert_close(m(x), peer(x), atol=1e-5, rtol=1e-4)


@pytest.mark.faithful("criss_cross")
def test_criss_cross_depends_on_row_and_column_only():
    m = make("criss_cross", 16)
    x = rand(1, 16, 7, 9)
    g = dependence(m, x, (3, 5))
    cross = torch.zeros(7, 9, dtype=torch.bool)
    cross[3, :] = True
    cross[:, 5] = True
    assert (g[~cross] == 0).all() and (g[cross] > 0).all()
    m2 = make("criss_cross", 16, recurrence=2)  # RCCA: two steps reach the whole image
    assert (dependence(m2, x, (3, 5)) > 0).all()


@pytest.mark.faithful("criss_cross")
def test_criss_cross_identity_at_init_and_capture():
    torch.manual_seed(0)
    m = attnzoo.create("criss_cross", 16).eval()
    x = rand(2, 16, 5, 6, dtype=torch.float32)
    assert float(m.gamma.detach()) == 0.0
    torch.testing.assert_close(m(x), x, atol=0, rtol=0)
    m = make("criss_cross", 16)
    x = rand(2, 16, 5, 6)
    with attnzoo.capture_attention(m) as maps:
        m(x)
    attn = maps[""]["attn"]
    assert attn.shape == (2, 5, 6, 5 + 6 - 1)
    torch.testing.assert_close(attn.sum(-1), torch.ones(2, 5, 6, dtype=attn.dtype))
    torch.testing.assert_close(attn, ccnet.cca(m, x)[1])


def test_criss_cross_memory_is_not_quadratic_and_finite_in_half():
    m = make("criss_cross", 16, dtype=torch.float32)
    x = rand(2, 16, 24, 24, dtype=torch.float32)
    with torch.no_grad(), MaxNumel() as mode:
        m(x)
    n = 24 * 24
    assert mode.max < 2 * n * n // 4  # B·N·(H+W) scores at most, never B·N·N
    for size in ((1, 7), (7, 1), (1, 1)):  # a single row / column: the masked self entry never gives NaN
        with torch.autocast("cpu", dtype=torch.float16):
            y = m(rand(1, 16, *size, dtype=torch.float32))
        assert torch.isfinite(y).all()


def test_criss_cross_errors():
    for kw in ({"reduction": 0}, {"recurrence": 0}, {"recurrence": 1.5}, {"hidden_channels": 0}, {"reduction": "8"}):
        with pytest.raises(ValueError, match="CrissCrossAttention"):
            attnzoo.create("criss_cross", 16, **kw)
    assert attnzoo.create("criss_cross", 4).hidden_channels == 1  # C // 8 floored at 1, never 0


# ------------------------------------------------------------------------------------------- double_attention


@pytest.mark.faithful("double_attention")
@pytest.mark.parametrize("size", [(5, 6), (1, 1), (3, 7)])
def test_double_attention_matches_reference(size):
    m = make("double_attention", 16, c_m=6, c_n=5)
    x = rand(2, 16, *size)
    torch.testing.assert_close(m(x), a2net.double_attention(m, x))
    d = make("double_attention", 16)
    assert (d.c_m, d.c_n) == (4, 4)  # defaults C/4
    torch.testing.assert_close(d(x), a2net.double_attention(d, x))


@pytest.mark.faithful("double_attention")
def test_double_attention_normalisations_and_batch_independence():
    """Gather maps sum to 1 over positions, distribution vectors over descriptors; samples never mix (the
    External-Attention copy's implicit softmax dim normalises over the batch)."""
    m = make("double_attention", 16)
    x = rand(2, 16, 5, 6)
    with attnzoo.capture_attention(m) as maps:
        y = m(x)
    g, d = maps[""]["gather"], maps[""]["distribute"]
    torch.testing.assert_close(g.sum((2, 3)), torch.ones(2, 4, dtype=g.dtype))
    torch.testing.assert_close(d.sum(1), torch.ones(2, 5, 6, dtype=d.dtype))
    x2 = x.clone()
    x2[1] = rand(16, 5, 6, seed=9)
    torch.testing.assert_close(m(x2)[0], y[0], atol=0, rtol=0)
    torch.testing.assert_close(m(x[:1]), y[:1])


def test_double_attention_errors():
    for kw in ({"c_m": 0}, {"c_n": -1}, {"c_m": 2.0}):
        with pytest.raises(ValueError, match="DoubleAttention"):
            attnzoo.create("double_attention", 16, **kw)
    assert (attnzoo.create("double_attention", 2).c_m, attnzoo.create("double_attention", 2).c_n) == (1, 1)


# ----------------------------------------------------------------------------------------- external_attention


@pytest.mark.faithful("external_attention")
@pytest.mark.parametrize("size", [(5, 6), (1, 1), (9, 2)])
def test_external_attention_matches_reference(size):
    m = make("external_attention", 16, memory=8)
    x = rand(2, 16, *size)
    torch.testing.assert_close(m(x), eanet.external_attention(m, x))


@pytest.mark.faithful("external_attention")
def test_external_attention_core_matches_external_attention_copy():
    """fightingcv's ``ExternalAttention`` is the memory core alone (tokens in, no conv/BN/residual/ReLU): with the
    same M_k, M_v it equals the core of the block on conv_in(x)."""
    m = make("external_attention", 16, memory=8, dtype=torch.float32)
    peer = fcv("ExternalAttention", "ExternalAttention")(d_model=16, S=8)
    with torch.no_grad():
        peer.mk.weight.copy_(m.mk.weight[:, :, 0])
        peer.mv.weight.copy_(m.mv.weight[:, :, 0])
    x = rand(2, 16, 5, 7, dtype=torch.float32)
    core = _external_attention(x, m.conv_in, m.mk, m.mv, None)
    u = m.conv_in(x).flatten(2).transpose(1, 2)
    torch.testing.assert_close(core.flatten(2).transpose(1, 2), peer(u), atol=1e-6, rtol=1e-5)


@pytest.mark.faithful("external_attention")
def test_external_attention_defaults_double_normalisation_and_linear_cost():
    torch.manual_seed(0)
    m = attnzoo.create("external_attention", 32)
    assert m.memory == 64
    torch.testing.assert_close(m.mv.weight, m.mk.weight.transpose(0, 1))  # official init: M_v = M_kᵀ
    m = make("external_attention", 16, memory=8)
    x = rand(2, 16, 6, 5)
    with attnzoo.capture_attention(m) as maps:
        m(x)
    a = maps[""]["attn"]
    assert a.shape == (2, 8, 6, 5)
    torch.testing.assert_close(a.sum(1), torch.ones(2, 6, 5, dtype=a.dtype))  # ℓ1 over the memory units
    torch.testing.assert_close(a, eanet.memory_core(m, x)[1].reshape(2, 8, 6, 5))
    m = m.float()
    with torch.no_grad(), MaxNumel() as mode:
        m(rand(2, 16, 32, 32, dtype=torch.float32))
    assert mode.max <= 2 * 16 * 32 * 32  # nothing beyond C×N per sample (S = 8 < C)


def test_external_attention_errors():
    for kw in ({"memory": 0}, {"memory": 1.5}, {"memory": 10**9}):
        with pytest.raises(ValueError, match="ExternalAttention"):
            attnzoo.create("external_attention", 16, **kw)


# ----------------------------------------------------------------------------------------------------- axial


@pytest.mark.faithful("axial")
@pytest.mark.parametrize("size", SIZES)
def test_axial_matches_explicit_attention_along_each_axis(size):
    m = make("axial", 16, heads=2, dim_head=6)
    x = rand(2, 16, *size)
    torch.testing.assert_close(m(x), axial.axial(m, x))


@pytest.mark.faithful("axial")
def test_axial_matches_external_attention_copy():
    """lucidrains' AxialAttention (External-Attention copy) with ``sum_axial_out=False``: height then width."""
    m = make("axial", 16, heads=2, dim_head=8, dtype=torch.float32)
    peer = fcv("Axial_attention", "AxialAttention")(16, num_dimensions=2, heads=2, dim_heads=8, dim_index=1,
                                                    sum_axial_out=False)
    inner = 16
    with torch.no_grad():
        for ours, theirs in zip((m.attn_h, m.attn_w), peer.axial_attentions):
            sa = theirs.fn
            sa.to_q.weight.copy_(ours.to_qkv.weight[:inner])
            sa.to_kv.weight.copy_(ours.to_qkv.weight[inner:])
            sa.to_out.weight.copy_(ours.to_out.weight)
            sa.to_out.bias.copy_(ours.to_out.bias)
    x = rand(2, 16, 6, 9, dtype=torch.float32)
    torch.testing.assert_close(m(x), peer(x), atol=1e-5, rtol=1e-4)


@pytest.mark.faithful("axial")
def test_axial_sees_the_whole_map_after_two_axes_and_captures():
    m = make("axial", 16, heads=2, dim_head=4)
    x = rand(1, 16, 5, 7)
    assert (dependence(m, x, (2, 3)) > 0).all()
    with attnzoo.capture_attention(m) as maps:
        m(x)
    assert maps[""]["attn_h"].shape == (7, 2, 5, 5) and maps[""]["attn_w"].shape == (5, 2, 7, 7)
    with torch.no_grad(), MaxNumel() as mode:
        make("axial", 16, heads=2, dim_head=4, dtype=torch.float32)(rand(2, 16, 24, 24, dtype=torch.float32))
    assert mode.max < 2 * 2 * (24 * 24) ** 2 // 8  # never the B×heads×N×N matrix


def test_axial_errors():
    for kw in ({"heads": 3}, {"heads": 0}, {"dim_head": 0}, {"attn_drop": 1.0}, {"qkv_bias": 1}):
        with pytest.raises(ValueError, match="AxialAttention"):
            attnzoo.create("axial", 16, **kw)


# ------------------------------------------------------------------------------------------------------ halo


@pytest.mark.faithful("halo")
@pytest.mark.parametrize("size", [(8, 8), (7, 5), (13, 11), (3, 2), (1, 1), (9, 4)])
def test_halo_matches_per_query_reference(size):
    m = make("halo", 16, block_size=4, halo_size=1, heads=2, dim_head=6)
    x = rand(2, 16, *size)
    torch.testing.assert_close(m(x), halonet.halo(m, x))


@pytest.mark.faithful("halo")
def test_halo_official_defaults_match_reference_on_odd_size():
    m = make("halo", 16, heads=2)
    assert (m.block_size, m.halo_size) == (8, 3)
    x = rand(1, 16, 11, 13)
    torch.testing.assert_close(m(x), halonet.halo(m, x))
    m0 = make("halo", 16, block_size=3, halo_size=0, heads=2)  # no halo: plain block attention
    x = rand(1, 16, 7, 5)
    torch.testing.assert_close(m0(x), halonet.halo(m0, x))


@pytest.mark.faithful("halo")
def test_halo_in_chunks_of_block_rows_forward_and_gradients(monkeypatch):
    """Blocks in chunks of one block row of one image (checkpointed under autograd) against the per-query
    reference, and their input and parameter gradients against those of all blocks at once."""
    from attnzoo.self_attention import halo as halo_mod

    m = make("halo", 8, block_size=2, halo_size=1, heads=2, dim_head=3)
    x = rand(2, 8, 5, 4).requires_grad_()
    params = [x, *m.parameters()]
    whole = m(x)
    g = rand(*whole.shape, seed=1)
    expected = torch.autograd.grad(whole, params, g)
    monkeypatch.setattr(halo_mod, "_CHUNK", 1)
    out = m(x)
    torch.testing.assert_close(out, halonet.halo(m, x.detach()))
    for a, b in zip(torch.autograd.grad(out, params, g), expected):
        torch.testing.assert_close(a, b)


@pytest.mark.faithful("halo")
@pytest.mark.parametrize("size", [(16, 16), (13, 10)])
def test_halo_dependence_limited_to_block_and_halo(size):
    b, h = 4, 1
    m = make("halo", 16, block_size=b, halo_size=h, heads=2)
    x = rand(1, 16, *size)
    for pos in ((5, 6), (0, 0), (size[0] - 1, size[1] - 1)):
        g = dependence(m, x, pos)
        by, bx = pos[0] // b, pos[1] // b
        inside = torch.zeros(size, dtype=torch.bool)
        inside[max(by * b - h, 0) : by * b + b + h, max(bx * b - h, 0) : bx * b + b + h] = True
        assert (g[~inside] == 0).all() and (g[inside] > 0).all()


def _timm_halo(m):
    """timm's HaloAttn with the module's weights: same q / kv conv layout (per head [k | v]); its relative tables
    have 2(b+2h)−1 rows of which the first 2h are never used (offsets key − query start at −(b+h−1))."""
    from timm.layers.halo_attn import HaloAttn

    peer = HaloAttn(m.channels, num_heads=m.heads, dim_head=m.dim_head, block_size=m.block_size, halo_size=m.halo_size)
    peer = peer.to(m.q.weight.dtype)
    skip = 2 * m.halo_size
    with torch.no_grad():
        peer.q.weight.copy_(m.q.weight)
        peer.kv.weight.copy_(m.kv.weight)
        peer.pos_embed.height_rel.zero_()[skip:].copy_(m.height_rel)
        peer.pos_embed.width_rel.zero_()[skip:].copy_(m.width_rel)
    return peer.eval()


@pytest.mark.faithful("halo")
@pytest.mark.parametrize("cfg", [(4, 1, 16), (8, 3, 32)])
def test_halo_matches_timm_away_from_the_border(cfg):
    """timm asserts divisibility and attends to its zero halo padding (logit = position term only, value 0) in
    border blocks; attnzoo masks it.  On divisible sizes the interior blocks (whose neighbourhoods lie inside the
    image) agree exactly; the border blocks differ by the masking only (checked against the reference)."""
    b, h, size = cfg
    m = make("halo", 16, block_size=b, halo_size=h, heads=2, dim_head=8)
    x = rand(2, 16, size, size + b)
    ours, theirs = m(x), _timm_halo(m)(x)
    inner = (slice(None), slice(None), slice(b, size - b), slice(b, size))
    torch.testing.assert_close(ours[inner], theirs[inner])
    assert not torch.allclose(ours[:, :, :b], theirs[:, :, :b])


@pytest.mark.faithful("halo")
def test_halo_capture_and_masked_padding():
    m = make("halo", 16, block_size=4, halo_size=1, heads=2)
    x = rand(1, 16, 5, 6)
    with attnzoo.capture_attention(m) as maps:
        y = m(x)
    a = maps[""]["attn"]  # (B·blocks)×heads×b²×(b+2h)²
    assert a.shape == (4, 2, 16, 36)
    torch.testing.assert_close(a.sum(-1), torch.ones(4, 2, 16, dtype=a.dtype))
    assert (a[0, :, :, :6] == 0).all()  # block (0, 0): its top halo row is outside the image
    torch.testing.assert_close(y, halonet.halo(m, x))


def test_halo_errors():
    for kw in ({"heads": 3}, {"block_size": 0}, {"halo_size": -1}, {"dim_head": 0}, {"qkv_bias": None}, {"block_size": 2.0}):
        with pytest.raises(ValueError, match="HaloAttention"):
            attnzoo.create("halo", 16, **kw)

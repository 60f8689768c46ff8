"""Faithfulness tests of the sparse and deformable local modules: neighborhood (NAT/DiNAT), bra (BiFormer),
deformable_attention (DAT), dcnv2 (DCNv2).

Independent computations: NATTEN's ``na2d`` (the authors' library) and an explicit per-query loop with NATTEN's
window rules (tests/reference/nat.py); BiFormer written as the official code (``torch.gather`` of routed regions)
and plain full attention (tests/reference/biformer.py); DAT written out with hand-made bilinear sampling
(tests/reference/dat.py); torchvision's ``deform_conv2d`` and an explicit bilinear loop (tests/reference/dcn.py).
"""

from __future__ import annotations

from functools import partial

import pytest
import torch
import torch.nn.functional as F

import attnzoo
from attnzoo.local import (
    BiLevelRoutingAttention,
    DeformableAttention,
    ModulatedDeformConv,
    NeighborhoodAttention,
)
from attnzoo.local.dcnv2 import deform_conv2d_portable
from attnzoo.local.neighborhood import neighborhood_attention
from attnzoo.testing import randomize
from helpers import rand as rand64
from helpers import require
from reference.biformer import bra_official, full_attention
from reference.dat import dat_ref
from reference.dcn import dcnv2_ref, deform_conv2d_ref
from reference.nat import nat_ref

D = torch.float64


rand = partial(rand64, seed=1)


# ------------------------------------------------------------------------------------------------------------------
# neighborhood (NAT / DiNAT)
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.faithful("neighborhood")
@pytest.mark.parametrize("h,w,k,d", [(14, 14, 7, 1), (13, 17, 5, 2), (15, 9, 3, 3), (7, 7, 7, 1), (12, 10, 3, 1)])
def test_neighborhood_attention_equals_natten_na2d(h, w, k, d):
    """The attention itself against the authors' library (NATTEN 0.21 has no relative position bias any more, so
    this parity is without it; the bias is checked against the explicit reference below)."""
    natten = require("natten.functional")
    g = torch.Generator().manual_seed(0)
    q, kk, v = (torch.randn(2, h, w, 2, 8, generator=g) for _ in range(3))  # NATTEN layout B×H×W×heads×d
    with torch.no_grad():
        ref = natten.na2d(q, kk, v, kernel_size=k, dilation=d)
        out = neighborhood_attention(*(t.permute(0, 3, 1, 2, 4) for t in (q, kk, v)), k, d).permute(0, 2, 3, 1, 4)
    torch.testing.assert_close(out, ref, atol=2e-6, rtol=1e-5)


@pytest.mark.faithful("neighborhood")
def test_neighborhood_module_equals_natten_module_without_rpb():
    """``position_bias=False`` has NATTEN's ``NeighborhoodAttention2D`` state dict (qkv, proj): copied weights, same
    output (NATTEN takes B×H×W×C)."""
    natten = require("natten")
    peer = natten.NeighborhoodAttention2D(16, 2, 5, dilation=2)
    ours = NeighborhoodAttention(16, kernel_size=5, dilation=2, heads=2, position_bias=False).eval()
    ours.load_state_dict(peer.state_dict())
    x = torch.randn(2, 16, 12, 11)
    with torch.no_grad():
        ref = peer(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        torch.testing.assert_close(ours(x), ref, atol=1e-5, rtol=1e-4)


@pytest.mark.faithful("neighborhood")
@pytest.mark.parametrize("h,w,k,d", [(9, 11, 5, 1), (13, 11, 3, 2), (10, 9, 3, 3), (5, 4, 7, 1), (9, 6, 3, 4)])
def test_neighborhood_module_equals_explicit_loop(h, w, k, d):
    """The whole module (qkv, rpb, proj) against a per-query loop with NATTEN's window / bias-start rules,
    including maps smaller than kernel·dilation (the documented shrinking)."""
    m = randomize(NeighborhoodAttention(8, kernel_size=k, dilation=d, heads=2).to(D), seed=0, scale=0.3).eval()
    x = rand(2, 8, h, w)
    with torch.no_grad():
        torch.testing.assert_close(m(x), nat_ref(m, x))


@pytest.mark.faithful("neighborhood")
@pytest.mark.parametrize("k,d,h,w", [(3, 1, 9, 8), (5, 2, 13, 12)])
def test_neighborhood_exactly_k2_neighbours_shifted_inwards(k, d, h, w):
    """Each output pixel depends on exactly k² input pixels: its dilated window, shifted inwards at the borders."""
    m = randomize(NeighborhoodAttention(4, kernel_size=k, dilation=d, heads=1).to(D), seed=0, scale=0.3).eval()
    x = rand(1, 4, h, w)

    def expected_rows(i: int, length: int) -> set[int]:
        g, j = i % d, i // d
        lg = (length - g + d - 1) // d
        start = min(max(j - k // 2, 0), lg - k)
        return {g + (start + t) * d for t in range(k)}

    for i, j in [(0, 0), (h - 1, w - 1), (h // 2, w // 2), (1, w - 2), (h - 2, 0)]:
        xi = x.clone().requires_grad_()
        m(xi)[0, :, i, j].sum().backward()
        touched = {(int(a), int(b)) for a, b in (xi.grad[0].abs().sum(0) > 0).nonzero()}
        assert len(touched) == k * k
        assert touched == {(a, b) for a in expected_rows(i, h) for b in expected_rows(j, w)}
    with attnzoo.capture_attention(m) as maps:
        m(x)
    assert maps[""]["attn"].shape == (1, h * w, 1, k * k)


@pytest.mark.faithful("neighborhood")
@pytest.mark.parametrize("h,w,k,d,tile", [(7, 6, 3, 1, 2), (9, 7, 3, 2, 3)])
def test_neighborhood_tiles_in_chunks_forward_and_gradients(monkeypatch, h, w, k, d, tile):
    """The tiled form cut into chunks of one tile row (checkpointed, since the bias needs a gradient) against the
    per-query loop (forward) and the gradients of q, k, v and the bias table against the per-query gather form
    (each query's k² keys gathered, no tiles)."""
    from attnzoo.local import neighborhood as na
    from reference.nat import neighborhood_attention_ref

    monkeypatch.setattr(na, "_CHUNK", 1)
    ins = [rand(2, 2, h, w, 3, seed=s).requires_grad_() for s in range(3)]
    ins.append(rand(2, 2 * k - 1, 2 * k - 1, seed=3).requires_grad_())
    out = neighborhood_attention(*ins[:3], k, d, ins[3], 0.7, tile=tile)
    torch.testing.assert_close(out, neighborhood_attention_ref(*ins[:3], k, d, ins[3], 0.7))
    g = rand(*out.shape, seed=4)
    gathered = na._gathered_attention(*ins[:3], k, d, ins[3], 0.7, 0.0, None)
    for a, b in zip(torch.autograd.grad(out, ins, g), torch.autograd.grad(gathered, ins, g)):
        torch.testing.assert_close(a, b)


@pytest.mark.faithful("neighborhood")
@pytest.mark.parametrize("dims,size", [(2, (9, 7)), (1, (11,)), (3, (4, 5, 4))])
def test_neighborhood_schedules_under_compile_and_export(monkeypatch, dims, size):
    """torch.compile keeps the eager schedules, training and inference (2-D and 1-D: the query tiles, never the
    one-piece gather; 3-D: the query chunks).  torch.export records the one-piece gather, whose sizes stay
    symbolic: the exported graph is right at another batch and size."""
    from attnzoo.local import neighborhood as na

    m = randomize(attnzoo.create("neighborhood", 8, heads=2, kernel_size=3, dims=dims), scale=0.3, seed=0).eval()
    x, x2 = rand64(2, 8, *size, seed=1).float(), rand64(3, 8, *(s + 2 for s in size), seed=2).float()
    ref, ref2 = m(x), m(x2)
    real = {f: getattr(na, f) for f in ("_gathered_attention", "_chunked_gather")}  # (no spy inside a checkpoint)
    calls: list[str] = []

    def spy(name):
        def run(*args, **kwargs):
            calls.append(name)
            return real[name](*args, **kwargs)

        return run

    for name in real:
        monkeypatch.setattr(na, name, spy(name))
    torch._dynamo.reset()
    compiled = torch.compile(m, fullgraph=True, backend="aot_eager")
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), ref)
    assert set(calls) == ({"_chunked_gather"} if dims == 3 else set()), calls  # 1-D, 2-D: the tiles
    calls.clear()
    xg = x.clone().requires_grad_()
    compiled(xg).sum().backward()
    assert set(calls) == ({"_chunked_gather"} if dims == 3 else set()), calls  # 1-D, 2-D: the tiles
    calls.clear()
    spatial = {2 + i: torch.export.Dim(f"s{i}", min=4, max=32) for i in range(dims)}  # sizes above the kernel
    ep = torch.export.export(m, (x,), dynamic_shapes={"x": {0: torch.export.Dim("b", min=1, max=8), **spatial}})
    assert set(calls) == {"_gathered_attention"}, calls
    torch.testing.assert_close(ep.module()(x2), ref2)


@pytest.mark.faithful("neighborhood")
def test_neighborhood_defaults_and_errors():
    m = NeighborhoodAttention(64)
    assert (m.kernel_size, m.dilation, m.heads, m.dim_head) == (7, 1, 8, 8)
    assert m.rpb.shape == (8, 13, 13) and m.qkv.bias is not None
    assert 0 < m.rpb.std() < 0.05  # trunc_normal(std=0.02)
    assert NeighborhoodAttention(16, position_bias=False, heads=2).rpb is None
    for kwargs in ({"kernel_size": 4}, {"dilation": 0}, {"heads": 3}, {"kernel_size": 0}, {"dim_head": 0}, {"attn_drop": 1.0}):
        with pytest.raises(ValueError, match="NeighborhoodAttention"):
            NeighborhoodAttention(16, **kwargs)


# ------------------------------------------------------------------------------------------------------------------
# bra (BiFormer)
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.faithful("bra")
@pytest.mark.parametrize("h,w,n_win,topk", [(14, 14, 7, 4), (12, 8, 4, 3), (6, 9, 3, 1)])
def test_bra_equals_official_style_routing(h, w, n_win, topk):
    m = randomize(BiLevelRoutingAttention(16, n_win=n_win, topk=topk, heads=4).to(D), seed=0, scale=0.3).eval()
    x = rand(2, 16, h, w)
    with torch.no_grad():
        torch.testing.assert_close(m(x), bra_official(m, x))


@pytest.mark.faithful("bra")
@pytest.mark.parametrize("h,w,n_win", [(9, 10, 3), (6, 6, 2), (7, 5, 4), (1, 1, 7), (3, 2, 7)])
def test_bra_routing_every_region_is_full_attention(h, w, n_win):
    """topk = number of regions: every token attends to every (real) token, padding included nowhere."""
    m = randomize(BiLevelRoutingAttention(8, n_win=n_win, topk=n_win * n_win, heads=2).to(D), seed=0, scale=0.3).eval()
    x = rand(2, 8, h, w)
    with torch.no_grad():
        torch.testing.assert_close(m(x), full_attention(m, x))


@pytest.mark.faithful("bra")
def test_bra_padded_tokens_never_attended_and_routing_is_sparse():
    m = randomize(BiLevelRoutingAttention(8, n_win=3, topk=2, heads=2).to(D), seed=0, scale=0.3).eval()
    x = rand(1, 8, 8, 7)  # regions of 3×3: padded to 9×9
    with attnzoo.capture_attention(m) as maps:
        y = m(x)
    attn, route = maps[""]["attn"], maps[""]["routing"].long()
    assert attn.shape == (9, 2, 9, 18) and route.shape == (1, 9, 2)
    valid = torch.zeros(9, 9, dtype=torch.bool)
    valid[:8, :7] = True
    valid = valid.reshape(3, 3, 3, 3).permute(0, 2, 1, 3).reshape(9, 9)  # region × token
    keys_valid = valid[route[0]].reshape(9, 1, 1, 18)
    assert attn.masked_select(~keys_valid.expand_as(attn)).abs().max() == 0
    with torch.no_grad():
        assert not torch.allclose(y, full_attention(m, x))


@pytest.mark.faithful("bra")
def test_bra_defaults_and_errors():
    m = BiLevelRoutingAttention(64)
    assert (m.n_win, m.topk, m.heads, m.kernel_size) == (7, 4, 8, 5)
    assert m.lepe.groups == 64 and m.lepe.kernel_size == (5, 5) and m.qkv.bias is not None
    assert m.scale == 64**-0.5  # official: the whole width
    for kwargs in ({"topk": 50}, {"n_win": 0}, {"heads": 3}, {"kernel_size": 4}, {"topk": 0}):
        with pytest.raises(ValueError, match="BiLevelRoutingAttention"):
            BiLevelRoutingAttention(16, **kwargs)


# ------------------------------------------------------------------------------------------------------------------
# deformable_attention (DAT)
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.faithful("deformable_attention")
@pytest.mark.parametrize("bias", ["table", "log_cpb"])
@pytest.mark.parametrize("h,w,stride,groups,factor", [(7, 6, 2, 2, 2.0), (5, 5, 1, 1, 3.0), (6, 7, 3, 2, -1.0), (1, 2, 2, 1, 2.0)])
def test_dat_equals_explicit_reference(h, w, stride, groups, factor, bias):
    m = randomize(DeformableAttention(8, heads=4, groups=groups, stride=stride, kernel_size=3, table_size=4,
                                      offset_range_factor=factor, position_bias=bias).to(D), scale=0.5, seed=0).eval()
    x = rand(2, 8, h, w)
    with torch.no_grad():
        torch.testing.assert_close(m(x), dat_ref(m, x))


@pytest.mark.faithful("deformable_attention")
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("bias", ["table", "log_cpb"])
def test_dat_zero_offsets_attend_the_pooled_grid(stride, bias):
    """Zero offsets: keys/values come from the stride-pooled map (cell centres; for stride 2 the bilinear sample
    at a 2×2 cell centre is the 2×2 average), i.e. plain attention over avg_pool2d(x, stride)."""
    m = randomize(DeformableAttention(8, heads=2, stride=stride, kernel_size=3, position_bias=bias).to(D), seed=0, scale=0.3).eval()
    with torch.no_grad():
        m.offset_proj.weight.zero_()
    x = rand(2, 8, 6, 8)
    pooled = F.avg_pool2d(x, stride)
    hk, wk = pooled.shape[2:]
    cy = torch.arange(hk, dtype=D) * stride + (stride - 1) / 2
    cx = torch.arange(wk, dtype=D) * stride + (stride - 1) / 2
    pos = torch.stack(torch.meshgrid(cy, cx, indexing="ij"), -1).reshape(1, hk * wk, 2).expand(2, -1, -1)
    with torch.no_grad():
        torch.testing.assert_close(m(x), dat_ref(m, x, pos=pos, sampled=pooled.flatten(2)))
    plain = DeformableAttention(8, heads=2, stride=stride, position_bias=None).to(D).eval()
    randomize(plain, seed=0, scale=0.3)
    with torch.no_grad():
        plain.offset_proj.weight.zero_()
        q = plain.proj_q(x).flatten(2).reshape(2, 2, 4, -1).transpose(-1, -2)
        k = plain.proj_k(pooled).flatten(2).reshape(2, 2, 4, -1).transpose(-1, -2)
        v = plain.proj_v(pooled).flatten(2).reshape(2, 2, 4, -1).transpose(-1, -2)
        o = ((q @ k.transpose(-1, -2)) * 0.5).softmax(-1) @ v
        ref = plain.proj_out(o.transpose(-1, -2).reshape(2, 8, 6, 8))
        torch.testing.assert_close(plain(x), ref)


@pytest.mark.faithful("deformable_attention")
def test_dat_defaults_and_errors():
    m = DeformableAttention(64)
    assert (m.heads, m.groups, m.offset_range_factor, m.stride, m.kernel_size) == (8, 1, 2.0, 1, 5)
    assert m.conv_offset.groups == 64 and m.offset_proj.bias is None and m.rpe is None
    assert m.position_bias == "table" and m.rpe_table.shape == (8, 27, 27) and 0 < m.rpe_table.std() < 0.03
    x = torch.randn(1, 64, 9, 9)
    assert m(x).shape == x.shape
    assert DeformableAttention(16, heads=4, position_bias="log_cpb").rpe is not None
    for kwargs in ({"heads": 3}, {"groups": 3}, {"stride": 0}, {"kernel_size": 4}, {"offset_range_factor": float("nan")},
                   {"position_bias": True}, {"table_size": 0}):
        with pytest.raises(ValueError, match="DeformableAttention"):
            DeformableAttention(16, **{"heads": 4, **kwargs})


# ------------------------------------------------------------------------------------------------------------------
# dcnv2 (DCNv2)
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.faithful("dcnv2")
@pytest.mark.parametrize("backend", ["torchvision", "pure"])
@pytest.mark.parametrize("kwargs", [{}, {"stride": 2, "out_channels": 6}, {"dilation": 2, "deform_groups": 2}, {"kernel_size": 5, "padding": 1}])
def test_dcnv2_at_init_is_half_conv_plus_bias(backend, kwargs):
    m = ModulatedDeformConv(8, backend=backend, **kwargs).to(D).eval()
    with torch.no_grad():
        m.bias.normal_()  # make the bias visible (official init: zero)
        x = rand(2, 8, 9, 7)
        ref = 0.5 * F.conv2d(x, m.weight, None, m.stride, m.padding, m.dilation) + m.bias[None, :, None, None]
        torch.testing.assert_close(m(x), ref)


@pytest.mark.faithful("dcnv2")
@pytest.mark.parametrize("kwargs", [{}, {"stride": 2, "deform_groups": 2}, {"dilation": 2, "out_channels": 4}])
def test_dcnv2_equals_torchvision_and_explicit_loop(kwargs):
    tv = require("torchvision.ops")
    m = randomize(ModulatedDeformConv(8, backend="torchvision", **kwargs).to(D), scale=1.0, seed=0).eval()
    x = rand(2, 8, 7, 6)
    with torch.no_grad():
        om = m.conv_offset(x)
        taps = m.deform_groups * m.kernel_size**2
        off, mask = om[:, : 2 * taps], om[:, 2 * taps :].sigmoid()
        p, s, d = (m.padding,) * 2, (m.stride,) * 2, (m.dilation,) * 2
        ref = tv.deform_conv2d(x, off, m.weight, m.bias, stride=s, padding=p, dilation=d, mask=mask)
        torch.testing.assert_close(m(x), ref)
        torch.testing.assert_close(deform_conv2d_portable(x, off, m.weight, m.bias, s, p, d, mask), ref)
        torch.testing.assert_close(dcnv2_ref(m, x), ref)
        pure = ModulatedDeformConv(8, backend="pure", **kwargs).to(D).eval()
        pure.load_state_dict(m.state_dict())
        torch.testing.assert_close(pure(x), ref)


def test_dcnv2_random_offsets_explicit_loop_outside_the_map():
    """Large offsets (samples far outside the map: zero) and a random mask, raw kernel against the loop."""
    x = rand(1, 4, 5, 6)
    off = 4 * rand(1, 2 * 2 * 9, 5, 6, seed=3)
    mask = rand(1, 2 * 9, 5, 6, seed=4).sigmoid()
    w, b = rand(3, 4, 3, 3, seed=5), rand(3, seed=6)
    out = deform_conv2d_portable(x, off, w, b, (1, 1), (1, 1), (1, 1), mask)
    torch.testing.assert_close(out, deform_conv2d_ref(x, off, w, b, 1, 1, 1, mask))


def test_dcnv2_paths_dispatch():
    """'torchvision' calls the op in eager, torch.export and torch.compile, 'auto' not on CPU; graphs recorded for
    ONNX or ncnn (and a plain jit.trace) contain only the pure path, OpenVINO's keep the op."""
    require("torchvision")
    from attnzoo.local import dcnv2

    dcnv2._tv_deform_conv2d()
    calls = []
    real = dcnv2._TV[0]
    dcnv2._TV[0] = lambda *a, **k: calls.append(1) or real(*a, **k)
    try:
        m = randomize(ModulatedDeformConv(4, backend="torchvision"), seed=0, scale=0.3).eval()
        x = torch.randn(1, 4, 6, 5)
        ref = m(x)
        assert calls == [1]
        auto = ModulatedDeformConv(4).eval()
        auto.load_state_dict(m.state_dict())
        torch.testing.assert_close(auto(x), ref, atol=1e-5, rtol=1e-4)
        assert calls == [1]  # CPU: the pure path
        traced = torch.jit.trace(m, x, check_trace=False)
        assert "torchvision" not in str(traced.inlined_graph)
        for target, op in (("onnx", False), ("ncnn", False), ("openvino", True)):
            with attnzoo.export_target(target):
                graph = str(torch.jit.trace(m, x, check_trace=False).inlined_graph)
            assert ("torchvision" in graph) == op, target
        ep = torch.export.export(m, (x,))
        assert "torchvision" in str(ep.graph)  # the eager form: torch.export is no export target
        torch.testing.assert_close(ep.module()(x), ref, atol=1e-5, rtol=1e-4)
    finally:
        dcnv2._TV[0] = real


def test_dcnv2_errors():
    for kwargs in ({"deform_groups": 3}, {"kernel_size": 0}, {"stride": 0}, {"padding": -1}, {"out_channels": 0},
                   {"backend": "cuda"}):
        with pytest.raises(ValueError, match="ModulatedDeformConv"):
            ModulatedDeformConv(8, **kwargs)
    with pytest.raises(ValueError, match="ModulatedDeformConv"):
        ModulatedDeformConv(4, kernel_size=5, padding=0)(torch.randn(1, 4, 3, 3))


@pytest.mark.faithful("dcnv2")
@pytest.mark.parametrize("chunk", [1, 2, None])
@pytest.mark.parametrize("deform_groups", [1, 2])
def test_dcnv2_chunked_taps_equal_one_call_with_gradients(chunk, deform_groups):
    """The eager pure path sums chunks of taps (checkpointed under autograd, to bound the columns' memory): values
    and the gradients of input, offsets, mask, weight and bias equal the one-call form and torchvision's op."""
    x = rand(2, 4, 6, 5).requires_grad_()
    off = (2 * rand(2, 2 * deform_groups * 9, 6, 5, seed=3)).requires_grad_()
    mask = rand(2, deform_groups * 9, 6, 5, seed=4).sigmoid().requires_grad_()
    w, b = rand(3, 4, 3, 3, seed=5).requires_grad_(), rand(3, seed=6).requires_grad_()
    args = ((1, 1), (1, 1), (1, 1))
    leaves = (x, off, mask, w, b)
    out = deform_conv2d_portable(x, off, w, b, *args, mask, chunk=chunk)
    one = deform_conv2d_portable(x, off, w, b, *args, mask, chunk=9)
    g = rand(*out.shape, seed=7)
    grads = torch.autograd.grad(out, leaves, g)
    torch.testing.assert_close(out, one)
    for a, e in zip(grads, torch.autograd.grad(one, leaves, g)):
        torch.testing.assert_close(a, e)
    tv = pytest.importorskip("torchvision.ops")
    ref = tv.deform_conv2d(x, off, w, b, padding=(1, 1), mask=mask)
    torch.testing.assert_close(out, ref)
    for a, e in zip(grads, torch.autograd.grad(ref, leaves, g)):
        torch.testing.assert_close(a, e)
    with torch.no_grad():
        torch.testing.assert_close(deform_conv2d_portable(x, off, w, b, *args, mask, chunk=chunk), one)

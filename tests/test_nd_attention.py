"""The self-attention and local attention modules in 1-D (B×C×L) and 3-D (B×C×D×H×W): nonlocal, global_attention,
sagan, danet*, criss_cross, neighborhood — against dense references, NATTEN's na1d/na3d and mmcv's NonLocal1d/3d."""

from __future__ import annotations

import itertools
import math
from functools import partial

import pytest
import torch

import attnzoo
from attnzoo.self_attention.criss_cross import criss_cross_3d
from attnzoo.testing import randomize
from helpers import rand as rand64
from helpers import require
from reference.nat import nat_ref_nd

D = torch.float64
rand = partial(rand64, seed=1)


def _build(name: str, channels: int, dims: int, seed: int = 0, **kwargs) -> torch.nn.Module:
    torch.manual_seed(seed)
    m = attnzoo.create(name, channels, dims=dims, **kwargs).to(D)
    return randomize(m, seed=seed, scale=0.3).eval()


# ------------------------------------------------------------------------------------------------------------------
# every position of the signal / volume: the 3-D module is the 2-D one on the volume folded to (D·H)×W
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("global_attention", {"heads": 2, "dim_head": 4}),
        ("sagan", {}),
        ("sagan", {"value_channels": 4, "out_conv": True}),
        ("danet_position", {}),
        ("danet_channel", {}),
        ("danet", {}),
        *[("nonlocal", {"mode": mode, "subsample": False}) for mode in ("embedded_gaussian", "gaussian", "dot_product", "concatenation")],
    ],
)
def test_global_modules_attend_over_all_positions_of_a_volume(name, kwargs):
    """Flattened tokens over D·H·W: the 3-D module equals the 2-D module (the same 1×1 weights) on the volume read
    as a (D·H)×W map, whose positions are the same tokens in the same order."""
    m3 = _build(name, 8, 3, **kwargs)
    m2 = attnzoo.create(name, 8, **kwargs).to(D).eval()
    m2.load_state_dict({k: v.reshape(m2.state_dict()[k].shape) for k, v in m3.state_dict().items()})
    x = rand(2, 8, 3, 4, 5)
    with torch.no_grad():
        torch.testing.assert_close(m3(x), m2(x.reshape(2, 8, 12, 5)).reshape(x.shape))


# ------------------------------------------------------------------------------------------------------------------
# nonlocal: mmcv-lite NonLocal1d / NonLocal3d; sub-sampling per axis
# ------------------------------------------------------------------------------------------------------------------


def _mmcv_state(peer, ours) -> dict[str, torch.Tensor]:
    """mmcv's ConvModule keys (``g.conv``; ``g.0.conv`` behind a sub-sampling pool) → ours."""
    sd = {}
    for k, v in peer.state_dict().items():
        k = k.replace(".0.conv", ".conv").replace("conv_out.conv", "out").replace(".conv.", ".")
        sd[k] = v
    assert sorted(sd) == sorted(ours.state_dict())
    return sd


@pytest.mark.faithful("nonlocal")
@pytest.mark.parametrize("dims,size", [(1, (12,)), (3, (3, 6, 4))])
def test_nonlocal_equals_mmcv_nonlocal_nd(dims, size):
    """mmcv-lite ``NonLocal1d`` / ``NonLocal3d`` (embedded Gaussian, 1/√d, no norm), copied weights.

    Without sub-sampling on random weights.  With sub-sampling on even sizes, mmcv pools after the φ and g convs
    where this (as the official code) pools x before them: the two agree when each φ / g channel is a positive
    multiple of one input channel plus a bias (max commutes with such a map), which checks the pool's axes and
    sizes (2 on a signal, (1, 2, 2) on a clip) and the token order."""
    cnn = require("mmcv.cnn")
    peer_cls = {1: cnn.NonLocal1d, 3: cnn.NonLocal3d}[dims]
    x = rand(2, 8, *size, dtype=torch.float32)
    for sub in (False, True):
        torch.manual_seed(0)
        peer = peer_cls(8, sub_sample=sub).eval()
        ours = attnzoo.create("nonlocal", 8, dims=dims, subsample=sub, use_bn=False).eval()
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for p in peer.parameters():
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
            if sub:
                for conv in (peer.phi[0].conv, peer.g[0].conv):  # channel o = a_o · x_{σ(o)} + b_o, a_o > 0
                    w = torch.zeros(4, 8)
                    w[torch.arange(4), torch.randperm(8, generator=g)[:4]] = 0.5 + torch.rand(4, generator=g)
                    conv.weight.copy_(w.view(conv.weight.shape))
        ours.load_state_dict(_mmcv_state(peer, ours))
        with torch.no_grad():
            torch.testing.assert_close(ours(x), peer(x), atol=1e-5, rtol=1e-4)


@pytest.mark.faithful("nonlocal")
def test_nonlocal_subsample_per_axis():
    """``True`` pools 2 / 2×2 / 1×2×2 by rank (space only on a clip, as the video papers); a tuple sets each axis;
    the keys are the ceil-pooled positions (captured map B×1×N×N')."""
    assert [attnzoo.create("nonlocal", 8, dims=d).pool for d in (1, 2, 3)] == [(2,), (2, 2), (1, 2, 2)]
    assert attnzoo.create("nonlocal", 8, dims=3, subsample=False).pool is None
    for sub, keys in (((2, 2, 2), 2 * 3 * 2), ((1, 2, 2), 3 * 3 * 2), (True, 3 * 3 * 2), ((3, 1, 1), 1 * 5 * 3)):
        m = attnzoo.create("nonlocal", 8, dims=3, subsample=sub)
        with attnzoo.capture_attention(m) as maps:
            m(torch.randn(1, 8, 3, 5, 3))
        assert maps[""]["attn"].shape == (1, 1, 45, keys)
    for bad in ((2, 2), (2, 0, 2), "2", 1.5):
        with pytest.raises(ValueError, match="NonLocalBlock"):
            attnzoo.create("nonlocal", 8, dims=3, subsample=bad)


# ------------------------------------------------------------------------------------------------------------------
# criss_cross: the three axis lines of a volume, itself once
# ------------------------------------------------------------------------------------------------------------------


def _lines_dense(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Dense attention over all N×N pairs, masked to the pairs on a common axis line (≥ 2 equal coordinates):
    each position once, itself included once."""
    pos = torch.cartesian_prod(*(torch.arange(n) for n in q.shape[2:])).view(-1, q.dim() - 2)
    on_line = (pos[:, None, :] == pos[None, :, :]).sum(-1) >= pos.shape[1] - 1
    e = (q.flatten(2).transpose(1, 2) @ k.flatten(2)).masked_fill(~on_line, float("-inf"))
    return (e.softmax(-1) @ v.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(v.shape)


@pytest.mark.faithful("criss_cross")
@pytest.mark.parametrize("size", [(3, 4, 5), (4, 1, 3), (2, 3, 1)])
def test_criss_cross_3d_equals_dense_masked_attention(size):
    """Each position attends jointly to the D + H + W − 2 positions of its three lines (self once: CCNet's 3-D
    port counts it twice), against dense attention with a line mask; the module adds γ·that to x."""
    q, k, v = rand(2, 3, *size, seed=0), rand(2, 3, *size, seed=1), rand(2, 5, *size, seed=2)
    torch.testing.assert_close(criss_cross_3d(q, k, v), _lines_dense(q, k, v))
    m = _build("criss_cross", 8, 3, reduction=4)
    x = rand(2, 8, *size)
    c, w, b = m.hidden_channels, m.qkv_weight, m.qkv_bias
    qkv = torch.einsum("oc,bc...->bo...", w, x) + b[:, None, None, None]
    with torch.no_grad(), attnzoo.capture_attention(m) as maps:
        out = m(x)
    torch.testing.assert_close(out, x + m.gamma * _lines_dense(qkv[:, :c], qkv[:, c : 2 * c], qkv[:, 2 * c :]))
    attn = maps[""]["attn"]
    assert attn.shape == (2, *size, sum(size) - 2)
    torch.testing.assert_close(attn.sum(-1), torch.ones(2, *size, dtype=D))


@pytest.mark.faithful("criss_cross")
def test_criss_cross_1d_is_full_attention():
    """On a signal the one line is the whole signal: full attention over L, self once."""
    m = _build("criss_cross", 8, 1, reduction=4)
    x = rand(2, 8, 7)
    c = m.hidden_channels
    qkv = torch.einsum("oc,bcl->bol", m.qkv_weight, x) + m.qkv_bias[:, None]
    with torch.no_grad():
        torch.testing.assert_close(m(x), x + m.gamma * _lines_dense(qkv[:, :c], qkv[:, c : 2 * c], qkv[:, 2 * c :]))


@pytest.mark.faithful("criss_cross")
def test_criss_cross_3d_recurrence_3_reaches_the_whole_volume():
    """Line → plane → volume: with recurrence 3 every output depends on every input position (nonzero gradient);
    with 2, a position depends only on those sharing at least one coordinate with it."""
    size = (2, 2, 3)
    for recurrence in (2, 3):
        m = _build("criss_cross", 4, 3, reduction=2, recurrence=recurrence)
        x = rand(1, 4, *size).requires_grad_()
        reach = torch.zeros(*size, *size, dtype=torch.bool)
        out = m(x)
        for p in itertools.product(*(range(n) for n in size)):
            (g,) = torch.autograd.grad(out[(0, slice(None), *p)].sum(), x, retain_graph=True)
            reach[p] = g[0].abs().sum(0) > 0
        if recurrence == 3:
            assert reach.all()
        else:
            pos = torch.cartesian_prod(*(torch.arange(n) for n in size))
            shares = (pos[:, None, :] == pos[None, :, :]).any(-1).view(*size, *size)
            assert torch.equal(reach, shares)


# ------------------------------------------------------------------------------------------------------------------
# neighborhood: k^d windows shifted inwards per axis; NATTEN na1d / na3d
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.faithful("neighborhood")
@pytest.mark.parametrize("size,k,d", [((11,), 5, 1), ((13,), 3, 3), ((4,), 7, 1), ((4, 5, 6), 3, 1), ((5, 3, 7), 3, 2)])
def test_neighborhood_nd_equals_explicit_loop(size, k, d):
    """The module (qkv, per-head window attention with the (2k−1)^d bias table, proj) against a per-query loop
    whose windows are the Cartesian product of NATTEN's per-axis window / bias starts (shifted inwards, and the
    documented shrinking on axes shorter than k·δ)."""
    m = _build("neighborhood", 8, len(size), kernel_size=k, dilation=d, heads=2)
    assert m.rpb.shape == (2, *(2 * k - 1,) * len(size))
    x = rand(2, 8, *size)
    with torch.no_grad():
        torch.testing.assert_close(m(x), nat_ref_nd(m, x))


@pytest.mark.faithful("neighborhood")
@pytest.mark.parametrize("dims,size,k,d", [(1, (13,), 5, 2), (3, (5, 6, 4), 3, 1)])
def test_neighborhood_nd_equals_natten_module_and_trains(dims, size, k, d):
    """NATTEN's ``NeighborhoodAttention1D`` / ``3D`` (no position bias since 0.20, CPU forward only) with copied
    weights; attnzoo's also trains on CPU (gradients reach every parameter)."""
    natten = require("natten")
    peer = {1: natten.NeighborhoodAttention1D, 3: natten.NeighborhoodAttention3D}[dims](16, 2, k, dilation=d)
    ours = attnzoo.create("neighborhood", 16, dims=dims, kernel_size=k, dilation=d, heads=2, position_bias=False)
    ours.load_state_dict(peer.state_dict())
    x = torch.randn(2, 16, *size)
    with torch.no_grad():
        ref = peer(x.movedim(1, -1)).movedim(-1, 1)
    torch.testing.assert_close(ours.eval()(x), ref, atol=1e-5, rtol=1e-4)
    ours = attnzoo.create("neighborhood", 16, dims=dims, kernel_size=k, heads=2).train()
    ours(x).square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in ours.parameters())


@pytest.mark.faithful("neighborhood")
def test_neighborhood_3d_chunks_forward_and_gradients(monkeypatch):
    """The eager 3-D form in chunks of queries (checkpointed, since the bias needs a gradient) against the one-shot
    gather form (the capture / export form): values and the gradients of q, k, v and the bias table."""
    from attnzoo.local import neighborhood as na

    monkeypatch.setattr(na, "_CHUNK", 3)
    ins = [rand(2, 2, 4, 3, 5, 3, seed=s).requires_grad_() for s in range(3)]
    ins.append(rand(2, 5, 5, 5, seed=3).requires_grad_())
    out = na.neighborhood_attention(*ins[:3], 3, 1, ins[3], 0.7)
    gathered = na._gathered_attention(*ins[:3], 3, 1, ins[3], 0.7, 0.0, None)
    torch.testing.assert_close(out, gathered)
    g = rand(*out.shape, seed=4)
    for a, b in zip(torch.autograd.grad(out, ins, g), torch.autograd.grad(gathered, ins, g)):
        torch.testing.assert_close(a, b)


@pytest.mark.faithful("neighborhood")
@pytest.mark.parametrize(
    "size,k,d",
    [((7, 9), (3, 5), 1), ((11, 8), (5, 3), (2, 1)), ((3, 5, 6), (1, 3, 5), 1), ((4, 5, 6), (3, 5, 3), (1, 1, 2)),
     ((5, 4, 3), (3, 5, 5), 1)],
)
def test_neighborhood_per_axis_kernel_equals_explicit_loop(size, k, d):
    """One window side (and dilation) per axis, e.g. (3, 7, 7) for a clip: k_1×…×k_d windows shifted inwards per
    axis and a (2k_1−1)×…×(2k_d−1) bias table per head, against the per-query loop; in 2-D both the tiled eager form
    and the capture (gather) form; gradients reach the table."""
    m = _build("neighborhood", 8, len(size), kernel_size=k, dilation=d, heads=2)
    assert m.rpb.shape == (2, *(2 * s - 1 for s in k))
    x = rand(2, 8, *size)
    with torch.no_grad():
        ref = nat_ref_nd(m, x)
        torch.testing.assert_close(m(x), ref)
        with attnzoo.capture_attention(m) as maps:
            torch.testing.assert_close(m(x), ref)
    windows = [min(s, n) for s, n in zip(k, size)]
    assert maps[""]["attn"].shape == (2, 2 * math.prod(size), 1, math.prod(windows))
    m.train()
    m(x).square().sum().backward()
    assert m.rpb.grad is not None and m.rpb.grad.abs().sum() > 0


@pytest.mark.faithful("neighborhood")
@pytest.mark.parametrize("dims,size,k", [(1, (13,), (5,)), (3, (5, 6, 7), (3, 5, 3))])
def test_neighborhood_per_axis_kernel_equals_natten(dims, size, k):
    """NATTEN's NeighborhoodAttention1D / 3D with a per-axis kernel_size tuple (no position bias), copied weights."""
    natten = require("natten")
    peer = {1: natten.NeighborhoodAttention1D, 3: natten.NeighborhoodAttention3D}[dims](16, 2, k)
    ours = attnzoo.create("neighborhood", 16, dims=dims, kernel_size=k, heads=2, position_bias=False)
    ours.load_state_dict(peer.state_dict())
    x = torch.randn(2, 16, *size)
    with torch.no_grad():
        ref = peer(x.movedim(1, -1)).movedim(-1, 1)
        torch.testing.assert_close(ours.eval()(x), ref, atol=1e-5, rtol=1e-4)


@pytest.mark.faithful("neighborhood")
def test_neighborhood_per_axis_kernel_errors_and_int_kernel_unchanged():
    for dims, bad in ((3, (3, 7)), (3, (3, 4, 5)), (2, (0, 3)), (2, (-1, 3)), (3, (3, 5.0, 5)), (1, (3, 3))):
        with pytest.raises(ValueError, match=r"NeighborhoodAttention.*kernel_size must be .*got"):
            attnzoo.create("neighborhood", 8, dims=dims, kernel_size=bad, heads=2)
    with pytest.raises(ValueError, match=r"kernel_size must be 3 positive odd integers \(one per axis of D×H×W\), got \(3, 4, 5\)"):
        attnzoo.create("neighborhood", 8, dims=3, kernel_size=(3, 4, 5), heads=2)
    with pytest.raises(ValueError, match=r"NeighborhoodAttention.*dilation must be .*got"):
        attnzoo.create("neighborhood", 8, dims=3, kernel_size=3, dilation=(1, 0, 1), heads=2)
    with pytest.raises(ValueError, match=r"NeighborhoodAttention.*dilation must be .*got \(1, 2\)"):
        attnzoo.create("neighborhood", 8, dims=3, kernel_size=3, dilation=(1, 2), heads=2)
    torch.manual_seed(0)
    a = attnzoo.create("neighborhood", 8, kernel_size=5, heads=2)
    torch.manual_seed(0)
    b = attnzoo.create("neighborhood", 8, kernel_size=(5, 5), dilation=(1, 1), heads=2)
    assert a.kernel_size == 5 and a.rpb.shape == (2, 9, 9)
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb) and all(torch.equal(sa[n], sb[n]) for n in sa)
    x = torch.randn(1, 8, 6, 7)
    torch.testing.assert_close(a(x), b(x))


@pytest.mark.faithful("neighborhood")
@pytest.mark.parametrize("dims,k,size", [(2, (3, 5), (7, 9)), (2, (5, 3), (4, 6)), (1, (5,), (13,))])
def test_neighborhood_per_axis_kernel_portable_form(dims, k, size):
    """The ncnn portable form (replicate-padded slices) with one window side per axis equals the eager form."""
    from attnzoo.tracing import export_target

    m = _build("neighborhood", 8, dims, kernel_size=k, heads=2)
    x = rand(2, 8, *size)
    with torch.no_grad():
        ref = m(x)
        with export_target("ncnn"):
            torch.testing.assert_close(m(x), ref)

"""Faithfulness tests for the local family: local_window, outlook, multipole.

Each module is compared with slow references written here from the definitions (weights copied from the module):
the community code's unfold → attention → fold window attention (``LocalAttention2D``), a per-window loop that crops border windows instead of
padding them (so padding can never take part), the official VOLO computation with ``nn.Unfold`` + ``F.fold``
(and timm's / External-Attention's classes), and the MANO V-cycle built from the window reference.  Plus the
invariants: locality of window attention, globality of multipole attention, stride-2 Outlook sizes.
"""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import attnzoo
from attnzoo.local import LocalWindowAttention, MultipoleAttention, OutlookAttention
from attnzoo.testing import randomize
from helpers import rand as rand64
from helpers import require
from reference.common import window_starts
from reference.local_window import ref_loop_window, ref_unfold_window
from reference.multipole import ref_multipole
from reference.outlook import ref_outlook

D = torch.float64


rand = partial(rand64, seed=1)


# ------------------------------------------------------------------------------------------------------------------
# window attention references (the community AttentionBlock / LocalAttention2D, written from the definition)
# ------------------------------------------------------------------------------------------------------------------


def local(channels=8, **kw) -> LocalWindowAttention:
    return randomize(LocalWindowAttention(channels, **kw), seed=0, scale=0.3).to(D).eval()


# ------------------------------------------------------------------------------------------------------------------
# local_window
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size,k,s,heads,dim_head",
    [((14, 21), 7, 7, 2, 4), ((9, 13), 3, 2, 2, 4), ((8, 6), 2, 1, 4, 4), ((12, 12), 4, 4, 1, 8), ((10, 7), 4, 3, 2, 3)],
)
@pytest.mark.faithful("local_window")
def test_local_window_equals_seed_unfold_reference(size, k, s, heads, dim_head):
    """Where windows tile the map exactly, the module equals the community unfold/fold computation."""
    h, w = size
    assert (h - k) % s == 0 and (w - k) % s == 0
    m = local(8, kernel_size=k, stride=s, heads=heads, dim_head=dim_head)
    x = rand(2, 8, h, w)
    torch.testing.assert_close(m(x), ref_unfold_window(x, m.attention, k, s), atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize(
    "size,k,s",
    [((1, 1), 7, 7), ((5, 17), 7, 7), ((13, 11), 7, 7), ((8, 8), 7, 7), ((13, 11), 7, 3), ((6, 9), 4, 1), ((3, 2), 7, 2), ((16, 16), 5, 5)],
)
def test_local_window_any_size_equals_cropped_loop_reference(size, k, s):
    """At any size, padding is invisible: the module equals a loop over cropped (unpadded) border windows."""
    m = local(8, kernel_size=k, stride=s, heads=2, dim_head=4)
    x = rand(2, 8, *size)
    torch.testing.assert_close(m(x), ref_loop_window(x, m.attention, k, s), atol=1e-10, rtol=1e-10)


def test_local_window_single_pixel_window_attends_only_to_itself():
    """8×8 with k=7: window (1,1) holds one real pixel and 48 padded ones; its output is to_out(v(pixel))."""
    m = local(8, kernel_size=7, heads=2, dim_head=4)
    x = rand(1, 8, 8, 8)
    body = m.attention
    t = x[:, :, 7, 7]
    t = body.attn_norm(body.norm(t))
    v = F.linear(t, body.to_qkv.weight).chunk(3, dim=-1)[2]
    expected = body.to_out(v)
    torch.testing.assert_close(m(x)[:, :, 7, 7], expected, atol=1e-12, rtol=1e-12)


def test_local_window_identity_projection_when_one_full_head():
    m = LocalWindowAttention(8, heads=1, dim_head=8)
    assert isinstance(m.attention.to_out, nn.Identity)  # as the reference (project_out = False)
    assert isinstance(LocalWindowAttention(8, heads=1, dim_head=4).attention.to_out, nn.Linear)


@pytest.mark.parametrize("k,s", [(4, 4), (4, 2), (3, 1)])
def test_local_window_is_local(k, s):
    """A pixel change alters exactly the outputs of the windows containing it (and nothing else)."""
    h, w = 11, 10
    m = local(8, kernel_size=k, stride=s, heads=2, dim_head=4)
    x = rand(1, 8, h, w)
    py, px = 5, 6
    x2 = x.clone()
    x2[0, :, py, px] += rand(8, seed=5)  # not a constant over channels: LayerNorm would cancel it
    changed = (m(x2) - m(x)).abs().amax(1)[0] > 1e-12
    expected = torch.zeros(h, w, dtype=torch.bool)
    for y0 in window_starts(h, k, s):
        for x0 in window_starts(w, k, s):
            if y0 <= py < y0 + k and x0 <= px < x0 + k:
                expected[y0 : y0 + k, x0 : x0 + k] = True
    assert torch.equal(changed, expected)
    assert not changed.all()


def test_local_window_capture_masks_padding():
    m = local(8, kernel_size=4, heads=2, dim_head=4)
    x = rand(2, 8, 6, 5)  # 2×2 windows of 4×4, padded to 8×8
    with attnzoo.capture_attention(m) as maps:
        out = m(x)
    torch.testing.assert_close(out, m(x))
    attn = maps[""]["attn"]
    assert attn.shape == (2 * 4, 2, 16, 16)
    torch.testing.assert_close(attn.sum(-1), torch.ones_like(attn.sum(-1)))
    # window (1, 1) covers rows 4..7, cols 4..7 of which rows 4..5 and col 4 are real: 2 valid keys
    valid = torch.zeros(4, 4, dtype=torch.bool)
    valid[:2, :1] = True
    probs = attn[3]  # batch 0, window index 3 = (1, 1)
    assert torch.all(probs[..., ~valid.flatten()] == 0)
    assert torch.all(probs[..., valid.flatten()] > 0)


def test_local_window_bfloat16_with_padding_is_finite():
    m = randomize(LocalWindowAttention(8, kernel_size=7, heads=2, dim_head=4), seed=0, scale=0.3).eval()
    x = torch.randn(2, 8, 9, 10)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(x)
    assert torch.isfinite(out).all()
    assert (out.float() - m(x)).abs().max() < 0.1


def test_local_window_dropout_honoured():
    m = LocalWindowAttention(8, kernel_size=3, heads=2, dim_head=4, dropout=0.5)
    x = torch.randn(2, 8, 6, 6)
    m.train()
    assert not torch.equal(m(x), m(x))
    m.eval()
    assert torch.equal(m(x), m(x))


@pytest.mark.parametrize(
    "kwargs,match",
    [({"stride": 8}, "stride"), ({"stride": 0}, "stride"), ({"kernel_size": 0}, "kernel_size"), ({"heads": 3, "dim_head": None}, "heads"),
     ({"dim_head": 0}, "dim_head"), ({"dropout": 1.0}, "dropout")],
)
def test_local_window_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=f"LocalWindowAttention: {match}"):
        LocalWindowAttention(8, **kwargs)


def test_local_window_partition_is_a_reshape():
    """Non-overlapping windows do not go through unfold / fold."""
    m = LocalWindowAttention(8, kernel_size=4, heads=2, dim_head=4).eval()
    x = torch.randn(1, 8, 8, 8)
    with torch.profiler.profile() as prof:
        m(x)
    names = {e.name for e in prof.events()}
    assert not any("im2col" in n or "col2im" in n or "unfold" in n for n in names), sorted(names)


# ------------------------------------------------------------------------------------------------------------------
# outlook
# ------------------------------------------------------------------------------------------------------------------


SIZES = [(1, 1), (2, 3), (7, 5), (8, 8), (13, 11), (5, 17)]


@pytest.mark.faithful("outlook")
@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("size", SIZES)
def test_outlook_equals_official_unfold_fold(stride, size):
    m = randomize(OutlookAttention(16, stride=stride, heads=2, qkv_bias=True), seed=0, scale=0.3).to(D).eval()
    x = rand(2, 16, *size)
    ref = ref_outlook(x.permute(0, 2, 3, 1), m).permute(0, 3, 1, 2)
    torch.testing.assert_close(m(x), ref, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("stride,heads,k", [(1, 1, 3), (2, 4, 3), (1, 2, 5), (2, 2, 5)])
@pytest.mark.parametrize("size", [(7, 5), (8, 8), (13, 11)])
def test_outlook_equals_timm(stride, heads, k, size):
    """State dicts are interchangeable with timm's (= the official) OutlookAttention, outputs equal."""
    from timm.models.volo import OutlookAttention as TimmOutlook

    theirs = TimmOutlook(16, heads, kernel_size=k, padding=k // 2, stride=stride, qkv_bias=True).to(D).eval()
    ours = OutlookAttention(16, kernel_size=k, stride=stride, heads=heads, qkv_bias=True).to(D).eval()
    ours.load_state_dict(randomize(theirs, seed=0, scale=0.3).state_dict())
    x = rand(2, *size, 16)
    torch.testing.assert_close(ours(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1), theirs(x), atol=1e-10, rtol=1e-10)


def test_outlook_equals_external_attention_at_stride_1():
    ea = require("fightingcv_attention.attention.OutlookAttention")
    theirs = ea.OutlookAttention(16, num_heads=2).to(D).eval()
    ours = OutlookAttention(16, heads=2).to(D).eval()
    sd = {k.replace("v_pj", "v"): v for k, v in randomize(theirs, seed=0, scale=0.3).state_dict().items()}
    ours.load_state_dict(sd)
    x = rand(2, 9, 7, 16)
    torch.testing.assert_close(ours(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1), theirs(x), atol=1e-10, rtol=1e-10)
    # the community class passes padding/stride positionally to nn.Unfold: stride 2 crashes (here it works)
    with pytest.raises(RuntimeError):
        ea.OutlookAttention(16, num_heads=2, stride=2)(x)


@pytest.mark.parametrize("size", [(7, 5), (8, 8), (1, 1), (2, 3), (13, 11)])
def test_outlook_stride2_sizes_match_official(size):
    """Stride 2: attention on the ⌈H/2⌉×⌈W/2⌉ grid (ceil-mode pool = unfold grid), folded back to H×W as the official."""
    h, w = size
    m = randomize(OutlookAttention(8, stride=2, heads=2), seed=0, scale=0.3).eval()
    x = torch.randn(1, 8, h, w)
    with attnzoo.capture_attention(m) as maps:
        out = m(x)
    assert out.shape == (1, 8, h, w)
    gh, gw = math.ceil(h / 2), math.ceil(w / 2)
    assert maps[""]["attn"].shape == (1, 2, gh * gw, 9, 9)
    # the official computation gives the same size and values
    torch.testing.assert_close(out, ref_outlook(x.permute(0, 2, 3, 1), m).permute(0, 3, 1, 2), atol=1e-5, rtol=1e-5)
    # each window's weights are a softmax over its k² source positions
    torch.testing.assert_close(maps[""]["attn"].sum(-1), torch.ones(1, 2, gh * gw, 9))


def test_outlook_overlaps_are_summed_not_averaged():
    """With v = identity, proj = identity and uniform weights, an interior output is 9 (windows) × mean of 3×3."""
    m = OutlookAttention(4, heads=1).to(D).eval()
    with torch.no_grad():
        m.v.weight.copy_(torch.eye(4))
        m.proj.weight.copy_(torch.eye(4))
        m.proj.bias.zero_()
        m.attn.weight.zero_()
        m.attn.bias.zero_()
    x = rand(1, 4, 7, 7)
    out = m(x)
    # output pixel (3,3) gets from each of the 9 windows around it the mean of that window's 3×3 sources
    expected = sum(x[0, :, cy - 1 : cy + 2, cx - 1 : cx + 2].mean((1, 2)) for cy in (2, 3, 4) for cx in (2, 3, 4))
    torch.testing.assert_close(out[0, :, 3, 3], expected)


def test_outlook_arguments_honoured():
    x = rand(1, 8, 6, 6)
    a = randomize(OutlookAttention(8, heads=2), seed=0, scale=0.3).to(D).eval()
    b = OutlookAttention(8, heads=2, qk_scale=0.1).to(D).eval()
    b.load_state_dict(a.state_dict())
    assert not torch.allclose(a(x), b(x))
    assert b.scale == 0.1 and a.scale == 4**-0.5
    assert OutlookAttention(8, qkv_bias=True).v.bias is not None and OutlookAttention(8).v.bias is None
    assert OutlookAttention(8, kernel_size=5, heads=4).attn.out_features == 5**4 * 4
    for kw, what in (({"padding": 0}, "padding"), ({"kernel_size": 4}, "kernel_size"), ({"heads": 3}, "heads"),
                     ({"stride": 0}, "stride"), ({"attn_drop": 1.5}, "attn_drop")):
        with pytest.raises(ValueError, match=f"OutlookAttention: {what}"):
            OutlookAttention(8, **kw)


# ------------------------------------------------------------------------------------------------------------------
# multipole
# ------------------------------------------------------------------------------------------------------------------


def multipole(channels=8, **kw) -> MultipoleAttention:
    return randomize(MultipoleAttention(channels, **kw), scale=0.2, seed=0).to(D).eval()


@pytest.mark.parametrize(
    "size,k,r,down,up",
    [((32, 32), 4, 2, "avg_pool", "nearest"), ((27, 27), 3, 3, "avg_pool", "nearest"), ((16, 8), 4, 2, "conv", "conv_transpose"),
     ((32, 16), 4, 2, "avg_pool", "conv_transpose"), ((18, 18), 3, 3, "conv", "nearest")],
)
@pytest.mark.faithful("multipole")
def test_multipole_equals_reference_vcycle(size, k, r, down, up):
    m = multipole(8, kernel_size=k, sampling_rate=r, heads=2, dim_head=4, downsampling=down, upsampling=up)
    x = rand(2, 8, *size)
    levels = len(m.level_sizes(*size))
    assert levels >= 3
    torch.testing.assert_close(m(x), ref_multipole(x, m, levels), atol=1e-10, rtol=1e-10)


def test_multipole_overlapping_windows_and_unshared_levels():
    m = multipole(8, kernel_size=4, stride=2, heads=2, dim_head=4, shared=False, max_levels=3)
    assert len(m.attention) == 3
    x = rand(1, 8, 16, 16)
    assert m.level_sizes(16, 16) == [(16, 16), (8, 8), (4, 4)]  # capped by max_levels
    torch.testing.assert_close(m(x), ref_multipole(x, m, 3), atol=1e-10, rtol=1e-10)
    m(x).sum().backward()
    for body in m.attention:
        assert body.to_qkv.weight.grad.abs().sum() > 0


def test_multipole_levels_follow_the_input():
    m = MultipoleAttention(8, kernel_size=7, heads=2, dim_head=4).eval()
    assert m.level_sizes(56, 56) == [(56, 56), (28, 28), (14, 14), (7, 7), (4, 4)]
    assert m.level_sizes(5, 17) == [(5, 17), (3, 9), (2, 5)]
    assert m.level_sizes(6, 6) == [(6, 6)]
    for size, n in (((20, 20), 3), ((64, 64), 5), ((3, 3), 1)):
        with attnzoo.capture_attention(m) as maps:
            m(torch.randn(1, 8, *size))
        assert sorted(maps[""]) == [f"attn_level{i}" for i in range(n)], size
    # the coarsest level always fits in one window
    for h, w in ((100, 3), (57, 91), (7, 7), (1, 200)):
        ch, cw = m.level_sizes(h, w)[-1]
        assert max(ch, cw) <= 7


@pytest.mark.parametrize("down,up", [("avg_pool", "nearest"), ("conv", "conv_transpose")])
@pytest.mark.parametrize("size", [(37, 23), (16, 16)])
def test_multipole_is_global(down, up, size):
    """One pixel's change reaches every output position (window attention alone does not)."""
    m = multipole(8, kernel_size=5, heads=2, dim_head=4, downsampling=down, upsampling=up)
    x = rand(1, 8, *size)
    for py, px in ((0, 0), (size[0] - 1, size[1] // 2)):
        x2 = x.clone()
        x2[0, :, py, px] += rand(8, seed=5)
        diff = (m(x2) - m(x)).abs().amax(1)[0]
        assert (diff > 1e-12).all(), f"pixel ({py},{px}) does not reach {(diff <= 1e-12).sum()} positions"
    lw = local(8, kernel_size=5, heads=2, dim_head=4)
    x2 = x.clone()
    x2[0, :, 0, 0] += rand(8, seed=5)
    assert not ((lw(x2) - lw(x)).abs().amax(1)[0] > 1e-12).all()


def test_multipole_avg_pool_of_odd_sizes_averages_valid_pixels():
    """At odd sizes the avg_pool down-sampling averages the real pixels of each border cell (no zero padding)."""
    from attnzoo.local.multipole import _downsample

    x = rand(1, 4, 5, 3)  # B×C×H×W with H = 5, W = 3
    y = _downsample(x, None, 2)
    assert y.shape == (1, 4, 3, 2)
    torch.testing.assert_close(y[0, :, 2, 1], x[0, :, 4, 2])  # a 1×1 border cell
    torch.testing.assert_close(y[0, :, 2, 0], x[0, :, 4, 0:2].mean(1))
    torch.testing.assert_close(y[0, :, 0, 1], x[0, :, 0:2, 2].mean(1))


def test_multipole_seed_spellings_and_bad_arguments():
    assert MultipoleAttention(8, heads=2, upsampling="conv").upsampling == "conv_transpose"
    assert MultipoleAttention(8, heads=2, upsampling="avg_pool").upsampling == "nearest"
    for kw, what in (({"sampling_rate": 1}, "sampling_rate"), ({"downsampling": "max"}, "downsampling"),
                     ({"upsampling": "bilinear"}, "upsampling"), ({"shared": False}, "max_levels"),
                     ({"stride": 9}, "stride"), ({"max_levels": 0}, "max_levels")):
        with pytest.raises(ValueError, match=f"MultipoleAttention: {what}"):
            MultipoleAttention(8, **kw)


@pytest.mark.parametrize(
    "name,kwargs,size",
    [("outlook", {"stride": 2, "heads": 2}, (5, 4)), ("outlook", {"stride": 3, "heads": 1}, (4, 5)),
     ("outlook", {"kernel_size": 5, "heads": 2}, (3, 4)),
     ("local_window", {"kernel_size": 3, "stride": 2, "heads": 2, "dim_head": 2}, (5, 4)),
     ("multipole", {"kernel_size": 2, "stride": 1, "heads": 2, "dim_head": 2}, (5, 3))],
)
def test_gradcheck_shifted_windows(name, kwargs, size):
    """The shifted gather / fold pair has hand-written backwards: check them in float64 (overlapping windows)."""
    m = randomize(attnzoo.create(name, 4, **kwargs), scale=0.2, seed=0).to(D)
    x = rand(1, 4, *size).requires_grad_()
    assert torch.autograd.gradcheck(m, (x,), eps=1e-6, atol=1e-6, rtol=1e-4)
    # and the gradient wrt the parameters against autograd through the slow reference
    if name == "outlook":
        ref = ref_outlook(x.permute(0, 2, 3, 1), m).permute(0, 3, 1, 2)
    elif name == "local_window":
        ref = ref_loop_window(x, m.attention, m.kernel_size, m.stride)
    else:
        ref = ref_multipole(x, m, len(m.level_sizes(*size)))
    g = rand(*ref.shape, seed=9)
    got = torch.autograd.grad((m(x) * g).sum(), [x, *m.parameters()])
    want = torch.autograd.grad((ref * g).sum(), [x, *m.parameters()])
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-7)


EXPORT_CASES = [
    ("outlook", {"stride": 2, "heads": 2}),
    ("local_window", {"kernel_size": 3, "stride": 2, "heads": 2, "dim_head": 4}),
    ("multipole", {"kernel_size": 3, "heads": 2, "dim_head": 4}),  # avg_pool / nearest
]


@pytest.mark.slow
@pytest.mark.parametrize("name,kwargs", EXPORT_CASES, ids=[c[0] for c in EXPORT_CASES])
def test_non_default_configurations_trace_and_export(name, kwargs, tmp_path):
    """The contract suite exports the default configuration; the overlapping / stride-2 / pooling paths too."""
    ort = require("onnxruntime")
    m = randomize(attnzoo.create(name, 8, **kwargs), scale=0.2, seed=0).eval()
    x = torch.randn(2, 8, 9, 7)
    ref = m(x)
    torch.testing.assert_close(torch.jit.trace(m, (x,), check_trace=False)(x), ref)
    torch.testing.assert_close(torch.fx.symbolic_trace(m)(x), ref, atol=0, rtol=0)
    torch.testing.assert_close(torch.export.export(m, (x,)).module()(x), ref)
    torch.testing.assert_close(torch.compile(m, fullgraph=True, backend="aot_eager")(x), ref)
    path = tmp_path / "m.onnx"
    torch.onnx.export(m, (x,), str(path), dynamo=True, verbose=False)
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]
    torch.testing.assert_close(torch.from_numpy(got), ref, atol=1e-4, rtol=1e-4)
    # training through the compiled module uses the shifted gather / fold backwards
    xg = x.clone().requires_grad_()
    torch.compile(m, fullgraph=True, backend="aot_eager")(xg).sum().backward()
    xe = x.clone().requires_grad_()
    m(xe).sum().backward()
    torch.testing.assert_close(xg.grad, xe.grad)

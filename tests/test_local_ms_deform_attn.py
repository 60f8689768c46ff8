"""Multi-scale deformable attention (Deformable DETR): the bilinear sampler against an explicit formula, both of
its forms, and the encoder layer against Ultralytics' pure-PyTorch ``MSDeformAttn`` (imported as an oracle only,
never copied) with copied weights, plus the paper's initialisation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import attnzoo
from attnzoo.functional.sampling import ms_deform_sample, ms_deform_sample_portable
from attnzoo.local.ms_deform_attn import MultiScaleDeformableAttention
from attnzoo.testing import randomize
from helpers import require

ul_transformer = require("ultralytics.nn.modules.transformer")

SHAPES = [(5, 7), (3, 4), (1, 1)]  # odd, even and 1×1 levels
FORMS = [ms_deform_sample, ms_deform_sample_portable]


def _value(shapes, b=2, m=3, d=4, seed=0):
    n = sum(h * w for h, w in shapes)
    return torch.randn(b, n, m, d, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def explicit_bilinear(value, shapes, loc, weights):
    """The sampling written out from the paper: for each level, head and point, the four taps around
    ``(x·W − 0.5, y·H − 0.5)`` with weights (1 − f)·(1 − g) …, a tap outside the map reading 0; no grid_sample."""
    b, q, m, lk, _ = loc.shape
    k = lk // len(shapes)
    out = torch.zeros(b, q, m, value.shape[3], dtype=value.dtype)
    start = 0
    for lvl, (h, w) in enumerate(shapes):
        v = value[:, start : start + h * w].reshape(b, h, w, m, value.shape[3])
        start += h * w
        for p in range(lvl * k, (lvl + 1) * k):
            px, py = loc[:, :, :, p, 0] * w - 0.5, loc[:, :, :, p, 1] * h - 0.5  # B×Q×M
            x0, y0 = px.floor(), py.floor()
            for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
                xi, yi = x0 + dx, y0 + dy
                tap = (1 - (px - xi).abs()) * (1 - (py - yi).abs())
                inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
                xc, yc = xi.clamp(0, w - 1).long(), yi.clamp(0, h - 1).long()
                bi = torch.arange(b)[:, None, None].expand(b, q, m)
                mi = torch.arange(m)[None, None, :].expand(b, q, m)
                got = v[bi, yc, xc, mi]  # B×Q×M×D
                out = out + (weights[:, :, :, p] * tap * inside)[..., None] * got
    return out.reshape(b, q, m * value.shape[3])


@pytest.mark.faithful("ms_deform_attn")
@pytest.mark.parametrize("form", FORMS, ids=["grid_sample", "gather"])
def test_zero_offsets_sample_the_pixel_centres(form):
    """Every level sampled at its own pixel centres (x + 0.5)/W, one-hot weights on that level: the values."""
    value = _value(SHAPES)
    b, _, m, d = value.shape
    start = 0
    for lvl, (h, w) in enumerate(SHAPES):
        ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
        centre = torch.stack([(xs + 0.5) / w, (ys + 0.5) / h], -1).reshape(1, h * w, 1, 1, 2)
        loc = centre.expand(b, h * w, m, len(SHAPES), 2).contiguous()  # every level at level lvl's centres
        weights = F.one_hot(torch.tensor(lvl), len(SHAPES)).double().expand(b, h * w, m, len(SHAPES))
        got = form(value, SHAPES, loc, weights.contiguous())
        torch.testing.assert_close(got, value[:, start : start + h * w].reshape(b, h * w, m * d), atol=1e-12, rtol=0)
        start += h * w


@pytest.mark.faithful("ms_deform_attn")
@pytest.mark.parametrize("form", FORMS, ids=["grid_sample", "gather"])
def test_sampling_equals_the_explicit_bilinear_formula(form):
    """Random fractional locations, many outside the maps and on their borders: values and gradients."""
    g = torch.Generator().manual_seed(1)
    value = _value(SHAPES).requires_grad_()
    b, q, m, k = 2, 9, 3, 2
    loc = (torch.rand(b, q, m, len(SHAPES) * k, 2, generator=g, dtype=torch.float64) * 1.8 - 0.4).requires_grad_()
    weights = torch.rand(b, q, m, len(SHAPES) * k, generator=g, dtype=torch.float64).requires_grad_()
    got, want = form(value, SHAPES, loc, weights), explicit_bilinear(value, SHAPES, loc, weights)
    torch.testing.assert_close(got, want, atol=1e-12, rtol=0)
    cot = torch.randn(got.shape, generator=g, dtype=torch.float64)
    ours = torch.autograd.grad(got, (value, loc, weights), cot)
    theirs = torch.autograd.grad(want, (value, loc, weights), cot)
    for a, e in zip(ours, theirs):
        torch.testing.assert_close(a, e, atol=1e-10, rtol=0)


def _ul_core(ours: MultiScaleDeformableAttention):
    theirs = ul_transformer.MSDeformAttn(ours.channels, ours.levels, ours.heads, ours.points).double()
    randomize(theirs, seed=5, scale=0.5)
    ours.load_state_dict(theirs.state_dict())  # strict: the official names and layouts
    return theirs


@pytest.mark.faithful("ms_deform_attn")
def test_attention_core_equals_ultralytics_msdeformattn():
    shapes = [(6, 5), (3, 3), (2, 1)]
    ours = MultiScaleDeformableAttention(16, len(shapes), heads=4, points=3).double()
    theirs = _ul_core(ours)
    g = torch.Generator().manual_seed(2)
    n = sum(h * w for h, w in shapes)
    query = torch.randn(2, 7, 16, generator=g, dtype=torch.float64)
    value = torch.randn(2, n, 16, generator=g, dtype=torch.float64)
    ref = torch.rand(2, 7, 2, generator=g, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(ours(query, ref, value, shapes), theirs(query, ref[:, :, None], value, shapes))


@pytest.mark.faithful("ms_deform_attn")
def test_encoder_layer_is_deformable_detrs_with_ultralytics_attention():
    """The whole layer written out (input projection, Deformable DETR's cumsum sine positions, level embedding,
    pixel-centre references, post-norm FFN) around Ultralytics' MSDeformAttn with the layer's weights."""
    m = randomize(attnzoo.create("ms_deform_attn", [8, 12, 16], out_channels=16, heads=4, points=2, dim_feedforward=24))
    m = m.double().eval()
    theirs = _ul_core(m.layer.self_attn)
    g = torch.Generator().manual_seed(3)
    xs = [torch.randn(2, c, h, w, generator=g, dtype=torch.float64) for c, (h, w) in zip([8, 12, 16], [(7, 5), (4, 3), (2, 2)])]
    srcs, pos, ref, shapes = [], [], [], []
    for lvl, x in enumerate(xs):
        s = m.input_proj[lvl](x)
        h, w = s.shape[-2:]
        shapes.append((h, w))
        srcs.append(s.flatten(2).transpose(1, 2))
        # PositionEmbeddingSine(num_pos_feats=d/2, normalize=True) of Deformable DETR
        y_embed = torch.ones(h, w, dtype=torch.float64).cumsum(0)
        x_embed = torch.ones(h, w, dtype=torch.float64).cumsum(1)
        y_embed = (y_embed - 0.5) / (y_embed[-1:, :] + 1e-6) * 2 * math.pi
        x_embed = (x_embed - 0.5) / (x_embed[:, -1:] + 1e-6) * 2 * math.pi
        f = 8
        dim_t = 10000.0 ** (2 * (torch.arange(f, dtype=torch.float64) // 2) / f)
        px, py = x_embed[..., None] / dim_t, y_embed[..., None] / dim_t
        px = torch.stack((px[..., 0::2].sin(), px[..., 1::2].cos()), 3).flatten(2)
        py = torch.stack((py[..., 0::2].sin(), py[..., 1::2].cos()), 3).flatten(2)
        pos.append(torch.cat((py, px), 2).reshape(h * w, 16) + m.level_embed[lvl])
        ry, rx = torch.meshgrid(torch.linspace(0.5, h - 0.5, h, dtype=torch.float64) / h, torch.linspace(0.5, w - 0.5, w, dtype=torch.float64) / w, indexing="ij")
        ref.append(torch.stack((rx.reshape(-1), ry.reshape(-1)), -1).double())
    src, p, r = torch.cat(srcs, 1), torch.cat(pos, 0)[None], torch.cat(ref, 0)[None, :, None].expand(2, -1, 1, 2)
    body = m.layer
    with torch.no_grad():
        t = body.norm1(src + theirs(src + p, r, src, shapes))
        t = body.norm2(t + body.linear2(F.relu(body.linear1(t))))
        want = [u.transpose(1, 2).reshape(2, 16, h, w) for u, (h, w) in zip(t.split([h * w for h, w in shapes], 1), shapes)]
        got = m(xs)
    for a, e in zip(got, want):
        torch.testing.assert_close(a, e)


def test_initialisation_is_the_papers():
    ours = MultiScaleDeformableAttention(32, 3, heads=8, points=4)
    torch.manual_seed(0)
    theirs = ul_transformer.MSDeformAttn(32, 3, 8, 4)
    torch.testing.assert_close(ours.sampling_offsets.bias, theirs.sampling_offsets.bias)  # directions × (k + 1)
    for lin in (ours.sampling_offsets, ours.attention_weights):
        assert not lin.weight.any()
    assert not ours.attention_weights.bias.any()  # uniform 1/(L·K) attention at init
    for lin in (ours.value_proj, ours.output_proj):
        assert not lin.bias.any() and lin.weight.abs().max() <= math.sqrt(6 / 64) + 1e-6  # Xavier-uniform
    layer = attnzoo.create("ms_deform_attn", [8, 16])
    assert (layer.out_channels, layer.heads, layer.points, layer.dim_feedforward) == (256, 8, 4, 1024)
    assert layer.input_proj[0][1].num_groups == 32


@pytest.mark.parametrize(
    "kwargs",
    [{"out_channels": 18}, {"out_channels": 16, "heads": 3}, {"points": 0}, {"dim_feedforward": 0}, {"dropout": 1.5}],
)
def test_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="DeformableEncoderLayer"):
        attnzoo.create("ms_deform_attn", [8, 16], **kwargs)


def test_sampler_rejects_mismatched_shapes():
    value = _value(SHAPES)
    loc = torch.rand(2, 4, 3, 3, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="ms_deform_sample"):
        ms_deform_sample(value, SHAPES[:2], loc, torch.rand(2, 4, 3, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="weights"):
        ms_deform_sample(value, SHAPES, loc, torch.rand(2, 4, 3, 2, dtype=torch.float64))

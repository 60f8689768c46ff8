"""Faithfulness of the YOLO-pluggable fusion and resampling modules: BiFPN, the weighted fusion node, AFPN,
AFF / iAFF, DySample, CARAFE and SPD-Conv against slow references written from the papers and the official
code (tests/reference/), plus their defining invariants (bilinear at zero offsets, box average at zero
encoder, weights summing to one), official defaults and inits, variants and input errors."""

from __future__ import annotations

from functools import partial

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import attnzoo
from attnzoo.fusion import AsymptoticFPN, BiFPN, WeightedFusion
from attnzoo.resample import CARAFE, DySample, SPDConv
from helpers import rand as rand64
from helpers import randomize, require
from reference.aff import aff_reference
from reference.afpn import afpn_reference
from reference.bifpn import bifpn_reference
from reference.carafe import carafe_reference
from reference.dysample import dysample_reference
from reference.spd import spd_reference

rand = partial(rand64, dtype=torch.float32)  # float32 inputs by default here


def pyramid(channels, sizes, batch=2, seed=0):
    return [rand(batch, c, h, w, seed=seed + i) for i, (c, (h, w)) in enumerate(zip(channels, sizes))]


def close(a, b, atol=1e-5, rtol=1e-4):
    if isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            close(x, y, atol, rtol)
        return
    torch.testing.assert_close(a, b, atol=atol, rtol=rtol)


# ----------------------------------------------------------------------------------------------------------
# weighted fusion node


@pytest.mark.faithful("weighted_fusion")
@pytest.mark.parametrize("fusion", ["fast", "softmax", "sum"])
def test_weighted_fusion_equations(fusion):
    m = WeightedFusion(6, num_inputs=3, fusion=fusion)
    if m.weight is not None:
        with torch.no_grad():
            m.weight.copy_(torch.tensor([1.5, -0.7, 0.3]))
    xs = [rand(2, 6, 5, 3, seed=i) for i in range(3)]
    w = [1.5, -0.7, 0.3]
    if fusion == "fast":  # ReLU: the negative weight contributes 0, not a negative share
        r = [max(v, 0.0) for v in w]
        ws = [v / (sum(r) + 1e-4) for v in r]
    elif fusion == "softmax":
        e = torch.tensor(w).exp()
        ws = (e / e.sum()).tolist()
    else:
        ws = [1.0, 1.0, 1.0]
    ref = sum(wi * x for wi, x in zip(ws, xs))
    with attnzoo.capture_attention(m) as maps:
        out = m(xs)
    close(out, ref)
    close(maps[""]["weights"], torch.tensor(ws))


def test_weighted_fusion_defaults_and_errors():
    m = WeightedFusion(4)
    assert m.num_inputs == 2 and m.fusion == "fast" and torch.equal(m.weight.data, torch.ones(2))
    x = rand(1, 4, 3, 3)
    close(m([x, x]), x * 2 / (2 + 1e-4))
    with pytest.raises(ValueError, match="WeightedFusion.*shapes"):
        m([x, rand(1, 4, 4, 3)])
    with pytest.raises(ValueError, match="WeightedFusion"):
        m([x])
    for bad in ({"num_inputs": 1}, {"num_inputs": 0}, {"fusion": "concat"}, {"eps": 0}):
        with pytest.raises(ValueError, match="WeightedFusion"):
            WeightedFusion(4, **bad)
    assert WeightedFusion(4, fusion="sum").weight is None


# ----------------------------------------------------------------------------------------------------------
# BiFPN


@pytest.mark.parametrize("name", ["weighted_fusion", "bifpn"])
@pytest.mark.parametrize("size", [(13, 11), (8, 8), (2, 3)])
def test_fusion_traces_without_addcmul(name, size):
    """One form for eager and export: no ``torch.addcmul`` (pnnx turns it into an expression ncnn cannot run) and
    BiFPN's SAME max-pool padding finite (ncnn's parameter files hold no -inf); the trace equals eager."""
    from attnzoo.layouts import example_channels, example_inputs
    from attnzoo.testing import FlatIO, flatten

    torch.manual_seed(0)
    m = randomize(attnzoo.create(name, example_channels(name, 16))).eval()
    args = example_inputs(name, batch=2, channels=example_channels(name, 16), size=size)
    flat = flatten(list(args))
    with torch.no_grad():
        traced = torch.jit.trace(FlatIO(m, args), tuple(flat), check_trace=False)
        close(flatten(traced(*flat)), flatten(m(*args)))
    assert "aten::addcmul" not in str(traced.inlined_graph)


@pytest.mark.faithful("bifpn")
@pytest.mark.parametrize(
    "channels,sizes,kwargs",
    [
        ([8, 16, 32], [(16, 16), (8, 8), (4, 4)], {}),
        ([8, 16, 32, 32, 32], [(13, 11), (7, 6), (4, 3), (2, 2), (1, 1)], {"num_repeats": 2}),  # EfficientDet's 5 levels
        ([12, 12], [(9, 5), (5, 3)], {"variant": "official"}),
        ([8, 16, 24], [(10, 7), (5, 4), (3, 2)], {"fusion": "softmax", "num_repeats": 2, "variant": "official"}),
        ([8, 16, 24], [(6, 6), (3, 3), (2, 2)], {"fusion": "sum"}),
    ],
)
def test_bifpn_matches_node_by_node_reference(channels, sizes, kwargs):
    torch.manual_seed(0)
    m = randomize(BiFPN(channels, out_channels=12, **kwargs), scale=0.3).eval()
    if m.fusion == "fast":  # some negative weights: the ReLU must clip them
        with torch.no_grad():
            m.layers[0].w_td[0, 1] = -0.5
    x = pyramid(channels, sizes)
    close(m(x), bifpn_reference(m, x), atol=1e-4)


def test_bifpn_defaults_structure_and_errors():
    m = BiFPN([40, 112, 320])
    assert m.out_channels == 64 and m.num_repeats == 1 and m.variant == "paper"
    layer = m.layers[0]
    assert torch.equal(layer.w_td.data, torch.ones(2, 2)) and torch.equal(layer.w_top.data, torch.ones(2))
    assert layer.conv_td[0].depthwise.groups == 64 and isinstance(layer.conv_td[0].act, nn.SiLU)
    assert layer.conv_td[0].bn.eps == 1e-3 and abs(layer.conv_td[0].bn.momentum - 0.01) < 1e-12
    # first layer: a 1×1 conv + BN per edge for inputs of another width; later layers none
    assert isinstance(layer.proj_td[0], nn.Sequential) and len(layer.proj_skip) == 2
    m2 = BiFPN([64, 64, 64], num_repeats=3)
    assert all(isinstance(p, nn.Identity) for lyr in m2.layers for p in lyr.proj_td)
    for bad in ({"out_channels": 0}, {"num_repeats": 0}, {"variant": "yolo"}, {"fusion": "max"}, {"act": "nope"}):
        with pytest.raises(ValueError, match="BiFPN"):
            BiFPN([8, 16], **bad)
    with pytest.raises(ValueError, match="BiFPN"):
        BiFPN([8])


def test_bifpn_capture_weights_sum_to_one():
    m = BiFPN([8, 16, 32], out_channels=8).eval()
    with attnzoo.capture_attention(m) as maps:
        m(pyramid([8, 16, 32], [(9, 9), (5, 5), (3, 3)]))
    keys = sorted(maps[""])
    assert keys == ["weights_r0_out1", "weights_r0_out2", "weights_r0_td0", "weights_r0_td1"]
    for k in keys:
        assert abs(maps[""][k].sum().item() - 1) < 1e-3


# ----------------------------------------------------------------------------------------------------------
# AFPN


@pytest.mark.faithful("afpn")
@pytest.mark.parametrize("channels,act", [([16, 32, 64], "silu"), ([16, 32, 64, 64], "relu")])
def test_afpn_matches_official_forward(channels, act):
    n = len(channels)
    torch.manual_seed(0)
    m = AsymptoticFPN(channels, out_channels=16, reduction=4 if n == 3 else 8, num_blocks=2, act=act)
    m = randomize(m, scale=0.3).eval().double()  # float64: a deep neck amplifies float32 rounding
    x = [t.double() for t in pyramid(channels, [(32 >> i, 24 >> i) for i in range(n)])]
    actf = F.silu if act == "silu" else F.relu
    close(m(x), afpn_reference(m, x, actf), atol=1e-9, rtol=1e-7)


def test_afpn_defaults_init_odd_sizes_and_errors():
    m = AsymptoticFPN([256, 512, 1024, 2048])
    assert m.hidden == (32, 64, 128, 256) and m.out_channels == 256 and len(m.stages) == 3
    assert len(m.stages[0].blocks[0]) == 4 and isinstance(m.stages[0].blocks[0][0].act, nn.ReLU)
    assert m.stages[0].asff[0].weight_levels.in_channels == 16  # compress_c 8 per level
    convs = [mod for mod in m.modules() if isinstance(mod, nn.Conv2d) and mod.kernel_size == (1, 1) and mod.in_channels > 16]
    std = convs[0].weight.std().item()
    assert std < 0.01  # Xavier-normal with gain 0.02
    yolo = AsymptoticFPN([32, 64, 128], out_channels=[32, 64, 128], reduction=4, num_blocks=3, act="silu").eval()
    x = pyramid([32, 64, 128], [(13, 7), (7, 4), (4, 2)])
    assert [tuple(t.shape) for t in yolo(x)] == [(2, 32, 13, 7), (2, 64, 7, 4), (2, 128, 4, 2)]
    for bad in ({"channels": [8, 16]}, {"channels": [8, 16, 32, 64, 64]}, {"out_channels": [8, 8]},
                {"reduction": 0}, {"num_blocks": -1}, {"compress_channels": 0}):
        args = {"channels": [8, 16, 32], **bad}
        with pytest.raises(ValueError, match="AsymptoticFPN"):
            AsymptoticFPN(**args)


def test_afpn_level_weights_sum_to_one():
    m = randomize(AsymptoticFPN([8, 16, 32], 8, reduction=2, num_blocks=1)).eval()
    with attnzoo.capture_attention(m) as maps:
        m(pyramid([8, 16, 32], [(9, 7), (5, 4), (3, 2)]))
    assert sorted(maps[""]) == ["weights_s2_l0", "weights_s2_l1", "weights_s3_l0", "weights_s3_l1", "weights_s3_l2"]
    w = maps[""]["weights_s3_l1"]
    assert w.shape == (2, 3, 5, 4)
    close(w.sum(1), torch.ones(2, 5, 4))


# ----------------------------------------------------------------------------------------------------------
# AFF / iAFF (imported when the tests run, not at collection: until the contract's pair example can give a
# same-size context, aff is not imported by attnzoo.fusion, and importing it registers it)


def AttentionalFeatureFusion(*args, **kwargs):
    from attnzoo.fusion.aff import AttentionalFeatureFusion as cls

    return cls(*args, **kwargs)


@pytest.mark.faithful("aff")
@pytest.mark.parametrize("iterative", [False, True])
@pytest.mark.parametrize("variant", ["paper", "official"])
def test_aff_matches_equations(iterative, variant):
    m = randomize(AttentionalFeatureFusion(16, iterative=iterative, variant=variant), scale=0.5).eval()
    x, y = rand(2, 16, 7, 5, seed=1), rand(2, 16, 7, 5, seed=2)
    close(m(x, y), aff_reference(m, x, y))


def test_aff_convex_combination_defaults_and_errors():
    m = randomize(AttentionalFeatureFusion(16), scale=0.5).eval()
    x, y = rand(2, 16, 6, 6, seed=1), rand(2, 16, 6, 6, seed=2)
    with attnzoo.capture_attention(m) as maps:
        z = m(x, y)
    w = maps[""]["weights"]
    assert w.shape == x.shape and (w > 0).all() and (w < 1).all()
    assert ((z >= torch.minimum(x, y) - 1e-6) & (z <= torch.maximum(x, y) + 1e-6)).all()  # between x and y
    assert m.hidden_channels == 4 and m.attn.global_conv1.bias is not None  # r = 4, convs with bias
    t = randomize(AttentionalFeatureFusion(16, iterative=True)).train()
    assert t(x[:1], y[:1]).shape == (1, 16, 6, 6)  # batch 1 in training: global BN on running stats
    with pytest.raises(ValueError, match=r"AttentionalFeatureFusion.*\(2, 16, 6, 6\).*\(2, 16, 3, 3\)"):
        m(x, rand(2, 16, 3, 3))
    for bad in ({"reduction": 0}, {"iterative": 1}, {"variant": "2x"}):
        with pytest.raises(ValueError, match="AttentionalFeatureFusion"):
            AttentionalFeatureFusion(16, **bad)


# ----------------------------------------------------------------------------------------------------------
# DySample


@pytest.mark.faithful("dysample")
@pytest.mark.parametrize(
    "kwargs,size",
    [({}, (4, 5)), ({"style": "pl"}, (3, 4)), ({"dyscope": True, "scale": 3, "groups": 2}, (3, 2)),
     ({"style": "pl", "dyscope": True, "groups": 8}, (5, 3))],
)
def test_dysample_matches_pixelwise_reference(kwargs, size):
    m = randomize(DySample(16, **kwargs), scale=0.5).eval()  # offsets of about a pixel, some beyond the border
    x = rand(2, 16, *size)
    close(m(x), dysample_reference(m, x), atol=1e-5)


@pytest.mark.faithful("dysample")
@pytest.mark.parametrize("style,dyscope,scale", [("lp", False, 2), ("pl", True, 2), ("lp", True, 3), ("lp", False, 4)])
def test_dysample_zero_offsets_is_bilinear(style, dyscope, scale):
    m = DySample(32 if scale != 3 else 18, scale=scale, style=style, groups=2, dyscope=dyscope)
    nn.init.zeros_(m.offset.weight)
    nn.init.zeros_(m.offset.bias)
    x = rand(2, m.channels, 5, 7)
    ref = F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)
    close(m(x), ref, atol=1e-5)


def test_dysample_defaults_and_errors():
    m = DySample(64)
    assert m.offset.out_channels == 2 * 4 * 4 and abs(m.offset.weight.std().item() - 0.001) < 3e-4
    assert not hasattr(m, "scope") and m.init_pos.shape == (1, 32, 1, 1)
    s = DySample(64, dyscope=True)
    assert torch.equal(s.scope.weight, torch.zeros_like(s.scope.weight))
    from reference.dysample import official_init_pos

    close(m.init_pos, official_init_pos(2, 4))
    for bad in ({"groups": 3}, {"style": "pl", "scale": 3}, {"scale": 0}, {"style": "xy"}, {"dyscope": 1}):
        with pytest.raises(ValueError, match="DySample"):
            DySample(64, **bad)


def test_dysample_onnxruntime(tmp_path):
    ort = require("onnxruntime")
    m = randomize(DySample(16, dyscope=True)).eval()
    x = rand(1, 16, 9, 7)
    path = tmp_path / "dysample.onnx"
    torch.onnx.export(m, (x,), str(path), dynamo=True, verbose=False)
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]
    close(torch.from_numpy(got), m(x), atol=1e-4)


# ----------------------------------------------------------------------------------------------------------
# CARAFE


@pytest.mark.faithful("carafe")
@pytest.mark.parametrize("kwargs,size", [({}, (5, 6)), ({"scale": 3, "k_up": 3, "k_enc": 1}, (4, 3)), ({"groups": 2}, (3, 5))])
def test_carafe_matches_unfold_reference(kwargs, size):
    m = randomize(CARAFE(8, compressed_channels=6, **kwargs), scale=0.5).eval()
    x = rand(2, 8, *size)
    close(m(x), carafe_reference(m, x))


@pytest.mark.faithful("carafe")
@pytest.mark.parametrize("k_up,scale", [(5, 2), (3, 4)])
def test_carafe_zero_encoder_is_box_average_nearest(k_up, scale):
    m = CARAFE(8, scale=scale, k_up=k_up)
    nn.init.zeros_(m.content_encoder.weight)
    x = rand(2, 8, 6, 5)
    box = F.avg_pool2d(x, k_up, 1, k_up // 2, count_include_pad=True)  # zero-padded k×k average
    close(m(x), F.interpolate(box, scale_factor=scale, mode="nearest"))
    with attnzoo.capture_attention(m) as maps:
        m(x)
    close(maps[""]["kernels"], torch.full((2, k_up * k_up, 6 * scale, 5 * scale), 1 / k_up**2))


def test_carafe_defaults_and_errors():
    m = CARAFE(64)
    assert m.channel_compressor.out_channels == 64 and m.content_encoder.out_channels == 25 * 4
    assert m.content_encoder.kernel_size == (3, 3) and abs(m.content_encoder.weight.std().item() - 0.001) < 3e-4
    for bad in ({"k_up": 4}, {"k_enc": 0}, {"scale": 0}, {"compressed_channels": 0}, {"groups": 3}):
        with pytest.raises(ValueError, match="CARAFE"):
            CARAFE(64, **bad)


# ----------------------------------------------------------------------------------------------------------
# SPD-Conv


@pytest.mark.faithful("spd_conv")
@pytest.mark.parametrize("scale,size", [(2, (6, 8)), (2, (7, 5)), (3, (7, 9)), (2, (1, 1))])
def test_spd_conv_matches_reference(scale, size):
    m = randomize(SPDConv(4, 6, scale=scale), scale=0.5).eval()
    x = rand(2, 4, *size)
    close(m(x), spd_reference(m, x))
    if scale == 2:
        close(m(x), spd_reference(m, x, official=True))  # LabSAINT's four-slice cat
    assert m(x).shape[-2:] == (-(-size[0] // scale), -(-size[1] // scale))


def test_spd_conv_defaults_and_errors():
    m = SPDConv(16)
    assert m.out_channels == 16 and m.conv.conv.in_channels == 64 and m.conv.conv.stride == (1, 1)
    assert m.conv.conv.bias is None and isinstance(m.conv.act, nn.SiLU)
    for bad in ({"out_channels": 0}, {"scale": 0}, {"scale": 2.0}):
        with pytest.raises(ValueError, match="SPDConv"):
            SPDConv(16, **bad)

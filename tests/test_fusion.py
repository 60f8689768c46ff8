"""Faithfulness of the fusion necks: torchvision parity for FPN (with LastLevelMaxPool / LastLevelP6P7, odd
sizes, norm layers), slow references written from the equations for PANet and ASFF (and the official YOLOv3
ASFF forward written out literally), ASFF weights summing to 1, level indexing and input errors."""

from __future__ import annotations

import math
from collections import OrderedDict

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import attnzoo
from attnzoo.fusion import (
    AdaptiveSpatialFeatureFusion,
    PathAggregationNetwork,
)
from attnzoo.layouts import pyramid_sizes
from helpers import assert_close, randomize, require
from reference.asff import conv_block, official_param_count, official_yolov3_asff

tv_fpn = require("torchvision.ops.feature_pyramid_network")


def pyramid(channels, sizes, batch=2, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, c, h, w, generator=g, dtype=dtype) for c, (h, w) in zip(channels, sizes)]


def floor_sizes(size, levels):
    out, (h, w) = [], size
    for _ in range(levels):
        out.append((h, w))
        h, w = max(h // 2, 1), max(w // 2, 1)
    return out


def copy_by_order(src: nn.Module, dst: nn.Module) -> None:
    """Copy a state_dict entry by entry in registration order (the two modules name their layers differently)."""
    s, d = src.state_dict(), dst.state_dict()
    s = {k: v for k, v in s.items() if not k.endswith("num_batches_tracked")}
    d = {k: v for k, v in d.items() if not k.endswith("num_batches_tracked")}
    assert len(s) == len(d), (list(s), list(d))
    new = {}
    for (ks, vs), (kd, vd) in zip(s.items(), d.items()):
        assert vs.shape == vd.shape, (ks, kd, vs.shape, vd.shape)
        new[kd] = vs.clone()
    dst.load_state_dict(new, strict=False)


# ----------------------------------------------------------------------------------------------------------
# FPN: torchvision parity


def torchvision_fpn(channels, out, extra, p6_from, norm_layer=None):
    blocks = None
    if extra == "maxpool":
        blocks = tv_fpn.LastLevelMaxPool()
    elif extra == "p6p7":
        in6 = channels[-1] if p6_from == "c5" else out
        blocks = tv_fpn.LastLevelP6P7(in6, out)
    return tv_fpn.FeaturePyramidNetwork(list(channels), out, extra_blocks=blocks, norm_layer=norm_layer)


FPN_CASES = [
    # channels, out, extra, p6_from, sizes
    ([16, 24, 40, 56], 32, None, None, pyramid_sizes((29, 23), 4)),
    ([16, 24, 40, 56], 32, "maxpool", None, pyramid_sizes((29, 23), 4)),
    ([16, 24, 40, 56], 32, "p6p7", "c5", pyramid_sizes((29, 23), 4)),
    ([16, 24, 40, 56], 32, "p6p7", "p5", pyramid_sizes((29, 23), 4)),
    ([12, 20, 28], 16, "p6p7", "c5", floor_sizes((13, 11), 3)),  # floor-rounded pyramid
    ([12, 20, 28], 16, "maxpool", None, [(9, 17), (9, 17), (3, 5)]),  # equal sizes (dilated stage) and ratio 3
    ([8, 16], 8, "p6p7", "c5", [(1, 1), (1, 1)]),
]


@pytest.mark.faithful("fpn")
@pytest.mark.parametrize("channels,out,extra,p6_from,sizes", FPN_CASES)
def test_fpn_matches_torchvision(channels, out, extra, p6_from, sizes):
    ours = randomize(attnzoo.create("fpn", channels, out_channels=out, extra_levels=extra, p6_from=p6_from)).eval()
    ref = torchvision_fpn(channels, out, extra, p6_from).eval()
    copy_by_order(ours, ref)
    xs = pyramid(channels, sizes)
    names = [f"c{i + 2}" for i in range(len(channels))]
    want = ref(OrderedDict(zip(names, xs)))
    got = ours(xs)
    assert isinstance(got, list) and len(got) == len(want)
    for g, w in zip(got, want.values()):
        torch.testing.assert_close(g, w, atol=1e-6, rtol=1e-5)
    # OrderedDict in → OrderedDict out with torchvision's names for the extra levels
    got_dict = ours(OrderedDict(zip(names, xs)))
    assert isinstance(got_dict, OrderedDict) and list(got_dict) == list(want)
    for k in want:
        torch.testing.assert_close(got_dict[k], want[k], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("norm", ["bn", "gn"])
def test_fpn_with_norm_matches_torchvision_norm_layer(norm, mode):
    channels, out = [16, 24, 40], 32
    ours = randomize(attnzoo.create("fpn", channels, out_channels=out, norm=norm)).train(mode == "train")
    layer = nn.BatchNorm2d if norm == "bn" else (lambda c: nn.GroupNorm(32 if c % 32 == 0 else math.gcd(c, 32), c))
    ref = torchvision_fpn(channels, out, None, None, norm_layer=layer).train(mode == "train")
    assert all(m.conv.bias is None for m in ours.lateral)  # conv without bias before a norm, as torchvision
    copy_by_order(ours, ref)
    xs = pyramid(channels, pyramid_sizes((15, 12), 3))
    for g, w in zip(ours(xs), ref(OrderedDict(enumerate(xs))).values()):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-4)


def test_fpn_resnet50_channels_match_torchvision():
    channels = [256, 512, 1024, 2048]
    ours = attnzoo.create("fpn", channels, extra_levels="p6p7")  # out 256 and P6 from C5 (RetinaNet paper) by default
    assert ours.out_channels == 256 and ours.p6.in_channels == 2048
    ref = torchvision_fpn(channels, 256, "p6p7", "c5").eval()
    copy_by_order(ours, ref)
    xs = pyramid(channels, pyramid_sizes((21, 19), 4), batch=1)
    for g, w in zip(ours(xs), ref(OrderedDict(enumerate(xs))).values()):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-4)


def test_fpn_structure_and_init():
    m = attnzoo.create("fpn", [64, 128, 256, 512])
    assert m.out_channels == 256
    for conv in [*(b.conv for b in m.lateral), *(b.conv for b in m.output)]:
        assert conv.bias is not None and torch.count_nonzero(conv.bias) == 0  # bias 0
        fan_in = conv.weight[0].numel()
        assert conv.weight.abs().max() <= math.sqrt(3 / fan_in) + 1e-7  # kaiming_uniform(a=1) = XavierFill bound
        assert conv.weight.std() > 0.8 * math.sqrt(1 / fan_in)  # really re-initialised (default init is 3× smaller)
    assert [b.conv.kernel_size for b in m.lateral] == [(1, 1)] * 4
    assert [b.conv.kernel_size for b in m.output] == [(3, 3)] * 4
    assert not any(isinstance(s, (nn.ReLU, nn.BatchNorm2d)) for s in m.modules())  # no non-linearity in the paper
    # P6 from C5 (paper) vs from P5 (torchvision RetinaNet v1): explicit, even when C5 has out_channels channels
    assert attnzoo.create("fpn", [8, 256], extra_levels="p6p7").p6.in_channels == 256
    m5 = attnzoo.create("fpn", [8, 16], out_channels=32, extra_levels="p6p7", p6_from="p5")
    assert m5.p6.in_channels == 32


def test_fpn_p6_p7_use_c5_and_relu():
    m = randomize(attnzoo.create("fpn", [8, 16, 24], out_channels=12, extra_levels="p6p7")).eval()
    xs = pyramid([8, 16, 24], pyramid_sizes((13, 9), 3))
    outs = m(xs)
    p6 = F.conv2d(xs[-1], m.p6.weight, m.p6.bias, stride=2, padding=1)
    p7 = F.conv2d(F.relu(p6), m.p7.weight, m.p7.bias, stride=2, padding=1)
    torch.testing.assert_close(outs[3], p6)
    torch.testing.assert_close(outs[4], p7)
    assert outs[4].shape[-2:] == (1, 1)


def test_fpn_extra_levels_get_gradients():
    m = randomize(attnzoo.create("fpn", [8, 16, 24], out_channels=12, extra_levels="p6p7")).train()
    xs = pyramid([8, 16, 24], pyramid_sizes((9, 7), 3))
    sum(o.square().sum() for o in m(xs)).backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


# ----------------------------------------------------------------------------------------------------------
# PANet: slow reference from the equations (FPN part from torchvision with copied weights)




def panet_reference(m: PathAggregationNetwork, xs):
    gn = any(isinstance(s, nn.GroupNorm) for s in m.fpn.modules())
    norm_layer = (lambda c: nn.GroupNorm(m.fpn.lateral[0].norm.num_groups, c)) if gn else None
    tv = torchvision_fpn(m.channels, m.out_channels, None, None, norm_layer=norm_layer).eval().double()
    copy_by_order(m.fpn, tv)
    p = list(tv(OrderedDict(enumerate(xs))).values())
    n = [p[0]]
    for i in range(len(p) - 1):
        d = conv_block(m.down[i], n[i], 2)[..., : p[i + 1].shape[-2], : p[i + 1].shape[-1]]
        n.append(conv_block(m.fuse[i], d + p[i + 1], 1))  # N_{i+1} = conv3×3(conv3×3_s2(N_i) + P_{i+1})
    return n


@pytest.mark.parametrize(
    "sizes",
    [pyramid_sizes((29, 23), 4), floor_sizes((29, 23), 4), pyramid_sizes((1, 1), 4), pyramid_sizes((32, 32), 4)],
)
@pytest.mark.faithful("panet")
@pytest.mark.parametrize("norm,act", [(None, None), ("gn", "relu")])
def test_panet_matches_reference(sizes, norm, act):
    channels = [16, 24, 40, 56]
    m = randomize(attnzoo.create("panet", channels, out_channels=64, norm=norm, act=act)).eval().double()
    xs = pyramid(channels, sizes, dtype=torch.float64)
    got, want = m(xs), panet_reference(m, xs)
    assert [tuple(t.shape) for t in got] == [(2, 64, h, w) for h, w in sizes]
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, atol=1e-10, rtol=1e-9)


def test_panet_structure_official():
    m = attnzoo.create("panet", [256, 512, 1024, 2048])
    assert m.out_channels == 256 and len(m.down) == len(m.fuse) == 3
    for blk in [*m.down, *m.fuse]:
        assert list(dict(blk.named_children())) == ["conv"] and blk.conv.bias is not None  # plain conv (no GN config)
    assert [b.conv.stride for b in m.down] == [(2, 2)] * 3 and [b.conv.stride for b in m.fuse] == [(1, 1)] * 3
    g = attnzoo.create("panet", [256, 512], norm="gn", act="relu")  # the released GN configuration
    assert isinstance(g.down[0].norm, nn.GroupNorm) and g.down[0].norm.num_groups == 32
    assert isinstance(g.down[0].act, nn.ReLU) and isinstance(g.fpn.lateral[0].norm, nn.GroupNorm)
    assert not hasattr(g.fpn.lateral[0], "act")  # FPN convs: conv + GN, no activation (official USE_GN)


def test_panet_maxpool_level():
    m = randomize(attnzoo.create("panet", [8, 16, 32], out_channels=8, extra_levels="maxpool")).eval()
    xs = pyramid([8, 16, 32], pyramid_sizes((11, 7), 3))
    outs = m(xs)
    assert len(outs) == 4 and outs[3].shape[-2:] == (2, 1)
    torch.testing.assert_close(outs[3], outs[2][..., ::2, ::2])


# ----------------------------------------------------------------------------------------------------------
# ASFF


def asff_reference(m: AdaptiveSpatialFeatureFusion, xs):
    """ASFF from the equations for any number of levels: resizing per the official rules, nearest upsampling
    written as repeat_interleave, size mismatches resolved by clamped indexing (crop / edge repeat)."""
    l, n = m.level, len(xs)
    h, w = xs[l].shape[-2:]
    resized = []
    for j, x in enumerate(xs):
        if j < l:  # finer by 2^k: (k-1) max-pools 3/2/1, then 3×3 stride-2 add_conv
            for _ in range(l - j - 1):
                x = F.max_pool2d(x, 3, 2, 1)
            x = conv_block(m.resize[j][-1], x, 2)
        elif j > l:  # coarser: 1×1 add_conv when the width differs, then nearest ×2^k
            if x.shape[1] != m.inter_channels:
                x = conv_block(m.resize[j], x, 1)
            f = 2 ** (j - l)
            x = x.repeat_interleave(f, 2).repeat_interleave(f, 3)
        elif x.shape[1] != m.inter_channels:
            x = conv_block(m.resize[j], x, 1)
        hi = torch.arange(h).clamp(max=x.shape[2] - 1)
        wi = torch.arange(w).clamp(max=x.shape[3] - 1)
        resized.append(x[:, :, hi][:, :, :, wi])
    v = torch.cat([conv_block(m.weight[j], r, 1) for j, r in enumerate(resized)], 1)
    lam = F.softmax(F.conv2d(v, m.weight_levels.weight, m.weight_levels.bias), dim=1)
    fused = sum(lam[:, j : j + 1] * resized[j] for j in range(n))
    return conv_block(m.expand, fused, 1), lam


ASFF_CASES = [
    ([16, 24, 40, 56], pyramid_sizes((29, 23), 4)),
    ([16, 24, 40, 56], floor_sizes((29, 23), 4)),
    ([8, 8, 16], pyramid_sizes((1, 1), 3)),
    ([12, 20], pyramid_sizes((16, 12), 2)),
    ([8, 16, 16, 32, 32], pyramid_sizes((37, 19), 5)),
]


@pytest.mark.faithful("asff")
@pytest.mark.parametrize("channels,sizes", ASFF_CASES)
def test_asff_matches_reference_every_level(channels, sizes):
    xs = pyramid(channels, sizes, dtype=torch.float64)
    for level in range(len(channels)):
        m = randomize(attnzoo.create("asff", channels, level=level, return_weights=True)).eval().double()
        out, lam = m(xs)
        ref_out, ref_lam = asff_reference(m, xs)
        h, w = sizes[level]
        assert out.shape == (2, channels[level], h, w) and lam.shape == (2, len(channels), h, w)
        torch.testing.assert_close(lam, ref_lam, atol=1e-10, rtol=1e-9)
        torch.testing.assert_close(out, ref_out, atol=1e-10, rtol=1e-9)


def test_asff_reference_with_other_widths():
    channels, sizes = [16, 24, 40], pyramid_sizes((13, 11), 3)
    xs = pyramid(channels, sizes, dtype=torch.float64)
    m = randomize(attnzoo.create("asff", channels, level=1, inter_channels=32, out_channels=8, compress_channels=4,
                                 return_weights=True)).eval().double()
    assert isinstance(m.resize[1][0], nn.Conv2d)  # own level compressed to inter_channels too
    out, lam = m(xs)
    ref_out, ref_lam = asff_reference(m, xs)
    assert out.shape == (2, 8, 7, 6)
    torch.testing.assert_close(out, ref_out, atol=1e-10, rtol=1e-9)
    torch.testing.assert_close(lam, ref_lam, atol=1e-10, rtol=1e-9)


@pytest.mark.parametrize("official_level", [0, 1, 2])
def test_asff_yolov3_official_configuration(official_level):
    level = 2 - official_level
    m = AdaptiveSpatialFeatureFusion.yolov3(level, return_weights=True)
    same = attnzoo.create("asff", [256, 256, 512], level=level, out_channels=(256, 512, 1024)[level], return_weights=True)
    assert [tuple(p.shape) for p in m.parameters()] == [tuple(p.shape) for p in same.parameters()]
    assert m.inter_channels == [512, 256, 256][official_level] and m.out_channels == [1024, 512, 256][official_level]
    assert sum(p.numel() for p in m.parameters()) == official_param_count(official_level)
    assert sum(p.numel() for p in AdaptiveSpatialFeatureFusion.yolov3(level, rfb=True).parameters()) == official_param_count(
        official_level, rfb=True
    )
    # official blocks: add_conv = Conv(no bias) + BN + LeakyReLU(0.1); weight_levels a plain conv with bias
    for blk in [*m.weight, m.expand]:
        assert blk.conv.bias is None and isinstance(blk.norm, nn.BatchNorm2d) and blk.act.negative_slope == 0.1
    assert m.weight_levels.bias is not None and m.weight_levels.kernel_size == (1, 1)
    kinds = [type(r).__name__ for r in m.resize]
    if official_level == 0:  # finest: max-pool + stride-2 conv; middle: stride-2 conv; own: identity
        assert isinstance(m.resize[0][0], nn.MaxPool2d) and m.resize[0][1].conv.stride == (2, 2)
        assert len(m.resize[1]) == 1 and m.resize[1][0].conv.stride == (2, 2) and kinds[2] == "Identity"
    elif official_level == 1:
        assert m.resize[0][0].conv.stride == (2, 2) and kinds[1] == "Identity" and m.resize[2].conv.kernel_size == (1, 1)
    else:  # the 256-channel middle level is only upsampled (official: no compress when the widths agree)
        assert kinds[:2] == ["Identity", "Identity"] and m.resize[2].conv.kernel_size == (1, 1)

    m = randomize(m).eval().double()
    xs = pyramid([256, 256, 512], [(20, 12), (10, 6), (5, 3)], batch=1, dtype=torch.float64)
    out, lam = m(xs)
    ref_out, ref_lam = official_yolov3_asff(m, official_level, xs[2], xs[1], xs[0])
    assert out.shape == ref_out.shape == (1, m.out_channels, *xs[level].shape[-2:])
    torch.testing.assert_close(out, ref_out, atol=1e-10, rtol=1e-9)
    torch.testing.assert_close(lam, ref_lam.flip(1), atol=1e-10, rtol=1e-9)  # ours ordered finest first


@pytest.mark.parametrize("size", [(1, 1), (1, 6), (2, 3), (7, 5), (13, 8), (32, 31)])
def test_max_pool_3x3_s2_equals_max_pool2d(size):
    from attnzoo.layers import MaxPool3x3s2, max_pool_3x3_s2

    x = torch.randn(2, 5, *size, dtype=torch.float64)
    want = F.max_pool2d(x, 3, 2, 1)
    assert torch.equal(max_pool_3x3_s2(x), want)  # fast path (no autograd)
    assert torch.equal(max_pool_3x3_s2(x.contiguous(memory_format=torch.channels_last)), want)
    with torch.no_grad():
        assert torch.equal(MaxPool3x3s2()(x.requires_grad_()), want)
    out = max_pool_3x3_s2(x)  # autograd path: the official op and its gradient
    assert out.grad_fn is not None and "MaxPool" in type(out.grad_fn).__name__
    g = torch.randn_like(want)
    (grad,) = torch.autograd.grad(out, x, g)
    x2 = x.detach().requires_grad_()
    (want_grad,) = torch.autograd.grad(F.max_pool2d(x2, 3, 2, 1), x2, g)
    assert torch.equal(grad, want_grad)


def test_asff_yolov3_rejects_bad_level():
    for bad in (3, -1, True, "0"):
        with pytest.raises(ValueError, match="^AdaptiveSpatialFeatureFusion: level must be 0, 1 or 2 for yolov3"):
            AdaptiveSpatialFeatureFusion.yolov3(bad)


@pytest.mark.parametrize("level", [0, 1, 2, -1])
def test_asff_weights_sum_to_one_and_level_indexing(level):
    channels, sizes = [8, 16, 32], pyramid_sizes((11, 9), 3)
    m = randomize(attnzoo.create("asff", channels, level=level, return_weights=True)).train()
    out, lam = m(pyramid(channels, sizes))
    idx = level % 3
    assert m.level == idx and out.shape == (2, channels[idx], *sizes[idx]) and lam.shape == (2, 3, *sizes[idx])
    assert (lam >= 0).all()
    torch.testing.assert_close(lam.sum(1), torch.ones(2, *sizes[idx]))
    assert lam.std() > 0  # really per-pixel / per-level, not a constant
    plain = attnzoo.create("asff", channels, level=level)
    plain.load_state_dict(m.state_dict())
    assert isinstance(plain.eval()(pyramid(channels, sizes)), torch.Tensor)


def test_asff_level_follows_input_order_not_official():
    """level 0 = the first (finest) input: the output has its size; the official code's level 0 is the coarsest."""
    m = attnzoo.create("asff", [8, 16, 32], level=0)
    out = m(pyramid([8, 16, 32], [(16, 16), (8, 8), (4, 4)]))
    assert out.shape == (2, 8, 16, 16)


def test_asff_capture_records_weights():
    m = attnzoo.create("asff", [8, 16, 32], level=1).eval()
    xs = pyramid([8, 16, 32], pyramid_sizes((9, 9), 3))
    with attnzoo.capture_attention(m) as maps:
        m(xs)
    lam = maps[""]["weights"]
    assert lam.shape == (2, 3, 5, 5)
    torch.testing.assert_close(lam.sum(1), torch.ones(2, 5, 5))


@pytest.mark.parametrize("level", [0, 1, 2])
def test_asff_every_level_gets_gradients(level):
    channels = [8, 16, 32]
    m = randomize(attnzoo.create("asff", channels, level=level)).train()
    xs = [t.requires_grad_() for t in pyramid(channels, pyramid_sizes((9, 7), 3))]
    m(xs).square().sum().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in xs)


def test_asff_bfloat16_weights_in_float32():
    m = randomize(attnzoo.create("asff", [8, 16, 32], level=1, return_weights=True)).eval()
    xs = pyramid([8, 16, 32], pyramid_sizes((9, 7), 3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, lam = m(xs)
    assert lam.dtype == torch.float32
    torch.testing.assert_close(lam.sum(1), torch.ones(2, 5, 4))


@pytest.mark.slow
def test_non_default_configurations_export():
    cases = [
        (attnzoo.create("fpn", [8, 16, 32], out_channels=8, extra_levels="p6p7"), pyramid_sizes((9, 7), 3)),
        (attnzoo.create("panet", [8, 16, 32], out_channels=8, extra_levels="maxpool"), floor_sizes((9, 7), 3)),
        (attnzoo.create("asff", [8, 16, 32], level=2, return_weights=True), floor_sizes((9, 7), 3)),
        (attnzoo.create("asff", [8, 16, 32], level=0), floor_sizes((9, 7), 3)),
    ]
    for m, sizes in cases:
        m = randomize(m).eval()
        xs = pyramid([8, 16, 32], sizes)
        ep = torch.export.export(m, (xs,))
        assert_close(ep.module()(xs), m(xs), msg="torch.export")
        assert_close(torch.fx.symbolic_trace(m)(xs), m(xs), atol=0, rtol=0, msg="fx")


# ----------------------------------------------------------------------------------------------------------
# errors


@pytest.mark.parametrize("name,cls", [("fpn", "FeaturePyramidNetwork"), ("panet", "PathAggregationNetwork"),
                                      ("asff", "AdaptiveSpatialFeatureFusion")])
def test_bad_inputs_name_level_and_expectation(name, cls):
    m = attnzoo.create(name, [8, 16, 32], **attnzoo.info(name).test_kwargs)
    xs = pyramid([8, 16, 32], pyramid_sizes((9, 7), 3))
    cases = [
        (xs[:2], r"expected 3 pyramid levels .* got 2 levels"),
        ([xs[0], torch.randn(2, 17, 5, 4), xs[2]], r"level 1 expected 16 channels .* got 17"),
        (xs[::-1], r"ordered finest first: expected level 1 no larger than level 0 \(3×2\), got 5×4"),
        ([xs[0], xs[1][0], xs[2]], r"level 1 expected a 4-D tensor B×16×H×W, got shape \(16, 5, 4\)"),
        ([xs[0], xs[1], xs[2][:1]], r"level 2 expected batch size 2 \(as level 0\), got 1"),
        (xs[0], r"expected a list of 3 maps"),
        ([xs[0], xs[1], torch.randn(2, 32, 0, 2)], r"level 2 expected a non-empty tensor"),
    ]
    for bad, pattern in cases:
        with pytest.raises(ValueError, match=f"^{cls}: .*{pattern}"):
            m(bad)


@pytest.mark.parametrize("name,cls", [("panet", "PathAggregationNetwork"), ("asff", "AdaptiveSpatialFeatureFusion")])
def test_stride2_modules_need_halving_levels(name, cls):
    m = attnzoo.create(name, [8, 16, 32], **attnzoo.info(name).test_kwargs)
    with pytest.raises(ValueError, match=rf"^{cls}: each level must halve .* expected level 1 of size \[4, 5\]×\[3\] .* got 9×3"):
        m(pyramid([8, 16, 32], [(9, 6), (9, 3), (5, 2)]))
    m(pyramid([8, 16, 32], [(9, 6), (4, 3), (2, 2)]))  # floor then ceil: fine
    fpn = attnzoo.create("fpn", [8, 16, 32], out_channels=8)
    assert len(fpn(pyramid([8, 16, 32], [(9, 6), (9, 3), (5, 2)]))) == 3  # FPN accepts any non-increasing sizes


@pytest.mark.parametrize(
    "name,kwargs,pattern",
    [
        ("fpn", {"out_channels": 0}, "out_channels must be a positive integer"),
        ("fpn", {"extra_levels": "p6"}, "extra_levels must be None, 'maxpool' or 'p6p7'"),
        ("fpn", {"p6_from": "p5"}, "p6_from must be None unless extra_levels='p6p7'"),
        ("fpn", {"extra_levels": "p6p7", "p6_from": "c4"}, "p6_from must be 'c5' or 'p5'"),
        ("fpn", {"norm": "ln"}, "norm must be None, 'bn', 'gn' or a callable"),
        ("panet", {"extra_levels": "p6p7"}, "extra_levels must be None or 'maxpool'"),
        ("panet", {"act": "nope"}, "unknown activation"),
        ("panet", {"norm": nn.BatchNorm2d(8)}, "norm must be None"),
        ("asff", {"level": 3}, "level must be an index into the 3 input levels"),
        ("asff", {"level": -4}, "level must be an index"),
        ("asff", {"level": True}, "level must be an index"),
        ("asff", {"compress_channels": 0}, "compress_channels must be a positive integer"),
        ("asff", {"inter_channels": 0}, "inter_channels must be a positive integer"),
        ("asff", {"out_channels": -1}, "out_channels must be a positive integer"),
        ("asff", {"return_weights": 1}, "return_weights must be a bool"),
    ],
)
def test_bad_arguments(name, kwargs, pattern):
    cls = attnzoo.info(name).cls.__name__
    with pytest.raises(ValueError, match=f"^{cls}: .*{pattern}"):
        attnzoo.create(name, [8, 16, 32], **kwargs)


@pytest.mark.parametrize("name", ["fpn", "panet", "asff"])
@pytest.mark.parametrize("channels", [[], [8], 8, [8, 0], [8, 16.0], (8, True)])
def test_bad_channels(name, channels):
    with pytest.raises(ValueError, match=f"^{attnzoo.info(name).cls.__name__}: channels must be a list of at least 2"):
        attnzoo.create(name, channels)
    with pytest.raises(TypeError, match="unknown keyword"):
        attnzoo.create(name, [8, 16], nonsense=1)


def test_fx_graph_keeps_the_checks():
    for name in ("fpn", "panet", "asff"):
        m = attnzoo.create(name, [8, 16, 32], **attnzoo.info(name).test_kwargs)
        gm = torch.fx.symbolic_trace(m)
        with pytest.raises(ValueError, match="ordered finest first"):
            gm(pyramid([8, 16, 32], pyramid_sizes((9, 7), 3))[::-1])

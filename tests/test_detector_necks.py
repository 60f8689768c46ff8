"""The necks of current detectors (ASF-YOLO's SSFF / TFE / CPAM, Gold-YOLO's GD neck and injection, MFDS-DETR's
HS-FPN) against the papers' compositions written out here, other attnzoo modules with copied weights, and the
papers' invariants.  The upstream code (AGPL, GPL, unlicensed) is neither imported nor copied."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import attnzoo
from attnzoo.fusion.asf import asf_eca_kernel_size
from attnzoo.layouts import pyramid_sizes
from attnzoo.testing import randomize
from helpers import require


def _x(c: int, h: int, w: int, b: int = 2, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(b, c, h, w, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _levels(channels, sizes, seed: int = 0, dtype: torch.dtype = torch.float64) -> list[torch.Tensor]:
    return [_x(c, h, w, seed=seed + i, dtype=dtype) for i, (c, (h, w)) in enumerate(zip(channels, sizes))]


def _ready(name: str, channels, seed: int = 3, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    return randomize(attnzoo.create(name, channels, **kwargs), seed=seed, scale=0.3).double().eval()


def _bn(bn: nn.BatchNorm2d, t: torch.Tensor) -> torch.Tensor:
    """Eval-mode BatchNorm written out."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return (t - bn.running_mean[:, None, None]) * scale[:, None, None] + bn.bias[:, None, None]


def _conv_bn(block: nn.Module, t: torch.Tensor) -> torch.Tensor:
    """attnzoo's ConvBN (eval) without its activation."""
    return _bn(block.bn, F.conv2d(t, block.conv.weight, None, block.conv.stride, block.conv.padding, block.conv.dilation, block.conv.groups))


def _pool_bins(x: torch.Tensor, size: tuple[int, int], reduce) -> torch.Tensor:
    """Adaptive pooling written out bin by bin: rows [⌊i·H/o⌋, ⌈(i+1)·H/o⌉), likewise columns."""
    h, w = x.shape[-2:]
    out = torch.empty(*x.shape[:2], *size, dtype=x.dtype)
    for i in range(size[0]):
        r0, r1 = (i * h) // size[0], math.ceil((i + 1) * h / size[0])
        for j in range(size[1]):
            c0, c1 = (j * w) // size[1], math.ceil((j + 1) * w / size[1])
            out[:, :, i, j] = reduce(x[:, :, r0:r1, c0:c1].flatten(2))
    return out


# ------------------------------------------------------------------------------------------------ ASF-YOLO


@pytest.mark.faithful("ssff")
@pytest.mark.parametrize("channels, size", [([16, 24, 40], (13, 11)), ([8, 512, 1024], (8, 8)), ([4, 4, 4], (1, 1))])
def test_ssff_is_the_max_of_three_composition(channels, size) -> None:
    m = _ready("ssff", channels)
    sizes = pyramid_sizes(size, 3)
    xs = _levels(channels, sizes)
    u = [xs[0]] + [F.interpolate(F.silu(_conv_bn(r, t)), size=sizes[0], mode="nearest") for r, t in zip(m.reduce, xs[1:])]
    branch = [F.leaky_relu(_bn(m.bn, F.conv2d(t, m.conv.weight, m.conv.bias)), 0.1) for t in u]
    with torch.no_grad():
        torch.testing.assert_close(m(xs), torch.maximum(torch.maximum(branch[0], branch[1]), branch[2]))


@pytest.mark.faithful("ssff")
@pytest.mark.parametrize("train", [False, True])
def test_ssff_equals_the_papers_conv3d_form(train) -> None:
    """The official form: stack on a depth axis, Conv3d(1×1×1) + BatchNorm3d + LeakyReLU + MaxPool3d((3, 1, 1)),
    with the squeezed weight; in training the BatchNorm statistics pool the three scales in both forms."""
    channels, sizes = [16, 32, 64], [(13, 11), (7, 6), (4, 3)]
    m = _ready("ssff", channels).train(train)
    conv3d = nn.Conv3d(16, 16, 1).double()
    bn3d = nn.BatchNorm3d(16).double()
    with torch.no_grad():
        conv3d.weight.copy_(m.conv3d_weight())
        conv3d.bias.copy_(m.conv.bias)
        bn3d.load_state_dict(m.bn.state_dict())
    bn3d.train(train)
    xs = _levels(channels, sizes)
    with torch.no_grad():
        u = [xs[0]] + [F.interpolate(r(t), size=sizes[0], mode="nearest") for r, t in zip(m.reduce, xs[1:])]
        stacked = torch.stack(u, dim=2)  # B×C×3×H×W
        official = F.max_pool3d(F.leaky_relu(bn3d(conv3d(stacked)), 0.1), (3, 1, 1)).squeeze(2)
        torch.testing.assert_close(m(xs), official)
        if train:  # and the running statistics moved the same way
            torch.testing.assert_close(m.bn.running_mean, bn3d.running_mean)
            torch.testing.assert_close(m.bn.running_var, bn3d.running_var)


def test_ssff_any_widths_and_rejects_bad_levels() -> None:
    m = attnzoo.create("ssff", [24, 40, 72])
    out = m([torch.randn(1, 24, 9, 7), torch.randn(1, 40, 5, 4), torch.randn(1, 72, 3, 2)])
    assert out.shape == (1, 24, 9, 7)
    with pytest.raises(ValueError, match="ScaleSequenceFusion"):
        m([torch.randn(1, 24, 9, 7), torch.randn(1, 41, 5, 4), torch.randn(1, 72, 3, 2)])
    with pytest.raises(ValueError, match="ScaleSequenceFusion"):
        attnzoo.create("ssff", [24])


@pytest.mark.faithful("tfe")
def test_tfe_with_exact_halves_is_maxpool2_plus_avgpool2() -> None:
    m = attnzoo.create("tfe", [8, 8, 8])
    large, mid, small = _x(8, 12, 10, dtype=torch.float32), _x(8, 6, 5, seed=1, dtype=torch.float32), _x(8, 3, 5, seed=2, dtype=torch.float32)
    small = small[..., :3, :3]  # 3×3 → nearest to 6×5 is not a plain repeat in W: use the size form
    expected = torch.cat(
        [F.max_pool2d(large, 2) + F.avg_pool2d(large, 2), mid, F.interpolate(small, size=(6, 5), mode="nearest")], 1
    )
    torch.testing.assert_close(m([large, mid, small]), expected)
    small2 = _x(8, 3, 3, seed=5, dtype=torch.float32)
    mid2, large2 = _x(8, 6, 6, seed=6, dtype=torch.float32), _x(8, 12, 12, seed=7, dtype=torch.float32)
    expected2 = torch.cat([F.max_pool2d(large2, 2) + F.avg_pool2d(large2, 2), mid2, small2.repeat_interleave(2, -1).repeat_interleave(2, -2)], 1)
    torch.testing.assert_close(m([large2, mid2, small2]), expected2)


@pytest.mark.faithful("tfe")
@pytest.mark.parametrize("target", [None, "onnx", "openvino", "ncnn"])
def test_tfe_pools_with_pytorchs_exact_bins_at_13x11(target) -> None:
    m = attnzoo.create("tfe", [4, 6, 8])
    xs = _levels([4, 6, 8], [(13, 11), (7, 6), (4, 3)], dtype=torch.float32)
    pooled = _pool_bins(xs[0], (7, 6), lambda t: t.amax(-1)) + _pool_bins(xs[0], (7, 6), lambda t: t.mean(-1))
    expected = torch.cat([pooled, xs[1], F.interpolate(xs[2], size=(7, 6), mode="nearest")], 1)
    if target is None:
        out = m(xs)
    else:
        with attnzoo.export_target(target):
            out = m(xs)
    torch.testing.assert_close(out, expected)


def test_tfe_level_argument_generalises_the_middle_level() -> None:
    m = attnzoo.create("tfe", [4, 6, 8, 10], level=2)
    xs = _levels([4, 6, 8, 10], pyramid_sizes((13, 11), 4), dtype=torch.float32)
    out = m(xs)
    assert out.shape == (2, 28, 4, 3)
    ref = xs[2]
    torch.testing.assert_close(out[:, :4], F.adaptive_max_pool2d(xs[0], (4, 3)) + F.adaptive_avg_pool2d(xs[0], (4, 3)))
    torch.testing.assert_close(out[:, 10:18], ref)
    with pytest.raises(ValueError, match="TripleFeatureEncoding"):
        attnzoo.create("tfe", [4, 6, 8], level=3)


@pytest.mark.parametrize("channels, k", [(1, 1), (4, 1), (8, 3), (16, 3), (64, 3), (128, 5), (256, 5), (1024, 5), (4096, 7)])
def test_cpam_eca_kernel_rule(channels, k) -> None:
    """k = int((log2 C + 1) / 2), next odd; no minimum of 3."""
    assert asf_eca_kernel_size(channels) == k
    assert attnzoo.create("cpam", channels).eca.kernel_size == k


@pytest.mark.faithful("cpam")
@pytest.mark.parametrize("channels, size", [(32, (13, 11)), (16, (1, 1)), (64, (5, 9))])
def test_cpam_is_eca_then_the_coordinate_gate(channels, size) -> None:
    m = _ready("cpam", channels)
    eca = attnzoo.create("eca", channels, kernel_size=asf_eca_kernel_size(channels)).double()
    eca.load_state_dict(m.eca.state_dict())
    x1, x2 = _x(channels, *size), _x(channels, *size, seed=1)
    with torch.no_grad():
        x = eca(x1) + x2
        h, w = size
        pooled = torch.cat([x.mean(3), x.mean(2)], dim=2)[:, :, None, :]  # B×C×1×(H+W)
        s = F.relu(_conv_bn(m.conv1, pooled))
        s_h, s_w = s[..., :h], s[..., h:]
        gate_h = torch.sigmoid(F.conv2d(s_h, m.conv_h.weight)).transpose(2, 3)  # B×C×H×1
        gate_w = torch.sigmoid(F.conv2d(s_w, m.conv_w.weight))  # B×C×1×W
        torch.testing.assert_close(m(x1, x2), x * gate_h * gate_w)
    assert m.conv1.conv.bias is None and m.conv_h.bias is None and m.conv_w.bias is None


def test_cpam_rejects_maps_of_different_shapes() -> None:
    m = attnzoo.create("cpam", 16)
    with pytest.raises(ValueError, match="ChannelPositionAttention"):
        m(torch.randn(1, 16, 8, 8), torch.randn(1, 16, 4, 4))


# ------------------------------------------------------------------------------------------------ Gold-YOLO


def _inject_reference(m: nn.Module, x: torch.Tensor, g: torch.Tensor, legacy: bool) -> torch.Tensor:
    local = _conv_bn(m.local_embedding, x)
    gate, feat = _conv_bn(m.global_act, g), _conv_bn(m.global_embedding, g)
    (h, w), (gh, gw) = x.shape[-2:], g.shape[-2:]
    if gh >= h and gw >= w:  # the pool branch (identity at equal sizes)
        gate = _pool_bins(gate, (h, w), lambda t: t.mean(-1))
        feat = _pool_bins(feat, (h, w), lambda t: t.mean(-1))
        if not (legacy and (gh, gw) != (h, w)):
            gate = F.relu6(gate + 3) / 6
    else:
        gate = F.relu6(F.interpolate(gate, size=(h, w), mode="bilinear", align_corners=False) + 3) / 6
        feat = F.interpolate(feat, size=(h, w), mode="bilinear", align_corners=False)
    return local * gate + feat


@pytest.mark.faithful("gd_inject")
@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("local_size, global_size", [((13, 11), (7, 6)), ((7, 6), (13, 11)), ((9, 9), (9, 9)), ((5, 7), (1, 1)), ((1, 1), (4, 3))])
def test_gd_inject_composition(legacy, local_size, global_size) -> None:
    m = _ready("gd_inject", 8, context_channels=12, out_channels=6, legacy_pool_gate=legacy)
    x, g = _x(8, *local_size), _x(12, *global_size, seed=1)
    with torch.no_grad():
        torch.testing.assert_close(m(x, g), _inject_reference(m, x, g, legacy))


@pytest.mark.faithful("gd_inject")
def test_gd_inject_legacy_flag_changes_only_the_pool_branch() -> None:
    fixed = _ready("gd_inject", 8)
    legacy = _ready("gd_inject", 8, legacy_pool_gate=True)
    x_small, x_large = _x(8, 5, 4), _x(8, 11, 9, seed=1)
    with torch.no_grad():
        torch.testing.assert_close(fixed(x_large, x_small), legacy(x_large, x_small))  # upsampling: both gated
        assert not torch.allclose(fixed(x_small, x_large), legacy(x_small, x_large))  # pooling: legacy un-gated
        with attnzoo.capture_attention(fixed) as maps:
            fixed(x_small, x_large)
        gate = maps[""]["gate"]
        assert gate.shape == (2, 8, 5, 4) and gate.min() >= 0 and gate.max() <= 1


def test_gd_inject_defaults_and_errors() -> None:
    m = attnzoo.create("gd_inject", 16)
    assert m.context_channels == 16 and m.out_channels == 16 and m.legacy_pool_gate is False
    with pytest.raises(ValueError, match="InformationInjection"):
        m(torch.randn(1, 16, 8, 8), torch.randn(1, 8, 4, 4))
    with pytest.raises(ValueError, match="InformationInjection"):
        attnzoo.create("gd_inject", 16, legacy_pool_gate=1)


@pytest.mark.faithful("gd_neck")
@pytest.mark.parametrize("size", [(13, 11), (64, 48), (3, 2)])
def test_gd_neck_shape_rule(size) -> None:
    """4 levels → 3 maps at the sizes and widths of levels 1–3; 3 levels → at their own; out_channels overrides."""
    channels = [8, 16, 32, 64]
    sizes = pyramid_sizes(size, 4)
    small = {"num_repeats": 1, "num_blocks": 1, "num_layers": 1}
    xs = _levels(channels, sizes, dtype=torch.float32)
    outs = attnzoo.create("gd_neck", channels, **small)(xs)
    assert [tuple(o.shape) for o in outs] == [(2, c, *s) for c, s in zip(channels[1:], sizes[1:])]
    outs = attnzoo.create("gd_neck", channels, out_channels=(12, 20, 28), **small)(xs)
    assert [tuple(o.shape) for o in outs] == [(2, c, *s) for c, s in zip((12, 20, 28), sizes[1:])]
    outs = attnzoo.create("gd_neck", channels[1:], **small)(xs[1:])
    assert [tuple(o.shape) for o in outs] == [(2, c, *s) for c, s in zip(channels[1:], sizes[1:])]


def test_gd_neck_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="GatherDistributeNeck"):
        attnzoo.create("gd_neck", [8, 16])
    with pytest.raises(ValueError, match="GatherDistributeNeck"):
        attnzoo.create("gd_neck", [8, 16, 32, 64, 128])
    with pytest.raises(ValueError, match="GatherDistributeNeck"):
        attnzoo.create("gd_neck", [8, 16, 32, 64], out_channels=(8, 16))
    with pytest.raises(ValueError, match="GatherDistributeNeck"):
        attnzoo.create("gd_neck", [8, 16, 32, 64], heads=0)


@pytest.mark.faithful("gd_neck")
def test_gd_neck_export_form_pools_exactly_at_13x11() -> None:
    """Under the ONNX target every adaptive pool is written as static slices; the result equals eager PyTorch at
    sizes that do not divide, where Gold-YOLO's fixed-kernel export pool (kernel = in − (out − 1)·stride) does not."""
    channels = [8, 16, 32, 64]
    torch.manual_seed(0)
    m = randomize(attnzoo.create("gd_neck", channels, num_repeats=1, num_blocks=1), seed=2, scale=0.3).double().eval()
    xs = _levels(channels, pyramid_sizes((13, 11), 4))
    with torch.no_grad():
        eager = m(xs)
        with attnzoo.export_target("onnx"):
            portable = m(xs)
            traced = torch.jit.trace(m, (xs,), check_trace=False)
    assert "aten::adaptive_avg_pool2d" not in str(traced.inlined_graph)
    for e, p, t in zip(eager, portable, traced(xs)):
        torch.testing.assert_close(p, e, atol=1e-10, rtol=1e-10)
        torch.testing.assert_close(t, e, atol=1e-10, rtol=1e-10)
    # the copies' export pool at these sizes: 13×11 → 4×3 with stride ⌊13/4⌋ = 3, kernel 13 − 3·3 = 4 (rows)
    x = xs[0]
    stride = (13 // 4, 11 // 3)
    kernel = (13 - 3 * stride[0], 11 - 2 * stride[1])
    assert not torch.allclose(F.avg_pool2d(x, kernel, stride), F.adaptive_avg_pool2d(x, (4, 3)))


@pytest.mark.faithful("gd_neck")
def test_gd_neck_gather_has_every_level_and_injects_both_stages() -> None:
    """Every input level reaches every output (gather-and-distribute: even c2 reaches n5)."""
    channels = [4, 8, 16, 32]
    m = attnzoo.create("gd_neck", channels, num_repeats=1, num_blocks=1, num_layers=1).eval()
    xs = [t.requires_grad_() for t in _levels(channels, pyramid_sizes((16, 16), 4), dtype=torch.float32)]
    outs = m(xs)
    for o in outs:
        grads = torch.autograd.grad(o.sum(), xs, retain_graph=True)
        assert all(g.abs().sum() > 0 for g in grads)


# ------------------------------------------------------------------------------------------------ HS-FPN


@pytest.mark.faithful("hs_fpn")
def test_hs_fpn_channel_gate_is_cbam_channel_without_bias() -> None:
    m = _ready("hs_fpn", [16, 32, 64], out_channels=32)
    ca = m.select_gate[1]
    cbam = attnzoo.create("cbam_channel", 32, reduction=4).double()
    with torch.no_grad():
        cbam.fc1.weight.copy_(ca.fc1.weight)
        cbam.fc2.weight.copy_(ca.fc2.weight)
        cbam.fc1.bias.zero_()
        cbam.fc2.bias.zero_()
    x = _x(32, 7, 9)
    torch.testing.assert_close(ca(x), cbam(x))
    assert ca.fc1.bias is None and ca.fc2.bias is None and ca.fc1.out_channels == 8


def _zero_selection(m: nn.Module) -> None:
    with torch.no_grad():
        for conv in m.select_conv:
            conv.weight.zero_()
            conv.bias.zero_()


@pytest.mark.faithful("hs_fpn")
@pytest.mark.parametrize("cascade", [True, False])
@pytest.mark.parametrize("size", [(16, 12), (13, 11)])
def test_hs_fpn_with_zero_selection_passes_the_high_feature(cascade, size) -> None:
    """FS = 0 ⇒ f_i = h' (so out_i = output_i(h')); with cascade the h' of a level comes from the fused level above
    (here h' itself), without it from the top level's transposed-conv chain; both agree when FS is zero."""
    channels = [8, 16, 32]
    m = _ready("hs_fpn", channels, out_channels=16, cascade=cascade)
    _zero_selection(m)
    xs = _levels(channels, pyramid_sizes(size, 3))
    with torch.no_grad():
        outs = m(xs)
        h = torch.zeros(2, 16, *xs[2].shape[-2:], dtype=torch.float64)
        torch.testing.assert_close(outs[2], m.output[2](h))
        for i in (1, 0):
            h = m.upsample[i](h)
            assert h.shape[-2:] == tuple(2 * s for s in xs[i + 1].shape[-2:])  # ConvT doubles exactly
            h = F.interpolate(h, size=xs[i].shape[-2:], mode="bilinear", align_corners=False)
            torch.testing.assert_close(outs[i], m.output[i](h))


@pytest.mark.faithful("hs_fpn")
def test_hs_fpn_cascade_is_the_papers_and_false_is_the_chain() -> None:
    channels = [8, 16, 32]
    xs = _levels(channels, [(16, 12), (8, 6), (4, 3)])
    outs = {}
    for cascade in (True, False):
        m = _ready("hs_fpn", channels, out_channels=16, cascade=cascade)
        with torch.no_grad():
            fs = [m.select_conv[i](m.select_gate[i](xs[i])) for i in range(3)]
            f, h = fs[2], fs[2]
            ref = [m.output[2](f)]
            for i in (1, 0):
                h = m.upsample[i](f if cascade else h)
                f = m.fusion_gate[i].gate_map(h) * fs[i] + h
                ref.insert(0, m.output[i](f))
            outs[cascade] = m(xs)
            for a, b in zip(outs[cascade], ref):
                torch.testing.assert_close(a, b)
    torch.testing.assert_close(outs[True][1], outs[False][1])  # one level below the top: the same high feature
    assert not torch.allclose(outs[True][0], outs[False][0])


@pytest.mark.faithful("hs_fpn")
@pytest.mark.parametrize("gate", ["ela", "coord", "ema", "cbam", "simam"])
def test_hs_fpn_gate_replaces_the_selection_product(gate) -> None:
    channels = [32, 64, 128]
    m = attnzoo.create("hs_fpn", channels, out_channels=32, gate=gate).eval()
    assert [type(g) for g in m.select_gate] == [attnzoo.info(gate).cls] * 3
    xs = _levels(channels, [(13, 11), (7, 6), (4, 3)], dtype=torch.float32)
    with torch.no_grad():
        outs = m(xs)
        fs = m.select_conv[2](m.select_gate[2](xs[2]))
        torch.testing.assert_close(outs[2], m.output[2](fs))
    assert [tuple(o.shape) for o in outs] == [(2, 32, 13, 11), (2, 32, 7, 6), (2, 32, 4, 3)]
    assert len(m.fusion_gate) == 2  # the selective fusion keeps its channel gates
    with attnzoo.capture_attention(m) as maps:
        m(xs)
    assert any(k.startswith("select_gate.0") for k in maps), sorted(maps)


def test_hs_fpn_gate_module_factory_and_errors() -> None:
    m = attnzoo.create("hs_fpn", [8, 16], out_channels=16, gate=nn.Identity())
    xs = [torch.randn(1, 8, 6, 6), torch.randn(1, 16, 3, 3)]
    with torch.no_grad():
        assert torch.allclose(m(xs)[1], m.output[1](m.select_conv[1](xs[1])))
    m = attnzoo.create("hs_fpn", [8, 16], out_channels=16, gate=lambda c: attnzoo.create("se", c, reduction=2))
    assert m.select_gate[1].channels == 16
    with pytest.raises(ValueError, match="HighLevelScreeningFPN.*gate='fpn'"):
        attnzoo.create("hs_fpn", [8, 16], gate="fpn")
    with pytest.raises(ValueError, match="HighLevelScreeningFPN"):
        attnzoo.create("hs_fpn", [8, 16], cascade="yes")
    bad = attnzoo.create("hs_fpn", [8, 16], out_channels=16, gate=lambda c: nn.Conv2d(c, c, 3, 2, 1))
    with pytest.raises(ValueError, match="HighLevelScreeningFPN.*gate"):
        bad(xs)


def test_gd_neck_every_parameter_gets_a_gradient_once_the_high_stage_has_two_tokens() -> None:
    """The contract's gradient check is a declared exception (one gathered token at 7×5); at 13×11 the high stage
    gathers 2×2 tokens and every parameter, q and k included, gets a gradient."""
    channels = [8, 16, 32]
    torch.manual_seed(0)
    m = randomize(attnzoo.create("gd_neck", channels, **attnzoo.info("gd_neck").test_kwargs), seed=1).train()
    xs = _levels(channels, pyramid_sizes((13, 11), 3), dtype=torch.float32)
    g = torch.Generator().manual_seed(3)
    sum((o * torch.randn(o.shape, generator=g)).sum() for o in m(xs)).backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


class _InjectPooling(nn.Module):
    """gd_inject with a larger global map (its pooling branch) and tfe, at sizes that do not divide."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.inject = randomize(attnzoo.create("gd_inject", 4, context_channels=6), seed=2, scale=0.3)
        self.tfe = attnzoo.create("tfe", [4, 6, 8])

    def forward(self, x: torch.Tensor, g: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.inject(x, g), self.tfe([g[:, :4], x[:, :4].repeat(1, 2, 1, 1)[:, :6], s])


@pytest.mark.slow
@pytest.mark.faithful("gd_inject", "tfe")
@pytest.mark.parametrize("dynamo", [False, True])
def test_pooling_branches_run_exactly_in_onnxruntime(dynamo: bool) -> None:
    """Both ONNX exporters: the pooling branches at 13×11 → 7×6 (where the eager operators do not export, or the
    copies' fixed-kernel pools give other bins) equal eager PyTorch in ONNX Runtime."""
    import io

    ort = require("onnxruntime")
    m = _InjectPooling().eval()
    args = (torch.randn(1, 4, 7, 6), torch.randn(1, 6, 13, 11), torch.randn(1, 8, 4, 3))
    f = io.BytesIO()
    torch.onnx.export(m, args, f, dynamo=dynamo, input_names=["x", "g", "s"], output_names=["inject", "tfe"])
    sess = ort.InferenceSession(f.getvalue(), providers=["CPUExecutionProvider"])
    got = sess.run(None, {n: a.numpy() for n, a in zip(("x", "g", "s"), args)})
    with torch.no_grad():
        for g, e in zip(got, m(*args)):
            torch.testing.assert_close(torch.from_numpy(g), e, atol=1e-5, rtol=1e-5)

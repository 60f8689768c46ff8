"""Faithfulness of the channel and spatial gates: timm parity after copying weights, slow references written
from the papers' official code, and invariants (channel gates are constant over space; ECA's kernel sizes)."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import attnzoo
from attnzoo.channel.eca import eca_kernel_size
from helpers import randomize, require
from reference.triplet import OfficialTriplet

timm_layers = require("timm.layers")
from timm.layers import cbam as timm_cbam  # noqa: E402
from timm.layers import coord_attn as timm_coord  # noqa: E402


def copy_by_order(src: nn.Module, dst: nn.Module) -> None:
    """Copy a state_dict entry by entry in registration order (the two modules name their layers differently)."""
    s, d = src.state_dict(), dst.state_dict()
    assert len(s) == len(d), (list(s), list(d))
    new = {}
    for (ks, vs), (kd, vd) in zip(s.items(), d.items()):
        assert vs.shape == vd.shape, (ks, kd, vs.shape, vd.shape)
        new[kd] = vs.clone()
    dst.load_state_dict(new)


def x_input(c=64, h=11, w=9, b=2, seed=0):
    return torch.randn(b, c, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.faithful("se")
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_se_matches_timm(mode):
    ours = randomize(attnzoo.create("se", 256)).train(mode == "train")
    assert ours.fc1.out_channels == 256 // 16 and ours.fc1.bias is not None  # official: C/r with bias
    ref = timm_layers.SEModule(256, rd_channels=16, bias=True).train(mode == "train")
    ref.load_state_dict(ours.state_dict())
    x = x_input(256)
    torch.testing.assert_close(ours(x), ref(x))


def test_se_hidden_width_never_zero():
    assert attnzoo.create("se", 64).fc1.out_channels == 8  # C/16 = 4 is floored at 8
    assert attnzoo.create("se", 8).fc1.out_channels == 8
    assert attnzoo.create("se", 4).fc1.out_channels == 4
    assert attnzoo.create("se", 512).fc1.out_channels == 32
    with pytest.raises(ValueError, match="SqueezeExcite"):
        attnzoo.create("se", 64, hidden_channels=0)


@pytest.mark.parametrize("channels,k", [(64, 3), (256, 5), (512, 5), (2048, 7)])
def test_eca_adaptive_kernel(channels, k):
    assert eca_kernel_size(channels) == k
    m = attnzoo.create("eca", channels)
    assert m.conv.kernel_size == (k,) and m.conv.bias is None


def test_eca_matches_timm_and_rejects_even_kernel():
    ours = randomize(attnzoo.create("eca", 256))
    ref = timm_layers.EcaModule(256)
    ref.load_state_dict(ours.state_dict())
    x = x_input(256, 7, 5)
    torch.testing.assert_close(ours(x), ref(x))
    with pytest.raises(ValueError, match="EfficientChannelAttention"):
        attnzoo.create("eca", 64, kernel_size=4)


@pytest.mark.faithful("eca")
def test_eca_slow_reference():
    m = randomize(attnzoo.create("eca", 32, kernel_size=5))
    x = x_input(32, 6, 7)
    w = m.conv.weight.view(5)
    y = x.mean((2, 3))  # B×C
    padded = F.pad(y, (2, 2))
    conv = torch.stack([(padded[:, c:c + 5] * w).sum(1) for c in range(32)], 1)  # zero-padded 1-D conv over channels
    torch.testing.assert_close(m(x), x * torch.sigmoid(conv)[:, :, None, None])


@pytest.mark.parametrize("name", ["se", "eca", "cbam_channel"])
def test_channel_gates_are_constant_over_space(name):
    m = randomize(attnzoo.create(name, 16)).eval()
    x = torch.rand(2, 16, 9, 7) + 0.5
    ratio = m(x) / x
    assert torch.allclose(ratio, ratio[:, :, :1, :1].expand_as(ratio), atol=1e-6)
    assert not torch.allclose(ratio[:, :1], ratio[:, 1:2])  # but it does vary over channels


@pytest.mark.faithful("sk")
@pytest.mark.parametrize("stride,out_channels", [(1, None), (2, 96)])
def test_sk_matches_timm(stride, out_channels):
    ours = randomize(attnzoo.create("sk", 64, out_channels=out_channels, stride=stride))
    ref = timm_layers.SelectiveKernel(
        64, out_channels, kernel_size=[3, 5], stride=stride, groups=32, rd_channels=32, keep_3x3=True, split_input=False
    )
    copy_by_order(ours, ref)
    assert ours.paths[1][0].dilation == (2, 2) and ours.paths[1][0].groups == 32  # dilated grouped 3×3 branch
    for mode in (True, False):
        ours.train(mode), ref.train(mode)
        x = x_input(64, 13, 10)
        torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-4)


def test_sk_selector_is_official():
    m = attnzoo.create("sk", 256)
    assert m.fc_reduce.out_channels == 32 and m.fc_reduce.bias is None  # d = max(C/16, 32), no bias
    assert isinstance(m.bn, nn.BatchNorm2d) and isinstance(m.act, nn.ReLU)  # BN + ReLU selector (missing in the community code)
    assert attnzoo.create("sk", 1024).fc_reduce.out_channels == 64
    assert attnzoo.create("sk", 48).paths[0][0].groups == 16  # groups fall back to a divisor of C


def test_sk_seed_kernels_weights_sum_to_one():
    m = randomize(attnzoo.create("sk", 32, kernels=(1, 3, 5, 7), keep_3x3=False)).eval()
    assert [p[0].kernel_size[0] for p in m.paths] == [1, 3, 5, 7]
    x = x_input(32, 9, 8)
    with attnzoo.capture_attention(m) as maps:
        y = m(x)
    a = maps[""]["branch_weights"]
    assert a.shape == (2, 4, 32, 1, 1)
    torch.testing.assert_close(a.sum(1), torch.ones(2, 32, 1, 1))
    ref = sum(a[:, i] * p(x) for i, p in enumerate(m.paths))  # V = Σ a_m ⊙ U_m
    torch.testing.assert_close(y, ref)


@pytest.mark.faithful("coord")
def test_coord_matches_timm():
    ours = randomize(attnzoo.create("coord", 64))
    assert ours.conv1.out_channels == 8  # mip = max(8, C // 32)
    ref = timm_coord.CoordAttn(64, rd_channels=8, bias=True, act_layer=nn.Hardswish)
    ref.load_state_dict(ours.state_dict())
    for mode in (True, False):
        ours.train(mode), ref.train(mode)
        x = x_input(64, 12, 7)
        torch.testing.assert_close(ours(x), ref(x))


def test_coord_slow_reference():
    """Written from the official coordatt.py: pool along each axis, shared conv+BN+h_swish, two sigmoid gates."""
    m = randomize(attnzoo.create("coord", 16)).eval()
    x = x_input(16, 5, 6)
    b, c, h, w = x.shape
    out = torch.empty_like(x)
    for i in range(h):
        for j in range(w):
            zh = x[:, :, i, :].mean(-1)  # pooled row i
            zw = x[:, :, :, j].mean(-1)  # pooled column j

            def shared(z):
                y = F.conv2d(z[:, :, None, None], m.conv1.weight, m.conv1.bias)
                y = F.batch_norm(y, m.bn1.running_mean, m.bn1.running_var, m.bn1.weight, m.bn1.bias, False, 0.0, m.bn1.eps)
                return y * F.relu6(y + 3) / 6

            a_h = torch.sigmoid(F.conv2d(shared(zh), m.conv_h.weight, m.conv_h.bias))[:, :, 0, 0]
            a_w = torch.sigmoid(F.conv2d(shared(zw), m.conv_w.weight, m.conv_w.bias))[:, :, 0, 0]
            out[:, :, i, j] = x[:, :, i, j] * a_h * a_w
    torch.testing.assert_close(m(x), out)


@pytest.mark.faithful("cbam", "cbam_channel", "cbam_spatial")
def test_cbam_matches_timm_with_max_mean_order():
    ours = randomize(attnzoo.create("cbam", 64))
    ref = timm_cbam.CbamModule(64, rd_channels=ours.channel_gate.fc1.out_channels, mlp_bias=True, spatial_kernel_size=7)
    sd = ours.state_dict()
    mapped = {
        "channel.fc1.weight": sd["channel_gate.fc1.weight"],
        "channel.fc1.bias": sd["channel_gate.fc1.bias"],
        "channel.fc2.weight": sd["channel_gate.fc2.weight"],
        "channel.fc2.bias": sd["channel_gate.fc2.bias"],
        # timm pools [mean, max]; the official CBAM ChannelPool is [max, mean]: swap the conv's input channels
        "spatial.conv.conv.weight": sd["spatial_gate.gate.conv.weight"].flip(1),
    }
    for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
        mapped[f"spatial.conv.bn.{k}"] = sd[f"spatial_gate.gate.bn.{k}"]
    ref.load_state_dict(mapped)
    x = x_input(64, 9, 13)
    for mode in (False, True):  # eval first: timm's BN momentum (0.1) differs from CBAM's (0.01)
        ours.train(mode), ref.train(mode)
        torch.testing.assert_close(ours(x), ref(x))
    mapped["spatial.conv.conv.weight"] = sd["spatial_gate.gate.conv.weight"]
    ref.load_state_dict(mapped)
    assert not torch.allclose(ours(x), ref(x), atol=1e-3)  # unflipped it differs: our order is really [max, mean]


def test_cbam_official_init_and_no_residual():
    m = attnzoo.create("cbam", 32)
    assert m.spatial_gate.gate.bn.weight.abs().sum() == 0  # official ResNet builder zero-inits the spatial BN
    assert m.spatial_gate.gate.conv.bias is None and m.channel_gate.fc1.bias is not None
    assert m.spatial_gate.gate.bn.momentum == 0.01
    x = torch.zeros(1, 32, 5, 5)
    assert torch.equal(m(x), x)  # no hidden residual (the community CBAMBlock returns x + CBAM(x))
    s = attnzoo.create("cbam_spatial", 32)
    x = x_input(32, 4, 6)
    torch.testing.assert_close(s(x), 0.5 * x)  # spatial gate starts at σ(0) = 0.5
    assert attnzoo.create("cbam", 32, spatial=False).spatial_gate is None
    with pytest.raises(ValueError, match="CBAMSpatialGate"):
        attnzoo.create("cbam_spatial", 32, kernel_size=6)


@pytest.mark.faithful("triplet")
@pytest.mark.parametrize("spatial", [True, False])
def test_triplet_matches_official_computation(spatial):
    m = randomize(attnzoo.create("triplet", 16, spatial=spatial))
    ref = OfficialTriplet(m)
    for mode in (True, False):
        m.train(mode)
        x = x_input(16, 7, 11)
        torch.testing.assert_close(m(x), ref(x))
    assert m.cw.bn.momentum == 0.01 and m.cw.conv.kernel_size == (7, 7)


def test_triplet_official_init():
    m = attnzoo.create("triplet", 16)
    assert m.hw.bn.weight.abs().sum() == 0 and m.cw.bn.weight.abs().sum() > 0


@pytest.mark.parametrize("name", ["cbam", "triplet"])
def test_max_pooling_kernel_follows_autograd(name):
    """Max pooling is ``amax`` in inference (fastest forward) and max-with-indices under autograd (``amax``'s
    backward builds full-size equality masks); values and outputs agree."""
    m = randomize(attnzoo.create(name, 16)).eval()
    x = x_input(c=16)

    def ops(fn):
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            out = fn()
        return out, {e.name for e in prof.events()}

    with torch.no_grad():
        y_inf, inf_ops = ops(lambda: m(x))
    xg = x.clone().requires_grad_()
    y_train, train_ops = ops(lambda: m(xg).sum().backward() or m(xg))
    assert "aten::amax" in inf_ops and "aten::max" not in inf_ops, sorted(inf_ops)
    assert "aten::amax" not in train_ops and ("aten::max" in train_ops or "aten::adaptive_max_pool2d" in train_ops)
    torch.testing.assert_close(y_inf, y_train.detach())
    assert torch.isfinite(xg.grad).all() and xg.grad.abs().sum() > 0

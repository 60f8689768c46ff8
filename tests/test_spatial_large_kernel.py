"""Faithfulness of the large-kernel and strip gates (GAM, ELA, CAA, LKA, LSKA, LSK): slow references written from
the papers (and the official code where its licence allows reading) in tests/reference/, timm parity for ELA,
and invariants (receptive fields, the LSKA decomposition equal to its dense composite kernel)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import attnzoo
from attnzoo.spatial.lska import LSKA_KERNELS
from helpers import randomize, require
from reference import caa as ref_caa
from reference import ela as ref_ela
from reference import gam as ref_gam
from reference import lsk as ref_lsk
from reference import van as ref_van


def x_input(c=16, h=11, w=9, b=2, seed=0, dtype=torch.float64):
    return torch.randn(b, c, h, w, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def ready(name, channels, **kw):
    torch.manual_seed(0)
    return randomize(attnzoo.create(name, channels, **kw), scale=0.3).double().eval()


def close(a, b, tol=1e-10):
    torch.testing.assert_close(a, b, rtol=tol, atol=tol)


# ------------------------------------------------------------------------------------------------------ GAM


@pytest.mark.faithful("gam")
@pytest.mark.parametrize("variant, channels", [("paper", 16), ("paper", 12), ("grouped", 32), ("yoloair", 32)])
def test_gam_matches_paper_reference(variant, channels):
    m = ready("gam", channels, variant=variant)
    x = x_input(channels, 9, 7)
    with torch.no_grad():
        close(m(x), ref_gam.gam(m, x))


@pytest.mark.faithful("gam")
def test_gam_defaults_and_variants():
    m = attnzoo.create("gam", 64)
    assert m.reduction == 4 and m.fc1.out_features == 16 and m.fc1.bias is not None
    assert m.conv1.kernel_size == (7, 7) and m.conv1.groups == 1 and isinstance(m.bn1, nn.BatchNorm2d)
    assert m.variant == "paper" and m.channel_sigmoid
    g = attnzoo.create("gam", 64, variant="grouped")
    assert g.conv1.groups == 4 and g.conv2.groups == 4 and g.channel_sigmoid
    y = attnzoo.create("gam", 64, variant="yoloair")
    assert y.groups == 4 and not y.channel_sigmoid
    # the two circulating GAMs differ only by the channel sigmoid: same weights, different outputs
    torch.manual_seed(0)
    a = randomize(attnzoo.create("gam", 32, variant="grouped")).eval()
    b = attnzoo.create("gam", 32, variant="yoloair").eval()
    b.load_state_dict(a.state_dict())
    x = x_input(32, 5, 5, dtype=torch.float32)
    with torch.no_grad():
        assert not torch.allclose(a(x), b(x))


def test_gam_errors():
    with pytest.raises(ValueError, match="GlobalAttentionMechanism.*multiple of the conv groups"):
        attnzoo.create("gam", 24, variant="grouped")  # hidden 6 not divisible by 4 groups
    with pytest.raises(ValueError, match="GlobalAttentionMechanism.*variant"):
        attnzoo.create("gam", 16, variant="GAM")
    with pytest.raises(ValueError, match="GlobalAttentionMechanism.*reduction"):
        attnzoo.create("gam", 16, reduction=0)
    with pytest.raises(ValueError, match="GlobalAttentionMechanism.*integer"):
        attnzoo.create("gam", 32, reduction=4.0, variant="grouped")
    m = attnzoo.create("gam", 16).train()
    with pytest.raises(ValueError, match="GlobalAttentionMechanism.*more than one value.*eval"):
        m(torch.randn(1, 16, 1, 1))
    m(torch.randn(2, 16, 1, 1))
    m.eval()(torch.randn(1, 16, 1, 1))
    with pytest.raises(ValueError, match="ContextAnchorAttention.*more than one value"):
        attnzoo.create("caa", 8, variant="bn_silu").train()(torch.randn(1, 8, 1, 1))


# ------------------------------------------------------------------------------------------------------ ELA


@pytest.mark.faithful("ela")
@pytest.mark.parametrize("variant", ["T", "B", "S", "L"])
@pytest.mark.parametrize("size", [(9, 7), (1, 1), (1, 6)])
def test_ela_matches_paper_reference(variant, size):
    m = ready("ela", 32, variant=variant)
    x = x_input(32, *size, b=1 if size == (1, 1) else 2)
    with torch.no_grad():
        close(m(x), ref_ela.ela(m, x))


@pytest.mark.faithful("ela")
def test_ela_presets_are_the_papers_table():
    for variant, (k, rule, gn) in ref_ela.PRESETS.items():
        m = attnzoo.create("ela", 64, variant=variant)
        assert m.conv.kernel_size == (k,) and m.gn.num_groups == gn and m.conv.bias is None
        assert m.conv.groups == (64 if rule == "C" else 8)
    assert attnzoo.create("ela", 64).variant == "B"


@pytest.mark.faithful("ela")
def test_ela_b_matches_timm_with_paper_settings():
    """timm's EfficientLocalAttn with GroupNorm(16), no extra activation, and the one shared conv copied into its
    two per-axis convs computes ELA-B."""
    timm_ca = require("timm.layers.coord_attn")
    m = ready("ela", 32).float()
    peer = timm_ca.EfficientLocalAttn(32, kernel_size=7, act_layer=nn.Identity,
                                      norm_layer=lambda c, **kw: nn.GroupNorm(16, c)).eval()
    w = m.conv.weight.detach()  # C×1×7
    sd = {"conv_h.weight": w[:, :, :, None], "conv_w.weight": w[:, :, None, :],
          "norm_h.weight": m.gn.weight, "norm_h.bias": m.gn.bias, "norm_w.weight": m.gn.weight, "norm_w.bias": m.gn.bias}
    peer.load_state_dict({k: v.detach().clone() for k, v in sd.items()})
    x = x_input(32, 10, 13, dtype=torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(m(x), peer(x), rtol=1e-5, atol=1e-5)


def test_ela_errors_name_the_rule():
    with pytest.raises(ValueError, match="EfficientLocalAttention.*multiple of 16.*GroupNorm"):
        attnzoo.create("ela", 24)
    with pytest.raises(ValueError, match="EfficientLocalAttention.*multiple of 32"):
        attnzoo.create("ela", 48, variant="T")
    with pytest.raises(ValueError, match="EfficientLocalAttention.*multiple of 8.*C/8"):
        attnzoo.create("ela", 12, variant="S")
    with pytest.raises(ValueError, match="EfficientLocalAttention.*multiple of 16"):
        attnzoo.create("ela", 40, variant="L")
    with pytest.raises(ValueError, match="EfficientLocalAttention.*variant"):
        attnzoo.create("ela", 32, variant="M")


# ------------------------------------------------------------------------------------------------------ CAA


@pytest.mark.faithful("caa")
@pytest.mark.parametrize("variant", ["paper", "bn_silu"])
@pytest.mark.parametrize("size", [(13, 9), (2, 3)])
def test_caa_matches_official_reference(variant, size):
    m = ready("caa", 8, variant=variant)
    x = x_input(8, *size)
    with torch.no_grad():
        close(m(x), ref_caa.caa(m, x))


@pytest.mark.faithful("caa")
def test_caa_defaults():
    m = attnzoo.create("caa", 32)
    assert m.kernel_size == 11 and m.h_conv.kernel_size == (1, 11) and m.v_conv.kernel_size == (11, 1)
    assert m.h_conv.groups == 32 and m.conv1.bias is not None and not hasattr(m, "bn1")
    b = attnzoo.create("caa", 32, variant="bn_silu")
    assert b.conv1.bias is None and b.bn1.eps == 1e-3 and b.bn1.momentum == 0.03
    # count_include_pad: a constant input's pooled corner is 16/49 of the constant (4×4 of 7×7 inside)
    pooled = F.avg_pool2d(torch.ones(1, 1, 9, 9), 7, 1, 3)
    assert math.isclose(float(pooled[0, 0, 0, 0]), 16 / 49, rel_tol=1e-6)
    with pytest.raises(ValueError, match="ContextAnchorAttention.*kernel_size"):
        attnzoo.create("caa", 8, kernel_size=10)
    with pytest.raises(ValueError, match="ContextAnchorAttention.*variant"):
        attnzoo.create("caa", 8, variant="bn")


# ------------------------------------------------------------------------------------------------------ LKA


@pytest.mark.faithful("lka")
@pytest.mark.parametrize("size", [(12, 10), (3, 2)])
def test_lka_matches_van_reference(size):
    m = ready("lka", 6)
    x = x_input(6, *size)
    with torch.no_grad():
        close(m(x), ref_van.lka(m, x))


@pytest.mark.faithful("lka", "lska")
@pytest.mark.parametrize("name, kw, extent", [("lka", {}, 23), ("lska", {"kernel_size": 23}, 23),
                                              ("lska", {"kernel_size": 7}, 7)])
def test_receptive_field(name, kw, extent):
    """The attention at one position depends on exactly an extent×extent window of the input."""
    m = ready(name, 3, **kw)
    x = x_input(3, 41, 41, b=1).requires_grad_()
    m.gate_map(x)[0, :, 20, 20].sum().backward()
    support = (x.grad[0].abs().sum(0) > 0).nonzero()
    r = extent // 2
    assert support.min(0).values.tolist() == [20 - r, 20 - r]
    assert support.max(0).values.tolist() == [20 + r, 20 + r]


@pytest.mark.faithful("lka", "lska")
@pytest.mark.parametrize("name", ["lka", "lska"])
def test_van_init_and_no_sigmoid(name):
    torch.manual_seed(0)
    m = attnzoo.create(name, 64)
    for conv in (mod for mod in m.modules() if isinstance(mod, nn.Conv2d)):
        fan_out = conv.kernel_size[0] * conv.kernel_size[1] * conv.out_channels // conv.groups
        assert float(conv.bias.detach().abs().max()) == 0.0
        assert abs(float(conv.weight.detach().std()) / math.sqrt(2.0 / fan_out) - 1) < 0.25
    x = x_input(64, 8, 8, dtype=torch.float32)
    with torch.no_grad():
        a = m.gate_map(x)
    assert float(a.min()) < 0 or float(a.max()) > 1  # raw product, not a sigmoid gate


# ----------------------------------------------------------------------------------------------------- LSKA


@pytest.mark.faithful("lska")
@pytest.mark.parametrize("kernel_size", sorted(LSKA_KERNELS))
def test_lska_matches_official_reference(kernel_size):
    m = ready("lska", 3, kernel_size=kernel_size)
    k0, kd, d = ref_van.LSKA_TABLE[kernel_size]
    assert m.conv0h.kernel_size == (1, k0) and m.conv_spatial_v.kernel_size == (kd, 1)
    assert m.conv_spatial_h.dilation[1] == d and m.conv_spatial_v.dilation[0] == d
    x = x_input(3, 9, 14)
    with torch.no_grad():
        close(m(x), ref_van.lska(m, x))


@pytest.mark.faithful("lska")
@pytest.mark.parametrize("kernel_size", sorted(LSKA_KERNELS))
def test_lska_decomposition_equals_dense_composite_kernel(kernel_size):
    """Without the strip biases the four strips are one depthwise k×k conv (exact wherever the dilated taps stay
    inside the map: zero padding between the stages cuts the composite's tails at the borders)."""
    m = ready("lska", 3, kernel_size=kernel_size)
    with torch.no_grad():
        for name in ("conv0h", "conv0v", "conv_spatial_h", "conv_spatial_v"):
            getattr(m, name).bias.zero_()
    dense = ref_van.lska_dense_kernel(m)
    assert dense.shape[-1] == kernel_size
    _, kd, d = ref_van.LSKA_TABLE[kernel_size]
    n, r = kernel_size + 6, d * (kd - 1) // 2
    x = x_input(3, n, n)
    with torch.no_grad():
        strips = m.conv_spatial_v(m.conv_spatial_h(m.conv0v(m.conv0h(x))))
        composite = F.conv2d(x, dense, padding=kernel_size // 2, groups=3)
    close(strips[..., r:n - r, r:n - r], composite[..., r:n - r, r:n - r])


def test_lska_kernel_set():
    with pytest.raises(ValueError, match=r"LargeSeparableKernelAttention.*7, 11, 23, 35, 41, 53.*got 21"):
        attnzoo.create("lska", 8, kernel_size=21)
    with pytest.raises(ValueError, match="LargeSeparableKernelAttention"):
        attnzoo.create("lska", 8, kernel_size="23")
    assert attnzoo.create("lska", 8).kernel_size == 7


# ------------------------------------------------------------------------------------------------------ LSK


@pytest.mark.faithful("lsk")
@pytest.mark.parametrize("channels, size", [(16, (12, 9)), (5, (3, 4))])
def test_lsk_matches_paper_reference(channels, size):
    m = ready("lsk", channels)
    x = x_input(channels, *size)
    y_ref, sa_ref = ref_lsk.lsk(m, x)
    with torch.no_grad(), attnzoo.capture_attention(m) as maps:
        y = m(x)
    close(y, y_ref)
    close(maps[""]["selection"], sa_ref)


@pytest.mark.faithful("lsk")
def test_lsk_structure_from_the_paper():
    m = attnzoo.create("lsk", 64)
    assert m.conv0.kernel_size == (5, 5) and m.conv0.groups == 64
    assert m.conv_spatial.kernel_size == (7, 7) and m.conv_spatial.dilation == (3, 3) and m.conv_spatial.groups == 64
    assert m.reduce1.out_channels == m.reduce2.out_channels == 32 and m.proj.out_channels == 64
    assert m.select.in_channels == 2 and m.select.out_channels == 2 and m.select.kernel_size == (7, 7)
    import attnzoo.spatial.lsk as lsk_mod

    assert "CC BY-NC" in lsk_mod.__doc__ and "not read" in lsk_mod.__doc__

"""Faithfulness of the spatial gates SimAM, EMA, SA-Net shuffle attention, SGE, BAM and polarized self-attention:
slow references written from the papers and the official code (tests/reference/), parity with
External-Attention's copies (fightingcv-attention) where they compute the same function, official defaults,
initialisation and the argument errors."""

from __future__ import annotations

import importlib

import pytest
import torch

import attnzoo
from helpers import randomize, require
from reference.bam import bam as bam_ref
from reference.ema import ema as ema_ref
from reference.ema import ema_loops
from reference.psa import psa as psa_ref
from reference.psa import psa_loops
from reference.sanet import shuffle_attention as sa_ref
from reference.sge import sge as sge_ref
from reference.simam import simam as simam_ref

SIZES = [(1, 1), (1, 6), (7, 5), (13, 11)]


def x_input(c=16, h=7, w=5, b=2, seed=0):
    return torch.randn(b, c, h, w, generator=torch.Generator().manual_seed(seed)) * 1.5 + 0.3


def fcv(module: str, name: str):
    require("fightingcv_attention")
    return getattr(importlib.import_module(f"fightingcv_attention.attention.{module}"), name)


def both_grad_modes(m, x):
    """The module's output with autograd (out-of-place path) and without (in-place path): must agree."""
    y = m(x)
    with torch.no_grad():
        y0 = m(x)
    torch.testing.assert_close(y, y0)
    return y


# --------------------------------------------------------------------------------------------------- SimAM


@pytest.mark.faithful("simam")
@pytest.mark.parametrize("size", SIZES)
def test_simam_matches_energy_reference(size):
    m = attnzoo.create("simam", 8)
    x = x_input(8, *size)
    torch.testing.assert_close(both_grad_modes(m, x), simam_ref(m, x))


@pytest.mark.faithful("simam")
def test_simam_equals_fightingcv_and_is_finite_on_1x1():
    m = attnzoo.create("simam", 16, lambda_=1e-3)
    peer = fcv("SimAM", "SimAM")(e_lambda=1e-3)
    x = x_input(16, 9, 4)
    torch.testing.assert_close(m(x), peer(x))
    x1 = x_input(16, 1, 1)
    assert torch.isnan(peer(x1)).all()  # the official n = H·W − 1 divides 0 by 0
    torch.testing.assert_close(m(x1), x1 * torch.sigmoid(torch.tensor(0.5)))


def test_simam_arguments():
    assert attnzoo.create("simam", 4).lambda_ == 1e-4
    assert sum(p.numel() for p in attnzoo.create("simam", 64).parameters()) == 0
    for bad in (0, -1e-4, "x", float("inf")):
        with pytest.raises(ValueError, match="SimAM.*lambda_"):
            attnzoo.create("simam", 4, lambda_=bad)


# ----------------------------------------------------------------------------------------------------- EMA


@pytest.mark.faithful("ema")
@pytest.mark.parametrize("size", SIZES)
def test_ema_matches_official_computation(size):
    m = randomize(attnzoo.create("ema", 32, factor=4), scale=0.5)
    x = x_input(32, *size)
    y = both_grad_modes(m, x)
    torch.testing.assert_close(y, ema_ref(m, x), atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(y, ema_loops(m, x), atol=2e-5, rtol=1e-4)


def test_ema_official_defaults_and_state_dict():
    m = attnzoo.create("ema", 64)
    assert m.factor == 32 and m.gn.num_groups == 2 and m.conv3x3.padding == (1, 1)
    assert sorted(m.state_dict()) == sorted(
        ["gn.weight", "gn.bias", "conv1x1.weight", "conv1x1.bias", "conv3x3.weight", "conv3x3.bias"])
    assert attnzoo.create("ema", 64, factor=8).gn.num_channels == 8  # the YOLO zoos' factor


@pytest.mark.parametrize("channels,factor", [(48, 32), (16, 32), (64, 0), (64, 3), (64, 2.0)])
def test_ema_rejects_groups_that_do_not_divide(channels, factor):
    with pytest.raises(ValueError, match="EfficientMultiScaleAttention.*factor"):
        attnzoo.create("ema", channels, factor=factor)


def test_ema_batch1_train_fp16_and_deterministic():
    one = attnzoo.create("ema", 8, factor=1).train()(x_input(8, 1, 1, b=1))  # a single value per norm group
    assert torch.isfinite(one).all()
    m = randomize(attnzoo.create("ema", 64, factor=8), scale=0.5)
    x = x_input(64, 9, 6, b=1)
    y_train = m.train()(x)  # GroupNorm and the softmaxes never mix samples: batch 1 trains as any batch
    torch.testing.assert_close(y_train, m.eval()(x))
    with torch.autocast("cpu", dtype=torch.float16):
        y16 = m(x)
    assert torch.isfinite(y16).all() and (y16.float() - y_train).abs().max() < 0.05 * y_train.abs().max()
    torch.use_deterministic_algorithms(True)
    try:
        xg = x.clone().requires_grad_()
        m.train()(xg).sum().backward()
        assert torch.isfinite(xg.grad).all()
    finally:
        torch.use_deterministic_algorithms(False)


# ------------------------------------------------------------------------------------------ Shuffle attention


@pytest.mark.faithful("shuffle_attention")
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("groups", [None, 4])
def test_shuffle_attention_matches_reference(size, groups):
    m = randomize(attnzoo.create("shuffle_attention", 32, groups=groups), scale=0.5)
    x = x_input(32, *size)
    torch.testing.assert_close(both_grad_modes(m, x), sa_ref(m, x), atol=2e-5, rtol=1e-4)


@pytest.mark.faithful("shuffle_attention")
def test_shuffle_attention_equals_fightingcv():
    m = randomize(attnzoo.create("shuffle_attention", 64, groups=8), scale=0.5)
    peer = fcv("ShuffleAttention", "ShuffleAttention")(64, G=8)
    peer.load_state_dict(m.state_dict())  # official parameter names
    x = x_input(64, 11, 6)
    torch.testing.assert_close(m(x), peer(x))


@pytest.mark.parametrize("channels,groups", [(256, 64), (128, 64), (96, 48), (64, 32), (16, 8), (6, 3), (2, 1)])
def test_shuffle_attention_default_groups(channels, groups):
    m = attnzoo.create("shuffle_attention", channels)
    assert m.groups == groups
    half = channels // (2 * groups)
    assert m.cweight.shape == (1, half, 1, 1) and m.gn.num_groups == half
    assert (m.cweight == 0).all() and (m.sweight == 0).all() and (m.cbias == 1).all() and (m.sbias == 1).all()


@pytest.mark.parametrize("channels,groups", [(64, 3), (64, 64), (64, 0), (15, None), (64, 4.0)])
def test_shuffle_attention_rejects_groups(channels, groups):
    with pytest.raises(ValueError, match="ShuffleAttention"):
        attnzoo.create("shuffle_attention", channels, groups=groups)


# ----------------------------------------------------------------------------------------------------- SGE


@pytest.mark.faithful("sge")
@pytest.mark.parametrize("size", SIZES)
def test_sge_matches_reference(size):
    m = randomize(attnzoo.create("sge", 32, groups=4), scale=0.5)
    x = x_input(32, *size)
    y = both_grad_modes(m, x)
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y, sge_ref(m, x), atol=2e-5, rtol=1e-4)


@pytest.mark.faithful("sge")
def test_sge_equals_fightingcv_after_copying_weights():
    m = randomize(attnzoo.create("sge", 64, groups=8), scale=0.5)
    peer = fcv("SGE", "SpatialGroupEnhance")(8)  # its bias starts at 0 (official: 1): copy ours
    peer.load_state_dict(m.state_dict())
    x = x_input(64, 10, 7)
    torch.testing.assert_close(m(x), peer(x))


@pytest.mark.parametrize("channels,groups", [(256, 64), (64, 64), (96, 48), (16, 16), (7, 7), (100, 50)])
def test_sge_default_groups_and_init(channels, groups):
    m = attnzoo.create("sge", channels)
    assert m.groups == groups
    assert (m.weight == 0).all() and (m.bias == 1).all() and m.weight.shape == (1, groups, 1, 1)


@pytest.mark.parametrize("groups", [3, 0, -2, 2.0])
def test_sge_rejects_groups(groups):
    with pytest.raises(ValueError, match="SpatialGroupEnhance.*groups"):
        attnzoo.create("sge", 64, groups=groups)


# ----------------------------------------------------------------------------------------------------- BAM


@pytest.mark.faithful("bam")
@pytest.mark.parametrize("fusion", ["add", "mul"])
@pytest.mark.parametrize("size", [(1, 1), (5, 3), (13, 11), (28, 28)])
def test_bam_matches_reference_and_keeps_size(fusion, size):
    m = randomize(attnzoo.create("bam", 64, fusion=fusion), scale=0.3).eval()
    x = x_input(64, *size)
    y = both_grad_modes(m, x)
    assert y.shape == x.shape
    torch.testing.assert_close(y, bam_ref(m, x, fusion), atol=1e-4, rtol=1e-4)


def test_bam_official_structure():
    m = attnzoo.create("bam", 256)
    assert m.channel_fc1.out_features == 16 and m.spatial_reduce.out_channels == 16  # C / 16
    assert m.spatial_conv1.dilation == (4, 4) and m.spatial_conv1.padding == (4, 4)
    assert m.spatial_out.out_channels == 1 and m.fusion == "add"
    assert (m.spatial_out.bias == 0).all() and (m.channel_fc2.bias == 0).all()
    assert attnzoo.create("bam", 8).channel_fc1.out_features == 1  # never 0
    with pytest.raises(ValueError, match="BAM.*fusion"):
        attnzoo.create("bam", 64, fusion="concat")


def test_bam_trains_at_batch1_with_running_statistics():
    m = randomize(attnzoo.create("bam", 32), scale=0.3)
    stats = m.channel_bn.running_mean.clone()
    x = x_input(32, 6, 5, b=1)
    m.train()
    y = m(x)
    y.sum().backward()  # no "Expected more than 1 value per channel"
    torch.testing.assert_close(m.channel_bn.running_mean, stats)  # left unchanged at batch 1
    hidden = m.channel_fc1(x.mean((2, 3)))
    ref = torch.nn.functional.batch_norm(hidden, stats, m.channel_bn.running_var, m.channel_bn.weight,
                                         m.channel_bn.bias, False, 0.0, m.channel_bn.eps)
    torch.testing.assert_close(m.channel_bn(hidden), ref)
    m(x_input(32, 6, 5, b=3))  # batch statistics again from B = 2 on
    assert not torch.equal(m.channel_bn.running_mean, stats)


@pytest.mark.parametrize("name, kwargs", [("simam", {}), ("bam", {"fusion": "add"}), ("bam", {"fusion": "mul"})])
@pytest.mark.parametrize("size", [(13, 11), (7, 9), (1, 1)])
def test_simam_bam_trace_without_addcmul(name, kwargs, size):
    """SimAM and BAM have one form for eager and export (no ``torch.addcmul``, which pnnx cannot convert to ncnn):
    the trace records it, and equals the eager module (in-place path without autograd, out-of-place with)."""
    m = randomize(attnzoo.create(name, 64, **kwargs), scale=0.3).eval()
    x = x_input(64, *size)
    y = both_grad_modes(m, x)
    with torch.no_grad():
        traced = torch.jit.trace(m, (x,), check_trace=False)
        torch.testing.assert_close(traced(x), y, atol=1e-5, rtol=1e-5)
    assert "aten::addcmul" not in str(traced.inlined_graph)


# ----------------------------------------------------------------------------------------- Polarized (PSA)


@pytest.mark.faithful("polarized")
@pytest.mark.parametrize("mode", ["parallel", "sequential"])
@pytest.mark.parametrize("qkv_bias", [False, True])
@pytest.mark.parametrize("size", SIZES)
def test_polarized_matches_reference(mode, qkv_bias, size):
    m = randomize(attnzoo.create("polarized", 32, mode=mode, qkv_bias=qkv_bias), scale=0.3)
    x = x_input(32, *size)
    y = both_grad_modes(m, x)
    torch.testing.assert_close(y, psa_ref(m, x), atol=2e-5, rtol=1e-4)
    if mode == "parallel":
        torch.testing.assert_close(y, psa_loops(m, x), atol=2e-5, rtol=1e-4)


@pytest.mark.faithful("polarized")
@pytest.mark.parametrize("mode,peer_name", [("parallel", "ParallelPolarizedSelfAttention"),
                                            ("sequential", "SequentialPolarizedSelfAttention")])
def test_polarized_equals_fightingcv_with_biases(mode, peer_name):
    m = randomize(attnzoo.create("polarized", 64, mode=mode, qkv_bias=True), scale=0.3)
    peer = fcv("PolarizedSelfAttention", peer_name)(64)
    peer.load_state_dict(m.state_dict())  # same layer names
    x = x_input(64, 9, 8)
    torch.testing.assert_close(m(x), peer(x), atol=2e-5, rtol=1e-4)


def test_polarized_softmax_axes():
    """Channel branch: softmax over positions, so A_ch ignores the order of the positions; spatial branch
    follows the positions (equivariant)."""
    m = randomize(attnzoo.create("polarized", 16), scale=0.3)
    x = x_input(16, 5, 6)
    perm = torch.randperm(30, generator=torch.Generator().manual_seed(0))
    xp = x.flatten(2)[:, :, perm].reshape(x.shape)
    with attnzoo.capture_attention(m) as maps:
        m(x)
    a = dict(next(iter(maps.values())))
    with attnzoo.capture_attention(m) as maps:
        m(xp)
    b = dict(next(iter(maps.values())))
    torch.testing.assert_close(a["channel"], b["channel"])
    torch.testing.assert_close(a["spatial"].flatten(2)[:, :, perm], b["spatial"].flatten(2))


def test_polarized_arguments():
    m = attnzoo.create("polarized", 64)
    assert m.mode == "parallel" and m.ch_wv.bias is None and m.ch_wv.out_channels == 32 and m.ch_wq.out_channels == 1
    for kw in ({"mode": "serial"}, {"qkv_bias": 1}):
        with pytest.raises(ValueError, match="PolarizedSelfAttention"):
            attnzoo.create("polarized", 64, **kw)
    with pytest.raises(ValueError, match="PolarizedSelfAttention.*channels"):
        attnzoo.create("polarized", 1)

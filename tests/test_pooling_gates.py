"""SPNet's strip and mixed pooling, MLCA, CPCA and the Attention U-Net gate against the papers' formulas (the
official computations written out in tests/reference), their invariants, and the exact-pooling export forms."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import attnzoo
from attnzoo.testing import randomize
from attnzoo.tracing import export_target
from helpers import require
from reference.attention_gate import attention_gate
from reference.cpca import cpca
from reference.freqfusion import freqfusion, hamming2d
from reference.mlca import mlca_gate
from reference.strip_pooling import mixed_pooling, strip_pooling_gate


def _x(c: int, h: int, w: int, b: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, c, h, w, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _ready(name: str, channels: int, seed: int = 3, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    return randomize(attnzoo.create(name, channels, **kwargs), seed=seed, scale=0.3).double().eval()


def _export_form_equals_eager(m: nn.Module, *args: torch.Tensor) -> None:
    with torch.no_grad():
        eager = m(*args)
        with export_target("onnx"):
            portable = m(*args)
    torch.testing.assert_close(portable, eager, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------------------------- strip pooling


@pytest.mark.faithful("strip_pooling")
def test_strip_pooling_gate_sees_its_row_and_column() -> None:
    """SPBlock's formula, and its support: with centre-delta strip kernels one pixel moves the gate exactly on
    its row and its column; with the 3-tap kernels, exactly on the three-row and three-column bands around it."""
    m = _ready("strip_pooling", 6)
    x = _x(6, 9, 8)
    torch.testing.assert_close(m.gate_map(x), strip_pooling_gate(m, x))
    with torch.no_grad():
        m.rows[1].bias.add_(10.0)  # keep the ReLU open, so no change is hidden by it
    p, q = 4, 3
    x2 = x.clone()
    x2[:, :, p, q] += 1.0
    i = torch.arange(9)[:, None]
    j = torch.arange(8)[None, :]
    with torch.no_grad():
        for radius in (1, 0):
            if radius == 0:
                for conv in (m.rows[0], m.cols[0]):
                    w = torch.zeros_like(conv.weight)
                    w[:, :, conv.weight.shape[2] // 2, conv.weight.shape[3] // 2] = torch.randn(6, 6).double()
                    conv.weight.copy_(w)
            moved = (m.gate_map(x2) - m.gate_map(x)).abs().amax((0, 1)) > 1e-12
            expected = ((i - p).abs() <= radius) | ((j - q).abs() <= radius)
            assert torch.equal(moved, expected), radius


@pytest.mark.faithful("mixed_pooling")
@pytest.mark.parametrize("size", [(13, 11), (45, 37)])
def test_mixed_pooling_matches_spnet_and_its_export_form(size) -> None:
    """The official StripPooling block (pyramid pools 20 and 12, PyTorch's adaptive bins) at sizes that 20 and
    12 do not divide, and the ONNX form (static slices) equal to eager there."""
    m = _ready("mixed_pooling", 8)
    x = _x(8, *size, b=1)
    with torch.no_grad():
        torch.testing.assert_close(m(x), mixed_pooling(m, x))
    _export_form_equals_eager(m, x)


def test_mixed_pooling_defaults_and_errors() -> None:
    m = attnzoo.create("mixed_pooling", 16)
    assert m.pool_sizes == (20, 12) and m.local[0].out_channels == 4 and m.proj[0].out_channels == 16
    for bad in ({"pool_sizes": ()}, {"pool_sizes": (20, 0)}, {"reduction": 0}):
        with pytest.raises(ValueError, match="MixedPooling"):
            attnzoo.create("mixed_pooling", 16, **bad)


# ------------------------------------------------------------------------------------------------------- MLCA


@pytest.mark.faithful("mlca")
@pytest.mark.parametrize("size", [(13, 11), (45, 37)])
def test_mlca_matches_the_paper_and_its_export_form(size) -> None:
    """MLCA's gate (5×5 local pooling, the local 1-D conv over the position-major sequence, λ-mix, adaptive
    average "unpooling") at sizes 5 does not divide, and the ONNX form (static slices) equal to eager there."""
    m = _ready("mlca", 16)
    x = _x(16, *size, b=2)
    with torch.no_grad():
        torch.testing.assert_close(m.gate_map(x), mlca_gate(m, x))
    _export_form_equals_eager(m, x)


@pytest.mark.faithful("mlca")
def test_mlca_without_its_local_branch_is_eca() -> None:
    """λ = 0 at H, W multiples of 5: the gate is ECA's with the same kernel (its weight copied); and at 10×15
    the λ = 0.5 gate is its 5×5 map repeated 2×3 times."""
    m = _ready("mlca", 16, local_weight=0.0)
    eca = attnzoo.create("eca", 16, kernel_size=m.kernel_size).double().eval()
    with torch.no_grad():
        eca.conv.weight.copy_(m.conv.weight)
        x = _x(16, 10, 15)
        torch.testing.assert_close(m(x), eca(x))
        m.local_weight = 0.5
        g = m.gate_map(x)
        cells = g[:, :, ::2, ::3]
        torch.testing.assert_close(g, cells.repeat_interleave(2, 2).repeat_interleave(3, 3), rtol=0, atol=0)
        assert m.gate_map(x).std() > 0


def test_mlca_defaults_and_errors() -> None:
    m = attnzoo.create("mlca", 64)
    assert (m.local_size, m.local_weight, m.kernel_size) == (5, 0.5, 3)
    assert attnzoo.create("mlca", 256).kernel_size == 5 and attnzoo.create("mlca", 4).kernel_size == 1
    for bad in ({"local_size": 0}, {"local_weight": 1.5}, {"gamma": 0}):
        with pytest.raises(ValueError, match="MixedLocalChannelAttention"):
            attnzoo.create("mlca", 16, **bad)


# ------------------------------------------------------------------------------------------------------- CPCA


@pytest.mark.faithful("cpca")
def test_cpca_matches_the_official_block() -> None:
    """The official RepBlock written out (one shared 1×1 conv used three times), its parameter count, and the
    composition check: with centre-delta depthwise kernels and zero biases, s = 4·x̃."""
    c = 8
    m = _ready("cpca", c)
    x = _x(c, 9, 23)
    with torch.no_grad():
        torch.testing.assert_close(m(x), cpca(m, x))
    hidden = c // 4
    expected = (c * c + c) + (2 * c * hidden + hidden + c) + (25 + 2 * (7 + 11 + 21)) * c + 7 * c
    assert sum(p.numel() for p in m.parameters()) == expected
    with torch.no_grad():
        for name, conv in m.named_children():
            if name.startswith("dconv"):
                conv.weight.zero_()
                conv.weight[:, :, conv.weight.shape[2] // 2, conv.weight.shape[3] // 2] = 1.0
                conv.bias.zero_()
        with attnzoo.capture_attention(m) as maps:
            m(x)
        u = torch.nn.functional.gelu(m.conv(x)) * maps[""]["channel"]
        torch.testing.assert_close(maps[""]["spatial"], m.conv(4 * u))


# -------------------------------------------------------------------------------------------- Attention U-Net


@pytest.mark.faithful("attention_gate")
@pytest.mark.parametrize("size", [(12, 10), (13, 11)])
def test_attention_gate_is_the_papers_formula(size) -> None:
    """α = σ(ψ(ReLU(θ(x) + φ(g)))) at half resolution, resized to x, x·α and the official output transform:
    the official computation written out, with a gating map of other channels at half size."""
    m = _ready("attention_gate", 8, context_channels=12, out_conv=True)
    h, w = size
    x, g = _x(8, h, w), _x(12, (h + 1) // 2, (w + 1) // 2, seed=1)
    with torch.no_grad():
        torch.testing.assert_close(m(x, g), attention_gate(m, x, g))


@pytest.mark.faithful("attention_gate")
def test_attention_gate_monai_variant_matches_monai() -> None:
    """variant="monai" equals MONAI's AttentionBlock(spatial_dims=2) with the weights copied (same-size g)."""
    monai_nets = require("monai.networks.nets.attentionunet")
    m = _ready("attention_gate", 8, context_channels=12, variant="monai")
    peer = monai_nets.AttentionBlock(spatial_dims=2, f_int=m.inner_channels, f_g=12, f_l=8).double().eval()
    pairs = {"W_x": m.theta, "W_g": m.phi, "psi": m.psi}
    with torch.no_grad():
        for name, ours in pairs.items():
            theirs = getattr(peer, name)
            theirs[0].conv.load_state_dict(ours[0].state_dict())
            theirs[1].load_state_dict(ours[1].state_dict())
        x, g = _x(8, 9, 7), _x(12, 9, 7, seed=1)
        torch.testing.assert_close(m(x, g), peer(g=g, x=x))


def test_attention_gate_defaults_and_errors() -> None:
    m = attnzoo.create("attention_gate", 16)
    assert (m.context_channels, m.inner_channels, m.subsample, m.W) == (16, 8, True, None)
    assert m.theta.kernel_size == (2, 2) and m.theta.stride == (2, 2) and m.theta.bias is None
    assert attnzoo.create("attention_gate", 16, variant="monai").subsample is False
    for bad in ({"variant": "x"}, {"variant": "monai", "subsample": True}, {"context_channels": 0}, {"out_conv": 1}):
        with pytest.raises(ValueError, match="AttentionGate"):
            attnzoo.create("attention_gate", 16, **bad)
    with pytest.raises(ValueError, match="AttentionGate"):
        m(torch.randn(1, 16, 8, 8), torch.randn(1, 15, 4, 4))


# ---------------------------------------------------------------------------------------------------- FreqFusion


@pytest.mark.faithful("freqfusion")
def test_freqfusion_with_zeroed_encoders_is_a_fixed_hamming_low_pass() -> None:
    """Encoders zeroed: the low-pass kernel is the normalised 5×5 Hamming window, so the coarse branch is a fixed
    zero-padded Hamming blur, nearest-upsampled and cropped; the high-pass branch sharpens with the 3×3 box mean.
    Then, with random encoders, the paper's computation written out (groups 2, odd sizes)."""
    c = 4
    m = _ready("freqfusion", c, compressed_channels=6)
    h, w = 13, 11
    fine, coarse = _x(c, h, w), _x(c, 7, 6, seed=1)
    with torch.no_grad():
        torch.testing.assert_close(m(fine, coarse), freqfusion(m, fine, coarse))
        for enc in (m.lowpass_encoder, m.highpass_encoder):
            enc.weight.zero_()
            enc.bias.zero_()
        window = hamming2d(5) / hamming2d(5).sum()
        blur = torch.nn.functional.conv2d(coarse, window.expand(c, 1, 5, 5), padding=2, groups=c)
        up = blur.repeat_interleave(2, 2).repeat_interleave(2, 3)[..., :h, :w]
        box = torch.nn.functional.conv2d(fine, torch.full((c, 1, 3, 3), 1 / 9, dtype=fine.dtype), padding=1, groups=c)
        torch.testing.assert_close(m(fine, coarse), 2 * fine - box + up)
        with attnzoo.capture_attention(m) as maps:
            m(fine, coarse)
        torch.testing.assert_close(maps[""]["kernels"][0, :, 4, 3], window.flatten())
    g2 = _ready("freqfusion", 4, compressed_channels=6, groups=2)
    with torch.no_grad():
        torch.testing.assert_close(g2(fine, coarse), freqfusion(g2, fine, coarse))


def test_freqfusion_defaults_and_errors() -> None:
    m = attnzoo.create("freqfusion", 16)
    assert (m.compressed_channels, m.k_lp, m.k_hp, m.k_enc, m.groups, m.hamming) == (64, 5, 3, 3, 1, True)
    for bad in ({"context_channels": 8}, {"k_lp": 4}, {"groups": 3}, {"compressed_channels": 0}):
        with pytest.raises(ValueError, match="FreqFusion"):
            attnzoo.create("freqfusion", 16, **bad)
    with pytest.raises(ValueError, match=r"FreqFusion.*half"):
        m(torch.randn(1, 16, 8, 8), torch.randn(1, 16, 3, 4))

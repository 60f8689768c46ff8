"""Faithfulness tests of the temporal family: MTGNN dilated inception and gated temporal convolution.

The reference is written from the official description (nnzhan/MTGNN ``layer.py::dilated_inception``): four
valid dilated 1×k convolutions, k = 2, 3, 6, 7, each branch cut to its **last** T − 6d steps, concatenated on
channels in kernel order — computed here with explicit shifted slices and einsum (no convolution call), and
also the official way with the module's own per-branch ``nn.Conv2d`` layers.
"""

from __future__ import annotations

import pytest
import torch

import attnzoo
from attnzoo.temporal.mtgnn import KERNEL_SET
from attnzoo.testing import randomize
from helpers import rand
from reference.mtgnn import official_inception, ref_inception


@pytest.mark.faithful("dilated_inception")
@pytest.mark.parametrize("dilation", [1, 2, 3])
@pytest.mark.parametrize("shape", [(2, 8, 3, 20), (1, 4, 1, 19)])  # B, C, N, T
@pytest.mark.parametrize("out_channels", [None, 12])
def test_dilated_inception_matches_official_computation(dilation, shape, out_channels):
    b, c, n, t = shape
    m = randomize(attnzoo.create("dilated_inception", c, out_channels=out_channels, dilation=dilation), 5, 0.3).double()
    x = rand(*shape, seed=dilation)
    if t < 6 * dilation + 1:
        with pytest.raises(ValueError, match="DilatedInception"):
            m(x)
        return
    out = m(x)
    cout = out_channels or c
    assert out.shape == (b, cout, n, t - 6 * dilation)
    torch.testing.assert_close(out, ref_inception(m, x), atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(out, official_inception(m, x), atol=1e-10, rtol=1e-10)


def test_alignment_output_step_ends_at_input_step_t_plus_6d():
    """Output step t depends exactly on input steps t .. t + 6d (kernel-7 branch) — the last steps are kept."""
    d, t = 2, 21
    m = randomize(attnzoo.create("dilated_inception", 3, out_channels=8, dilation=d), 5, 0.3).double()
    x = rand(1, 3, 2, t, seed=1).requires_grad_()
    out = m(x)
    for step in (0, 4, out.shape[-1] - 1):
        (g,) = torch.autograd.grad(out[..., step].sum(), x, retain_graph=True)
        touched = (g.abs().sum((0, 1, 2)) > 0).nonzero().flatten().tolist()
        assert touched == list(range(step, step + 6 * d + 1, d)), (step, touched)
        # the k = 2 branch (channels 0, 1) only sees the last two taps: steps t + 5d and t + 6d
        (g2,) = torch.autograd.grad(out[:, :2, :, step].sum(), x, retain_graph=True)
        assert (g2.abs().sum((0, 1, 2)) > 0).nonzero().flatten().tolist() == [step + 5 * d, step + 6 * d]


@pytest.mark.parametrize("dilation", [1, 3])
@pytest.mark.parametrize("t", [1, 2, 6, 7, 25])
def test_causal_padding_keeps_length_and_is_causal(dilation, t):
    m = randomize(attnzoo.create("dilated_inception", 4, padding="causal", dilation=dilation), 5, 0.3).double()
    x = rand(2, 4, 3, t, seed=t)
    out = m(x)
    assert out.shape == (2, 4, 3, t)
    torch.testing.assert_close(out, ref_inception(m, x, causal=True), atol=1e-10, rtol=1e-10)
    x2 = x.clone()
    x2[..., t // 2 :] += 1.0  # future steps change: earlier outputs must not
    torch.testing.assert_close(m(x2)[..., : t // 2], out[..., : t // 2], atol=0, rtol=0)
    valid = attnzoo.create("dilated_inception", 4, dilation=dilation).double()
    valid.load_state_dict(m.state_dict())
    if t >= 6 * dilation + 1:  # causal output, last T − 6d steps = the official valid output
        torch.testing.assert_close(out[..., 6 * dilation :], valid(x), atol=1e-12, rtol=1e-12)


def test_official_parameter_layout_and_errors():
    m = attnzoo.create("dilated_inception", 6, out_channels=16, dilation=2)
    assert [tuple(c.weight.shape) for c in m.tconv] == [(4, 6, 1, k) for k in KERNEL_SET]
    assert [c.dilation for c in m.tconv] == [(1, 2)] * 4 and all(c.padding == (0, 0) for c in m.tconv)
    assert sorted(m.state_dict()) == sorted(f"tconv.{i}.{p}" for i in range(4) for p in ("weight", "bias"))
    with pytest.raises(ValueError, match="DilatedInception: .*at least 6·dilation\\+1 = 13"):
        m(torch.randn(1, 6, 2, 12))
    assert m(torch.randn(1, 6, 2, 13)).shape == (1, 16, 2, 1)
    for name in ("dilated_inception", "gated_tcn"):
        cls = attnzoo.info(name).cls.__name__
        for kw in ({"out_channels": 6}, {"out_channels": 10}, {"dilation": 0}, {"padding": "same"}):
            with pytest.raises(ValueError, match=cls):
                attnzoo.create(name, 8, **kw)
        with pytest.raises(ValueError, match=f"{cls}.*expected 8 channels"):
            attnzoo.create(name, 8)(torch.randn(1, 9, 2, 10))
        with pytest.raises(ValueError, match=f"{cls}.*at least 6·dilation\\+1 = 7"):
            attnzoo.create(name, 8)(torch.randn(1, 8, 2, 6))
    with pytest.raises(ValueError, match="GatedTemporalConv: dropout"):
        attnzoo.create("gated_tcn", 8, dropout=1.5)


@pytest.mark.faithful("gated_tcn")
@pytest.mark.parametrize("padding", ["valid", "causal"])
def test_gated_tcn_matches_reference(padding):
    m = randomize(attnzoo.create("gated_tcn", 5, out_channels=8, dilation=2, padding=padding), 5, 0.3).double().eval()
    x = rand(2, 5, 3, 16, seed=7)
    causal = padding == "causal"
    ref_gate = torch.sigmoid(ref_inception(m.gate_conv, x, causal))
    ref = torch.tanh(ref_inception(m.filter_conv, x, causal)) * ref_gate
    with attnzoo.capture_attention(m) as maps:
        out = m(x)
    torch.testing.assert_close(out, ref, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(maps[""]["gate"], ref_gate, atol=1e-10, rtol=1e-10)
    assert out.shape == (2, 8, 3, 16 if causal else 16 - 12)
    # two separate inception modules: filter and gate parameters are distinct and both matter
    assert m.filter_conv.tconv[0].weight.data_ptr() != m.gate_conv.tconv[0].weight.data_ptr()
    out.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())


def test_gated_tcn_dropout_after_the_gate():
    m = randomize(attnzoo.create("gated_tcn", 4, dropout=0.5), 5, 0.3).double()
    x = rand(2, 4, 6, 12, seed=8)
    ref = m.eval()(x)
    m.train()
    torch.manual_seed(0)
    out = m(x)
    kept = out != 0
    assert 0.2 < kept.double().mean() < 0.8
    torch.testing.assert_close(out[kept], 2 * ref[kept], atol=1e-12, rtol=1e-12)  # dropped after tanh ⊙ σ

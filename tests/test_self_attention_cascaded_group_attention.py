"""cascaded_group_attention: parity with timm's CascadedGroupAttention / LocalWindowAttention, window consistency at
sizes that do not tile, zero output at init, no stale bias."""

import pytest
import torch

import attnzoo
from attnzoo.functional.relative_position import absolute_offset_index
from helpers import randomize, require


def _cga(channels=16, **kw):
    return randomize(attnzoo.create("cascaded_group_attention", channels, heads=4, d_k=4, **kw)).double().eval()


@pytest.mark.faithful("cascaded_group_attention")
def test_cga_equals_timm_on_a_window_and_on_whole_windows():
    """Same state dict: timm CascadedGroupAttention on a 7×7 map, timm LocalWindowAttention on 14×21."""
    evit = require("timm.models.efficientvit_msra")
    m = _cga()
    cga = evit.CascadedGroupAttention(16, 4, num_heads=4, attn_ratio=1, resolution=7, kernels=(5,) * 4).double()
    cga.load_state_dict(m.state_dict())
    cga.eval()  # timm's train() override returns None: not chained
    x = torch.randn(2, 16, 7, 7, dtype=torch.float64)
    torch.testing.assert_close(m(x), cga(x))
    lwa = evit.LocalWindowAttention(16, 4, 4, attn_ratio=1, resolution=14, window_resolution=7).double()
    lwa.load_state_dict({"attn." + k: v for k, v in m.state_dict().items()})
    lwa.eval()
    x = torch.randn(1, 16, 14, 21, dtype=torch.float64)
    torch.testing.assert_close(m(x), lwa(x))


@pytest.mark.faithful("cascaded_group_attention")
def test_cga_border_windows_compute_as_the_window_cut_to_the_map():
    """At 9×11 (w = 7) each window's output equals the module on that window alone (padding never leaks)."""
    m = _cga()
    x = torch.randn(1, 16, 9, 11, dtype=torch.float64)
    y = m(x)
    for hs in (slice(0, 7), slice(7, 9)):
        for ws in (slice(0, 7), slice(7, 11)):
            torch.testing.assert_close(y[:, :, hs, ws], m(x[:, :, hs, ws]))


def test_cga_is_zero_at_init_and_its_bias_symmetric():
    m = attnzoo.create("cascaded_group_attention", 16, heads=2)
    assert m(torch.randn(2, 16, 9, 5)).abs().max() == 0
    idx = absolute_offset_index(7, 7, 7).reshape(7, 7, 7, 7)  # (yq, xq, yk, xk)
    assert torch.equal(idx, idx.flip(0, 2)) and torch.equal(idx, idx.flip(1, 3))


def test_cga_bias_follows_load_state_dict_in_eval():
    m = _cga()
    x = torch.randn(1, 16, 7, 7, dtype=torch.float64)
    before = m(x)
    state = m.state_dict()
    state["attention_biases"] = state["attention_biases"] + 1.0 * torch.arange(49, dtype=torch.float64)
    m.load_state_dict(state)
    assert not torch.allclose(m(x), before)


def test_cga_defaults_and_bad_arguments():
    m = attnzoo.create("cascaded_group_attention", 64)
    assert (m.heads, m.d_k, m.window_size, m.kernel_size, m.d_v) == (4, 16, 7, 5, 16)
    for kw in ({"heads": 3}, {"kernel_size": 4}, {"d_k": 0}, {"window_size": 0}):
        with pytest.raises(ValueError, match="CascadedGroupAttention"):
            attnzoo.create("cascaded_group_attention", 16, **kw)

"""swin: parity with timm's SwinTransformerBlock / WindowAttention, and the shifted form as roll ∘ masked W-MSA ∘ roll⁻¹."""

import pytest
import torch
import torch.nn.functional as F

import attnzoo
from attnzoo.functional.relative_position import signed_offset_index
from helpers import randomize, require


def _swin(channels, **kw):
    return randomize(attnzoo.create("swin", channels, **kw)).double().eval()


@pytest.mark.faithful("swin")
@pytest.mark.parametrize("shift", [0, 3])
def test_swin_equals_timm_block_on_whole_windows(shift):
    """With the state dict as it is (timm's keys), the block equals timm's SwinTransformerBlock at 14×14."""
    swin = require("timm.models.swin_transformer")
    m = _swin(16, heads=2, shift_size=shift)
    ref = swin.SwinTransformerBlock(16, (14, 14), num_heads=2, window_size=7, shift_size=shift).double().eval()
    ref.load_state_dict(m.state_dict())
    x = torch.randn(2, 16, 14, 14, dtype=torch.float64)
    torch.testing.assert_close(m(x), ref(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2))


def _official_regions(hp, wp, m, s):
    """The official img_mask loop: region labels of the padded H'×W' grid after the roll."""
    img = torch.zeros(hp, wp)
    cnt = 0
    for hs in (slice(0, -m), slice(-m, -s), slice(-s, None)):
        for ws in (slice(0, -m), slice(-m, -s), slice(-s, None)):
            img[hs, ws] = cnt
            cnt += 1
    return img


@pytest.mark.faithful("swin")
def test_swin_shifted_padded_is_roll_masked_wmsa_unroll():
    """At 9×11 with M = 7, s = 3: pad to 14×14, roll by −s, timm WindowAttention per window with a hand-built
    mask (other region or padding key: −inf), roll by +s, crop; then the residual and the MLP."""
    swin = require("timm.models.swin_transformer")
    m, s, h, w = 7, 3, 9, 11
    block = _swin(16, heads=2, shift_size=s)
    wa = swin.WindowAttention(16, num_heads=2, window_size=m).double().eval()
    wa.load_state_dict({k[5:]: v for k, v in block.state_dict().items() if k.startswith("attn.")})
    x = torch.randn(2, 16, h, w, dtype=torch.float64)
    t = x.permute(0, 2, 3, 1)
    y = F.pad(block.norm1(t), (0, 0, 0, 14 - w, 0, 14 - h))
    y = torch.roll(y, (-s, -s), (1, 2))
    label = _official_regions(14, 14, m, s)
    pad = torch.roll(F.pad(torch.zeros(h, w), (0, 14 - w, 0, 14 - h), value=1.0), (-s, -s), (0, 1))
    label = torch.where(pad > 0, torch.full_like(label, -1.0), label)
    windows = y.reshape(2, 2, m, 2, m, 16).permute(0, 1, 3, 2, 4, 5).reshape(8, m * m, 16)
    lab = label.reshape(2, m, 2, m).permute(0, 2, 1, 3).reshape(4, m * m)
    mask = torch.zeros(4, m * m, m * m, dtype=torch.float64)
    mask[(lab[:, :, None] != lab[:, None, :]) | (lab[:, None, :] < 0)] = float("-inf")
    out = wa(windows, mask=mask).reshape(2, 2, 2, m, m, 16).permute(0, 1, 3, 2, 4, 5).reshape(2, 14, 14, 16)
    out = torch.roll(out, (s, s), (1, 2))[:, :h, :w]
    t = t + out
    expected = (t + block.mlp(block.norm2(t))).permute(0, 3, 1, 2)
    torch.testing.assert_close(block(x), expected)


def test_swin_unshifted_output_depends_only_on_its_window():
    block = _swin(8, window_size=4)
    x = torch.randn(1, 8, 6, 7, dtype=torch.float64, requires_grad=True)
    block(x)[0, :, 1, 5].sum().backward()
    support = x.grad.abs().sum(1)[0] > 0
    expected = torch.zeros(6, 7, dtype=torch.bool)
    expected[0:4, 4:7] = True
    assert torch.equal(support, expected)


def test_relative_position_index_is_timms():
    swin = require("timm.models.swin_transformer")
    for wh, ww in ((7, 7), (3, 5)):
        assert torch.equal(signed_offset_index(wh, ww), swin.get_relative_position_index(wh, ww))


def test_swin_defaults_and_bad_arguments():
    m = attnzoo.create("swin", 96)
    assert (m.heads, m.window_size, m.shift_size, m.mlp.fc1.out_features) == (3, 7, 0, 384)
    assert attnzoo.create("swin", 8).heads == 1
    for kw in ({"shift_size": 7}, {"heads": 5}, {"window_size": 0}, {"mlp_ratio": 0}):
        with pytest.raises(ValueError, match="SwinBlock"):
            attnzoo.create("swin", 32, **kw)

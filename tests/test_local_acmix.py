"""acmix: parity with External-Attention-pytorch's ACmix (the official code); a shift-and-sum at init; any size."""

import pytest
import torch
import torch.nn.functional as F

import attnzoo
from helpers import randomize, require


@pytest.mark.faithful("acmix")
def test_acmix_equals_the_official_code():
    """fightingcv's ACmix is the official class (its position map is float32: compared in float32)."""
    peer = require("fightingcv_attention.attention.ACmixAttention")
    m = randomize(attnzoo.create("acmix", 8, heads=2)).eval()
    ref = peer.ACmix(8, 8, head=2).eval()
    ref.load_state_dict(m.state_dict())
    x = torch.randn(2, 8, 8, 9)
    torch.testing.assert_close(m(x), ref(x), atol=1e-5, rtol=1e-5)


@pytest.mark.faithful("acmix")
def test_acmix_conv_path_at_init_is_a_shift_and_sum():
    """rate1 = 0: out[o, y, x] = β · Σ_i f[g(o)·k² + i, y + i // k − 1, x + i % k − 1] (zero outside), with
    f the fc-mixed features and g(o) = o // (C / d) the group of output channel o."""
    m = attnzoo.create("acmix", 8, heads=2).double()
    with torch.no_grad():
        m.rate1.zero_()
    x = torch.randn(1, 8, 5, 6, dtype=torch.float64)
    q, k, v = m.conv1(x), m.conv2(x), m.conv3(x)
    f = m.fc(torch.cat([t.reshape(1, 2, 4, 30) for t in (q, k, v)], 1)).permute(0, 2, 1, 3).reshape(1, 36, 5, 6)
    fp = F.pad(f, (1, 1, 1, 1))
    expected = torch.zeros(1, 8, 5, 6, dtype=torch.float64)
    for o in range(8):
        g = o // 2
        for i in range(9):
            dy, dx = i // 3, i % 3
            expected[:, o] += fp[:, g * 9 + i, dy : dy + 5, dx : dx + 6]
    torch.testing.assert_close(m(x), 0.5 * expected)


def test_acmix_small_maps_reflect_and_defaults():
    m = attnzoo.create("acmix", 16)
    assert (m.heads, m.kernel_att, m.kernel_conv, float(m.rate1), float(m.rate2)) == (4, 7, 3, 0.5, 0.5)
    for size in ((1, 1), (2, 3), (3, 5)):
        assert m(torch.randn(1, 16, *size)).shape == (1, 16, *size)
    for kw in ({"heads": 3}, {"kernel_att": 6}, {"kernel_conv": 0}):
        with pytest.raises(ValueError, match="ACmix"):
            attnzoo.create("acmix", 16, **kw)

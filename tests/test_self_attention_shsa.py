"""shsa: parity with timm's SHSA, zero output at init, the untouched channels reach the output pointwise."""

import pytest
import torch

import attnzoo
from helpers import randomize, require


@pytest.mark.faithful("shsa")
def test_shsa_equals_timm():
    shvit = require("timm.models.shvit")
    m = randomize(attnzoo.create("shsa", 16, qk_channels=8)).double().eval()
    ref = shvit.SHSA(16, 8, 4).double().eval()
    ref.load_state_dict(m.state_dict())
    x = torch.randn(2, 16, 7, 5, dtype=torch.float64)
    torch.testing.assert_close(m(x), ref(x))


def test_shsa_passes_the_rest_pointwise_and_is_zero_at_init():
    assert attnzoo.create("shsa", 16)(torch.randn(2, 16, 5, 3)).abs().max() == 0
    m = randomize(attnzoo.create("shsa", 16, qk_channels=4)).double().eval()
    x = torch.randn(1, 16, 5, 4, dtype=torch.float64, requires_grad=True)
    m(x)[0, :, 2, 1].sum().backward()
    support = x.grad[0, 4:].abs().sum(0) > 0  # the C − p channels that are not attended
    expected = torch.zeros(5, 4, dtype=torch.bool)
    expected[2, 1] = True
    assert torch.equal(support, expected)


def test_shsa_defaults_and_bad_arguments():
    m = attnzoo.create("shsa", 128)
    assert (m.qk_channels, m.partial_channels) == (16, 32)
    assert attnzoo.create("shsa", 3).partial_channels == 1
    for kw in ({"qk_channels": 0}, {"partial_channels": 17}, {"partial_channels": 0}):
        with pytest.raises(ValueError, match="SingleHeadSelfAttention"):
            attnzoo.create("shsa", 16, **kw)

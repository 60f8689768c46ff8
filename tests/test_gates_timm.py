"""Faithfulness of timm's remaining attention types and two small gates: ceca (timm ``CecaModule``), lcbam (timm
``LightCbamModule``), parnet_sse (ParNet's skip-squeeze-excitation, the formula written out), splat (timm
``SplitAttn``), epsa, bat (timm ``BatNonLocalAttn``) and scsa."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import attnzoo
from helpers import randomize, require
from reference.epsa import epsa_reference
from reference.scsa import scsa_reference

timm_layers = require("timm.layers")


def x_input(c=16, h=7, w=5, b=2, seed=0, dtype=torch.float64):
    return torch.randn(b, c, h, w, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# ----------------------------------------------------------------------------------------------------- ceca


@pytest.mark.faithful("ceca")
@pytest.mark.parametrize("channels", [3, 64])
def test_ceca_matches_timm_and_is_roll_equivariant(channels):
    m = randomize(attnzoo.create("ceca", channels)).double().eval()
    peer = timm_layers.CecaModule(channels).double().eval()
    assert peer.conv.weight.shape == m.conv.weight.shape  # the same kernel rule ψ(C)
    peer.conv.weight.data.copy_(m.conv.weight)
    x = x_input(channels)
    torch.testing.assert_close(m(x), peer(x))
    # rolling the input's channels rolls the output's: the channel axis is a ring
    for r in (1, channels - 1):
        torch.testing.assert_close(m(x.roll(r, 1)), m(x).roll(r, 1))
    # zero-padded ECA with the same taps is not equivariant (its two end channels see zeros)
    eca = attnzoo.create("eca", channels).double().eval()
    eca.conv.weight.data.copy_(m.conv.weight)
    assert not torch.allclose(eca(x.roll(1, 1)), eca(x).roll(1, 1))


def test_ceca_kernel_wider_than_the_ring_wraps_around():
    """A kernel wider than C (up to the 2·C − 1 bound every ECA keeps) reads channels around the ring again."""
    m = randomize(attnzoo.create("ceca", 4, kernel_size=7)).double().eval()
    x = x_input(4)
    w = m.conv.weight.view(7)
    s = x.mean((2, 3))
    # tap j reads channel (i + j − 3) mod C
    y = torch.stack([sum(w[j] * s[:, (i + j - 3) % 4] for j in range(7)) for i in range(4)], dim=1)
    torch.testing.assert_close(m(x), x * torch.sigmoid(y)[:, :, None, None])


# ---------------------------------------------------------------------------------------------------- lcbam


def _lcbam_to_timm(m):
    peer = timm_layers.cbam.LightCbamModule(m.channels, rd_channels=m.fc1.out_channels)
    sd = m.state_dict()
    theirs = {"channel.fc1.weight": sd["fc1.weight"], "channel.fc2.weight": sd["fc2.weight"]}
    theirs.update(
        {"spatial.conv.conv." + k[len("spatial.conv.") :]: v for k, v in sd.items() if k.startswith("spatial.conv.")}
    )
    theirs.update(
        {"spatial.conv.bn." + k[len("spatial.bn.") :]: v for k, v in sd.items() if k.startswith("spatial.bn.")}
    )
    peer.load_state_dict(theirs)
    return peer


@pytest.mark.faithful("lcbam")
@pytest.mark.parametrize("channels, size", [(24, (7, 5)), (64, (1, 1))])
def test_lcbam_matches_timm(channels, size):
    m = randomize(attnzoo.create("lcbam", channels)).double().eval()
    assert m.fc1.out_channels == timm_layers.cbam.LightCbamModule(channels).channel.fc1.out_channels  # ⌊C/16 + ½⌋
    peer = _lcbam_to_timm(m).double().eval()
    x = x_input(channels, *size)
    torch.testing.assert_close(m(x), peer(x))


def test_lcbam_train_mode_matches_timm():
    torch.manual_seed(0)
    m = randomize(attnzoo.create("lcbam", 16)).double().train()
    peer = _lcbam_to_timm(m).double().train()
    x = x_input(16)
    torch.testing.assert_close(m(x), peer(x))
    torch.testing.assert_close(m.spatial.bn.running_mean, peer.spatial.conv.bn.running_mean)


# ----------------------------------------------------------------------------------------------- parnet_sse


@pytest.mark.faithful("parnet_sse")
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_parnet_sse_formula(mode):
    m = randomize(attnzoo.create("parnet_sse", 8)).double()
    m.train(mode == "train")
    x = x_input(8)
    bn = m.bn
    if mode == "train":
        mean, var = x.mean((0, 2, 3)), x.var((0, 2, 3), unbiased=False)
    else:
        mean, var = bn.running_mean, bn.running_var
    u = (x - mean[:, None, None]) / torch.sqrt(var[:, None, None] + bn.eps) * bn.weight[:, None, None]
    u = u + bn.bias[:, None, None]
    gate = torch.sigmoid(F.conv2d(u.mean((2, 3), keepdim=True), m.fc.weight, m.fc.bias))  # C → C, no reduction
    torch.testing.assert_close(m(x), u * gate)
    assert m.fc.weight.shape == (8, 8, 1, 1)


# ---------------------------------------------------------------------------------------------------- splat


def _splat_to_timm(m, rd_channels=None):
    peer = timm_layers.SplitAttn(
        m.channels,
        kernel_size=m.kernel_size,
        radix=m.radix,
        groups=m.groups,
        rd_channels=rd_channels,
        norm_layer=torch.nn.BatchNorm2d,
    )
    sd = {k.replace("conv.conv.", "conv.").replace("conv.norm.", "bn0."): v for k, v in m.state_dict().items()}
    peer.load_state_dict(sd)
    return peer


@pytest.mark.faithful("splat")
@pytest.mark.parametrize("channels, radix, groups", [(64, 2, 1), (32, 4, 2), (16, 1, 1)])
def test_splat_matches_timm(channels, radix, groups):
    """C·R/4 a multiple of 8 (or at most 32): the official width max(C·R/4, 32) equals timm's make_divisible."""
    m = randomize(attnzoo.create("splat", channels, radix=radix, groups=groups)).double()
    peer = _splat_to_timm(m).double()
    assert peer.fc1.out_channels == m.fc1.out_channels
    x = x_input(channels)
    for mode in (False, True):  # eval, then train (batch statistics in both BNs)
        m.train(mode), peer.train(mode)
        torch.testing.assert_close(m(x), peer(x))


def test_splat_inner_width_is_the_official_rule_where_timm_rounds():
    """C = 72, R = 2: official max(72·2/4, 32) = 36; timm rounds to 40 (a multiple of 8).  With timm told the
    width (its rd_channels is per split: 36 / R), the two compute the same."""
    m = randomize(attnzoo.create("splat", 72)).double().eval()
    assert m.fc1.out_channels == 36 and timm_layers.SplitAttn(72, radix=2).fc1.out_channels == 40
    peer = _splat_to_timm(m, rd_channels=18).double().eval()
    x = x_input(72, 3, 4)
    torch.testing.assert_close(m(x), peer(x))
    with attnzoo.capture_attention(m) as maps:
        m(x)
    torch.testing.assert_close(maps[""]["radix_weights"].sum(1), torch.ones(2, 72, 1, 1, dtype=torch.float64))


def test_splat_rejects_groups_that_do_not_divide():
    with pytest.raises(ValueError, match="SplitAttention: groups must be .*dividing channels=64"):
        attnzoo.create("splat", 64, groups=3)
    with pytest.raises(ValueError, match="SplitAttention: groups must be a divisor of hidden_channels"):
        attnzoo.create("splat", 48, groups=3, radix=1, hidden_channels=8)


# ----------------------------------------------------------------------------------------------------- epsa


@pytest.mark.faithful("epsa")
@pytest.mark.parametrize(
    "channels, kwargs",
    [(64, {}), (16, {"groups": (1, 2, 4, 4), "reduction": 2, "shared_se": False, "order": "paper"})],
)
def test_epsa_matches_the_reference(channels, kwargs):
    m = randomize(attnzoo.create("epsa", channels, **kwargs)).double().eval()
    x = x_input(channels, 6, 5)
    with attnzoo.capture_attention(m) as maps:
        out = m(x)
    torch.testing.assert_close(out, epsa_reference(m, x))
    a = maps[""]["branch_weights"]  # B×S×(C/S)×1×1: sums to 1 over the branches, per channel
    torch.testing.assert_close(a.sum(1), torch.ones_like(a[:, 0]))
    w = channels // 4
    first = 3 if m.order == "official" else 0  # official order: channel block 0 is the 9×9 branch
    torch.testing.assert_close(out[:, :w], m.convs[first](x) * a[:, first])


@pytest.mark.parametrize("shared_se", [True, False])
def test_epsa_registers_every_parameter(shared_se):
    """State dict = S conv weights + (1 or S) SEs of 4 tensors; the parameter count by the formula."""
    m = attnzoo.create("epsa", 64, shared_se=shared_se)
    w, hidden = 16, 1
    n_se = 1 if shared_se else 4
    assert len(m.state_dict()) == 4 + 4 * n_se
    convs = sum(64 * (w // g) * k * k for k, g in zip((3, 5, 7, 9), (1, 4, 8, 16)))
    assert sum(p.numel() for p in m.parameters()) == convs + n_se * (2 * w * hidden + hidden + w)
    assert all(p.grad is None for p in m.parameters())
    m(torch.randn(1, 64, 3, 3)).sum().backward()
    assert all(p.grad is not None for p in m.parameters())


def test_epsa_rejects_channels_the_branches_cannot_split():
    with pytest.raises(ValueError, match="EPSA: channels must be a multiple of the number of branches"):
        attnzoo.create("epsa", 30)
    with pytest.raises(ValueError, match=r"EPSA: channels must be .*groups \(1, 4, 8, 16\) divide.*got 32"):
        attnzoo.create("epsa", 32)  # branch width 8: groups 16 cannot divide it
    with pytest.raises(ValueError, match="EPSA: groups must be one group count per kernel"):
        attnzoo.create("epsa", 64, groups=(1, 4))


# ------------------------------------------------------------------------------------------------------ bat


def _bat_to_timm(m):
    from timm.layers.non_local_attn import BatNonLocalAttn

    peer = BatNonLocalAttn(m.channels, block_size=m.block_size, groups=m.groups, drop_rate=0.0)
    peer.load_state_dict({k.replace(".norm.", ".bn."): v for k, v in m.state_dict().items()})
    return peer


@pytest.mark.faithful("bat")
@pytest.mark.parametrize("size", [(14, 21), (7, 7)])
def test_bat_matches_timm_where_the_block_size_divides(size):
    m = randomize(attnzoo.create("bat", 32)).double()
    peer = _bat_to_timm(m).double()
    x = x_input(32, *size)
    for mode in (False, True):
        m.train(mode), peer.train(mode)
        torch.testing.assert_close(m(x), peer(x))


def test_bat_any_size_is_the_padded_transform():
    """H, W not multiples of k: x_l padded with zeros to multiples of k, transformed with P ⊗ I_t and Q ⊗ I_s
    (Kronecker matrices built here, as timm does), cropped; the pools are PyTorch's adaptive bins."""
    m = randomize(attnzoo.create("bat", 16, block_size=3, groups=1)).double().eval()
    x = x_input(16, 5, 7)
    xl = m.conv1(x)
    p, q = m.ba.matrices(xl)  # B×1×3×3
    xp = F.pad(xl, (0, 2, 0, 1))  # 6×9: t = 2 rows and s = 3 columns per block
    big_p = torch.stack([torch.kron(p[b, 0], torch.eye(2, dtype=x.dtype)) for b in range(2)])[:, None]
    big_q = torch.stack([torch.kron(q[b, 0], torch.eye(3, dtype=x.dtype)) for b in range(2)])[:, None]
    y = (big_p @ xp @ big_q)[:, :, :5, :7]
    torch.testing.assert_close(m(x), x + m.conv2(m.ba.conv2(y)))
    # P's rows and Q's columns sum to 1
    torch.testing.assert_close(p.sum(3), torch.ones_like(p.sum(3)))
    torch.testing.assert_close(q.sum(2), torch.ones_like(q.sum(2)))


# ----------------------------------------------------------------------------------------------------- scsa


@pytest.mark.faithful("scsa")
@pytest.mark.parametrize("size, floor_pool", [((14, 21), True), ((13, 11), False), ((1, 1), False)])
def test_scsa_matches_the_official_computation(size, floor_pool):
    """Official defaults (heads 8, window 7, kernels 3/5/7/9); the official floor pooling where 7 divides H and W,
    partial windows averaged over their valid pixels elsewhere (the official code drops them, and fails below 7)."""
    m = randomize(attnzoo.create("scsa", 32)).double().eval()
    assert (m.heads, m.window_size, m.kernels) == (8, 7, (3, 5, 7, 9))
    x = x_input(32, *size)
    with attnzoo.capture_attention(m) as maps:
        out = m(x)
    torch.testing.assert_close(out, scsa_reference(m, x, floor_pool=floor_pool))
    attn = maps[""]["attn"]  # B×heads×d×d channel-to-channel attention, rows sum to 1
    assert attn.shape == (2, 8, 4, 4)
    torch.testing.assert_close(attn.sum(-1), torch.ones(2, 8, 4, dtype=torch.float64))


def test_scsa_rejects_channels_it_cannot_group():
    with pytest.raises(ValueError, match="SCSA: channels must be a multiple of 4"):
        attnzoo.create("scsa", 18, heads=2)
    with pytest.raises(ValueError, match="SCSA: heads must be a divisor of channels=36"):
        attnzoo.create("scsa", 36)

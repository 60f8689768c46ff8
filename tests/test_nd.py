"""1-D and 3-D forms (``dims=``): the registry API, the rank-by-rank layers, and the rank-reduction oracle.

The contract (tests/test_contract.py) runs per (module, dims).  Here: a ``dims=3`` module on a depth-1 volume
equals its 2-D self holding the centre slice of its weights (``attnzoo.testing.slice_to``), and ``dims=1`` on L
equals ``dims=2`` on a 1×L map, for every module registered with those ranks (registry-driven); modules that
pool "over all positions" pool every axis (nnU-Net's 3-D SqueezeExcite pools two of three).
"""

from __future__ import annotations

import warnings

import pytest
import torch

import attnzoo
from attnzoo import tracing
from attnzoo.functional.gating import axis_mean, spatial_mean
from attnzoo.layers import check_spatial
from attnzoo.layouts import example_inputs, layout_for
from attnzoo.testing import randomize, slice_to
from helpers import build, channels_for, rand, require

NAMES = attnzoo.list_modules()
TO_2D = [n for n in NAMES if {2, 3} <= set(attnzoo.info(n).dims)]
TO_1D = [n for n in NAMES if {1, 2} <= set(attnzoo.info(n).dims)]


def test_registry_declares_ranks_and_filters_by_them():
    assert attnzoo.info("se").dims == (1, 2, 3)
    assert attnzoo.info("coord").dims == (2,)  # a 2-D only module keeps the default
    three = attnzoo.list_modules(dims=3)
    assert "se" in three and "coord" not in three
    assert set(three) <= set(attnzoo.list_modules(dims=2)) == set(NAMES)
    assert attnzoo.list_modules("channel", dims=1) == [
        n for n in attnzoo.list_modules("channel") if 1 in attnzoo.info(n).dims
    ]
    with pytest.raises(ValueError, match="dims"):
        attnzoo.list_modules(dims=4)


def test_create_checks_the_rank_first():
    with pytest.raises(ValueError, match=r"se \(SqueezeExcite\) supports dims \(1, 2, 3\), got 4"):
        attnzoo.create("se", 16, dims=4)
    with pytest.raises(ValueError, match=r"coord .* supports dims \(2,\), got 3"):
        attnzoo.create("coord", 16, dims=3)
    assert isinstance(attnzoo.create("coord", 16, dims=2), attnzoo.info("coord").cls)  # 2 is every module's rank
    assert attnzoo.create("se", 16, dims=3).dims == 3


def test_spatial_dims_is_a_deprecated_alias_of_dims():
    with pytest.warns(DeprecationWarning, match="'spatial_dims' is deprecated, use 'dims'"):
        m = attnzoo.create("se", 16, spatial_dims=3)
    assert m.dims == 3 and m.fc1.weight.dim() == 5
    with pytest.warns(DeprecationWarning):
        assert attnzoo.info("se").cls(16, spatial_dims=1).dims == 1
    with warnings.catch_warnings(), pytest.raises(TypeError, match="deprecated"):
        warnings.simplefilter("ignore")
        attnzoo.create("se", 16, spatial_dims=3, dims=3)
    with pytest.raises(ValueError, match="supports dims"):
        attnzoo.create("se", 16, spatial_dims=5)


def test_register_validates_dims():
    with pytest.raises(ValueError, match="dims must be ranks"):
        attnzoo.register("bad_dims", family="channel", paper="p", complexity="O(N)", dims=(3,))
    with pytest.raises(ValueError, match="needs a keyword argument `dims`"):
        attnzoo.register("bad_dims", family="channel", paper="p", complexity="O(N)", dims=(1, 2))(torch.nn.Identity)
    assert "bad_dims" not in attnzoo.list_modules()


def test_layout_for_maps_nchw_to_each_rank():
    assert layout_for("se", 1).name == "ncl" and layout_for("se", 1).default_size == (3136,)
    assert layout_for("se", 3).name == "ncdhw" and layout_for("se", 3).default_size == (4, 28, 28)
    assert layout_for("se", 2).name == "nchw" and layout_for("se").spatial_rank == 2
    assert layout_for("se", 3).spatial_rank == 3 and layout_for("mhsa").spatial_rank is None
    with pytest.raises(ValueError, match="supports dims"):
        layout_for("coord", 3)
    (x,) = example_inputs("se", batch=1, channels=4, size=(2, 3, 5), dims=3)
    assert x.shape == (1, 4, 2, 3, 5)


@pytest.mark.parametrize("dims", [1, 3])
def test_check_spatial_names_the_shape_and_never_broadcasts(dims):
    x = torch.zeros((2, 8) + (3,) * dims)
    assert check_spatial(x, 8, dims, "Owner") is x
    axes = {1: "L", 3: "D×H×W"}[dims]
    with pytest.raises(ValueError, match=rf"Owner: expected a {dims + 2}-D input B×8×{axes}, got shape"):
        check_spatial(x[:, :, 0], 8, dims, "Owner")  # one rank less: a silent broadcast elsewhere
    with pytest.raises(ValueError, match=rf"Owner: expected a {dims + 2}-D input"):
        check_spatial(x.unsqueeze(2), 8, dims, "Owner")
    with pytest.raises(ValueError, match="expected 8 input channels"):
        check_spatial(torch.zeros((2, 9) + (3,) * dims), 8, dims, "Owner")
    with pytest.raises(ValueError, match="non-empty"):
        check_spatial(torch.zeros((2, 8) + (0,) * dims), 8, dims, "Owner")


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_spatial_mean_has_the_lean_backward_at_every_rank(dims):
    x = rand(2, 3, *(4, 5, 3)[:dims], seed=dims).requires_grad_()
    y = spatial_mean(x, dims=dims)
    assert y.shape == (2, 3)
    torch.testing.assert_close(y, x.mean(tuple(range(2, x.dim()))))
    g = rand(2, 3, seed=7)
    (gx,) = torch.autograd.grad(y, x, g)
    assert 0 in gx.stride()  # an expanded view, not a new full-size tensor
    torch.testing.assert_close(gx, g[(...,) + (None,) * dims].expand_as(x) / x[0, 0].numel())
    axes = tuple(sorted({2, x.dim() - 1}))  # two axes of a 2-D / 3-D map, one of a 1-D one
    (gz,) = torch.autograd.grad(axis_mean(x, axes), x, rand(*x.mean(axes).shape, seed=8))
    assert 0 in gz.stride()
    torch.testing.assert_close(gz, torch.autograd.grad(x.mean(axes), x, rand(*x.mean(axes).shape, seed=8))[0])


@pytest.mark.parametrize("dims", [1, 3])
def test_spatial_mean_export_form_pools_adaptively(dims):
    """Under the ncnn target the mean is ``adaptive_avg_pool{d}d`` (ncnn rejects a multi-axis mean of a 5-D map)."""
    x = rand(2, 3, *(4, 5, 3)[:dims], seed=1, dtype=torch.float32)
    with tracing.export_target("ncnn"):
        graph = torch.jit.trace(lambda t: spatial_mean(t, dims=dims), (x,)).graph
    assert f"aten::adaptive_avg_pool{dims}d" in str(graph) and "aten::mean" not in str(graph)


def _same_output_and_grad(big: torch.nn.Module, small: torch.nn.Module, x: torch.Tensor, axis: int, what: str) -> None:
    """``big`` on x with a size-1 axis inserted at ``axis`` equals ``small`` on x: outputs and input gradients."""
    xs = x.clone().requires_grad_()
    xb = x.clone().unsqueeze(axis).requires_grad_()
    out_s, out_b = small(xs), big(xb)
    torch.testing.assert_close(out_b.squeeze(axis), out_s, atol=1e-10, rtol=1e-8, msg=lambda m: f"{what}: {m}")
    g = rand(*out_s.shape, seed=5)
    out_s.backward(g)
    out_b.backward(g.unsqueeze(axis))
    torch.testing.assert_close(xb.grad.squeeze(axis), xs.grad, atol=1e-10, rtol=1e-8, msg=lambda m: f"{what} grad: {m}")


@pytest.mark.parametrize("name", TO_2D)
def test_rank_reduction_3d_on_a_depth_1_volume_is_the_2d_module(name):
    c = channels_for(name)
    for mode in ("eval", "train"):
        m3 = randomize(build(name, dims=3)).double().train(mode == "train")
        m2 = slice_to(m3, 2)
        assert type(m2) is type(m3) and m2.dims == 2 and m2.training == m3.training
        _same_output_and_grad(m3, m2, rand(2, c, 5, 6, seed=3), 2, f"{name} ({mode})")


@pytest.mark.parametrize("name", TO_1D)
def test_rank_reduction_2d_on_a_1xl_map_is_the_1d_module(name):
    c = channels_for(name)
    for mode in ("eval", "train"):
        m2 = randomize(build(name)).double().train(mode == "train")
        m1 = slice_to(m2, 1)
        assert m1.dims == 1
        _same_output_and_grad(m2, m1, rand(2, c, 9, seed=4), 2, f"{name} ({mode})")


def test_slice_to_refuses_what_it_cannot_slice():
    with pytest.raises(ValueError, match="slice_to"):
        slice_to(attnzoo.create("coord", 16), 1)  # no dims= (no recorded arguments)
    with pytest.raises(ValueError, match="slice_to"):
        slice_to(attnzoo.create("se", 16, dims=2), 3)  # up, not down


# ------------------------------------------------------------------------------------------------------------
# The gate modules in 1-D and 3-D: faithful forms (every spatial axis pooled), peers with copied weights
# ------------------------------------------------------------------------------------------------------------

#: Modules whose output at a position depends on the map only through statistics over every position (and
#: pointwise terms): reshaping the volume into another layout of the same positions changes nothing.
POSITION_SETS = ["se", "eca", "ese", "gct", "gc", "scse", "simam", "cbam_channel"]


@pytest.mark.parametrize("name", POSITION_SETS)
def test_pooling_covers_every_axis(name):
    """A D×H×W volume and the same positions laid out as 1×(D·H)×W give the same output: the statistics run over
    all D·H·W positions (nnU-Net's 3-D SqueezeExcite pools H and W only, one gate per depth: this fails there).
    The 1-D form on the L = D·H·W positions (weights sliced, 1×1 convs only) gives the same output too."""
    c = channels_for(name)
    m3 = randomize(build(name, dims=3)).double().eval()
    x = rand(2, c, 3, 4, 5, seed=11)
    ref = m3(x)
    folded = m3(x.reshape(2, c, 1, 12, 5)).reshape(x.shape)
    torch.testing.assert_close(folded, ref, atol=1e-10, rtol=1e-8)
    m1 = slice_to(m3, 1)
    torch.testing.assert_close(m1(x.flatten(2)), ref.flatten(2), atol=1e-10, rtol=1e-8)


@pytest.mark.parametrize("dims", [1, 3])
def test_se_matches_monai_channel_se_layer(dims):
    """MONAI ``ChannelSELayer(spatial_dims, C, r)`` with attnzoo's weights (its ``r`` passed: MONAI's default is 2;
    its hidden width is C // r, attnzoo's the same here as C // r ≥ min_hidden)."""
    monai_blocks = require("monai.networks.blocks")
    c, r = 32, 4
    ours = randomize(attnzoo.create("se", c, reduction=r, dims=dims)).double().eval()
    peer = monai_blocks.ChannelSELayer(spatial_dims=dims, in_channels=c, r=r).double().eval()
    with torch.no_grad():
        peer.fc[0].weight.copy_(ours.fc1.weight.flatten(1))
        peer.fc[0].bias.copy_(ours.fc1.bias)
        peer.fc[2].weight.copy_(ours.fc2.weight.flatten(1))
        peer.fc[2].bias.copy_(ours.fc2.bias)
    x = rand(2, c, *(3, 5, 4)[-dims:] if dims == 3 else (11,), seed=12)
    torch.testing.assert_close(ours(x), peer(x))


def _fvcore_se_weights(ours: torch.nn.Module, block: torch.nn.Sequential, fc1: torch.nn.Module, fc2: torch.nn.Module):
    with torch.no_grad():
        block[0].weight.copy_(fc1.weight)
        block[0].bias.copy_(fc1.bias)
        block[2].weight.copy_(fc2.weight)
        block[2].bias.copy_(fc2.bias)


def test_se_and_scse_match_fvcore_3d():
    """fvcore's ``SqueezeExcitation(is_3d=True)`` and ``ChannelSpatialSqueezeExcitation(is_3d=True)`` (the
    max-out scSE, as the authors' 3-D code) with attnzoo's weights."""
    se_mod = require("fvcore.nn.squeeze_excitation")
    c, r = 32, 4
    x = rand(2, c, 3, 5, 4, seed=13)
    se = randomize(attnzoo.create("se", c, reduction=r, dims=3)).double().eval()
    peer = se_mod.SqueezeExcitation(c, reduction_ratio=r, is_3d=True).double().eval()
    _fvcore_se_weights(se, peer.block, se.fc1, se.fc2)
    torch.testing.assert_close(se(x), peer(x))
    scse = randomize(attnzoo.create("scse", c, reduction=r, mode="max", dims=3)).double().eval()
    peer = se_mod.ChannelSpatialSqueezeExcitation(c, reduction_ratio=r, is_3d=True).double().eval()
    _fvcore_se_weights(scse, peer.channel.block, scse.cSE[0], scse.cSE[2])
    with torch.no_grad():
        peer.spatial.block[0].weight.copy_(scse.sSE[0].weight)
        peer.spatial.block[0].bias.copy_(scse.sSE[0].bias)
    torch.testing.assert_close(scse(x), peer(x))


def test_cbam_spatial_gate_takes_a_kernel_per_axis():
    """``kernel_size=(3, 7, 7)`` on D×H×W: σ(BN(conv3d([max_c; mean_c]))) with zero padding (1, 3, 3), written out."""
    m = randomize(attnzoo.create("cbam_spatial", 8, kernel_size=(3, 7, 7), dims=3)).double().eval()
    conv, bn = m.gate.conv, m.gate.bn
    assert conv.weight.shape == (1, 2, 3, 7, 7)
    x = rand(2, 8, 5, 6, 7, seed=14)
    pooled = torch.cat([x.amax(1, keepdim=True), x.mean(1, keepdim=True)], 1)
    z = torch.nn.functional.conv3d(pooled, conv.weight, padding=(1, 3, 3))
    z = (z - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
    torch.testing.assert_close(m(x), x * torch.sigmoid(z))
    y = x.clone()
    y[:, :, 0] += 1.0  # the first frame reaches the gate of frames 0 and 1 only (kernel 3 on D)
    assert torch.equal(m(y)[:, :, 2:], m(x)[:, :, 2:]) and not torch.equal(m(y)[:, :, 1], m(x)[:, :, 1])
    with pytest.raises(ValueError, match="kernel_size"):
        attnzoo.create("cbam", 8, kernel_size=(3, 7), dims=3)
    with pytest.raises(ValueError, match="kernel_size"):
        attnzoo.create("cbam", 8, kernel_size=(3, 6, 7), dims=3)


@pytest.mark.parametrize("name", sorted(set(POSITION_SETS) | {"cbam", "cbam_spatial"}))
def test_nd_state_dicts_have_the_2d_keys(name):
    """A module's state-dict keys do not depend on ``dims``; 1×1 weights differ only by trailing singleton axes."""
    sd2 = build(name).state_dict()
    for dims in (1, 3):
        sd = build(name, dims=dims).state_dict()
        assert list(sd) == list(sd2), f"{name} dims={dims}"
        for k, t in sd.items():
            if k.endswith("conv.weight") and name.startswith("cbam"):  # the k^d spatial conv
                continue
            assert t.flatten().shape == sd2[k].flatten().shape, f"{name} dims={dims}: {k} {t.shape} vs {sd2[k].shape}"


def test_the_nd_guide_lists_every_module_of_another_rank():
    """docs/nd.md's table names every registered module that declares a rank other than 2, and no other."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "nd.md").read_text()
    table = text.split("## Supported modules", 1)[1].split("\n## ", 1)[0]
    listed = set(
        re.findall(r"`([a-z0-9_]+)`", "".join(line.split("|")[1] for line in table.splitlines()[3:] if "|" in line))
    )
    expected = {n for n in attnzoo.list_modules() if attnzoo.info(n).dims != (2,)}
    assert listed == expected, f"docs/nd.md: missing {sorted(expected - listed)}, extra {sorted(listed - expected)}"

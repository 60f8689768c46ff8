"""BoTNet MHSA, attention-augmented convolution, lambda layer, generalized attention: faithfulness and arguments."""

from __future__ import annotations

import pytest
import torch

import attnzoo
from attnzoo.functional.relative_logits import relative_logits_2d
from helpers import randomize, require
from reference.relative_attention import aa_conv as aa_reference
from reference.relative_attention import bot_mhsa as bot_reference


def _rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.faithful("bot_mhsa")
@pytest.mark.parametrize("scale_pos_embed", [False, True])
def test_bot_mhsa_matches_timm_at_its_feat_size(scale_pos_embed):
    timm_bot = require("timm.layers.bottleneck_attn")
    torch.manual_seed(0)
    peer = timm_bot.BottleneckAttn(16, feat_size=(5, 7), num_heads=4, scale_pos_embed=scale_pos_embed).double()
    m = attnzoo.create("bot_mhsa", 16, max_size=(5, 7), scale_pos_embed=scale_pos_embed).double()
    m.qkv.weight.data.copy_(peer.qkv.weight)
    m.height_rel.data.copy_(peer.pos_embed.height_rel)
    m.width_rel.data.copy_(peer.pos_embed.width_rel)
    x = _rand(2, 16, 5, 7)
    torch.testing.assert_close(m(x), peer(x))


@pytest.mark.faithful("bot_mhsa")
@pytest.mark.parametrize("size,stride", [((3, 6), 1), ((5, 3), 2), ((1, 1), 1)])
def test_bot_mhsa_smaller_maps_use_the_centre_of_the_tables(size, stride):
    m = randomize(attnzoo.create("bot_mhsa", 8, out_channels=12, heads=2, max_size=(5, 7), stride=stride)).double()
    x = _rand(2, 8, *size, seed=1)
    torch.testing.assert_close(m(x), bot_reference(m, x))


def test_relative_logits_depend_only_on_the_offset():
    q = _rand(1, 1, 4 * 5, 3).expand(1, 1, 20, 3).clone()
    q[:] = _rand(3)  # one query vector everywhere: the logit is then a function of (y' − y, x' − x) alone
    hr, wr = _rand(9, 3, seed=2), _rand(11, 3, seed=3)
    a_h, a_w = relative_logits_2d(q, hr, wr, 4, 5)
    logit = a_h[..., :, None] + a_w[..., None, :]  # 1×1×4×5(query)×4×5(key)
    for dy, dx in ((1, 2), (-2, 1), (0, -3)):
        ys = [y for y in range(4) if 0 <= y + dy < 4]
        xs = [x for x in range(5) if 0 <= x + dx < 5]
        vals = torch.stack([logit[0, 0, y, x, y + dy, x + dx] for y in ys for x in xs])
        torch.testing.assert_close(vals, vals[:1].expand_as(vals))
        torch.testing.assert_close(vals[0], q[0, 0, 0] @ (hr[dy + 4] + wr[dx + 5]))


def test_bot_mhsa_rejects_maps_larger_than_max_size():
    m = attnzoo.create("bot_mhsa", 8, heads=2, max_size=(6, 4))
    with pytest.raises(ValueError, match=r"BoTMHSA.*max_size=\(6, 4\).*7×4"):
        m(torch.randn(1, 8, 7, 4))


@pytest.mark.parametrize(
    "kwargs",
    [{"heads": 3}, {"max_size": 0}, {"max_size": (4, 0)}, {"stride": 3}, {"out_channels": 0}, {"dim_head": 0}],
)
def test_bot_mhsa_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="BoTMHSA"):
        attnzoo.create("bot_mhsa", 8, **kwargs)


@pytest.mark.faithful("aa_conv")
@pytest.mark.parametrize("size", [(5, 7), (3, 2), (1, 1)])
def test_aa_conv_matches_the_paper(size):
    m = randomize(attnzoo.create("aa_conv", 8, out_channels=12, heads=2, max_size=(5, 7))).double()
    x = _rand(2, 8, *size, seed=4)
    torch.testing.assert_close(m(x), aa_reference(m, x))


@pytest.mark.faithful("aa_conv")
def test_aa_conv_without_values_is_a_plain_conv():
    m = attnzoo.create("aa_conv", 8, out_channels=12, value_channels=0, kernel_size=5).double()
    assert [n for n, _ in m.named_parameters()] == ["conv.weight", "conv.bias"]
    conv = torch.nn.Conv2d(8, 12, 5, padding=2).double()
    conv.load_state_dict(m.conv.state_dict())
    x = _rand(1, 8, 9, 13, seed=5)
    torch.testing.assert_close(m(x), conv(x))


def test_aa_conv_defaults_are_the_papers():
    m = attnzoo.create("aa_conv", 64, out_channels=128)
    assert (m.heads, m.key_channels, m.value_channels) == (8, 24, 16)  # κ = 2υ = 0.2 of 128, multiples of 8
    assert m.conv.out_channels == 128 - 16 and m.proj.out_channels == 16
    assert m(torch.randn(1, 64, 9, 13)).shape == (1, 128, 9, 13)  # non-square
    only_attention = attnzoo.create("aa_conv", 8, heads=2, value_channels=8)
    assert only_attention.conv is None and only_attention(torch.randn(1, 8, 3, 4)).shape == (1, 8, 3, 4)


@pytest.mark.parametrize(
    "kwargs",
    [{"heads": 3, "key_channels": 4}, {"value_channels": 3, "heads": 2}, {"value_channels": 20}, {"kernel_size": 2},
     {"key_channels": 0}, {"max_size": (0, 3)}],
)
def test_aa_conv_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="AAConv"):
        attnzoo.create("aa_conv", 8, **kwargs)


def test_aa_conv_rejects_maps_larger_than_max_size():
    with pytest.raises(ValueError, match=r"AAConv.*max_size=\(4, 4\)"):
        attnzoo.create("aa_conv", 8, heads=2, max_size=4)(torch.randn(1, 8, 4, 5))


def _lambda_pair(stride=1):
    timm_lambda = require("timm.layers.lambda_layer")
    torch.manual_seed(0)
    peer = timm_lambda.LambdaLayer(16, num_heads=4, dim_head=4, r=5, stride=stride).double()
    m = attnzoo.create("lambda_layer", 16, heads=4, d_k=4, local_size=5, stride=stride).double()
    randomize(peer)
    m.qkv.load_state_dict(peer.qkv.state_dict())
    m.norm_q.load_state_dict(peer.norm_q.state_dict())
    m.norm_v.load_state_dict(peer.norm_v.state_dict())
    m.conv_lambda.weight.data.copy_(peer.conv_lambda.weight[..., 0])
    m.conv_lambda.bias.data.copy_(peer.conv_lambda.bias)
    return m, peer


@pytest.mark.faithful("lambda_layer")
@pytest.mark.parametrize("train,stride", [(False, 1), (True, 2)])
def test_lambda_layer_matches_timm(train, stride):
    m, peer = _lambda_pair(stride)
    m.train(train), peer.train(train)
    x = _rand(2, 16, 6, 7 + stride - 1, seed=6)  # even sizes at stride 2 (timm floors odd ones)
    torch.testing.assert_close(m(x), peer(x))
    if train:  # the same running statistics afterwards
        torch.testing.assert_close(m.norm_v.running_mean, peer.norm_v.running_mean)


@pytest.mark.faithful("lambda_layer")
def test_lambda_layer_without_position_lambdas_is_the_content_closed_form():
    m = randomize(attnzoo.create("lambda_layer", 8, out_channels=12, heads=2, d_k=3, local_size=3)).double().eval()
    torch.nn.init.zeros_(m.conv_lambda.weight), torch.nn.init.zeros_(m.conv_lambda.bias)
    x = _rand(2, 8, 4, 5, seed=7)
    qkv = torch.nn.functional.conv2d(x, m.qkv.weight).flatten(2)
    q, k, v = qkv[:, :6], qkv[:, 6:9], qkv[:, 9:]
    q = m.norm_q(q.reshape(2, 6, 4, 5)).reshape(2, 2, 3, 20)
    v = m.norm_v(v.reshape(2, 6, 4, 5)).reshape(2, 6, 20)
    lam = torch.einsum("bkn,bvn->bkv", k.softmax(-1), v)  # λᶜ = K̄ Vᵀ
    want = torch.einsum("bkv,bhkn->bhvn", lam, q).reshape(2, 12, 4, 5)  # y_n = λᶜᵀ q_n per head
    torch.testing.assert_close(m(x), want)


@pytest.mark.parametrize("kwargs", [{"heads": 3}, {"d_k": 0}, {"local_size": 4}, {"stride": 3}, {"out_channels": 0}])
def test_lambda_layer_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="LambdaLayer"):
        attnzoo.create("lambda_layer", 8, **kwargs)


def _mmcv_pair(**kwargs):
    mmcv_cnn = require("mmcv.cnn", extra="dev")
    torch.manual_seed(0)
    peer = mmcv_cnn.GeneralizedAttention(256, **kwargs).double()
    names = {"heads": "num_heads", "attn_type": "attention_type"}
    m = attnzoo.create("generalized_attention", 256, **{k2: v for k2, v in _ours(kwargs, names).items()}).double()
    torch.nn.init.normal_(peer.gamma)
    state = {k: v for k, v in peer.state_dict().items() if k != "local_constraint_map"}
    m.load_state_dict(state)
    return m, peer


def _ours(kwargs, names):
    inverse = {v: k for k, v in names.items()}
    return {inverse.get(k, k): v for k, v in kwargs.items()}


@pytest.mark.faithful("generalized_attention")
@pytest.mark.parametrize(
    "kwargs,size",
    [
        ({}, (5, 7)),
        ({"attention_type": "0101", "kv_stride": 1}, (4, 3)),  # E2 without E4: mmcv transposes q (see provenance)
        ({"attention_type": "0011", "spatial_range": 1}, (6, 5)),
        ({"attention_type": "1010", "q_stride": 2, "num_heads": 8}, (6, 4)),
    ],
)
def test_generalized_attention_matches_mmcv(kwargs, size):
    m, peer = _mmcv_pair(**kwargs)
    x = _rand(2, 256, *size, seed=8)
    torch.testing.assert_close(m(x), peer(x))


@pytest.mark.faithful("generalized_attention")
def test_generalized_attention_is_the_identity_at_init_at_any_channels():
    m = attnzoo.create("generalized_attention", 10, spatial_range=2).double()  # mmcv fails at C = 10
    x = _rand(1, 10, 7, 9, seed=9)
    assert torch.equal(m(x), x)
    with torch.no_grad():
        m.gamma.fill_(1.0)
    assert not torch.allclose(m(x), x)


def test_generalized_attention_key_content_only_is_spatially_constant():
    m = randomize(attnzoo.create("generalized_attention", 12, heads=3, attn_type="0010")).double()
    x = _rand(2, 12, 5, 6, seed=10)
    delta = m(x) - x
    torch.testing.assert_close(delta, delta[:, :, :1, :1].expand_as(delta))


@pytest.mark.parametrize(
    "kwargs",
    [{"heads": 0}, {"heads": 17}, {"attn_type": "0000"}, {"attn_type": "12"}, {"kv_stride": 0}, {"spatial_range": -2},
     {"position_embedding_dim": 0}, {"position_magnitude": 0}],
)
def test_generalized_attention_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="GeneralizedAttention"):
        attnzoo.create("generalized_attention", 16, **kwargs)

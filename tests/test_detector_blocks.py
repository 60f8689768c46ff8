"""The host blocks of current detectors (PSA, C2PSA, area attention, A2C2f, AIFI) and CGLU, against independent
computations: Ultralytics' classes with copied weights (imported as an oracle, never copied), written-out
references, and the papers' invariants; and their pluggable insides (``attn=``)."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import attnzoo
from attnzoo.testing import randomize
from helpers import require

ul_block = require("ultralytics.nn.modules.block")
ul_transformer = require("ultralytics.nn.modules.transformer")


def _x(c: int, h: int, w: int, b: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, c, h, w, generator=torch.Generator().manual_seed(seed))


def _parity(ours: nn.Module, theirs: nn.Module, x: torch.Tensor, atol: float = 1e-9) -> None:
    randomize(theirs, seed=4, scale=0.2)
    ours.load_state_dict(theirs.state_dict())  # strict: the same keys and shapes
    ours.double().eval(), theirs.double().eval()  # float64: no rounding differences between the kernels
    with torch.no_grad():
        torch.testing.assert_close(ours(x.double()), theirs(x.double()), atol=atol, rtol=1e-6)


@pytest.mark.faithful("psa")
@pytest.mark.parametrize("channels, size", [(128, (13, 11)), (256, (20, 20)), (64, (7, 9))])
def test_psa_equals_ultralytics(channels, size) -> None:
    _parity(attnzoo.create("psa", channels), ul_block.PSA(channels, channels), _x(channels, *size))


@pytest.mark.faithful("c2psa")
@pytest.mark.parametrize("channels, n, size", [(128, 1, (13, 11)), (256, 2, (20, 20)), (64, 1, (5, 6))])
def test_c2psa_equals_ultralytics(channels, n, size) -> None:
    ours = attnzoo.create("c2psa", channels, num_repeats=n)
    _parity(ours, ul_block.C2PSA(channels, channels, n=n), _x(channels, *size))


@pytest.mark.faithful("psa", "c2psa")
def test_psa_is_c2psa_with_one_block() -> None:
    psa = randomize(attnzoo.create("psa", 128), seed=2, scale=0.2).eval()
    c2psa = attnzoo.create("c2psa", 128).eval()
    c2psa.load_state_dict({k.replace("attn.", "m.0.attn.", 1).replace("ffn.", "m.0.ffn.", 1): v for k, v in psa.state_dict().items()})
    x = _x(128, 9, 7)
    torch.testing.assert_close(c2psa(x), psa(x))


def test_psa_heads_are_never_zero() -> None:
    """Upstream takes c // 64 heads: 0 below 128 input channels."""
    for c in (8, 16, 64):
        m = attnzoo.create("c2psa", c)
        assert m.m[0].attn.heads == 1
        assert m(_x(c, 3, 4)).shape == (2, c, 3, 4)
    assert attnzoo.create("psa", 512).attn.heads == 4
    with pytest.raises(ValueError, match="C2PSA.*heads"):
        attnzoo.create("c2psa", 64, heads=3)


@pytest.mark.faithful("a2c2f", "area_attention")
@pytest.mark.parametrize(
    "kwargs, size",
    [
        ({"area": 4}, (8, 8)),
        ({"area": 4}, (20, 12)),
        ({"area": 1}, (13, 11)),
        ({"area": 2, "residual": True, "mlp_ratio": 1.5, "num_repeats": 2}, (6, 10)),
    ],
)
def test_a2c2f_equals_ultralytics(kwargs, size) -> None:
    """Where the rows divide into the areas (the only case the upstream handles as strips)."""
    ul_kwargs = {"n": kwargs.get("num_repeats", 1), "area": kwargs["area"], "residual": kwargs.get("residual", False),
                 "mlp_ratio": kwargs.get("mlp_ratio", 2.0)}
    _parity(attnzoo.create("a2c2f", 64, **kwargs), ul_block.A2C2f(64, 64, a2=True, **ul_kwargs), _x(64, *size))


@pytest.mark.faithful("area_attention")
@pytest.mark.parametrize("variant", ["v1", "turbo"])
@pytest.mark.parametrize("h, area", [(12, 4), (13, 4), (5, 4), (7, 3), (2, 4)])
def test_area_attention_strips_are_independent(variant, h, area) -> None:
    """With the positional conv zeroed, area attention equals global attention (area=1) run on each strip of
    ⌈H/area⌉ rows separately — so the padded rows of the last strip are never attended."""
    torch.manual_seed(0)
    m = randomize(attnzoo.create("area_attention", 32, heads=2, area=area, variant=variant), seed=1, scale=0.2).eval()
    nn.init.zeros_(m.pe.bn.weight), nn.init.zeros_(m.pe.bn.bias)
    glob = attnzoo.create("area_attention", 32, heads=2, area=1, variant=variant).eval()
    glob.load_state_dict(m.state_dict())
    x = _x(32, h, 5)
    rows = -(-h // area)
    with torch.no_grad():
        # the 1×1 projections act per pixel, so each strip can be projected alone
        expected = torch.cat([glob(x[:, :, r : r + rows]) for r in range(0, h, rows)], 2)
        torch.testing.assert_close(m(x), expected, atol=1e-5, rtol=1e-4)


def test_a2c2f_width_rule_and_gamma() -> None:
    with pytest.raises(ValueError, match="A2C2f.*multiple of 32"):
        attnzoo.create("a2c2f", 48)
    m = attnzoo.create("a2c2f", 128, residual=True)
    assert m.m[0][0].attn.heads == 2 and torch.all(m.gamma == 0.01)
    assert attnzoo.create("a2c2f", 48, heads=3).width == 24
    with pytest.raises(ValueError, match="out_channels"):
        attnzoo.create("a2c2f", 64, out_channels=128, residual=True)
    assert attnzoo.create("a2c2f", 64, out_channels=128)(_x(64, 5, 5)).shape == (2, 128, 5, 5)


@pytest.mark.faithful("aifi")
@pytest.mark.parametrize("pos, size", [("yx", (6, 10)), ("yx", (7, 7)), ("rtdetr", (8, 8))])
def test_aifi_equals_ultralytics(pos, size) -> None:
    """Ultralytics 8.4 builds the correct grid with the y blocks first (``pos="yx"``); on square maps that is
    also the official RT-DETR grid (``pos="rtdetr"``)."""
    ours = attnzoo.create("aifi", 64, heads=8, dim_feedforward=128, pos=pos)
    _parity(ours, ul_transformer.AIFI(64, 128, 8), _x(64, *size), atol=1e-6)  # its table is built in float32


@pytest.mark.faithful("aifi")
def test_aifi_is_a_post_norm_encoder_layer_on_positioned_queries() -> None:
    """Zero positions: AIFI is ``nn.TransformerEncoderLayer`` (post-norm, GELU) on the row-major tokens."""
    m = randomize(attnzoo.create("aifi", 32, heads=4, dim_feedforward=64), seed=1, scale=0.2).eval()
    ref = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, activation="gelu", batch_first=True).eval()
    sd = {"self_attn.in_proj_weight": m.ma.in_proj_weight, "self_attn.in_proj_bias": m.ma.in_proj_bias,
          "self_attn.out_proj.weight": m.ma.out_proj.weight, "self_attn.out_proj.bias": m.ma.out_proj.bias,
          "linear1.weight": m.fc1.weight, "linear1.bias": m.fc1.bias, "linear2.weight": m.fc2.weight,
          "linear2.bias": m.fc2.bias, "norm1.weight": m.norm1.weight, "norm1.bias": m.norm1.bias,
          "norm2.weight": m.norm2.weight, "norm2.bias": m.norm2.bias}
    ref.load_state_dict({k: v.detach() for k, v in sd.items()})
    x = _x(32, 5, 3)
    t = x.flatten(2).transpose(1, 2)
    # positions enter only through q and k: with a table of zeros AIFI is the plain layer
    from attnzoo.self_attention import aifi as aifi_module

    orig = aifi_module.position_table
    aifi_module.position_table = lambda x, temperature, order: torch.zeros(x.shape[2] * x.shape[3], x.shape[1])
    try:
        with torch.no_grad():
            got = m(x)
    finally:
        aifi_module.position_table = orig
    with torch.no_grad():
        torch.testing.assert_close(got.flatten(2).transpose(1, 2), ref(t), atol=1e-5, rtol=1e-4)


def test_aifi_checks_its_width() -> None:
    with pytest.raises(ValueError, match="AIFI.*multiple of 4"):
        attnzoo.create("aifi", 30, heads=2)
    with pytest.raises(ValueError, match="AIFI.*heads"):
        attnzoo.create("aifi", 32, heads=3)


def _cglu_tokens(m, x: torch.Tensor) -> torch.Tensor:
    """TransNeXt's token form: Linear → split → GELU(DWConv(a)) ⊙ v → Linear, on B×N×C tokens."""
    b, c, h, w = x.shape
    t = x.flatten(2).transpose(1, 2)
    a, v = F.linear(t, m.fc1.weight.flatten(1), m.fc1.bias).chunk(2, -1)
    a_map = a.transpose(1, 2).reshape(b, -1, h, w)
    a = F.conv2d(a_map, m.dwconv.weight, m.dwconv.bias, padding=1, groups=a_map.shape[1]).flatten(2).transpose(1, 2)
    y = F.linear(F.gelu(a) * v, m.fc2.weight.flatten(1), m.fc2.bias)
    return y.transpose(1, 2).reshape(b, c, h, w)


@pytest.mark.faithful("cglu")
def test_cglu_equals_the_token_form_and_counts_params() -> None:
    m = randomize(attnzoo.create("cglu", 24), seed=3, scale=0.2).eval()
    x = _x(24, 7, 5)
    torch.testing.assert_close(m(x), _cglu_tokens(m, x), atol=1e-5, rtol=1e-4)
    h, c = 16, 24  # h = int(2·24/3)
    assert sum(p.numel() for p in m.parameters()) == 2 * h * c + 2 * h + 10 * h + h * c + c
    res = attnzoo.create("cglu", 24, residual=True).eval()
    res.load_state_dict(m.state_dict())
    torch.testing.assert_close(res(x), x + m(x))


@pytest.mark.faithful("cglu")
def test_cglu_output_sees_a_3x3_neighbourhood() -> None:
    m = randomize(attnzoo.create("cglu", 8), seed=0, scale=0.3)
    x = _x(8, 9, 9, b=1).requires_grad_()
    m(x)[0, :, 4, 4].sum().backward()
    support = x.grad.abs().sum((0, 1)) > 0
    expected = torch.zeros(9, 9, dtype=torch.bool)
    expected[3:6, 3:6] = True
    assert torch.equal(support, expected)


# ----- pluggable insides -----------------------------------------------------------------------------------


@pytest.mark.parametrize("inner", ["ema", "cbam", "simam", "ela"])
@pytest.mark.parametrize("host", ["c2psa", "psa", "a2c2f", "aifi"])
def test_any_gate_goes_inside_a_host(host, inner) -> None:
    c = 128
    m = attnzoo.create(host, c, attn=inner)
    inner_cls = type(attnzoo.create(inner, 64 if host != "aifi" else c))
    found = [mod for mod in m.modules() if isinstance(mod, inner_cls)]
    assert found, f"{host} has no {inner} inside"
    x = _x(c, 9, 7).requires_grad_()
    with attnzoo.capture_attention(m) as maps:
        y = m(x)
    y.sum().backward()
    assert y.shape == x.shape and torch.isfinite(x.grad).all()
    inner_names = [n for n, mod in m.named_modules() if isinstance(mod, inner_cls)]
    assert set(inner_names) & set(maps), f"the {inner} maps are not captured under the host's names: {list(maps)}"
    for p in m.parameters():
        assert p.grad is not None


def test_default_attention_maps_are_captured_inside_the_host() -> None:
    m = attnzoo.create("c2psa", 128, num_repeats=2).eval()
    with attnzoo.capture_attention(m) as maps:
        m(_x(128, 4, 5))
    assert set(maps) == {"m.0.attn", "m.1.attn"} and maps["m.0.attn"]["attn"].shape == (2, 1, 20, 20)
    aifi = attnzoo.create("aifi", 32, heads=4)
    with attnzoo.capture_attention(aifi) as maps:
        aifi(_x(32, 3, 5))
    assert set(maps) == {"ma"} and maps["ma"]["attn"].shape == (2, 4, 15, 15)


def test_inside_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="C2PSA: attn='dysample'.*shape"):
        attnzoo.create("c2psa", 64, attn="dysample")
    with pytest.raises(ValueError, match="A2C2f: attn='fpn'"):
        attnzoo.create("a2c2f", 64, attn="fpn")
    with pytest.raises(ValueError, match="did you mean"):
        attnzoo.create("c2psa", 64, attn="emaa")
    with pytest.raises(ValueError, match="C2PSA: attn='ema' at the block's inner width 8"):
        attnzoo.create("c2psa", 16, attn="ema")

    class Shrink(nn.Module):
        def forward(self, x):
            return x[..., :-1]

    with pytest.raises(ValueError, match="AIFI: the attn module must return its input's shape"):
        attnzoo.create("aifi", 32, attn=Shrink())(_x(32, 4, 4))


def test_a_module_inside_is_copied_per_block_and_a_factory_is_called_per_block() -> None:
    gate = attnzoo.create("se", 32)
    m = attnzoo.create("c2psa", 64, num_repeats=2, attn=gate)
    assert m.m[0].attn is not gate and m.m[0].attn is not m.m[1].attn
    widths = []
    m = attnzoo.create("a2c2f", 64, attn=lambda c: widths.append(c) or attnzoo.create("eca", c))
    assert widths == [32, 32] and isinstance(m.m[0][1].attn, attnzoo.EfficientChannelAttention)

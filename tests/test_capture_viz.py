"""``attnzoo.capture_attention`` (documented map shapes, outputs unchanged, input sizes) and ``attnzoo.viz``
(``overlay`` PNG size and panel kinds, the ``attnzoo viz`` command with a fresh model and with checkpoints)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

import attnzoo
from attnzoo import viz, viz_cli
from attnzoo.cli import main as cli_main
from helpers import require

require("matplotlib")
from PIL import Image  # noqa: E402  (a matplotlib dependency)

B, C, H, W = 2, 16, 9, 7

#: The shapes documented in attnzoo/capture.py (and docs/integrations.md) for the gates.
DOCUMENTED = {
    "se": {"gate": (B, C, 1, 1)},
    "eca": {"gate": (B, C, 1, 1)},
    "cbam_channel": {"gate": (B, C, 1, 1)},
    "cbam_spatial": {"gate": (B, 1, H, W)},
    "cbam": {"channel": (B, C, 1, 1), "spatial": (B, 1, H, W)},
    "triplet": {"gate": (B, C, H, W)},
    "coord": {"gate_h": (B, C, H, 1), "gate_w": (B, C, 1, W)},
    "sk": {"branch_weights": (B, 2, C, 1, 1)},
}

NCHW = [n for n in attnzoo.list_modules() if attnzoo.info(n).layout == "nchw"]


def build(name: str, channels: int = C) -> nn.Module:
    torch.manual_seed(0)
    return attnzoo.create(name, channels, **attnzoo.info(name).test_kwargs).eval()


@pytest.mark.parametrize("name", list(DOCUMENTED))
def test_documented_gate_map_shapes_and_values(name):
    m = build(name)
    x = torch.randn(B, C, H, W)
    ref = m(x)
    with attnzoo.capture_attention(m) as maps:
        out = m(x)
    assert torch.equal(out, ref)
    assert set(maps) == {""} and maps.input_sizes == {"": (H, W)}
    got = {k: tuple(v.shape) for k, v in maps[""].items()}
    assert got == DOCUMENTED[name]
    for v in maps[""].values():
        assert not v.requires_grad
        assert (v >= 0).all() and (v <= 1).all()  # gates are sigmoids, branch weights a softmax
    if name in ("se", "eca", "cbam_channel"):  # the gate really is what multiplies x
        torch.testing.assert_close(out, x * maps[""]["gate"])
    if name == "sk":
        torch.testing.assert_close(maps[""]["branch_weights"].sum(1), torch.ones(B, C, 1, 1))


@pytest.mark.parametrize("name", NCHW)
def test_capture_does_not_change_outputs_and_every_map_draws(name, tmp_path):
    m = build(name)
    x = torch.randn(B, C, H, W)
    with torch.no_grad():
        ref = m(x)
        with attnzoo.capture_attention(m) as maps:
            out = m(x)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)  # explicit softmax instead of the fused kernel
    assert not attnzoo.capture.is_capturing(m)
    for mod in m.modules():  # nothing left behind
        assert "_attnzoo_maps" not in mod.__dict__ and not mod._forward_pre_hooks
    for key_maps in maps.values():
        for t in key_maps.values():
            assert isinstance(t, torch.Tensor) and not t.requires_grad and torch.isfinite(t).all()
    items = viz.panels(maps)
    assert len(items) == sum(len(v) for v in maps.values())
    # a module records maps iff it or a registered module inside it (DANet's branches, the block's attention)
    # declares some: a module that declares maps cannot pass by recording nothing
    by_class = {attnzoo.info(n).cls: attnzoo.info(n).maps for n in attnzoo.list_modules()}
    # (an unregistered inner block of a host, e.g. C2PSA's default attention, declares its keys as a class attribute)
    declared = {p: by_class.get(type(sub)) or getattr(type(sub), "maps", ()) for p, sub in m.named_modules()}
    declared = {p: keys for p, keys in declared.items() if keys}
    assert bool(items) == bool(declared), f"{name}: declared maps {declared}, recorded {sorted(maps)}"
    path = viz.overlay(torch.rand(3, 36, 28), maps, tmp_path / "maps.png", panel=64)
    with Image.open(path) as im:  # panels 64 wide, 64·36/28 = 82 high (the image's aspect)
        assert im.size == (min(4, len(items) + 1) * 64, math.ceil((len(items) + 1) / 4) * 82)


def test_capture_in_a_network_names_and_sizes():
    torchvision = require("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    _, report = attnzoo.insert(model, "cbam")
    x = torch.randn(1, 3, 64, 64)
    ref = model(x)
    with attnzoo.capture_attention(model) as maps:
        out = model(x)
    assert torch.equal(out, ref)
    assert list(maps) == [r.name for r in report]
    sizes = {"layer1": 16, "layer2": 8, "layer3": 4, "layer4": 2}
    for r in report:
        s = sizes[r.name.split(".")[0]]
        assert maps.input_sizes[r.name] == (s, s)
        assert tuple(maps[r.name]["spatial"].shape) == (1, 1, s, s)
        assert tuple(maps[r.name]["channel"].shape) == (1, r.channels, 1, 1)
    # outside the block nothing is recorded and the maps stay as they were
    model(torch.randn(1, 3, 64, 64))
    assert all(len(v) == 2 for v in maps.values())


@pytest.mark.parametrize(
    "name, kwargs, args, shape",
    [
        ("global_attention", {"heads": 2, "dim_head": 4}, ((2, 8, 6, 5),), (2, 2, 30, 30)),
        ("nonlocal", {"mode": "dot_product", "subsample": False}, ((2, 8, 6, 5),), (2, 1, 30, 30)),
        ("mhsa", {"heads": 2}, ((2, 30, 8),), (2, 2, 30, 30)),
    ],
)
def test_capture_refuses_maps_above_max_elements(name, kwargs, args, shape):
    m = attnzoo.create(name, 8, **kwargs).eval()
    xs = [torch.randn(*a) for a in args]
    numel = math.prod(shape)
    with attnzoo.capture_attention(m, max_elements=numel) as maps:  # exactly at the limit: recorded
        m(*xs)
    assert tuple(next(iter(maps[""].values())).shape) == shape
    with attnzoo.capture_attention(m, max_elements=numel - 1):
        with pytest.raises(ValueError, match=rf"{type(m).__name__}.*{'×'.join(map(str, shape))} = {numel:,} elements.*max_elements={numel - 1:,}"):
            m(*xs)
    assert not hasattr(m, "_attnzoo_max_elements") and not hasattr(m, "_attnzoo_maps")  # nothing left behind
    with attnzoo.capture_attention(m, max_elements=None) as maps:
        m(*xs)
    assert maps[""]
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="max_elements"):
            with attnzoo.capture_attention(m, max_elements=bad):
                pass


def test_panel_kinds():
    sizes = {"g": (9, 7), "a": (9, 7), "nl": (9, 7)}
    probs = torch.softmax(torch.randn(2, 3, 63, 20), -1)  # non-local keys on a 2×2-pooled 5×4 grid
    maps = {
        "g": {"spatial": torch.rand(2, 1, 9, 7), "channel": torch.rand(2, 16, 1, 1), "rows": torch.rand(2, 16, 9, 1)},
        "a": {"attn": torch.softmax(torch.randn(2, 2, 63, 63), -1), "channels": torch.softmax(torch.randn(2, 16, 16), -1)},
        "nl": {"attn": probs},
        "sk": {"branch_weights": torch.rand(2, 2, 16, 1, 1)},
    }
    got = {title: (kind, tuple(data.shape)) for title, kind, data in viz.panels(maps, sizes)}
    assert got == {
        "g:spatial": ("heat", (9, 7)),
        "g:channel": ("bars", (16,)),
        "g:rows": ("heat", (9, 1)),
        "a:attn": ("heat", (9, 7)),
        "a:channels": ("matrix", (16, 16)),
        "nl:attn": ("heat", (5, 4)),
        "sk:branch_weights": ("matrix", (2, 16)),
    }
    heat = dict((t, d) for t, _, d in viz.panels(maps, sizes))["nl:attn"]
    torch.testing.assert_close(heat, probs[0].mean((0, 1)).reshape(5, 4))  # attention received per key
    assert viz.panels({"x": {"m": torch.rand(2, 1, 9, 7)}}, sample=1)[0][2].shape == (9, 7)


def test_maps_that_are_a_distribution_at_each_position_draw_their_maximum():
    """External attention's map sums to 1 over its S memory units at every position (and double attention's
    ``distribute`` over its descriptors): their mean is the constant 1/S, so the panel is their maximum, and says
    so.  A map that is not a distribution keeps its mean; a 1-D module's map follows the same rule."""
    ea = attnzoo.create("external_attention", 16, memory=8).eval()
    with torch.no_grad(), attnzoo.capture_attention(ea) as maps:
        ea(torch.randn(2, 16, 9, 7))
    attn = maps[""]["attn"][1]  # S×H×W
    torch.testing.assert_close(attn.sum(0), torch.ones(9, 7))  # the premise: a distribution over the units
    (title, kind, data), = viz.panels(maps, sample=1)
    assert kind == "heat" and title == "attn max of 8"
    torch.testing.assert_close(data, attn.amax(0))
    assert float(data.max() - data.min()) > 1e-3  # not the flat 1/S
    da = attnzoo.create("double_attention", 16).eval()
    with torch.no_grad(), attnzoo.capture_attention(da) as maps:
        da(torch.randn(1, 16, 6, 5))
    titles = {t.split(" ")[0]: t for t, _, _ in viz.panels(maps)}
    assert titles["distribute"] == "distribute max of 4" and titles["gather"] == "gather"
    gate = torch.rand(1, 4, 6, 5)  # not normalised: the mean, no note
    (title, _, data), = viz.panels({"g": gate})
    assert title == "g" and torch.allclose(data, gate[0].mean(0))
    strip = torch.softmax(torch.randn(1, 3, 11), 1)  # 1-D: three weights per position of an L=11 signal
    (title, kind, data), = viz.panels({"w": strip}, dims=1)
    assert kind == "strip" and title == "w max of 3" and torch.equal(data, strip[0].amax(0))


def test_overlay_sizes_and_inputs(tmp_path):
    import numpy as np

    maps = {"a": {"g": torch.rand(1, 1, 5, 5)}, "b": {"g": torch.rand(1, 8, 1, 1)}}
    img_u8 = (np.random.default_rng(0).random((40, 30, 3)) * 255).astype(np.uint8)
    Image.fromarray(img_u8).save(tmp_path / "in.png")
    for image in (tmp_path / "in.png", img_u8, torch.randn(1, 3, 40, 30), torch.rand(40, 30)):
        path = viz.overlay(image, maps, tmp_path / "o.png", columns=2, panel=100)
        with Image.open(path) as im:
            assert im.size == (200, 2 * 133)  # 3 panels in 2 columns, each 100 wide and 100·40/30 high
    path = viz.overlay(img_u8, [torch.rand(1, 1, 4, 4)] * 5, tmp_path / "p.png", columns=3, panel=50)
    with Image.open(path) as im:
        assert im.size == (150, 2 * 67)
    with pytest.raises(ValueError, match="columns"):
        viz.overlay(img_u8, maps, tmp_path / "x.png", columns=0)
    with pytest.raises(ValueError, match="image"):
        viz.overlay(torch.rand(5, 40, 30, 2), maps, tmp_path / "x.png")
    with pytest.raises(ValueError, match="tensor"):
        viz.overlay(img_u8, {"a": {"g": [1, 2]}}, tmp_path / "x.png")


@pytest.fixture()
def image_file(tmp_path):
    import numpy as np

    img = (np.random.default_rng(1).random((50, 40, 3)) * 255).astype(np.uint8)
    p = tmp_path / "photo.png"
    Image.fromarray(img).save(p)
    return p


def test_cli_viz_fresh_model(image_file, tmp_path, capsys):
    require("torchvision")
    out = tmp_path / "out.png"
    assert cli_main(["viz", "--module", "cbam", "--image", str(image_file), "--output", str(out), "--size", "64",
                     "--columns", "6", "--panel", "64", "--arg", "kernel_size=3"]) == 0
    assert "inserted 8 × cbam" in capsys.readouterr().out
    with Image.open(out) as im:
        assert im.size == (6 * 64, 3 * 80)  # image + 8 blocks × (channel, spatial) = 17 panels, 64×80 (the 4:5 photo)


def test_cli_viz_checkpoints(image_file, tmp_path, monkeypatch):
    torchvision = require("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None)
    attnzoo.insert(model, "se", where=["layer4"])
    torch.save(model, tmp_path / "whole.pt")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match="--unsafe-load-pickle"):  # a whole pickled model runs code: refused by default
        cli_main(["viz", "--module", "se", "--image", str(image_file), "--checkpoint", "whole.pt"])
    assert cli_main(["viz", "--module", "se", "--image", str(image_file), "--checkpoint", "whole.pt",
                     "--unsafe-load-pickle", "--size", "64", "--panel", "64"]) == 0
    with Image.open(tmp_path / "photo-se-maps.png") as im:  # default output name; image + one gate
        assert im.size == (2 * 64, 80)
    # a state dict of resnet18 with eca inserted
    model = torchvision.models.resnet18(weights=None)
    attnzoo.insert(model, "eca")
    torch.save(model.state_dict(), tmp_path / "state.pt")
    assert cli_main(["viz", "--module", "eca", "--image", str(image_file), "--checkpoint", "state.pt",
                     "--size", "64", "--panel", "64", "--output", "s.png"]) == 0
    with Image.open(tmp_path / "s.png") as im:
        assert im.size == (4 * 64, 3 * 80)  # 9 panels
    with pytest.raises(ValueError, match="did you mean"):
        cli_main(["viz", "--module", "cbma", "--image", str(image_file)])


def _texts(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def test_overlay_colour_bars_fixed_gate_scale_and_constant_notes():
    """Every heat map and matrix has a colour bar; gates use [0, 1], other maps their real range; (nearly)
    constant maps say so; ``scale="data"`` stretches every map over its own range."""
    gen = torch.Generator().manual_seed(0)
    sizes = {"g": (9, 7), "p": (9, 7)}
    probs = torch.softmax(torch.randn(1, 2, 63, 63, generator=gen) * 3, -1)
    maps = {
        "g": {"flat": torch.full((1, 1, 9, 7), 0.5), "near": 0.49 + 0.004 * torch.rand(1, 1, 9, 7, generator=gen),
              "varied": torch.rand(1, 1, 9, 7, generator=gen), "channel": torch.rand(1, 16, 1, 1, generator=gen)},
        "p": {"attn": probs},
        "x": {"feat": 3 * torch.randn(1, 4, 9, 7, generator=gen)},
    }
    fig = viz._figure(torch.rand(3, 36, 28), maps, panel=96, sizes={**sizes, "x": (9, 7)})
    heats = {}
    for ax in fig.axes:
        title = next((t.get_text() for t in ax.texts if ":" in t.get_text()), ax.get_title())
        for im in ax.images[1:]:  # the overlay on top of the photo
            heats[title.split(" ")[0]] = im
    assert sorted(heats) == ["g:flat", "g:near", "g:varied", "p:attn", "x:feat"]
    for name, im in heats.items():
        assert im.colorbar is not None, f"{name}: no colour bar"
    for name in ("g:flat", "g:near", "g:varied"):
        assert (heats[name].norm.vmin, heats[name].norm.vmax) == (0.0, 1.0), name
    attn = viz.panels(maps, sizes)[4][2]
    assert heats["p:attn"].norm.vmin == pytest.approx(float(attn.min()))  # probabilities: their own range
    assert heats["p:attn"].norm.vmax == pytest.approx(float(attn.max()))
    feat = maps["x"]["feat"][0].mean(0)
    assert heats["x:feat"].norm.vmin == pytest.approx(float(feat.min()))
    texts = _texts(fig)
    assert "constant 0.5" in texts
    assert sum(t.startswith("nearly constant 0.49") for t in texts) == 1
    assert not [t for t in texts if "constant" in t and t not in ("constant 0.5",) and not t.startswith("nearly")]
    bars = next(ax for ax in fig.axes if ax.get_title().startswith("g:channel"))
    assert bars.get_ylim() == (0.0, 1.0)  # a channel gate on the fixed scale too
    data = viz._figure(torch.rand(3, 36, 28), {"g": {"near": maps["g"]["near"]}}, panel=96, sizes=sizes, scale="data")
    im = [im for ax in data.axes for im in ax.images][2]
    assert im.norm.vmin == pytest.approx(float(maps["g"]["near"].min())) and im.colorbar is not None
    with pytest.raises(ValueError, match="scale"):
        viz._figure(torch.rand(3, 8, 8), maps, scale="stretch")


def test_colour_bar_ticks_are_the_range_with_distinct_labels():
    # min, middle and max, with the fewest digits that tell them apart: a narrow gate range never reads "0.5" thrice
    assert viz.colorbar_ticks(0.497, 0.503) == ([0.497, 0.5, 0.503], ["0.497", "0.5", "0.503"])
    values, labels = viz.colorbar_ticks(0.0263, 0.0625)
    assert values == [0.0263, pytest.approx(0.0444), 0.0625] and labels == ["0.026", "0.044", "0.062"]
    assert viz.colorbar_ticks(-3.2, 2.9)[1] == ["-3.2", "-0.15", "2.9"]
    assert viz.colorbar_ticks(4.5e-5, 1.0)[1] == ["0", "0.5", "1"]  # not "4.5e-05"
    assert viz.colorbar_ticks(0.5, 0.5) == ([0.5], ["0.5"])
    for lo, hi in ((0.123456, 0.123457), (1e-7, 3e-7), (-2.0, -1.999)):
        labels = viz.colorbar_ticks(lo, hi)[1]
        assert len(set(labels)) == 3, labels


def test_constancy_note_and_value_range():
    assert viz.constancy_note(torch.full((3, 3), 0.5)) == "constant 0.5"
    assert viz.constancy_note(torch.tensor([0.020, 0.0204]), (0.020, 0.0204)) == "nearly constant 0.02–0.0204"
    assert viz.constancy_note(torch.tensor([0.45, 0.52]), (0.0, 1.0)) is None  # 7 % of the [0, 1] scale
    assert viz.constancy_note(torch.tensor([0.1, 0.9]), (0.0, 1.0)) is None
    assert viz.value_range(torch.tensor([0.4, 0.6]), gate=True) == (0.0, 1.0)
    assert viz.value_range(torch.tensor([0.4, 0.6]), gate=True, scale="data") == (pytest.approx(0.4), pytest.approx(0.6))
    lo, hi = viz.value_range(torch.full((2,), 3.0), gate=False)
    assert lo < 3.0 < hi


def test_overlay_keeps_the_image_aspect(tmp_path):
    maps = {"g": {"s": torch.rand(1, 1, 6, 9)}}
    for h, w in ((40, 60), (60, 40), (32, 32)):
        fig = viz._figure(torch.rand(3, h, w), maps, panel=120, columns=2)
        photo = fig.axes[0].images[0]
        assert photo.get_array().shape[:2] == (h, w)
        assert fig.axes[0].get_aspect() == 1.0  # "equal": pixels stay square
        path = viz.overlay(torch.rand(3, h, w), maps, tmp_path / "a.png", panel=120, columns=2)
        with Image.open(path) as im:
            assert im.size == (240, viz.panel_height(120, (h, w)))
            assert abs(im.size[1] / 120 - h / w) < 0.02
    assert viz_cli.network_size((50, 40), 64) == (80, 64) and viz_cli.network_size((480, 640), 224) == (224, 296)


def test_cli_viz_says_an_untrained_cbam_spatial_gate_is_constant(image_file, tmp_path, monkeypatch):
    require("torchvision")
    seen = []
    real = viz._figure
    monkeypatch.setattr(viz, "_figure", lambda *a, **k: seen.append(real(*a, **k)) or seen[-1])
    assert cli_main(["viz", "--module", "cbam", "--image", str(image_file), "--output", str(tmp_path / "c.png"),
                     "--size", "64", "--panel", "64"]) == 0
    texts = _texts(seen[0])
    spatial = [t for t in texts if t.startswith("layer") and ":spatial" in t]
    assert len(spatial) == 8 and texts.count("constant 0.5") == 8  # CBAM's spatial gate starts at sigmoid(0)


# ----------------------------------------------------------------------------------------------------------------
# 1-D and 3-D maps: the rank comes from the recorded input size (the module's dims), never from the last two dims


def _nd(name: str, dims: int, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    return attnzoo.create(name, 8, dims=dims, **{**attnzoo.info(name).test_kwargs, **kwargs}).eval()


def test_3d_maps_draw_as_a_slice_montage(tmp_path):
    """A 3-D gate B×C×D×H×W (SimAM's, averaged over channels): the middle slice, the maximum over D, then evenly
    spaced slices, each over the image on one colour scale; the figure's overlays are exactly those slices resized
    to the image."""
    import numpy as np
    import torch.nn.functional as F

    m = _nd("simam", 3)
    with torch.no_grad(), attnzoo.capture_attention(m) as maps:
        m(torch.randn(2, 8, 5, 6, 7))
    assert maps.input_sizes == {"": (5, 6, 7)}
    gate = maps[""]["gate"][1].mean(0)  # sample 1, averaged over channels
    assert float(gate.max() - gate.min()) > 0.01
    got = viz.panels(maps, sample=1, slices=3)
    assert [(t, k) for t, k, _ in got] == [
        ("gate D=2/5", "heat"), ("gate max over D", "heat"), ("gate D=0/5", "heat"), ("gate D=2/5", "heat"),
        ("gate D=4/5", "heat")]
    for (_, _, data), ref in zip(got, (gate[2], gate.amax(0), gate[0], gate[2], gate[4])):
        torch.testing.assert_close(data, ref, rtol=1e-6, atol=0)
    assert len(viz.panels(maps)) == 2 and len(viz.panels(maps, slices=9)) == 2 + 5  # at most D slices
    fig = viz._figure(torch.rand(3, 24, 28), maps, panel=64, sample=1, slices=3, scale="data")
    overlays = [ax.images[1] for ax in fig.axes if len(ax.images) == 2]
    assert len(overlays) == 5
    for im, ref in zip(overlays, (gate[2], gate.amax(0), gate[0], gate[2], gate[4])):
        expected = F.interpolate(ref[None, None], size=(24, 28), mode="bilinear", align_corners=False)[0, 0]
        np.testing.assert_allclose(np.asarray(im.get_array()), expected.numpy(), rtol=1e-6)
        assert (im.norm.vmin, im.norm.vmax) == (pytest.approx(float(gate.min())), pytest.approx(float(gate.max())))
    path = viz.overlay(torch.rand(3, 24, 28), maps, tmp_path / "m.png", panel=64, columns=3, slices=3)
    with Image.open(path) as im:
        assert im.size == (3 * 64, 2 * 55)  # image + 5 slices in 3 columns, 64·24/28 = 55 high


def test_3d_attention_maps_on_their_key_grid_and_per_channel_gates():
    """3-D non-local with (1, 2, 2) subsampling: the attention each key receives on the pooled D×⌈H/2⌉×⌈W/2⌉
    grid; a channel gate B×C×1×1×1 is a bar chart; a 5-D map without a recorded size follows ``dims``."""
    m = _nd("nonlocal", 3, subsample=True)
    with torch.no_grad(), attnzoo.capture_attention(m) as maps:
        m(torch.randn(1, 8, 3, 6, 7))
    attn = maps[""]["attn"][0]  # 1×126×36
    received = attn.reshape(-1, attn.shape[-1]).mean(0).reshape(3, 3, 4)
    got = viz.panels(maps)
    assert [t for t, _, _ in got] == ["attn D=1/3", "attn max over D"]
    torch.testing.assert_close(got[0][2], received[1])
    torch.testing.assert_close(got[1][2], received.amax(0))
    se = _nd("se", 3)
    with attnzoo.capture_attention(se) as maps:
        se(torch.randn(1, 8, 3, 4, 5))
    assert [(k, tuple(d.shape)) for _, k, d in viz.panels(maps)] == [("bars", (8,))]
    vol = torch.rand(1, 1, 4, 5, 6)
    assert [k for _, k, _ in viz.panels({"v": vol})] == ["heat"]  # no size, dims 2: the last two dims (as before)
    got = viz.panels({"v": vol}, dims=3)
    assert [t for t, _, _ in got] == ["v D=2/4", "v max over D"] and torch.equal(got[0][2], vol[0, 0, 2])


def test_1d_maps_draw_as_a_strip_over_the_signal(tmp_path):
    import numpy as np

    m = _nd("simam", 1)
    x = torch.randn(1, 8, 30)
    with torch.no_grad(), attnzoo.capture_attention(m) as maps:
        m(x)
    assert maps.input_sizes == {"": (30,)}
    gate = maps[""]["gate"][0].mean(0)
    ((title, kind, data),) = viz.panels(maps)
    assert (title, kind) == ("gate", "strip")
    torch.testing.assert_close(data, gate, rtol=1e-6, atol=0)
    signal = torch.sin(torch.arange(60) / 5.0)
    fig = viz._figure(signal, maps, panel=96)
    strips = [ax for ax in fig.axes if ax.images and ax.get_title().startswith("gate")]
    assert len(strips) == 1
    np.testing.assert_allclose(np.asarray(strips[0].images[0].get_array()), gate[None].numpy(), rtol=1e-6)
    lines = [np.asarray(ln.get_ydata()) for ax in fig.axes for ln in ax.lines]
    assert any(len(y) == 30 and np.allclose(y, gate.numpy(), rtol=1e-6, atol=0) for y in lines)  # the line plot
    assert any(len(y) == 60 for y in lines)  # the signal
    gc = _nd("global_attention", 1, heads=2, dim_head=4)
    with torch.no_grad(), attnzoo.capture_attention(gc) as maps:
        gc(x)
    ((_, kind, data),) = viz.panels(maps)
    torch.testing.assert_close(data, maps[""]["attn"][0].mean((0, 1)))  # attention received per position
    assert kind == "strip"
    viz.overlay(signal, maps, tmp_path / "s.png", panel=64)


@pytest.mark.parametrize("dims", [1, 3])
def test_every_nd_module_map_draws(dims, tmp_path):
    """Every module with a 1-D / 3-D form: each map becomes a strip / montage slices (or bars and matrices), and
    the figure draws."""
    size = (13,) if dims == 1 else (3, 5, 4)
    for name in attnzoo.list_modules(dims=dims):
        m = _nd(name, dims)
        with torch.no_grad(), attnzoo.capture_attention(m) as maps:
            m(torch.randn(1, 8, *size))
        kinds = {k for _, k, _ in viz.panels(maps)}
        assert kinds <= {"strip" if dims == 1 else "heat", "bars", "matrix"}, name
        for _, k, data in viz.panels(maps):
            if k == "heat":
                assert data.dim() == 2 and data.shape[-1] <= size[-1], name
    fig = viz._figure(torch.rand(3, 20, 16), maps, panel=48)
    assert len(fig.axes) > 1


def test_nd_maps_that_cannot_be_drawn_raise():
    with pytest.raises(ValueError, match=r"cannot draw map 'g:odd' of shape \(2, 3, 4, 5\).*3-D module with input 5×6×7"):
        viz.panels({"g": {"odd": torch.rand(1, 2, 3, 4, 5)}}, {"g": (5, 6, 7)})
    with pytest.raises(ValueError, match="dims must be 1, 2 or 3"):
        viz.panels({"g": torch.rand(1, 4, 4)}, dims=4)
    with pytest.raises(ValueError, match="slices must be a non-negative integer"):
        viz.panels({"g": torch.rand(1, 4, 4)}, slices=-1)
    # a gate along D only (D×1×1) broadcasts over H×W, as it multiplies the map
    got = viz.panels({"g": {"d": torch.rand(1, 1, 5, 1, 1)}}, {"g": (5, 6, 7)})
    assert got[0][2].shape == (6, 7)


def test_cli_viz_nd(image_file, tmp_path, capsys):
    out = tmp_path / "clip.png"
    assert cli_main(["viz", "--module", "cbam", "--dims", "3", "--frames", "4", "--image", str(image_file), "--size",
                     "32", "--panel", "64", "--columns", "5", "--output", str(out), "--arg", "kernel_size=(1, 3, 3)"]) == 0
    assert "dims=3, input (1, 3, 4, 40, 32)" in capsys.readouterr().out
    with Image.open(out) as im:  # image + channel bars + 2 slices of the spatial gate
        assert im.size == (4 * 64, 80)
    signal = tmp_path / "ecg.txt"
    signal.write_text(" ".join(f"{math.sin(i / 3):.4f}" for i in range(50)))
    assert cli_main(["viz", "--module", "se", "--dims", "1", "--signal", str(signal), "--panel", "64",
                     "--output", str(tmp_path / "s.png")]) == 0
    with pytest.raises(SystemExit, match="--signal"):
        cli_main(["viz", "--module", "se", "--dims", "1"])
    with pytest.raises(SystemExit, match="supports dims"):
        cli_main(["viz", "--module", "coord", "--dims", "3", "--image", str(image_file)])

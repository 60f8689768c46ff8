"""``attnzoo.capture_attention`` (documented map shapes, outputs unchanged, input sizes) and ``attnzoo.viz``
(``overlay`` PNG size and panel kinds, the ``attnzoo viz`` command with a fresh model and with checkpoints)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

import attnzoo
from attnzoo import viz
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
    with Image.open(path) as im:
        assert im.size == (min(4, len(items) + 1) * 64, math.ceil((len(items) + 1) / 4) * 64)


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


def test_overlay_sizes_and_inputs(tmp_path):
    import numpy as np

    maps = {"a": {"g": torch.rand(1, 1, 5, 5)}, "b": {"g": torch.rand(1, 8, 1, 1)}}
    img_u8 = (np.random.default_rng(0).random((40, 30, 3)) * 255).astype(np.uint8)
    Image.fromarray(img_u8).save(tmp_path / "in.png")
    for image in (tmp_path / "in.png", img_u8, torch.randn(1, 3, 40, 30), torch.rand(40, 30)):
        path = viz.overlay(image, maps, tmp_path / "o.png", columns=2, panel=100)
        with Image.open(path) as im:
            assert im.size == (200, 200)  # 3 panels in 2 columns
    path = viz.overlay(img_u8, [torch.rand(1, 1, 4, 4)] * 5, tmp_path / "p.png", columns=3, panel=50)
    with Image.open(path) as im:
        assert im.size == (150, 100)
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
        assert im.size == (6 * 64, 3 * 64)  # image + 8 blocks × (channel, spatial) = 17 panels


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
        assert im.size == (2 * 64, 64)
    # a state dict of resnet18 with eca inserted
    model = torchvision.models.resnet18(weights=None)
    attnzoo.insert(model, "eca")
    torch.save(model.state_dict(), tmp_path / "state.pt")
    assert cli_main(["viz", "--module", "eca", "--image", str(image_file), "--checkpoint", "state.pt",
                     "--size", "64", "--panel", "64", "--output", "s.png"]) == 0
    with Image.open(tmp_path / "s.png") as im:
        assert im.size == (4 * 64, 3 * 64)  # 9 panels
    with pytest.raises(ValueError, match="did you mean"):
        cli_main(["viz", "--module", "cbma", "--image", str(image_file)])

"""Ultralytics YOLO: attnzoo modules in a model YAML (``attnzoo.integrations.ultralytics``).

The YOLO11 config of the first tests is Ultralytics' own ``yolo11n.yaml``, read at run time; three attnzoo rows
are inserted with ``insert_layers`` (no AGPL text is copied here).  The rows the ``parse_model`` wrapper rewrites
(multi / pair fusion, resample, pyramid necks + ``Select``) are tested on small configs with the real necks and
with stand-in modules registered under test-only names while a test runs, and on the example YAMLs in
docs/yolo/ (those of modules not registered yet are skipped, and checked with the stand-ins substituted).  Everything runs offline: Ultralytics' settings go to a
temporary folder, its online checks are off (``YOLO_OFFLINE``), nothing is auto-installed, AMP is off (no AMP
check download), plots are off and the font check (which would download Arial.ttf) is stubbed.
"""

from __future__ import annotations

import copy
import sys

import pytest

if "ultralytics" not in sys.modules:  # settings are read when ultralytics is imported
    from helpers import ultralytics_offline

    ultralytics_offline()

import re
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml

import attnzoo
from attnzoo.integrations import ultralytics as azu
from attnzoo.registry import ShapeRule, strided, upsampled
from attnzoo.testing import randomize
from helpers import require

ultralytics = require("ultralytics")
tasks = require("ultralytics.nn.tasks")

torch.set_num_threads(1)  # tiny tensors: a second thread only adds synchronisation on a loaded machine

#: (after row of yolo11.yaml, class name, args): after the P3 and P4 backbone C3k2 rows and after C2PSA (P5).
ROWS = [(4, "CBAM", ["c2"]), (6, "EfficientChannelAttention", ["c2"]), (10, "CoordinateAttention", ["c2"])]


@pytest.fixture()
def offline(monkeypatch):
    import ultralytics.data.utils as data_utils

    monkeypatch.setattr(data_utils, "check_font", lambda *a, **k: None)
    azu.register()


def write_cfg(tmp_path, scale: str = "n"):
    cfg = azu.insert_layers(f"yolo11{scale}.yaml", ROWS)
    return azu.save_yaml(cfg, tmp_path / f"yolo11{scale}-attnzoo.yaml")


def test_register_names_and_clashes(monkeypatch):
    names = azu.register()
    usable = {attnzoo.info(n).cls.__name__ for n in attnzoo.list_modules() if azu.row_kind(n)}
    hosts = {"PSA", "C2PSA", "A2C2f", "AIFI"}  # Ultralytics' names too: registered only under a prefix, silently
    assert set(names) == (usable - hosts) | {"Select"} and not hosts & set(names)
    assert all(getattr(tasks, h).__module__.startswith("ultralytics") for h in hosts)
    assert {"CBAM", "SqueezeExcite", "EfficientChannelAttention", "FeaturePyramidNetwork"} <= set(names)
    assert tasks.CBAM is attnzoo.CBAM and tasks.Select is azu.Select and azu.register() == names  # idempotent
    assert tasks.parse_model.attnzoo_original is not None  # wrapped once
    assert getattr(tasks.parse_model.attnzoo_original, "attnzoo_original", None) is None
    tokens = [n for n in attnzoo.list_modules() if attnzoo.info(n).layout in ("tokens", "temporal")]
    assert tokens and not {attnzoo.info(n).cls.__name__ for n in tokens} & set(names)
    with pytest.raises(ValueError, match="layout"):
        azu.register(names=[tokens[0]])
    assert azu.register(names=["fpn"]) == {"FeaturePyramidNetwork": attnzoo.FeaturePyramidNetwork, "Select": azu.Select}
    assert azu.row_kind("cbam") == "nchw" and azu.row_kind("panet") == "pyramid"
    # the shape rule, not the family, makes a row rewritten: sk (family channel) may change channels and stride
    assert azu.row_kind("sk") == azu.row_kind("dysample") == "resample" and azu.row_kind("aff") == "pair"
    # a clash: skipped with a warning when registering everything, an error when asked for by name
    monkeypatch.setattr(tasks, "SqueezeExcite", object(), raising=False)
    with pytest.warns(UserWarning, match="SqueezeExcite"):
        got = azu.register()
    assert "SqueezeExcite" not in got and not isinstance(tasks.SqueezeExcite, type)
    with pytest.raises(ValueError, match="prefix"):
        azu.register(names=["se"])
    assert azu.register(prefix="Az", names=["se"]) == {"AzSqueezeExcite": attnzoo.SqueezeExcite}
    assert tasks.AzSqueezeExcite is attnzoo.SqueezeExcite
    monkeypatch.delattr(tasks, "AzSqueezeExcite")
    with pytest.raises(ValueError, match="prefix"):
        azu.register(prefix="1x")


def test_insert_layers_renumbers_from_indices():
    cfg = {
        "nc": 2,
        "backbone": [[-1, 1, "Conv", [16, 3, 2]], [-1, 1, "Conv", [32, 3, 2]], [-1, 1, "Conv", [64, 3, 2]]],
        "head": [[-1, 1, "nn.Upsample", [None, 2, "nearest"]], [[-1, 1], 1, "Concat", [1]], [[4, 2], 1, "Detect", ["nc"]]],
    }
    out = azu.insert_layers(cfg, [(1, "CBAM", ["c2"]), (1, "SqueezeExcite", ["c2"]), (2, "EfficientChannelAttention", ["c2"])])
    assert out["backbone"] == [
        [-1, 1, "Conv", [16, 3, 2]],
        [-1, 1, "Conv", [32, 3, 2]],
        [-1, 1, "CBAM", ["c2"]],  # 2: takes row 1
        [-1, 1, "SqueezeExcite", ["c2"]],  # 3: chained; now stands for old row 1
        [-1, 1, "Conv", [64, 3, 2]],  # 4 (old 2)
        [-1, 1, "EfficientChannelAttention", ["c2"]],  # 5: stands for old row 2
    ]
    assert out["head"] == [
        [-1, 1, "nn.Upsample", [None, 2, "nearest"]],  # 6 (old 3)
        [[-1, 3], 1, "Concat", [1]],  # old [-1, 1]: row 1 is now the SE output, 3
        [[7, 5], 1, "Detect", ["nc"]],  # old [4, 2]
    ]
    assert cfg["backbone"][2] == [-1, 1, "Conv", [64, 3, 2]]  # the input is not modified
    with pytest.raises(ValueError, match="row index"):
        azu.insert_layers(cfg, [(6, "CBAM", ["c2"])])


def test_rows_written_with_attnzoo_names_get_attnzoo_error(offline):
    """A row written with a registry name or alias ("ema", "CA") is not a class name: insert_layers and the
    registered parse_model say which class to write, instead of Ultralytics' bare KeyError."""
    cfg = {"nc": 2, "backbone": [[-1, 1, "Conv", [32, 3, 2]], [-1, 1, "Conv", [64, 3, 2]]], "head": [[[0, 1], 1, "Detect", ["nc"]]]}
    with pytest.raises(ValueError, match=r"insert_layers: row after 1: 'ema' is attnzoo module 'ema'; .*'EfficientMultiScaleAttention'"):
        azu.insert_layers(cfg, [(1, "ema", ["c2"])])
    assert azu.insert_layers(cfg, [(1, "EfficientMultiScaleAttention", ["c2"]), (1, "C3k2", [64])])["backbone"][2][2] == (
        "EfficientMultiScaleAttention"
    )  # class names and Ultralytics' own names pass
    bad = {**cfg, "backbone": cfg["backbone"] + [[-1, 1, "CA", []]]}
    with pytest.raises(ValueError, match=r"^YAML row 2 \(CA, from -1\): 'CA' is attnzoo module 'coord'; .*'CoordinateAttention'"):
        tasks.parse_model(bad, ch=3, verbose=False)


def test_attnzoo_name_error_names_the_class_itself_beside_a_prefixed_registration(offline):
    """With the class registered under its own name and under a prefix (another register(prefix=...) call in the
    same process), the error names the class's own name, whatever the order of the registrations."""
    azu.register(prefix="Az")
    assert tasks.__dict__.get("AzCoordinateAttention") is not None
    bad = {"nc": 2, "backbone": [[-1, 1, "Conv", [32, 3, 2]], [-1, 1, "CA", []]], "head": [[[0, 1], 1, "Detect", ["nc"]]]}
    with pytest.raises(ValueError, match=r"write the name register\(\) gave its class: 'CoordinateAttention'$"):
        tasks.parse_model(bad, ch=3, verbose=False)


@pytest.mark.parametrize("scale, widths", [("n", (128, 128, 256)), ("s", (256, 256, 512))])
def test_c2_token_gives_scaled_channels(offline, tmp_path, scale, widths):
    from ultralytics.nn.tasks import DetectionModel

    model = DetectionModel(str(write_cfg(tmp_path, scale)), verbose=False)  # also runs a stride forward at 256²
    attn = [m for m in model.model if isinstance(m, (attnzoo.CBAM, attnzoo.EfficientChannelAttention, attnzoo.CoordinateAttention))]
    assert [type(m).__name__ for m in attn] == [r[1] for r in ROWS]
    assert tuple(m.channels for m in attn) == widths
    for m in attn:  # the row before each module outputs exactly its channels
        prev = model.model[m.i - 1]
        assert m.f == -1 and m.channels == prev.cv2.conv.out_channels  # C3k2 / C2PSA end with conv cv2


def make_dataset(tmp_path) -> Path:
    """Four 64×64 images (bright rectangles on dark noise) with YOLO-format labels, and the data YAML."""
    import cv2

    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    for sub in ("images/train", "labels/train"):
        (root / sub).mkdir(parents=True)
    for i in range(4):
        img = (rng.random((64, 64, 3)) * 60).astype(np.uint8)
        x0, y0 = rng.integers(4, 28, 2)
        w, h = rng.integers(12, 30, 2)
        img[y0:y0 + h, x0:x0 + w] = 220
        cv2.imwrite(str(root / f"images/train/{i}.png"), img)
        (root / f"labels/train/{i}.txt").write_text(f"0 {(x0 + w / 2) / 64:.5f} {(y0 + h / 2) / 64:.5f} {w / 64:.5f} {h / 64:.5f}\n")
    data = tmp_path / "data.yaml"
    data.write_text(f"path: {root}\ntrain: images/train\nval: images/train\nnames:\n  0: box\n")
    return data


def train_save_reload_export(
    tmp_path, cfg: Path, attn_types: list[str], params: tuple[int, int] | None = None, rtdetr: bool = False
) -> None:
    """Build ``cfg``, one epoch of two batches (imgsz 64, batch 2, CPU, AMP and plots off), reload ``last.pt``,
    export to ONNX and compare with onnxruntime.  ``attn_types``: the attnzoo layers' class names, in order.
    ``rtdetr``: an RT-DETR model (Ultralytics' ``RTDETR`` class; its output is B × 300 queries × ...)."""
    if rtdetr:
        from ultralytics import RTDETR as YOLO
    else:
        from ultralytics import YOLO

    data = make_dataset(tmp_path)
    model = YOLO(str(cfg))
    layers = list(model.model.model)
    attn_idx = [i for i, m in enumerate(layers) if type(getattr(m, "module", m)).__module__.split(".")[0] in ("attnzoo", __name__.split(".")[-1])]
    attn_idx = [i for i in attn_idx if not isinstance(layers[i], azu.Select)]
    assert [type(getattr(layers[i], "module", layers[i])).__name__ for i in attn_idx] == attn_types
    if params is not None:
        assert params[0] < sum(p.numel() for p in model.model.parameters()) < params[1]

    x = torch.rand(1, 3, 64, 64)
    model.model.eval()
    with torch.no_grad():
        y = model.model(x)
    y0 = y[0] if isinstance(y, (list, tuple)) else y
    assert (y0.shape[:2] == (1, 300)) if rtdetr else (y0.shape[:2] == (1, 4 + 80))  # RT-DETR: 300 queries
    assert torch.isfinite(y0).all()
    before = {i: {k: v.clone() for k, v in layers[i].state_dict().items()} for i in attn_idx}

    model.train(
        data=str(data), epochs=1, imgsz=64, batch=2, workers=0, device="cpu", amp=False, plots=False, val=False,
        project=str(tmp_path / "runs"), name="t", exist_ok=True, verbose=False, seed=0, deterministic=False,
    )
    last = tmp_path / "runs/t/weights/last.pt"
    assert last.exists()

    # reload: the attnzoo modules are back (attnzoo importable is all the unpickling needs) and were trained
    reloaded = YOLO(str(last))
    rlayers = list(reloaded.model.model)
    assert [type(getattr(rlayers[i], "module", rlayers[i])).__name__ for i in attn_idx] == attn_types
    changed = [
        any(not torch.equal(v.float(), before[i][k].float()) for k, v in rlayers[i].state_dict().items() if v.is_floating_point())
        for i in attn_idx if before[i]
    ]
    assert all(changed), "the training step must update the attnzoo modules"
    net = reloaded.model.float().eval()
    with torch.no_grad():
        ref = net(x)
    ref0 = ref[0] if isinstance(ref, (list, tuple)) else ref
    assert torch.isfinite(ref0).all()

    # export to ONNX (no onnxslim: simplify=False) and compare with onnxruntime
    ort = require("onnxruntime")
    onnx_path = reloaded.export(format="onnx", imgsz=64, simplify=False, dynamic=False)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    fused = YOLO(str(last)).model.float().fuse().eval()  # the exporter fuses Conv+BN too
    with torch.no_grad():
        want = fused(x)
    want0 = (want[0] if isinstance(want, (list, tuple)) else want).numpy()
    assert got.shape == want0.shape
    if rtdetr:  # top-k queries: rounding can swap queries of (nearly) equal score, so match rows as a set
        dist = torch.cdist(torch.from_numpy(got[0]).double(), torch.from_numpy(want0[0]).double())
        assert float(dist.min(1).values.max()) < 1e-3
    else:
        assert np.abs(got - want0).max() < 1e-3 * max(1.0, np.abs(want0).max())


@pytest.mark.slow
def test_yolo11n_with_attnzoo_trains_saves_reloads_exports(offline, tmp_path):
    train_save_reload_export(tmp_path, write_cfg(tmp_path), [r[1] for r in ROWS], params=(2_000_000, 3_500_000))


# ------------------------------------------------------------------------------------------------------------
# Rows the parse_model wrapper rewrites: multi / pair fusion, resample, pyramid necks + Select
# ------------------------------------------------------------------------------------------------------------
# Small stand-ins registered under test-only names (only while a test runs: the contract suite never sees
# them), with the signatures of the real modules: weighted_fusion, dysample / carafe, spd_conv, aff, and a
# pyramid neck that keeps each level's channels.


class StandInWeightedFusion(nn.Module):
    """multi: fast normalised fusion of n same-shape maps (as weighted_fusion), then a 1×1 conv."""

    def __init__(self, channels: int, num_inputs: int = 2, fusion: str = "fast") -> None:
        super().__init__()
        self.channels, self.num_inputs, self.fusion = channels, num_inputs, fusion
        self.weight = nn.Parameter(torch.ones(num_inputs))
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        if len(xs) != self.num_inputs or any(x.shape[1] != self.channels for x in xs):
            raise ValueError("StandInWeightedFusion: wrong inputs")
        w = torch.softmax(self.weight, 0) if self.fusion == "softmax" else F.relu(self.weight)
        if self.fusion != "softmax":
            w = w / (w.sum() + 1e-4)
        return self.proj(sum(w[i] * x for i, x in enumerate(xs)))


class StandInUpsample(nn.Module):
    """resample upsampler (as dysample / carafe): 1×1 conv then nearest ×scale, same channels."""

    def __init__(self, channels: int, scale: int = 2) -> None:
        super().__init__()
        self.channels, self.scale = channels, scale
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.proj(x), scale_factor=self.scale, mode="nearest")


class StandInSpaceToDepthConv(nn.Module):
    """resample downsampler (as spd_conv): zero-pad to a multiple of scale, space-to-depth, 3×3 conv + BN + SiLU."""

    def __init__(self, channels: int, out_channels: int | None = None, scale: int = 2) -> None:
        super().__init__()
        self.channels, self.scale = channels, scale
        self.out_channels = channels if out_channels is None else out_channels
        self.conv = nn.Conv2d(channels * scale * scale, self.out_channels, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(self.out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.scale
        x = F.pad(x, (0, (s - x.shape[3] % s) % s, 0, (s - x.shape[2] % s) % s))
        return F.silu(self.bn(self.conv(F.pixel_unshuffle(x, s))))


class StandInPairFusion(nn.Module):
    """pair (as aff): forward(x, y) = x·σ(conv(x + y)) + y·(1 − σ(conv(x + y))), same shapes."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.conv = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        m = torch.sigmoid(self.conv(x + y))
        return x * m + y * (1 - m)


class StandInLevelMixer(nn.Module):
    """pyramid without out_channels: every level keeps its channels (a 1×1 conv per level)."""

    def __init__(self, channels: list[int]) -> None:
        super().__init__()
        self.channels = list(channels)
        self.convs = nn.ModuleList(nn.Conv2d(c, c, 1) for c in channels)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [x + conv(x) for conv, x in zip(self.convs, xs)]


STAND_INS = {
    "test_weighted_fusion": (StandInWeightedFusion, {"family": "fusion", "layout": "multi"}),
    "test_upsample": (StandInUpsample, {"family": "resample", "shape": ShapeRule(size=upsampled("scale"))}),
    "test_spd_conv": (StandInSpaceToDepthConv, {"family": "resample", "shape": ShapeRule("out_channels", strided("scale"))}),
    "test_pair_fusion": (StandInPairFusion, {"family": "fusion", "layout": "pair_same"}),
    "test_level_mixer": (StandInLevelMixer, {"family": "fusion", "layout": "pyramid"}),
}
#: the example YAMLs' future attnzoo names -> stand-in YAML names
SUBSTITUTES = {"WeightedFusion": "StandInWeightedFusion", "DySample": "StandInUpsample", "SPDConv": "StandInSpaceToDepthConv"}
DOCS = Path(__file__).resolve().parents[1] / "docs" / "yolo"
#: example YAML -> (attnzoo YAML names it uses, Detect input widths at scale n, at s)
EXAMPLES = {
    "yolo11n-attnzoo-neck.yaml": (["PathAggregationNetwork"], (64, 128, 256), (128, 256, 512)),
    "yolo11n-bifpn-fusion.yaml": (["WeightedFusion"], (64, 64, 64), (128, 128, 128)),
    "yolo11n-dysample.yaml": (["DySample"], (64, 128, 256), (128, 256, 512)),
    "yolo11n-spdconv.yaml": (["SPDConv"], (64, 128, 256), (128, 256, 512)),
    "yolo11n-hsfpn-ela.yaml": (["HighLevelScreeningFPN"], (64, 64, 64), (128, 128, 128)),
    "yolo11n-gd.yaml": (["GatherDistributeNeck"], (128, 128, 256), (256, 256, 512)),
    "yolo11n-asf.yaml": (
        ["TripleFeatureEncoding", "ScaleSequenceFusion", "ChannelPositionAttention"], (64, 128, 256), (128, 256, 512)
    ),
}
#: the examples written before their modules existed, also run with the test stand-ins in their place
STAND_IN_EXAMPLES = ["yolo11n-bifpn-fusion.yaml", "yolo11n-dysample.yaml", "yolo11n-spdconv.yaml"]


@pytest.fixture()
def stand_ins(offline):
    added = []
    for name, (cls, kw) in STAND_INS.items():
        if name not in attnzoo.list_modules():
            attnzoo.register(name, paper="test stand-in", complexity="O(N)", **kw)(cls)
            added.append(name)
    try:
        yield azu.register(names=list(STAND_INS))
    finally:
        for name in added:
            attnzoo.registry.unregister(name)


def attnzoo_names() -> set[str]:
    return {attnzoo.info(n).cls.__name__ for n in attnzoo.list_modules()}


def assert_registered(names: list[str]) -> None:
    missing = sorted(set(names) - attnzoo_names())
    assert not missing, f"the example names {', '.join(missing)}, which attnzoo does not register"


def config(text: str, scale: str, subs: dict[str, str] | None = None) -> dict:
    for a, b in (subs or {}).items():
        text = re.sub(rf"\b{a}\b", b, text)
    d = yaml.safe_load(text)
    d["scale"] = scale
    return d


def parse(d: dict):
    """``parse_model`` as DetectionModel calls it (through the module global, i.e. the wrapper)."""
    import copy

    return tasks.parse_model(copy.deepcopy(d), ch=3, verbose=False)


def run(seq, save, x: torch.Tensor) -> list:
    """A forward of a bare parse_model result (as BaseModel._predict_once); returns every row's output."""
    outs, saved = [], []
    for m in seq:
        if m.f != -1:
            x = saved[m.f] if isinstance(m.f, int) else [x if j == -1 else saved[j] for j in m.f]
        x = m(x)
        outs.append(x)
        saved.append(x if m.i in save else None)
    return outs


def detect_widths(seq, outs) -> tuple[int, ...]:
    return tuple(outs[j].shape[1] for j in seq[-1].f)


SMALL = """
nc: 2
scales: {n: [1.0, 0.5, 1024], s: [1.0, 1.0, 1024]}
backbone:
  - [-1, 1, Conv, [32, 3, 2]]                                  # 0  /2
  - [-1, 1, StandInSpaceToDepthConv, [64]]                     # 1  /4, 64 (scaled like Conv's c2)
  - [-1, 1, Conv, [64, 3, 1]]                                  # 2  /4
  - [-1, 1, StandInSpaceToDepthConv, []]                       # 3  /8, keeps 64
head:
  - [-1, 1, StandInUpsample, []]                               # 4  /4
  - [[-1, 2], 1, StandInWeightedFusion, []]                    # 5  num_inputs 2
  - [[5, 2], 1, StandInPairFusion, []]                         # 6  forward(x5, x2)
  - [[-1, 4, 2], 1, StandInWeightedFusion, [{fusion: softmax}]] # 7  num_inputs 3, keyword args
  - [-1, 1, CBAM, [c2]]                                        # 8  nchw row: passed through as before
  - [[8, 3], 1, Detect, [nc]]                                  # 9
"""


@pytest.mark.parametrize("scale, w", [("n", 32), ("s", 64)])
def test_fusion_and_resample_rows(stand_ins, scale, w):
    seq, save = parse(config(SMALL, scale))
    kinds = [type(getattr(m, "module", m)).__name__ for m in seq]
    assert kinds == ["Conv", "StandInSpaceToDepthConv", "Conv", "StandInSpaceToDepthConv", "StandInUpsample",
                     "StandInWeightedFusion", "StandInPairFusion", "StandInWeightedFusion", "CBAM", "Detect"]
    assert [m.f for m in seq] == [-1, -1, -1, -1, -1, [-1, 2], [5, 2], [-1, 4, 2], -1, [8, 3]]
    assert [m.i for m in seq] == list(range(10)) and set(save) == {2, 3, 4, 5, 8}
    assert (seq[1].channels, seq[1].out_channels) == (w // 2, w)  # in: Conv 32 scaled; out: 64 scaled
    assert seq[3].out_channels == w and seq[4].channels == w
    assert (seq[5].channels, seq[5].num_inputs, seq[7].num_inputs, seq[7].fusion) == (w, 2, 3, "softmax")
    assert isinstance(seq[6], azu.PairInputs) and seq[6].module.channels == w and seq[8].channels == w
    assert seq[5].type.endswith("StandInWeightedFusion") and seq[5].np == sum(p.numel() for p in seq[5].parameters())
    outs = run(seq.train(), save, torch.rand(2, 3, 32, 32))
    assert [tuple(o.shape[1:]) for o in outs[1:9]] == [(w, 8, 8), (w, 8, 8), (w, 4, 4), (w, 8, 8)] + [(w, 8, 8)] * 4
    assert detect_widths(seq, outs) == (w, w)
    if scale == "n":  # the layer table (verbose) is printed by the wrapper
        seq2, save2 = tasks.parse_model(config(SMALL, scale), ch=3, verbose=True)
        assert save2 == save and [type(m) for m in seq2] == [type(m) for m in seq]


PYRAMID = """
nc: 2
scales: {n: [1.0, 0.5, 1024], s: [1.0, 1.0, 1024]}
backbone:
  - [-1, 1, Conv, [32, 3, 2]]   # 0 /2
  - [-1, 1, Conv, [64, 3, 2]]   # 1 /4  C3
  - [-1, 1, Conv, [96, 3, 2]]   # 2 /8  C4
  - [-1, 1, Conv, [128, 3, 2]]  # 3 /16 C5
head:
  - [[1, 2, 3], 1, PathAggregationNetwork, [48]]                 # 4 list of 3 maps, 48 scaled each
  - [4, 1, Select, [0]]                                          # 5
  - [4, 1, Select, [-1]]                                         # 6 the coarsest
  - [[1, 2, 3], 1, StandInLevelMixer, []]                        # 7 no out_channels: levels keep their widths
  - [-1, 1, Select, [1]]                                         # 8 C4's width
  - [[1, 2, 3], 1, AdaptiveSpatialFeatureFusion, [1]]            # 9 level 1: one map with C4's width
  - [[1, 2, 3], 1, AdaptiveSpatialFeatureFusion, [{level: 2, out_channels: 80}]]  # 10 out_channels scaled
  - [[1, 2, 3], 1, FeaturePyramidNetwork, [32, null, maxpool]]   # 11 4 outputs (extra max-pool level)
  - [11, 1, Select, [3]]                                         # 12
  - [[5, 8, 6], 1, Detect, [nc]]                                 # 13
"""


@pytest.mark.parametrize("scale, w", [("n", 0.5), ("s", 1.0)])
def test_pyramid_rows_and_select(stand_ins, scale, w):
    seq, save = parse(config(PYRAMID, scale))
    c3, c4, c5 = (int(c * w) for c in (64, 96, 128))
    assert seq[4].channels == (c3, c4, c5) or list(seq[4].channels) == [c3, c4, c5]
    assert seq[4].out_channels == int(48 * w) and seq[11].out_channels == int(32 * w)
    assert [type(seq[i]).__name__ for i in (5, 6, 8, 12)] == ["Select"] * 4 and seq[6].index == -1
    assert seq[9].level == 1 and seq[9].out_channels == c4  # second parse: the stand-in row was corrected
    assert seq[10].level == 2 and seq[10].out_channels == int(80 * w)
    assert 4 in save and 11 in save and 7 not in save  # Select 8 takes row 7 as its previous row (-1)
    outs = run(seq.train(), save, torch.rand(2, 3, 64, 64))
    assert [o.shape[1] for o in outs[4]] == [int(48 * w)] * 3
    assert [o.shape[1] for o in outs[7]] == [c3, c4, c5]
    assert outs[8].shape[1] == c4 and tuple(outs[9].shape[1:]) == (c4, 8, 8) and outs[10].shape[1] == int(80 * w)
    assert tuple(outs[12].shape[1:]) == (int(32 * w), 2, 2)
    assert detect_widths(seq, outs) == (int(48 * w), c4, int(48 * w))


BAD_ROWS = [
    ("[[-1, 1], 1, StandInWeightedFusion, []]", "one width"),  # 64w and 32w
    ("[-1, 1, Select, [0]]", "outputs a list"),
    ("[[-1, 1], 1, StandInWeightedFusion, [c2]]", "drop the 'c2'"),
    ("[[-1, 2], 2, StandInWeightedFusion, []]", "repeats"),
    ("[[-1, 1], 1, StandInUpsample, []]", "one row"),
    ("[[-1, 1], 1, StandInWeightedFusion, [2, fast, 7]]", "do not fit"),
    ("[[-1, 9], 1, StandInWeightedFusion, []]", "earlier rows"),
    ("[[1, 2, 3], 1, PathAggregationNetwork, [0]]", "out_channels"),
]


@pytest.mark.parametrize("row, message", BAD_ROWS)
def test_rewritten_row_errors(stand_ins, row, message):
    text = PYRAMID.split("head:")[0] + f"head:\n  - {row}\n  - [[1, 2], 1, Detect, [nc]]\n"
    with pytest.raises(ValueError, match=re.escape(message)):
        parse(config(text, "n"))


def test_prefixed_names(offline, monkeypatch):
    got = azu.register(prefix="Az", names=["panet"])
    assert got == {"AzPathAggregationNetwork": attnzoo.PathAggregationNetwork, "AzSelect": azu.Select}
    text = PYRAMID.split("head:")[0] + (
        "head:\n  - [[1, 2, 3], 1, AzPathAggregationNetwork, [48]]\n  - [-1, 1, AzSelect, [1]]\n"
        "  - [-2, 1, AzSelect, [2]]\n  - [[5, 6], 1, Detect, [nc]]\n"
    )
    seq, save = parse(config(text, "n"))
    assert seq[4].out_channels == 24 and [seq[5].index, seq[6].index] == [1, 2] and 4 in save
    for name in got:
        monkeypatch.delattr(tasks, name)


def test_plain_yaml_goes_to_the_original_parse_model(offline):
    import copy

    original = tasks.parse_model.attnzoo_original
    d = config(PYRAMID.split("head:")[0] + "head:\n  - [-1, 1, CBAM, [c2]]\n  - [[1, 2, 4], 1, Detect, [nc]]\n", "n")
    seq, save = parse(d)
    ref_seq, ref_save = original(copy.deepcopy(d), ch=3, verbose=False)
    assert save == ref_save and [type(m) for m in seq] == [type(m) for m in ref_seq] and seq[4].channels == 64
    assert [m.f for m in seq] == [m.f for m in ref_seq]


@pytest.mark.parametrize("example", ["yolo11n-bifpn-fusion.yaml", "yolo11n-dysample.yaml", "yolo11n-spdconv.yaml"])
def test_example_yaml_with_stand_ins_at_n_and_s(stand_ins, example):
    """The example YAMLs of modules not merged yet, with the stand-ins in their place: channels at n and s."""
    names, widths_n, widths_s = EXAMPLES[example]
    text = (DOCS / example).read_text()
    for scale, widths in (("n", widths_n), ("s", widths_s)):
        seq, save = parse(config(text, scale, SUBSTITUTES))
        ours = [SUBSTITUTES[n] for n in names]
        found = [type(m).__name__ for m in seq if type(m).__name__ in ours]
        assert found and len(found) == text.count(f", {names[0]}, ")
        outs = run(seq.train(), save, torch.rand(1, 3, 64, 64))
        assert detect_widths(seq, outs) == widths
        assert [tuple(outs[j].shape[2:]) for j in seq[-1].f] == [(8, 8), (4, 4), (2, 2)]


@pytest.mark.parametrize("example", list(EXAMPLES))
def test_example_yaml_builds_at_n_and_s(offline, example):
    names, widths_n, widths_s = EXAMPLES[example]
    assert_registered(names)
    text = (DOCS / example).read_text()
    for scale, widths in (("n", widths_n), ("s", widths_s)):
        seq, save = parse(config(text, scale))
        assert any(type(getattr(m, "module", m)).__name__ == names[0] for m in seq)
        outs = run(seq.train(), save, torch.rand(1, 3, 64, 64))
        assert detect_widths(seq, outs) == widths


@pytest.mark.slow
@pytest.mark.parametrize("example", [*EXAMPLES, *(f"stand-ins:{e}" for e in STAND_IN_EXAMPLES)])
def test_example_yaml_trains_saves_reloads_exports(request, offline, tmp_path, example):
    stand_in = example.startswith("stand-ins:")
    example = example.removeprefix("stand-ins:")
    names = EXAMPLES[example][0]
    text = (DOCS / example).read_text()
    if stand_in:
        request.getfixturevalue("stand_ins")
        for a, b in SUBSTITUTES.items():
            text = re.sub(rf"\b{a}\b", b, text)
        names = [SUBSTITUTES[n] for n in names]
    else:
        assert_registered(names)
    cfg = tmp_path / example  # the file name keeps the scale letter
    cfg.write_text(text)
    count = text.count(f", {names[0]}, ")
    train_save_reload_export(tmp_path, cfg, names * count)


# ------------------------------------------------------------------------------------------------------------
# Host blocks (PSA, C2PSA, A2C2f, AIFI): rows written as Ultralytics' own, plus attnzoo keywords
# ------------------------------------------------------------------------------------------------------------
#: example YAML -> (attnzoo rows: index -> (class, attn inside or None)), an RT-DETR model?
HOST_EXAMPLES = {
    "yolo11n-c2psa-ema.yaml": ({10: ("C2PSA", "EfficientMultiScaleAttention")}, False),
    "yolo12n-a2c2f.yaml": ({6: ("A2C2f", "SimAM"), 8: ("A2C2f", None)}, False),
    "rtdetr-yolo11n-aifi.yaml": ({10: ("AIFI", None)}, True),
}


@pytest.fixture()
def az_hosts(offline):
    return azu.register(prefix="Az")


def _ultralytics_twin(text: str) -> str:
    """The same YAML with Ultralytics' own blocks: the Az prefix and the attnzoo keyword dicts removed."""
    return re.sub(r", \{[^}]*\}\]", "]", re.sub(r"\bAz(C2PSA|PSA|A2C2f|AIFI)\b", r"\1", text))


@pytest.mark.parametrize("scale", ["n", "s"])
@pytest.mark.parametrize("example", list(HOST_EXAMPLES))
def test_host_rows_are_sized_as_ultralytics_blocks(az_hosts, example, scale):
    """parse_model sizes a host row through Ultralytics' block: same widths, depth-scaled repeats, area, residual
    and MLP ratio.  Where the inside is the default, Ultralytics' block's weights load into attnzoo's and the
    outputs are equal; elsewhere the named module sits inside every block at the block's inner width."""
    if example.startswith("rtdetr") and scale == "s":
        pytest.skip("the RT-DETR example defines n and s; s is covered by the YOLO examples")
    rows, _ = HOST_EXAMPLES[example]
    text = (DOCS / example).read_text()
    seq, save = parse(config(text, scale))
    ref_seq, ref_save = parse(config(_ultralytics_twin(text), scale))
    assert save == ref_save and len(seq) == len(ref_seq)
    x = torch.rand(1, 3, 64, 64)
    for i, (cls_name, inner) in rows.items():
        ours, theirs = seq[i], ref_seq[i]
        assert type(ours).__name__ == cls_name and type(ours).__module__.startswith("attnzoo")
        assert type(theirs).__module__.startswith("ultralytics") and (ours.i, ours.f) == (theirs.i, theirs.f)
        c_in = theirs.fc1.in_features if cls_name == "AIFI" else theirs.cv1.conv.in_channels
        t = torch.randn(2, c_in, 6, 6)
        if inner is None:
            randomize(theirs, seed=1, scale=0.2)
            ours.load_state_dict(theirs.state_dict())
            a, b = copy.deepcopy(ours).double().eval(), copy.deepcopy(theirs).double().eval()  # float64: outputs reach 1e7
            if cls_name == "AIFI":
                a.pos = "yx"  # the example uses the x-first table; Ultralytics 8.4 builds the y-first one
            with torch.no_grad():
                torch.testing.assert_close(a(t.double()), b(t.double()), atol=1e-6, rtol=1e-7)
        else:
            found = [m for m in ours.modules() if type(m).__name__ == inner]
            assert len(found) == {"C2PSA": len(ours.m), "A2C2f": 2 * len(ours.m)}[cls_name]
            assert ours(t).shape == theirs(t).shape
    outs = run(seq.eval(), save, x)
    assert outs[-1] is not None


@pytest.mark.slow
@pytest.mark.parametrize("example", list(HOST_EXAMPLES))
def test_host_example_trains_saves_reloads_exports(az_hosts, tmp_path, example):
    rows, rtdetr = HOST_EXAMPLES[example]
    cfg = tmp_path / example
    cfg.write_text((DOCS / example).read_text())
    train_save_reload_export(tmp_path, cfg, [c for c, _ in rows.values()], rtdetr=rtdetr)


def test_host_row_errors(az_hosts):
    base = "nc: 2\nscales: {n: [1.0, 0.25, 1024]}\nbackbone:\n  - [-1, 1, Conv, [128, 3, 2]]\n"
    wide = base.replace("0.25", "1.0")
    head = "head:\n  - [[1], 1, Detect, [nc]]\n"
    with pytest.raises(ValueError, match="YAML row 1 \\(AzC2PSA.*no argument.*'attention'"):
        parse(config(base + "  - [-1, 1, AzC2PSA, [128, {attention: ema}]]\n" + head, "n"))
    with pytest.raises(ValueError, match="YAML row 1 \\(AzA2C2f.*no area attention.*a2=False"):
        parse(config(wide + "  - [-1, 1, AzA2C2f, [128, False, -1]]\n" + head, "n"))
    with pytest.raises(ValueError, match="YAML row 1 \\(AzC2PSA.*attn='ema' at the block's inner width 16"):
        parse(config(base + "  - [-1, 1, AzC2PSA, [128, {attn: ema}]]\n" + head, "n"))


def test_save_yaml_writes_ultralytics_row_style(tmp_path):
    """One ``- [from, repeats, module, args] # index`` line per row, as Ultralytics' own YAMLs; loads back equal."""
    import yaml

    cfg = azu.insert_layers("yolo11n.yaml", ROWS)
    text = write_cfg(tmp_path).read_text()
    rows = [line for line in text.splitlines() if line.startswith("  - [")]
    assert len(rows) == len(cfg["backbone"]) + len(cfg["head"])
    assert [int(line.rsplit("# ", 1)[1]) for line in rows] == list(range(len(rows)))
    assert "  - [-1, 1, CBAM, [c2]] # 5" in rows and text.startswith("nc: 80\n")
    clean = {k: v for k, v in cfg.items() if k not in ("yaml_file", "scale", "ch")}
    assert yaml.safe_load(text) == clean


# ------------------------------------------------------------------------------------------------------------
# The row attributes (i, f, type, np) that parse_model sets on every row module, for modules that use those names
# ------------------------------------------------------------------------------------------------------------

#: every registered module a one-map or fusion row can be (pyramid necks and host blocks: the tests above)
ROW_MODULES = [n for n in attnzoo.list_modules() if azu.row_kind(n) in ("nchw", "resample", "multi", "pair")]
FROM = {"nchw": "-1", "resample": "-1", "multi": "[0, 1]", "pair": "[0, 1]"}


def one_row_config(name: str, channels: int = 64) -> dict:
    """Two Conv rows (the second at half the first's size for a layout-pair context) and the module's row (row 2:
    c2 for an nchw row, channels filled in for the others)."""
    kind, entry = azu.row_kind(name), attnzoo.info(name)
    stride = 2 if entry.layout == "pair" else 1
    row = f"[{FROM[kind]}, 1, {entry.cls.__name__}, {'[c2]' if kind == 'nchw' else '[]'}]"
    text = (
        f"nc: 2\nscales: {{n: [1.0, 1.0, 1024]}}\nbackbone:\n  - [-1, 1, Conv, [{channels}, 3, 2]]\n"
        f"  - [-1, 1, Conv, [{channels}, 3, {stride}]]\nhead:\n  - {row}\n"
    )
    return config(text, "n")


@pytest.mark.parametrize("name", ROW_MODULES)
def test_every_row_module_builds_as_a_yolo_row(offline, name):
    """parse_model sets i, f, type and np on the row module: a module that uses one of those names itself (a
    child f, a parameter i, ...) is held in a ModuleRow, with its own state-dict keys, forward and maps."""
    entry = attnzoo.info(name)
    seq, save = parse(one_row_config(name))
    row = seq[2]
    inner = row.module if isinstance(row, azu.ModuleRow) else row
    assert isinstance(inner, entry.cls)
    assert (row.i, row.np) == (2, sum(p.numel() for p in row.parameters()))
    assert row.f == yaml.safe_load(FROM[azu.row_kind(name)]) and row.type.endswith(entry.cls.__qualname__)
    if azu.row_kind(name) == "nchw":  # built by parse_model from the YAML name: the module's own keys
        assert list(inner.state_dict()) == list(entry.cls(64).state_dict())
    side = 2 * max(16, *entry.min_size)
    with torch.no_grad(), attnzoo.capture_attention(seq.eval()) as maps:
        out = run(seq, save, torch.rand(1, 3, side, side))[2]
    assert out.dim() == 4 and out.shape[0] == 1
    if entry.maps:
        assert [k for k in maps if k.split(".")[0] == "2"], f"{name}: no map captured in its row"


class StandInRowNames(nn.Module):
    """nchw, using every row attribute's name itself: child f, parameter i, buffer np, attribute type."""

    def __init__(self, channels: int, kind: str = "scale") -> None:
        super().__init__()
        self.channels = channels
        self.f = nn.Conv2d(channels, channels, 1)
        self.i = nn.Parameter(torch.linspace(0.5, 1.5, channels).view(channels, 1, 1))
        self.register_buffer("np", torch.full((1,), 0.25))
        self.type = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.f(x) * self.i + self.np


class StandInUpsampleF(StandInUpsample):
    """resample (built by attnzoo's row builder), with its 1×1 conv named f."""

    def __init__(self, channels: int, scale: int = 2) -> None:
        super().__init__(channels, scale)
        self.f = self.proj


ROW_NAME_STAND_INS = {
    "test_row_names": (StandInRowNames, {"family": "spatial"}),
    "test_upsample_f": (StandInUpsampleF, {"family": "resample", "shape": ShapeRule(size=upsampled("scale"))}),
}


def test_modules_using_the_row_attribute_names_are_held(offline):
    for name, (cls, kw) in ROW_NAME_STAND_INS.items():
        attnzoo.register(name, paper="test stand-in", complexity="O(N)", **kw)(cls)
    try:
        names = azu.register(names=list(ROW_NAME_STAND_INS))
        assert all(issubclass(c, azu.ModuleRow) for c in names.values())  # classes that build a ModuleRow
        assert azu.register(names=list(ROW_NAME_STAND_INS)) == names  # idempotent
        text = (
            "nc: 2\nscales: {n: [1.0, 1.0, 1024]}\nbackbone:\n  - [-1, 1, Conv, [8, 3, 2]]\nhead:\n"
            "  - [-1, 1, StandInRowNames, [c2, shift]]\n  - [-1, 1, StandInUpsampleF, []]\n"
            "  - [-1, 2, StandInRowNames, [c2]]\n"
        )
        seq, save = parse(config(text, "n"))
    finally:
        for name in ROW_NAME_STAND_INS:
            attnzoo.registry.unregister(name)
    held, up, repeated = seq[1], seq[2], seq[3]
    assert type(held) is azu.ModuleRow and type(up) is azu.ModuleRow and isinstance(repeated, nn.Sequential)
    assert [type(m) for m in repeated] == [azu.ModuleRow] * 2 and [m.i for m in seq] == [0, 1, 2, 3]
    assert held.type == f"{__name__}.StandInRowNames" and up.type.endswith("StandInUpsampleF")
    inner = held.module
    assert (inner.type, inner.np.item(), isinstance(inner.f, nn.Conv2d)) == ("shift", 0.25, True)
    assert set(inner.state_dict()) == {"f.weight", "f.bias", "i", "np"}
    assert set(held.state_dict()) == {"module." + k for k in inner.state_dict()}
    x = torch.rand(1, 3, 16, 16)
    outs = run(seq, save, x)
    by_hand = F.conv2d(outs[0], inner.f.weight, inner.f.bias) * inner.i + inner.np
    torch.testing.assert_close(outs[1], by_hand)
    torch.testing.assert_close(outs[2], F.interpolate(up.module.proj(outs[1]), scale_factor=2, mode="nearest"))
    assert tuple(outs[3].shape) == (1, 8, 16, 16)


def test_focal_modulation_in_a_detection_model(offline, tmp_path):
    """The route of compare --task detect and the gallery: Az names, a DetectionModel, maps, a saved checkpoint."""
    from attnzoo.compare.detect import module_config

    azu.register(prefix="Az", names=["focal_modulation"])
    base = tasks.yaml_model_load("yolo11n.yaml")
    model = tasks.DetectionModel(module_config(base, "focal_modulation", [4], []), nc=2, verbose=False).eval()
    row = model.model[5]
    assert type(row) is azu.ModuleRow and isinstance(row.module, attnzoo.FocalModulation)
    assert (row.i, row.f, row.type) == (5, -1, "attnzoo.spatial.focal_modulation.FocalModulation")
    own = attnzoo.FocalModulation(row.module.channels).state_dict()
    assert [k for k in model.state_dict() if k.startswith("model.5.")] == [f"model.5.module.{k}" for k in own]
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad(), attnzoo.capture_attention(model) as maps:
        y = model(x)
    assert list(maps) == ["model.5.module"] and tuple(maps["model.5.module"]["modulator"].shape) == (1, 128, 8, 8)
    torch.save({"model": model}, tmp_path / "m.pt")
    again = torch.load(tmp_path / "m.pt", weights_only=False)["model"]
    with torch.no_grad():
        torch.testing.assert_close(again(x)[0], y[0])

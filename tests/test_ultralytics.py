"""Ultralytics YOLO: attnzoo modules in a model YAML (``attnzoo.integrations.ultralytics``).

The YOLO11 config is Ultralytics' own ``yolo11n.yaml``, read at run time; three attnzoo rows are inserted with
``insert_layers`` (no AGPL text is copied here).  Everything runs offline: Ultralytics' settings go to a
temporary folder, its online checks are off (``YOLO_OFFLINE``), nothing is auto-installed, AMP is off (no AMP
check download), plots are off and the font check (which would download Arial.ttf) is stubbed.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile

import pytest

if "ultralytics" not in sys.modules:  # settings are read when ultralytics is imported
    _CFG = tempfile.mkdtemp(prefix="attnzoo-yolo-cfg-")
    atexit.register(shutil.rmtree, _CFG, ignore_errors=True)
    os.environ.setdefault("YOLO_CONFIG_DIR", _CFG)
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "False")
    os.environ.setdefault("YOLO_VERBOSE", "False")

import numpy as np
import torch

import attnzoo
from attnzoo.integrations import ultralytics as azu

ultralytics = pytest.importorskip("ultralytics")
tasks = pytest.importorskip("ultralytics.nn.tasks")

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))

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
    nchw = {attnzoo.info(n).cls.__name__ for n in attnzoo.list_modules() if attnzoo.info(n).layout == "nchw"}
    assert set(names) == nchw and {"CBAM", "SqueezeExcite", "EfficientChannelAttention"} <= set(names)
    assert tasks.CBAM is attnzoo.CBAM and azu.register() == names  # idempotent
    assert "FeaturePyramidNetwork" not in names  # pyramid necks cannot be single-input YAML rows
    with pytest.raises(ValueError, match="layout 'nchw'"):
        azu.register(names=["fpn"])
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


@pytest.mark.slow
def test_yolo11n_with_attnzoo_trains_saves_reloads_exports(offline, tmp_path):
    import cv2
    from ultralytics import YOLO

    # a tiny detection dataset: bright rectangles on dark noise, YOLO-format labels
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

    model = YOLO(str(write_cfg(tmp_path)))
    layers = list(model.model.model)
    attn_idx = [i for i, m in enumerate(layers) if type(m).__module__.startswith("attnzoo")]
    assert [type(layers[i]).__name__ for i in attn_idx] == [r[1] for r in ROWS]
    assert 2_000_000 < sum(p.numel() for p in model.model.parameters()) < 3_500_000  # YOLO11n-sized

    # forward
    x = torch.rand(1, 3, 64, 64)
    model.model.eval()
    with torch.no_grad():
        y = model.model(x)
    y0 = y[0] if isinstance(y, (list, tuple)) else y
    assert y0.shape[:2] == (1, 4 + 80) and torch.isfinite(y0).all()
    before = {i: {k: v.clone() for k, v in layers[i].state_dict().items()} for i in attn_idx}

    # one epoch of two batches
    model.train(
        data=str(data), epochs=1, imgsz=64, batch=2, workers=0, device="cpu", amp=False, plots=False, val=False,
        project=str(tmp_path / "runs"), name="t", exist_ok=True, verbose=False, seed=0, deterministic=False,
    )
    last = tmp_path / "runs/t/weights/last.pt"
    assert last.exists()

    # reload: the attnzoo modules are back (attnzoo importable is all the unpickling needs) and were trained
    reloaded = YOLO(str(last))
    rlayers = list(reloaded.model.model)
    assert [type(rlayers[i]).__name__ for i in attn_idx] == [r[1] for r in ROWS]
    changed = [
        any(not torch.equal(v.float(), before[i][k].float()) for k, v in rlayers[i].state_dict().items() if v.is_floating_point())
        for i in attn_idx
    ]
    assert all(changed), "the training step must update the attnzoo modules"
    net = reloaded.model.float().eval()
    with torch.no_grad():
        ref = net(x)
    ref0 = ref[0] if isinstance(ref, (list, tuple)) else ref
    assert torch.isfinite(ref0).all()

    # export to ONNX (no onnxslim: simplify=False) and compare with onnxruntime
    ort = pytest.importorskip("onnxruntime")
    onnx_path = reloaded.export(format="onnx", imgsz=64, simplify=False, dynamic=False)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    fused = YOLO(str(last)).model.float().fuse().eval()  # the exporter fuses Conv+BN too
    with torch.no_grad():
        want = fused(x)
    want0 = (want[0] if isinstance(want, (list, tuple)) else want).numpy()
    assert got.shape == want0.shape
    assert np.abs(got - want0).max() < 1e-3 * max(1.0, np.abs(want0).max())

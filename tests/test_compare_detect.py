"""``attnzoo compare --task detect``: a two-module × one-seed × one-epoch comparison on a tiny synthetic set at
imgsz 64 (results files, Ultralytics' own mAP reported, a forced-NaN run flagged, resume), the synthetic set
checked by Ultralytics' own dataset checks, bad ``--data`` refused before training, and the placement of the module
in the YAML.  Offline: Ultralytics' settings in a temporary folder, its online checks off, no plots (no fonts)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from helpers import require, ultralytics_offline

ultralytics_offline()  # before ultralytics is imported: its settings are read then
require("ultralytics")
require("rich")
require("matplotlib")

import attnzoo  # noqa: E402
from attnzoo.cli import main as cli_main  # noqa: E402
from attnzoo.compare.detect import DetectConfig, module_config, plan_rows, run_detect_compare  # noqa: E402
from attnzoo.compare.detect_data import check_detection_data, make_synthetic_detection  # noqa: E402
from attnzoo.compare.health import detect_flags  # noqa: E402


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory) -> Path:
    return make_synthetic_detection(tmp_path_factory.mktemp("syn"), train=16, val=8, size=64, seed=0)


def test_two_modules_one_seed_flags_and_resume(tiny_set, tmp_path, monkeypatch):
    """none and ECA, one seed, one epoch at imgsz 64; ECA's output is forced to NaN, so its run must be flagged
    diverged and left off the Pareto front; a rerun trains nothing; a run whose result is removed is redone."""
    eca = attnzoo.info("eca").cls
    forward = eca.forward
    monkeypatch.setattr(eca, "forward", lambda self, x: forward(self, x) * float("nan"))
    out = tmp_path / "cmp"
    cfg = DetectConfig(modules=["none", "eca"], data=str(tiny_set), epochs=1, seeds=[0], imgsz=64, batch=8,
                       output=str(out), latency_time=0.02, quiet=True)
    res = run_detect_compare(cfg)
    for name in ("results.csv", "results.json", "results.md", "map50-95_vs_flops.png", "compare.json",
                 "models/yolo11n-none.yaml", "models/yolo11n-eca.yaml"):
        assert (out / name).is_file(), name
    rows = {r["module"]: r for r in json.loads((out / "results.json").read_text())["summary"]}
    assert "diverged" in rows["eca"]["flags"] and not rows["eca"]["pareto"] and not rows["eca"]["meaningful"]
    assert "diverged" not in rows["none"]["flags"]
    assert rows["eca"]["params"] > rows["none"]["params"] and rows["eca"]["inserted"] == 2
    assert rows["eca"]["flops"] >= rows["none"]["flops"] > 0 and rows["none"]["latency_ms"] > 0
    # the numbers reported are Ultralytics' own: its validator on the run's final weights gives them again
    from ultralytics import YOLO

    run = next(r for r in res["runs"] if r["module"] == "none")
    again_val = YOLO(str(out / "runs/none/seed0/weights/best.pt")).val(data=str(tiny_set), imgsz=64, batch=8, plots=False, verbose=False)
    for ours, theirs in (("map50_95", "metrics/mAP50-95(B)"), ("map50", "metrics/mAP50(B)"), ("recall", "metrics/recall(B)")):
        assert math.isclose(run[ours], float(again_val.results_dict[theirs]), abs_tol=1e-3), ours
    header = (out / "results.csv").read_text().splitlines()[0].split(",")
    assert {"map50_95_mean", "map50_95_std", "map50", "precision", "recall", "latency_ms", "flags"} <= set(header)
    assert "SYNTHETIC" in (out / "results.md").read_text() and "⚠" in (out / "results.md").read_text()

    # resume: a rerun trains nothing; removing one run's result redoes that run only
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/seed0/weights/last.pt")}
    again = run_detect_compare(cfg)
    assert {p: p.stat().st_mtime_ns for p in out.glob("runs/*/seed0/weights/last.pt")} == stamps
    assert [r["map50_95"] for r in again["runs"]] == [r["map50_95"] for r in res["runs"]]
    (out / "runs/none/seed0/result.json").unlink()
    run_detect_compare(cfg)
    assert (out / "runs/eca/seed0/weights/last.pt").stat().st_mtime_ns == stamps[out / "runs/eca/seed0/weights/last.pt"]
    assert (out / "runs/none/seed0/weights/last.pt").stat().st_mtime_ns != stamps[out / "runs/none/seed0/weights/last.pt"]
    # another training configuration in the same folder is refused, nothing overwritten
    with pytest.raises(ValueError, match="epochs: 1 there, 2 now"):
        run_detect_compare(DetectConfig(**{**cfg.__dict__, "epochs": 2}))


def test_synthetic_set_passes_ultralytics_checks(tmp_path):
    from ultralytics.data.utils import check_det_dataset, verify_image_label

    yaml_path = make_synthetic_detection(tmp_path / "a", train=6, val=3, size=64, seed=1)
    d = check_det_dataset(str(yaml_path), autodownload=False)
    assert d["nc"] == 3 and list(d["names"].values()) == ["circle", "square", "triangle"]
    for split, n in (("train", 6), ("val", 3)):
        images = sorted(Path(d[split]).glob("*.png"))
        assert len(images) == n
        for im in images:
            lb = Path(str(im).replace("/images/", "/labels/")).with_suffix(".txt")
            out = verify_image_label((str(im), str(lb), "", False, 3, 0, 3, False))
            labels, (nm, nf, ne, nc) = out[1], out[5:9]
            assert (nm, nf, ne, nc) == (0, 1, 0, 0), out[-1]
            assert 1 <= len(labels) <= 3 and ((labels[:, 1:] > 0) & (labels[:, 1:] <= 1)).all()
    # the same seed gives the same bytes, another seed other images
    same = make_synthetic_detection(tmp_path / "b", train=6, val=3, size=64, seed=1)
    other = make_synthetic_detection(tmp_path / "c", train=6, val=3, size=64, seed=2)
    first = "images/train/00000.png"
    assert (same.parent / first).read_bytes() == (yaml_path.parent / first).read_bytes()
    assert (other.parent / first).read_bytes() != (yaml_path.parent / first).read_bytes()


def test_a_moved_synthetic_set_is_reused_with_its_new_path(tmp_path):
    import shutil

    first = make_synthetic_detection(tmp_path / "a", train=2, val=1, size=32, seed=0)
    moved = tmp_path / "moved"
    shutil.move(str(first.parent), moved)
    image = moved / "images/train/00000.png"
    stamp = image.stat().st_mtime_ns
    again = make_synthetic_detection(moved, train=2, val=1, size=32, seed=0)
    assert again == moved.resolve() / "synthetic.yaml"
    assert f"path: {moved.resolve()}\n" in again.read_text() and str(tmp_path / "a") not in again.read_text()
    assert image.stat().st_mtime_ns == stamp  # reused, not regenerated


def test_bad_data_is_refused_before_training(tiny_set, tmp_path, capsys):
    root = tiny_set.parent
    cases = {
        "missing.yaml": (None, "no such file"),
        "list.yaml": ("- a\n- b\n", "must be a YAML mapping"),
        "nokeys.yaml": (f"path: {root}\ntrain: images/train\n", "missing: val, names"),
        "noimages.yaml": (f"path: {tmp_path / 'none'}\ntrain: .\nval: .\nnames: [a]\n", "holds no images"),
        "nolabels.yaml": (f"path: {root}\ntrain: images/train\nval: {tmp_path / 'v' / 'images'}\nnames: [a]\n", "no label files"),
    }
    (tmp_path / "none").mkdir()
    (tmp_path / "v" / "images").mkdir(parents=True)  # one image without its label
    (tmp_path / "v" / "images" / "x.png").write_bytes((root / "images/val/00000.png").read_bytes())
    for name, (text, message) in cases.items():
        if text is not None:
            (tmp_path / name).write_text(text)
        with pytest.raises(ValueError, match=message):
            check_detection_data(tmp_path / name)
    empty = tmp_path / "empty"
    for sub in ("images", "labels"):
        (empty / sub).mkdir(parents=True)
    (empty / "images/x.png").write_bytes((root / "images/val/00000.png").read_bytes())
    (empty / "labels/x.txt").write_text("")
    (tmp_path / "empty.yaml").write_text(f"path: {empty}\ntrain: images\nval: images\nnames: [a]\n")
    with pytest.raises(ValueError, match="hold no boxes"):
        check_detection_data(tmp_path / "empty.yaml")
    # through the command line: one clear line, exit 2, nothing written
    out = tmp_path / "out"
    for extra, message in (
        (["--data", str(tmp_path / "missing.yaml")], "no such file"),
        (["--data", str(tmp_path / "nolabels.yaml")], "no label files"),
        (["--model", "yolo99z.yaml"], "must be an Ultralytics model YAML"),
        (["--where", "Foo"], "neither a row index nor a row type"),
        (["--inside", "A2C2f"], "the model has no A2C2f row"),
        (["--lr", "0.1"], "only apply to --task classify"),
    ):
        assert cli_main(["compare", "--task", "detect", "--output", str(out), "--quiet", *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("attnzoo compare: error:") and message in err, err
        assert not out.exists()


def test_placement_in_the_yaml():
    from ultralytics.nn.tasks import DetectionModel, yaml_model_load

    import attnzoo.compare.detect_train  # noqa: F401  (registers the Az* YAML names)

    y11, y8 = yaml_model_load("yolo11n.yaml"), yaml_model_load("yolov8n.yaml")
    assert plan_rows(y11, None, None) == ([6, 8], []) and plan_rows(y8, None, None) == ([6, 8], [])
    c3k2 = [i for i, r in enumerate(y11["backbone"] + y11["head"]) if r[2] == "C3k2"]
    assert plan_rows(y11, ["C3k2"], None)[0] == c3k2 and len(c3k2) == 8
    assert plan_rows(y11, ["4", "C2PSA"], ["C2PSA"]) == ([4, 10], [10])
    assert plan_rows(y11, None, ["C2PSA"]) == ([], [10])
    after, hosts = plan_rows(y11, None, ["C2PSA"])
    model = DetectionModel(module_config(y11, "simam", [6], hosts), nc=3, verbose=False)
    names = [type(m).__name__ for m in model.model]
    assert names[7] == "SimAM" and names[11] == "C2PSA" and type(model.model[11]).__module__.startswith("attnzoo")
    assert any(type(m).__name__ == "SimAM" for m in model.model[11].modules())
    assert model.eval()(torch.zeros(1, 3, 64, 64))[0].shape[1] == 4 + 3


def test_detect_flags():
    assert detect_flags([3.0, 2.0], 0.2) == []
    assert detect_flags([3.0, 3.5], 0.2) == ["loss_rose"]
    assert detect_flags([3.0, float("nan")], 0.2) == ["diverged"]
    assert detect_flags([3.0], 0.2, nonfinite_batches=1) == ["diverged"]
    assert detect_flags([3.0, 2.0], 0.004) == ["near_zero"]
    assert detect_flags([], None) == ["diverged", "near_zero"]

"""The gallery pictures drawn from trained detectors (docs/data/gallery/, made by docs/gallery_train.py): every
module that records a map and fits a detector's backbone has its picture, card and sidecar, and the sidecar's
hashes equal the module's state-dict layout and code now, so a change of behaviour forces a new picture.  Nothing
here trains: the hashes are cheap (the state dict of a module built on the meta device, the module's source)."""

from __future__ import annotations

import io
import json
import math
import shutil

import pytest
from test_docs_site import load_sitegen

import attnzoo

TRAIN = "python docs/gallery_train.py --work runs/gallery"


@pytest.fixture(scope="module")
def trained():
    return load_sitegen().trained


def test_every_module_with_a_map_that_fits_a_detector_has_a_current_picture(trained):
    from PIL import Image

    names = trained.detector_modules()
    assert {"cbam", "se", "ema", "simam", "nonlocal"} <= set(names)
    problems = [why for name in names if (why := trained.staleness(name))]
    assert not problems, f"rerun `{TRAIN}` (it redoes only these):\n  " + "\n  ".join(problems)
    for name in names:
        page, card, side = trained.trained_picture(name)
        assert side["module"] == name and side["network"] == "yolo11n"
        assert side["data"]["name"].startswith("attnzoo synthetic")
        # a run that did not diverge (a near-zero mAP is said in the caption, see below)
        assert math.isfinite(side["metrics"]["map50_95"]) and "diverged" not in side["training"]["flags"], name
        if "near_zero" in side["training"]["flags"]:
            assert "did not learn the task" in trained.caption(side), name
        with Image.open(io.BytesIO(card)) as im:
            assert im.size == (300, 200), name
        with Image.open(io.BytesIO(page)) as im:
            assert im.mode == "P", name  # palette-quantised
        assert len(page) < 150_000 and len(card) < 60_000, name


def test_the_pictures_folder_holds_only_current_modules(trained):
    stems = {
        p.name.removesuffix("-card.png").removesuffix(".png").removesuffix(".json")
        for p in trained.GALLERY_DIR.iterdir()
    }
    assert stems <= set(trained.detector_modules()), f"pictures of no (longer) eligible modules: {stems}"


def test_modules_without_a_map_or_a_backbone_place_get_no_trained_picture(trained):
    for name in ("fpn", "weighted_fusion", "mhsa", "dysample"):  # no map, or no same-shape B×C×H×W map
        assert not trained.fits_detector(attnzoo.info(name)), name


def test_source_hash_ignores_comments_and_docstrings_not_code(trained):
    base = 'class A:\n    """Doc."""\n\n    def f(self, x):\n        # why\n        return x + 1  # note\n'
    same = 'class A:\n    """Another doc,\n    two lines."""\n    def f(self, x):\n        return x + 1\n'
    code = base.replace("x + 1", "x + 2")
    indent = base.replace("        return x + 1", "        if x:\n            return x + 1")
    norm = trained.normalised_source
    assert norm(base) == norm(same) == norm(base.replace("\n", "\r\n"))
    assert norm(code) != norm(base) and norm(indent) != norm(base)
    one_line = 'def g(): "doc"; return 1\n'
    assert "return 1" in norm(one_line)  # a docstring sharing its line with code keeps the line


def test_a_changed_module_makes_its_picture_stale(trained, tmp_path):
    name = "cbam"
    src = trained.paths(name)
    for key, path in trained.paths(name, tmp_path).items():
        shutil.copy(src[key], path)
    assert trained.staleness(name, tmp_path) is None
    side = json.loads((tmp_path / f"{name}.json").read_text())
    side["source_sha256"] = "0" * 64
    (tmp_path / f"{name}.json").write_text(json.dumps(side))
    assert "its code" in trained.staleness(name, tmp_path)
    side["state_keys_sha256"] = "1" * 64
    (tmp_path / f"{name}.json").write_text(json.dumps(side))
    assert "state-dict keys" in trained.staleness(name, tmp_path)
    (tmp_path / f"{name}-card.png").unlink()
    assert "no" in trained.staleness(name, tmp_path)
    # the hash follows the state dict's layout: another channel count is another layout
    assert trained.state_keys_hash("cbam") != trained.state_keys_hash("se")


def test_module_pages_show_the_trained_picture_and_say_how_it_was_made():
    gen = load_sitegen()
    site = gen.generate(names=["cbam", "fpn"], workers=1)
    page = site.files["modules/cbam.md"].decode()
    assert "from a **trained** detector" in page and "synthetic" in page and "yolo11n" in page
    assert "mAP50-95" in page and "gallery_train.py" in page
    assert site.files["modules/img/cbam.png"] == gen.trained.paths("cbam")["page"].read_bytes()
    assert site.files["modules/img/cbam-card.png"] == gen.trained.paths("cbam")["card"].read_bytes()
    assert "cost against resolution" in site.files["modules/fpn.md"].decode()  # no map: keeps its cost curve


def test_a_flat_picture_or_a_detector_that_did_not_learn_had_the_long_recipe(trained):
    # the rule of docs/gallery_train.py's LONG_MODULES: a picture whose every map is nearly constant (unless the maps
    # are constant by construction, said in the caption) or whose detector stayed near zero was made with the long
    # recipe, and its caption says so (below mAP50-95 0.05: the rule's threshold; "near_zero" is below 0.01)
    for name in trained.detector_modules():
        side = trained.read_sidecar(name)
        every = {f"P{k}:{key}" for k in (3, 4, 5) for key in attnzoo.info(name).maps}
        flat = every <= {t.split(" ")[0] for t in side["flat_maps"]} and name not in trained.CONSTANT_BY_CONSTRUCTION
        if flat or side["metrics"]["map50_95"] < 0.05:
            assert side["settings"]["finetune"].get("long"), f"{name}: add it to LONG_MODULES and rerun `{TRAIN}`"
            assert "The long recipe" in trained.caption(side), name
    for name, why in trained.CONSTANT_BY_CONSTRUCTION.items():
        assert why in trained.caption(trained.read_sidecar(name)), name

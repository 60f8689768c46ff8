"""The gallery pictures drawn from trained detectors: which modules get one, where they are committed, and the
hashes that say whether a picture is still current.

``docs/gallery_train.py`` trains, for every module of :func:`detector_modules`, a small YOLO detector with the
module in its backbone on attnzoo's synthetic detection set, and writes into ``docs/data/gallery/``::

    <name>.png        the module page's picture: a validation image and every map of every inserted instance
    <name>-card.png   the gallery card (300×200)
    <name>.json       the sidecar: how the picture was made (network, data, training, mAP, date, commit) and the
                      two hashes of the module it was made from (:func:`module_hashes`)

A picture is *current* when its sidecar's hashes equal the module's hashes now: a change of the module's state-dict
layout or of its code (not of its comments or docstrings) makes it stale, and the test suite fails until the
script is rerun (it redoes only the stale pictures).  Nothing here imports Ultralytics or trains anything.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import io
import json
import tokenize
from pathlib import Path
from typing import Any

from .data import DOCS, ROOT, _attnzoo

GALLERY_DIR = DOCS / "data" / "gallery"
#: the command that (re)generates the pictures (documented in docs/adding-a-module.md; see docs/gallery_train.py)
TRAIN_COMMAND = "python docs/gallery_train.py --work runs/gallery"
#: how the maps are drawn: each on its own colour range (``attnzoo.viz.overlay(scale="data")``; the colour bar and the
#: title give the range), because a trained gate's structure often spans a few hundredths of [0, 1].  A picture drawn
#: otherwise is redrawn from its finished run by ``docs/gallery_train.py`` (no training).  ``colour_bar`` names the
#: colour bars' ticks (``attnzoo.viz.colorbar_ticks``: minimum, middle and maximum, labels that differ); ``panels``
#: the reduction of maps that are a distribution at each position (their maximum, ``attnzoo.viz_panels.over_grid``).
DRAWING = {"scale": "data", "colour_bar": "min-mid-max", "panels": "max of a distribution"}
HASH_VERSION = 1  # bump when the definition of the hashes changes (every picture becomes stale)


#: modules that record a map and keep its shape but cannot be a YOLO row yet, with the reason (they keep the
#: picture from an untrained resnet18)
NOT_IN_YOLO: dict[str, str] = {}


#: modules with a map that is constant by construction as drawn (``attnzoo.viz`` averages a map over its leading
#: axes: channels, heads, memory units; the 8×8 and 4×4 levels of a 128×128 image), with the reason; no training
#: changes it, the caption says why
CONSTANT_BY_CONSTRUCTION = {
    "efficient_self_attention": "At P4 and P5 (8×8 and 4×4) the keys come from the map reduced by `sr_ratio` 8 to a "
    "single position: each query's softmax over one key is 1.",
}


def fits_detector(info: Any) -> bool:
    """Whether a module gets a picture from a trained detector: it records a map and maps one B×C×H×W map to a map
    of the same shape with its default arguments (so it fits in a ResNet block and after a YOLO backbone row), and
    is not in :data:`NOT_IN_YOLO`."""
    from attnzoo.integrations.yolo_layers import row_kind

    return (
        bool(info.maps)
        and info.same_shape_nchw(64)
        and row_kind(info) in ("nchw", "resample")
        and info.name not in NOT_IN_YOLO
    )


def detector_modules() -> list[str]:
    """Every registered module that gets a trained-detector picture, sorted by name."""
    attnzoo = _attnzoo()
    return sorted(n for n in attnzoo.list_modules() if fits_detector(attnzoo.info(n)))


# ---------------------------------------------------------------------------------------------------------- hashes
def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def state_keys_hash(name: str) -> str:
    """sha256 of the sorted ``key shape`` lines of the state dict of ``attnzoo.create(name, channels)`` with the
    module's example channels (its default construction in the docs and the bench)."""
    import torch

    attnzoo = _attnzoo()
    from attnzoo.layouts import example_channels

    try:
        with torch.device("meta"):  # shapes only: nothing is allocated or initialised
            module = attnzoo.create(name, example_channels(name))
    except Exception:  # noqa: BLE001  a constructor that computes with its tensors: build it for real
        module = attnzoo.create(name, example_channels(name))
    lines = sorted(f"{k} {tuple(v.shape)}" for k, v in module.state_dict().items())
    return _sha("\n".join(lines))


def normalised_source(text: str) -> str:
    """Python source without what does not change behaviour: comments, docstrings, blank lines, trailing blanks
    (line endings normalised).  The code itself, indentation included, is kept verbatim."""
    text = text.replace("\r\n", "\n")
    lines = text.split("\n")
    drop: set[int] = set()  # 0-based line numbers of docstrings that stand on their own lines
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
                and first.end_lineno is not None
                and lines[first.lineno - 1][: first.col_offset].strip() == ""
                and lines[first.end_lineno - 1][(first.end_col_offset or 0) :].strip() == ""
            ):
                drop.update(range(first.lineno - 1, first.end_lineno))
    cut: dict[int, int] = {}  # line -> column where a comment starts
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type == tokenize.COMMENT:
            cut[tok.start[0] - 1] = tok.start[1]
    kept = []
    for i, line in enumerate(lines):
        if i in drop:
            continue
        line = line[: cut[i]] if i in cut else line
        if line.strip():
            kept.append(line.rstrip())
    return "\n".join(kept) + "\n"


def source_files(name: str) -> list[Path]:
    """The files that define the module's class and its attnzoo base classes (sorted, unique), except the shared
    layers every module builds on (``attnzoo.layers``: the base class, norms, pooling...): a change there is the
    test suite's business, and hashing it would make every picture stale at once."""
    attnzoo = _attnzoo()
    files = set()
    for cls in attnzoo.info(name).cls.__mro__:
        parts = cls.__module__.split(".")
        if parts[0] == "attnzoo" and parts[1:2] != ["layers"]:
            path = inspect.getsourcefile(cls)
            if path:
                files.add(Path(path).resolve())
    return sorted(files)


def _relative(path: Path) -> str:
    try:
        return path.relative_to(ROOT / "src").as_posix()
    except ValueError:
        return path.name


def source_hash(name: str) -> str:
    """sha256 over :func:`source_files`, each as its path under src/ and its :func:`normalised_source`."""
    parts = [f"{_relative(p)}\n{normalised_source(p.read_text(encoding='utf-8'))}" for p in source_files(name)]
    return _sha("\n".join(parts))


def module_hashes(name: str) -> dict[str, Any]:
    """What a sidecar records about the module's behaviour: ``{"hash_version", "state_keys_sha256",
    "source_sha256", "source_files"}``."""
    return {
        "hash_version": HASH_VERSION,
        "state_keys_sha256": state_keys_hash(name),
        "source_sha256": source_hash(name),
        "source_files": [_relative(p) for p in source_files(name)],
    }


# ------------------------------------------------------------------------------------------------------ the files
def paths(name: str, folder: Path = GALLERY_DIR) -> dict[str, Path]:
    return {"page": folder / f"{name}.png", "card": folder / f"{name}-card.png", "sidecar": folder / f"{name}.json"}


def read_sidecar(name: str, folder: Path = GALLERY_DIR) -> dict | None:
    path = paths(name, folder)["sidecar"]
    return json.loads(path.read_text()) if path.exists() else None


def staleness(name: str, folder: Path = GALLERY_DIR, hashes: dict | None = None) -> str | None:
    """None when the module's committed picture is current, else why not (missing files, a hash that differs)."""
    p = paths(name, folder)
    missing = [k for k, path in p.items() if not path.exists()]
    if missing:
        return f"{name}: no {' / '.join(str(p[k].relative_to(ROOT)) if p[k].is_relative_to(ROOT) else p[k].name for k in missing)}"
    side = read_sidecar(name, folder) or {}
    now = hashes or module_hashes(name)
    changed = [k for k in ("hash_version", "state_keys_sha256", "source_sha256") if side.get(k) != now[k]]
    if changed:
        what = {
            "hash_version": "the hash definition",
            "state_keys_sha256": "its state-dict keys or shapes",
            "source_sha256": f"its code ({', '.join(now['source_files'])})",
        }
        return f"{name}: the picture is stale: {', '.join(what[k] for k in changed)} changed since it was made"
    if side.get("drawing") != DRAWING:
        return f"{name}: drawn otherwise than {DRAWING} (redrawn from its finished run)"
    return None


def trained_picture(name: str, folder: Path = GALLERY_DIR) -> tuple[bytes, bytes, dict] | None:
    """(page picture, card, sidecar) of a module's committed trained-detector picture, or None if there is none."""
    p = paths(name, folder)
    if not all(path.exists() for path in p.values()):
        return None
    return p["page"].read_bytes(), p["card"].read_bytes(), json.loads(p["sidecar"].read_text())


def caption(side: dict) -> str:
    """The module page's caption of a trained-detector picture, from its sidecar."""
    d = side["data"]
    t = side["training"]
    rows = ", ".join(f"{r['row']} (stride {r['stride']}, {r['size']})" for r in side["inserted"])
    flat = (
        f" Nearly constant after training: {', '.join(f'`{k}`' for k in side['flat_maps'])}."
        if side.get("flat_maps")
        else ""
    )
    broken = (
        " **This detector did not learn the task with the module (mAP50-95 below 0.01 after this training): "
        "its maps say little about where the module looks.**"
        if "near_zero" in side["training"].get("flags", [])
        else ""
    )
    ft = side["settings"]["finetune"]
    how = (
        f"the module inserted and trained {ft['epochs']} epochs with the rest of the network frozen"
        if ft["freeze"] != "none"
        else f"the module inserted and the whole network trained {ft['epochs']} more epochs (a frozen network cannot "
        "follow a module that replaces its features)"
    )
    long = (
        " The long recipe: with the short one (a few times fewer epochs) this module's maps stayed nearly constant or "
        "its detector did not learn."
        if ft.get("long")
        else ""
    )
    if ft.get("long") and ft["freeze"] == "none" and ft["lr0"] > 0.002:
        long += " Its maps stayed nearly constant with the long recipe at the whole network's usual lr0 0.002 too."
    why_flat = CONSTANT_BY_CONSTRUCTION.get(side["module"], "")
    if any(" max of " in title for title in side.get("panels", [])):
        why_flat += (
            " A panel titled “max of n” draws the maximum over n maps that sum to 1 at each position (their mean "
            "would be the constant 1/n)."
        )
    return (
        f"Maps from a **trained** detector, on a validation image of attnzoo's **synthetic** shapes set (ground-truth "
        f"boxes in white). Ultralytics {side['network']} with `{side['module']}` after backbone rows {rows}: the "
        f"plain {side['network']} trained {t['base_epochs']} epochs (validation mAP50-95 "
        f"{side['base_metrics']['map50_95']:.3f}), then {how} ({ft['optimizer']} lr0 {ft['lr0']}, imgsz {t['imgsz']}, batch {t['batch']}, seed {t['seed']}, {d['train']} "
        f"train / {d['val']} val images {d['size']}×{d['size']}, 3 classes); validation mAP50-95 with the module "
        f"{side['metrics']['map50_95']:.3f} (mAP50 {side['metrics']['map50']:.3f}; synthetic data: says nothing about "
        f"real images). Made {side['date'][:10]} at attnzoo {side['attnzoo_commit'][:10]} by `{TRAIN_COMMAND}`; maps "
        f"recorded by `attnzoo.capture_attention`, drawn by `attnzoo.viz.overlay(scale={DRAWING['scale']!r})`, each map on its own colour range (its colour bar).{long}{flat}{why_flat and ' ' + why_flat}{broken}"
    )

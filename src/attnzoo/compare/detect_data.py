"""Data of ``attnzoo compare --task detect``: the synthetic YOLO-format detection set, and the check of a user's
dataset YAML that runs before any training.

The synthetic set (:func:`make_synthetic_detection`): coloured circles, squares and triangles (3 classes, 1-3
objects per image, 12-45 % of the side, little overlap) on textured backgrounds (a colour gradient, stripes at
a random angle, pixel noise), in Ultralytics' layout::

    <root>/images/{train,val}/00000.png   <root>/labels/{train,val}/00000.txt   (class cx cy w h, in [0, 1])
    <root>/synthetic.yaml                 path / train / val / names

The same seed always gives the same images.  It is *synthetic*: a number measured on it says how a module
behaves on an easy toy task, not on real images; every report of such a run says so.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["SYNTHETIC_CLASSES", "make_synthetic_detection", "check_detection_data", "IMAGE_SUFFIXES"]

SYNTHETIC_CLASSES = ("circle", "square", "triangle")
IMAGE_SUFFIXES = (".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")  # those Ultralytics reads
_PALETTE = np.array(
    [[230, 60, 50], [60, 200, 80], [60, 110, 240], [240, 210, 40], [200, 70, 220], [40, 220, 220], [250, 140, 30]]
)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    c0, c1 = rng.uniform(40, 200, 3), rng.uniform(40, 200, 3)
    t = rng.uniform(0, 1)
    grad = (t * xx + (1 - t) * yy)[..., None]
    img = c0 * (1 - grad) + c1 * grad
    angle, freq = rng.uniform(0, np.pi), rng.uniform(4, 14)
    stripes = np.sin(2 * np.pi * freq * (np.cos(angle) * xx + np.sin(angle) * yy) + rng.uniform(0, 6.3))
    img += rng.uniform(10, 35) * stripes[..., None]
    img += rng.normal(0, rng.uniform(5, 20), img.shape)
    return img


def _draw(img: np.ndarray, rng: np.random.Generator, boxes: list[tuple[float, float, float, float]]) -> tuple | None:
    """One object that overlaps no earlier box by more than a quarter of its area: (class, cx, cy, w, h) in pixels,
    or None after a few tries."""
    from PIL import Image, ImageDraw

    size = img.shape[0]
    for _ in range(20):
        cls = int(rng.integers(len(SYNTHETIC_CLASSES)))
        side = float(rng.uniform(0.12, 0.45) * size)
        x0, y0 = rng.uniform(0, size - side, 2)
        box = (float(x0), float(y0), float(x0 + side), float(y0 + side))
        if all(_overlap(box, b) <= 0.25 * side * side for b in boxes):
            break
    else:
        return None
    colour = tuple(int(v) for v in np.clip(_PALETTE[rng.integers(len(_PALETTE))] + rng.normal(0, 15, 3), 0, 255))
    mask = Image.new("L", (size, size), 0)
    d = ImageDraw.Draw(mask)
    if cls == 0:
        d.ellipse(box, fill=255)
    elif cls == 1:
        d.rectangle(box, fill=255)
    else:
        d.polygon([(box[0], box[3]), (box[2], box[3]), ((box[0] + box[2]) / 2, box[1])], fill=255)
    m = np.asarray(mask, dtype=np.float32)[..., None] / 255
    shade = np.asarray(colour, dtype=np.float32) + rng.normal(0, 8, img.shape)
    img[:] = img * (1 - m) + shade * m
    boxes.append(box)
    return cls, (box[0] + box[2]) / 2, (box[1] + box[3]) / 2, side, side


def _overlap(a: tuple, b: tuple) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return max(0.0, w) * max(0.0, h)


def make_synthetic_detection(root: str | Path, train: int = 160, val: int = 48, size: int = 128, seed: int = 0) -> Path:
    """Write the synthetic detection set (module docstring) into ``root`` and return its dataset YAML.

    Args:
        root: output folder; a set already there made with the same arguments is reused (its YAML's ``path:``
            rewritten if the folder was moved or copied).
        train, val: number of images of each split.
        size: image side in pixels.
        seed: the generator's seed (the same seed, the same images).
    """
    from PIL import Image

    for name, v, low in (("train", train, 1), ("val", val, 1), ("size", size, 16)):
        if not (isinstance(v, int) and v >= low):
            raise ValueError(f"make_synthetic_detection: {name} must be an integer >= {low}, got {v!r}")
    root = Path(root).resolve()
    spec = {"train": train, "val": val, "size": size, "seed": seed, "classes": list(SYNTHETIC_CLASSES), "version": 1}
    yaml_path, manifest = root / "synthetic.yaml", root / "synthetic.json"
    if yaml_path.exists() and manifest.exists() and json.loads(manifest.read_text()) == spec:
        if yaml_path.read_text() != _dataset_yaml(root, spec):  # a set moved or copied elsewhere: its path: line
            yaml_path.write_text(_dataset_yaml(root, spec))
        return yaml_path
    rng = np.random.default_rng(seed)
    for split, count in (("train", train), ("val", val)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            img = _background(rng, size)
            boxes: list = []
            lines = []
            for _ in range(int(rng.integers(1, 4))):
                obj = _draw(img, rng, boxes)
                if obj is not None:
                    c, cx, cy, w, h = obj
                    lines.append(f"{c} {cx / size:.6f} {cy / size:.6f} {w / size:.6f} {h / size:.6f}")
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / "images" / split / f"{i:05d}.png")
            (root / "labels" / split / f"{i:05d}.txt").write_text("\n".join(lines) + "\n")
    yaml_path.write_text(_dataset_yaml(root, spec))
    manifest.write_text(json.dumps(spec) + "\n")
    return yaml_path


def _dataset_yaml(root: Path, spec: dict) -> str:
    """The set's dataset YAML, Ultralytics' format, with ``path:`` the folder it is in."""
    names = "\n".join(f"  {i}: {n}" for i, n in enumerate(spec["classes"]))
    return (
        f"# attnzoo synthetic detection set (NOT real images): {spec['train']} train / {spec['val']} val, "
        f"{spec['size']}x{spec['size']}, seed {spec['seed']}\n"
        f"path: {root}\ntrain: images/train\nval: images/val\nnames:\n{names}\n"
    )


def _images(entry: Any, base: Path, where: str) -> list[Path]:
    """The images a dataset YAML's ``train`` / ``val`` entry names: folders, a .txt list, or image files."""
    entries = entry if isinstance(entry, list) else [entry]
    found: list[Path] = []
    for e in entries:
        p = Path(str(e)).expanduser()
        p = p if p.is_absolute() else base / p
        if p.is_dir():
            found += sorted(q for q in p.rglob("*") if q.suffix.lower() in IMAGE_SUFFIXES)
        elif p.is_file() and p.suffix == ".txt":
            for line in p.read_text().splitlines():
                q = Path(line.strip())
                if line.strip():
                    found.append(q if q.is_absolute() else p.parent / q)
        elif p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
            found.append(p)
        else:
            raise ValueError(f"compare --data: {where}: {str(p)!r} does not exist (no folder, image list or image)")
    return found


def _label_path(image: Path) -> Path:
    """Ultralytics' convention: the last ``images`` folder of the path becomes ``labels``, the suffix ``.txt``."""
    parts = list(image.parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def check_detection_data(path: str | Path) -> dict:
    """Check a YOLO dataset YAML before any training; ``ValueError`` saying what is wrong.

    The file must exist and be a YAML mapping with ``train``, ``val`` and ``names`` (or ``nc``); both splits
    must name images that exist (folders, ``.txt`` lists or files, relative to ``path:`` or to the YAML's
    folder), and each split must have label files (``images/`` → ``labels/``, ``.txt``) with at least one box.
    Nothing is downloaded: a dataset that Ultralytics would fetch (its ``download:`` key) must be fetched first.
    Returns ``{"yaml": path, "names": [...], "train": n, "val": n, "boxes": {"train": n, "val": n}}``.
    """
    import yaml

    p = Path(path).expanduser()
    if not p.is_file():
        raise ValueError(
            f"compare --data: expected a YOLO dataset YAML file or 'synthetic', got {str(path)!r}: no such file"
        )
    try:
        d = yaml.safe_load(p.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ValueError(f"compare --data: {str(p)!r} is not valid YAML: {e}") from None
    if not isinstance(d, dict):
        raise ValueError(
            f"compare --data: {str(p)!r} must be a YAML mapping (path, train, val, names), got {type(d).__name__}"
        )
    missing = [k for k in ("train", "val") if not d.get(k)]
    if missing or not (d.get("names") or d.get("nc")):
        missing += [] if (d.get("names") or d.get("nc")) else ["names"]
        raise ValueError(
            f"compare --data: {str(p)!r} must have the keys train, val and names (Ultralytics' dataset format); "
            f"missing: {', '.join(missing)}"
        )
    names = d.get("names")
    if isinstance(names, dict):
        names = [names[k] for k in sorted(names)]
    elif names is None:
        names = [str(i) for i in range(int(d["nc"]))]
    base = Path(str(d["path"])).expanduser() if d.get("path") else p.parent
    base = base if base.is_absolute() else (p.parent / base)
    info: dict[str, Any] = {"yaml": str(p.resolve()), "names": list(names), "boxes": {}}
    for split in ("train", "val"):
        images = _images(d[split], base, f"{split}: {d[split]!r}")
        if not images:
            raise ValueError(f"compare --data: {str(p)!r}: the {split} split {d[split]!r} holds no images")
        labels = [_label_path(im) for im in images]
        present = [lab for lab in labels if lab.is_file()]
        if not present:
            raise ValueError(
                f"compare --data: {str(p)!r}: the {split} split has no label files (expected e.g. "
                f"{str(labels[0])!r}: one 'class cx cy w h' line per box, next to images/ in labels/)"
            )
        boxes = sum(1 for lab in present for line in lab.read_text().splitlines() if line.strip())
        if boxes == 0:
            raise ValueError(
                f"compare --data: {str(p)!r}: the {split} split's {len(present)} label files hold no boxes"
            )
        info[split] = len(images)
        info["boxes"][split] = boxes
    return info

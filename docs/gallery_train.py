"""Train the detectors behind the gallery's pictures and draw each module's maps from its trained detector.

For every module that records a map and fits a detector's backbone (``sitegen.trained.detector_modules``): an
Ultralytics yolo11n with the module after backbone rows 4, 6 and 8 (the C3k2 blocks of the P3, P4 and P5
stages, placed the way ``attnzoo compare --task detect --where 4,6,8`` places it) is trained on attnzoo's
synthetic detection set, and the maps that ``attnzoo.capture_attention`` records on a fixed validation image are
drawn into ``docs/data/gallery/<name>.png`` (module page), ``<name>-card.png`` (gallery card) and the sidecar
``<name>.json`` (how it was made, the mAP of that training, and the module's hashes that make the picture go
stale when the module's behaviour changes; see ``sitegen/trained.py``).

Training, kept affordable on a CPU: the plain yolo11n is trained once (``--base-epochs``) and shared; each
module's network starts from those weights (its own rows initialised as the module initialises them), which stay
frozen while the module's rows are trained (``FROZEN``: a learning rate that moves even a zero-initialised gate
in a few dozen steps, 2 epochs; ``WHOLE``: the whole network, 6 epochs, for the modules the frozen network cannot
follow), by Ultralytics' own trainer (``attnzoo.compare.detect_train``, the route of ``compare --task detect``), then
validated once by Ultralytics' validator.  The modules of ``LONG_MODULES`` get the same recipe with more epochs
(``FROZEN_LONG_EPOCHS`` 10, ``WHOLE_LONG_EPOCHS`` 20): those whose short run left a drawn map nearly constant (one not
constant by construction, see ``sitegen.trained.CONSTANT_BY_CONSTRUCTION``) or the detector below mAP50-95 0.05;
the sidecar and the caption say which recipe made the picture.  So the picture shows what
the module learned to look at inside a detector that works, not a detector trained with the module from scratch.

    pip install -e ".[docs,integrations]"
    python docs/gallery_train.py --work runs/gallery               # every missing or stale picture
    python docs/gallery_train.py --work runs/gallery --modules cbam,ema --force

Resumable: a module whose picture is current (same hashes, same settings) is skipped, and the shared weights
are trained once per ``--work`` folder.  Parallel-safe: several invocations on one ``--work`` folder take
modules one at a time through lock files.  ``--before-each CMD`` runs a shell command before each training
(e.g. a script that waits while a benchmark needs the machine).

ultralytics is AGPL-3.0: this script only calls its public API at run time and contains none of its code.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS))
sys.path.insert(0, str(DOCS.parent / "src"))

from sitegen import trained  # noqa: E402
from sitegen.data import ROOT  # noqa: E402

NETWORK = "yolo11n"
AFTER_ROWS = (4, 6, 8)  # yolo11n's backbone C3k2 rows of the P3 / P4 / P5 stages (strides 8, 16, 32)
STRIDES = (8, 16, 32)
DATA = {"train": 160, "val": 48, "size": 128, "seed": 0}  # make_synthetic_detection's arguments
#: what the pictures are made with; a sidecar with other settings is redone
#: each module's run starts from the plain network's weights.  FROZEN: they stay frozen (their BatchNorm statistics
#: still follow) and only the inserted rows are trained, with a learning rate that moves a zero-initialised gate in a
#: few dozen steps.  WHOLE, for the modules that replace the features rather than rescale them (self-attention
#: without a residual path...): the frozen network cannot follow them (mAP near 0), so the whole network is trained
FROZEN = {
    "freeze": "all but the module",
    "epochs": 2,
    "optimizer": "AdamW",
    "lr0": 0.01,
    "warmup_epochs": 0,
    "mosaic": 0.0,
}
WHOLE = {"freeze": "none", "epochs": 6, "optimizer": "AdamW", "lr0": 0.002, "warmup_epochs": 0, "mosaic": 0.0}
WHOLE_MODULES = frozenset(
    "aa_conv agent_attention area_attention axial bot_mhsa bra cascaded_group_attention clo_attention cot dcnv2 "
    "deformable_attention efficient_self_attention epsa focal_modulation global_attention halo lka local_window lsk "
    "lska multipole neighborhood outlook shsa shuffle_attention spatial_self_attention splat swin".split()
)
#: the long recipe: FROZEN or WHOLE with more epochs (same optimizer and learning rate; Ultralytics' linear decay is
#: stretched over the longer run), for LONG_MODULES: the modules whose short run left a map (as drawn: averaged over
#: channels, heads or groups, or their maximum where they are a distribution at each position) nearly constant without being constant by construction, or the detector below mAP50-95
#: 0.05 (20 steps move a zero-initialised gate too little to show on [0, 1]; 60 steps do not let the whole network
#: recover from a module that replaces its features).  Not for every module: 5× / 3.3× the short run's time.
FROZEN_LONG_EPOCHS = 10
WHOLE_LONG_EPOCHS = 20
LONG_MODULES = frozenset(
    "aa_conv agent_attention area_attention axial bra caa cascaded_group_attention cbam cbam_spatial clo_attention "
    "coord cot cpca deformable_attention double_attention efficient_self_attention epsa focal_modulation gam gc halo "
    "lka lsk lska mlca neighborhood scsa sge shsa shuffle_attention spatial_self_attention splat triplet".split()
)
#: the last step, for LONG_MODULES trained as WHOLE whose maps stayed flat after the long recipe too: the long recipe at
#: FROZEN's learning rate (a zero-initialised gate inside a module that replaces the features barely moves at WHOLE's;
#: shuffle_attention: its spatial gate moved by at most 0.06 in 20 epochs at lr0 0.002)
FAST_MODULES = frozenset({"shuffle_attention"})
SETTINGS = {"network": NETWORK, "after_rows": list(AFTER_ROWS), "data": DATA, "imgsz": 128, "batch": 16, "seed": 0}


def recipe(name: str) -> dict:
    base = WHOLE if name in WHOLE_MODULES else FROZEN
    if name not in LONG_MODULES:
        return base
    long = {**base, "epochs": WHOLE_LONG_EPOCHS if base is WHOLE else FROZEN_LONG_EPOCHS, "long": True}
    return {**long, "lr0": FROZEN["lr0"]} if name in FAST_MODULES else long


#: trained first (the modules users ask about most); the others follow by name
PRIORITY = (
    "cbam",
    "se",
    "eca",
    "ema",
    "simam",
    "coord",
    "gam",
    "triplet",
    "scse",
    "bam",
    "gc",
    "nonlocal",
    "lsk",
    "polarized",
    "shuffle_attention",
    "sge",
    "ela",
    "caa",
    "lska",
    "lka",
    "mlca",
    "scsa",
    "cpca",
    "gct",
    "fca",
    "ese",
    "sk",
    "criss_cross",
    "danet_position",
    "danet_channel",
    "outlook",
    "cot",
    "swin",
    "bra",
    "dcnv2",
)


def log(msg: str) -> None:
    print(f"[gallery {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------------------------------- locks
class Lock:
    """An exclusive lock file holding the owner's pid; a lock whose process is gone is taken over."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                try:
                    pid = int(self.path.read_text().strip() or 0)
                    os.kill(pid, 0)
                    return False  # held by a live process
                except (ProcessLookupError, ValueError):
                    self.path.unlink(missing_ok=True)  # stale: its owner is gone
                    continue
                except PermissionError:
                    return False
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            return True
        return False

    def release(self) -> None:
        self.path.unlink(missing_ok=True)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------------------ training
def _train_args(epochs: int, **extra: Any) -> dict:
    return {
        "epochs": epochs,
        "imgsz": SETTINGS["imgsz"],
        "batch": SETTINGS["batch"],
        "device": "cpu",
        "workers": 0,
        "val": False,  # validated once, after the last epoch
        "plots": False,
        "verbose": False,
        **extra,
    }


def _model_yaml(work: Path, module: str) -> Path:
    import attnzoo
    from attnzoo.compare.detect import _load, module_config
    from attnzoo.integrations.ultralytics import insert_layers, row_kind, save_yaml

    base = _load(f"{NETWORK}.yaml")
    if module == "none":
        cfg = base
    elif row_kind(module) == "resample":  # e.g. sk, dcnv2: channels filled in from the input, no c2 argument
        cfg = insert_layers(base, [(a, "Az" + attnzoo.info(module).cls.__name__, []) for a in AFTER_ROWS])
    else:
        cfg = module_config(base, module, list(AFTER_ROWS), [])  # the rows of compare --task detect --where 4,6,8
    (work / "models").mkdir(parents=True, exist_ok=True)
    return save_yaml(cfg, work / "models" / f"{NETWORK}-{module}.yaml")


def _trainable(start: Path) -> int:
    """Parameters of the inserted rows in the module's start checkpoint."""
    import torch

    model = torch.load(start, weights_only=False)["model"]
    rows = {a + 1 + sum(1 for b in AFTER_ROWS if b < a) for a in AFTER_ROWS}
    return sum(p.numel() for i, m in enumerate(model.model) if i in rows for p in m.parameters())


def _validate_only(run_dir: Path, start: Path, data_yaml: Path) -> dict:
    """Ultralytics' validation of the start checkpoint (a module without parameters is not trained)."""
    from ultralytics import YOLO

    from attnzoo.compare.detect_train import METRIC_KEYS

    path = run_dir / "result.json"
    if path.exists():
        return json.loads(path.read_text())
    metrics = YOLO(str(start)).val(
        data=str(data_yaml),
        imgsz=SETTINGS["imgsz"],
        batch=SETTINGS["batch"],
        device="cpu",
        workers=0,
        plots=False,
        verbose=False,
        project=str(run_dir.parent),
        name=run_dir.name,
        exist_ok=True,
    )
    result = {k: float(metrics.results_dict[v]) for k, v in METRIC_KEYS.items()}
    result.update(flags=[], trained=False)
    run_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result) + "\n")
    return result


def _frozen(yaml_path: Path) -> list[int]:
    """Every row of the module's network but the inserted ones (Ultralytics' ``freeze=``)."""
    import yaml

    cfg = yaml.safe_load(yaml_path.read_text())
    inserted = {a + 1 + sum(1 for b in AFTER_ROWS if b < a) for a in AFTER_ROWS}
    return [i for i in range(len(cfg["backbone"]) + len(cfg["head"])) if i not in inserted]


def _weights(run_dir: Path) -> Path:
    best = run_dir / "weights" / "best.pt"
    return best if best.exists() else run_dir / "weights" / "last.pt"


def base_run(work: Path, data_yaml: Path, epochs: int) -> dict:
    """Train (once per ``work`` folder; others wait for it) the plain network the modules start from."""
    from attnzoo.compare.detect_train import train_detect_run

    run_dir = work / "base" / f"{NETWORK}-e{epochs}"
    lock = Lock(work / "locks" / "base.lock")
    while not (run_dir / "result.json").exists():
        if lock.acquire():
            try:
                log(f"training the plain {NETWORK} {epochs} epochs (shared by every module) → {run_dir}")
                t0 = time.perf_counter()
                train_detect_run(
                    run_dir,
                    _model_yaml(work, "none"),
                    str(data_yaml),
                    SETTINGS["seed"],
                    _train_args(epochs),
                    {"module": "none"},
                )
                log(f"plain {NETWORK} trained in {time.perf_counter() - t0:.0f} s")
            finally:
                lock.release()
        else:
            time.sleep(10)
    return json.loads((run_dir / "result.json").read_text())


def start_checkpoint(work: Path, module: str, yaml_path: Path, base_weights: Path) -> Path:
    """A checkpoint of the module's network holding the plain network's trained weights (rows renumbered around
    the inserted ones) and the module's own initial weights (``torch.manual_seed(seed)`` before building)."""
    import torch
    from ultralytics import YOLO
    from ultralytics.nn.tasks import DetectionModel

    base = YOLO(str(base_weights)).model.float().state_dict()
    torch.manual_seed(SETTINGS["seed"])
    model = DetectionModel(str(yaml_path), nc=len(_names()), verbose=False)

    def new_index(i: int) -> int:
        return i + sum(1 for a in AFTER_ROWS if a < i)

    remapped = {}
    for key, value in base.items():
        parts = key.split(".")
        if parts[0] == "model" and parts[1].isdigit():
            parts[1] = str(new_index(int(parts[1])))
        remapped[".".join(parts)] = value
    own = model.state_dict()
    bad = [k for k, v in remapped.items() if k not in own or own[k].shape != v.shape]
    if bad:
        raise RuntimeError(f"{module}: the plain network's weights do not fit the module's network: {bad[:5]}")
    missing = model.load_state_dict(remapped, strict=False).missing_keys
    inserted = {f"model.{new_index(a) + 1}." for a in AFTER_ROWS}
    if any(not any(k.startswith(p) for p in inserted) for k in missing):
        raise RuntimeError(f"{module}: weights left uninitialised outside the inserted rows: {missing[:5]}")
    path = work / "start" / f"{NETWORK}-{module}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model, "train_args": {}}, path)
    return path


_NAMES: list[str] = []


def _names() -> list[str]:
    if not _NAMES:
        from attnzoo.compare.detect_data import SYNTHETIC_CLASSES

        _NAMES.extend(SYNTHETIC_CLASSES)
    return _NAMES


# ------------------------------------------------------------------------------------------------- the maps
def val_image(data_yaml: Path) -> tuple[Path, list[list[float]]]:
    """The fixed validation image: the first with three objects (else the most objects), and its boxes."""
    root = data_yaml.parent
    best: tuple[int, Path, list] | None = None
    for label in sorted((root / "labels" / "val").glob("*.txt")):
        boxes = [[float(v) for v in line.split()] for line in label.read_text().splitlines() if line.strip()]
        if best is None or len(boxes) > best[0]:
            best = (len(boxes), root / "images" / "val" / (label.stem + ".png"), boxes)
        if len(boxes) >= 3:
            break
    assert best is not None
    return best[1], best[2]


def capture(weights: Path, image: Path, boxes: list[list[float]]) -> tuple[Any, Any]:
    """(image as H×W×3 in [0, 1] with the ground-truth boxes drawn in white, maps renamed by stage)."""
    import numpy as np
    import torch
    from PIL import Image, ImageDraw
    from ultralytics import YOLO

    import attnzoo
    from attnzoo.integrations.ultralytics import ModuleRow

    net = YOLO(str(weights)).model.float().eval()
    rgb = Image.open(image).convert("RGB")
    x = torch.from_numpy(np.asarray(rgb).copy()).float().div(255).permute(2, 0, 1)[None]
    with torch.no_grad(), attnzoo.capture_attention(net) as maps:
        net(x)
    names = {}
    for a, stride in zip(AFTER_ROWS, STRIDES):
        row = a + 1 + sum(1 for b in AFTER_ROWS if b < a)
        names[f"model.{row}"] = f"P{stride.bit_length() - 1}"  # the stage (stride 2^k); the caption gives the rows
    renamed = type(maps)()
    renamed.input_sizes = {}
    for key, value in maps.items():
        head, _, rest = key.partition(".")
        row, _, tail = rest.partition(".")
        if row.isdigit() and isinstance(net.model[int(row)], ModuleRow):  # a held module: model.5.module
            tail = tail.removeprefix("module").removeprefix(".")
        new = names.get(f"{head}.{row}")
        if new is None:
            raise RuntimeError(f"a map was recorded outside the inserted rows: {key}")
        new = new + (f" {tail}" if tail else "")
        renamed[new] = value
        if key in maps.input_sizes:
            renamed.input_sizes[new] = maps.input_sizes[key]
    draw = ImageDraw.Draw(rgb)
    w, h = rgb.size
    for _, cx, cy, bw, bh in boxes:
        draw.rectangle(
            ((cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w - 1, (cy + bh / 2) * h - 1),
            outline=(255, 255, 255),
        )
    img = torch.from_numpy(np.asarray(rgb).copy()).float().div(255)
    return img, renamed


def flat_maps(maps: Any) -> list[str]:
    """Titles of the maps that are constant or nearly so (on the scale they are drawn with)."""
    from attnzoo import viz

    out = []
    for title, _, data, probs in viz._items(maps, maps.input_sizes):
        if viz.constancy_note(data, viz.value_range(data, viz._gate_like(data, probs), trained.DRAWING["scale"])):
            out.append(title)
    return out


def panel_titles(maps: Any) -> list[str]:
    """The titles of the drawn panels (e.g. ``"P3:attn max of 64"`` for a map drawn as its maximum over units)."""
    from attnzoo import viz

    return [title for title, *_ in viz._items(maps, maps.input_sizes)]


# ---------------------------------------------------------------------------------------------- one module
def _commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "src"], cwd=ROOT, capture_output=True, text=True)
        return head.stdout.strip() + ("+uncommitted-src" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _wanted(name: str, args: argparse.Namespace) -> dict:
    return json.loads(json.dumps({**SETTINGS, "base_epochs": args.base_epochs, "finetune": recipe(name)}))


def needs_work(name: str, out: Path, args: argparse.Namespace) -> str | None:
    """Why the module's picture must be (re)made, or None when it is current with these settings."""
    why = trained.staleness(name, out)
    if why:
        return why
    side = trained.read_sidecar(name, out) or {}
    if side.get("settings") != _wanted(name, args):
        return f"{name}: made with other settings"
    return None


def make_picture(name: str, work: Path, out: Path, data_yaml: Path, base: dict, args: argparse.Namespace) -> dict:
    import torch
    import ultralytics
    from sitegen.pictures import draw_maps

    import attnzoo
    from attnzoo.compare.detect_train import train_detect_run

    yaml_path = _model_yaml(work, name)
    start = start_checkpoint(work, name, yaml_path, _weights(Path(base["_run_dir"])))
    tag = hashlib.sha256(json.dumps(needs := _wanted(name, args), sort_keys=True).encode()).hexdigest()[:8]
    run_dir = work / "runs" / f"{name}-{tag}"  # a run folder per settings (finished runs are reused)
    if (run_dir / "result.json").exists() and args.force:
        import shutil

        shutil.rmtree(run_dir)
    t0 = time.perf_counter()
    reused = (run_dir / "result.json").exists()  # a finished run: only the drawing is redone
    if _trainable(start) == 0:  # a parameter-free module (SimAM...): nothing to train, the plain network as is
        result, weights = _validate_only(run_dir, start, data_yaml), start
    else:
        result, weights = None, _weights(run_dir)
    result = result or train_detect_run(
        run_dir,
        yaml_path,
        str(data_yaml),
        SETTINGS["seed"],
        _train_args(
            (r := recipe(name))["epochs"],
            pretrained=str(start),
            freeze=_frozen(yaml_path) if r["freeze"] != "none" else None,
            **{k: v for k, v in r.items() if k not in ("freeze", "epochs", "long")},
        ),
        {"module": name},
    )
    seconds = time.perf_counter() - t0
    old = trained.read_sidecar(name, out) or {}
    if reused and old.get("settings") == needs:  # keep the record of the training that made the weights
        seconds, made, commit = old["training"]["seconds"], old["date"], old["attnzoo_commit"]
    else:
        made, commit = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), _commit()
    image, boxes = val_image(data_yaml)
    img, maps = capture(weights, image, boxes)
    page, card, _ = draw_maps(img, maps, columns=4, panel=150, colors=128, scale=trained.DRAWING["scale"])
    flat = flat_maps(maps)
    side = {
        "module": name,
        "network": NETWORK,
        "inserted": [
            {"row": a, "stride": s, "size": f"{SETTINGS['imgsz'] // s}×{SETTINGS['imgsz'] // s}"}
            for a, s in zip(AFTER_ROWS, STRIDES)
        ],
        "data": {**DATA, "name": "attnzoo synthetic shapes (make_synthetic_detection)", "classes": _names()},
        "val_image": f"images/val/{image.name}",
        "training": {
            "base_epochs": args.base_epochs,
            "epochs": recipe(name)["epochs"],
            "imgsz": SETTINGS["imgsz"],
            "batch": SETTINGS["batch"],
            "seed": SETTINGS["seed"],
            "recipe": "plain network: Ultralytics' default recipe; module's run: from the plain network's weights, "
            + ", ".join(f"{k}={v}" for k, v in recipe(name).items())
            + "; validated once after the last epoch",
            "seconds": round(seconds, 1),
            "trained": result.get("trained", True),  # False: no parameters, the plain network validated as is
            "torch_threads": torch.get_num_threads(),
            "flags": result["flags"],
        },
        "metrics": {k: result[k] for k in ("map50", "map50_95", "precision", "recall")},
        "base_metrics": {k: base[k] for k in ("map50", "map50_95", "precision", "recall")},
        "flat_maps": flat,
        "panels": panel_titles(maps),
        "settings": needs,
        "drawing": trained.DRAWING,
        "date": made,
        "attnzoo_commit": commit,
        "attnzoo": attnzoo.__version__,
        "ultralytics": ultralytics.__version__,
        "torch": torch.__version__,
        "command": trained.TRAIN_COMMAND,
        **trained.module_hashes(name),
    }
    p = trained.paths(name, out)
    out.mkdir(parents=True, exist_ok=True)
    _write_atomic(p["page"], page)
    _write_atomic(p["card"], card)
    _write_atomic(p["sidecar"], (json.dumps(side, indent=1, ensure_ascii=False) + "\n").encode())  # last: complete
    return side


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, default=Path("runs/gallery"), help="training folder (data, runs, locks)")
    p.add_argument("--out", type=Path, default=trained.GALLERY_DIR, help="where the pictures go")
    p.add_argument("--modules", default=None, help="comma-separated names (default: every module that fits)")
    p.add_argument("--base-epochs", type=int, default=20, help="epochs of the shared plain network")
    p.add_argument("--force", action="store_true", help="redo the modules even if their picture is current")
    p.add_argument("--before-each", default=None, help="shell command to run before each training")
    p.add_argument("--list", action="store_true", help="print what would be done and stop")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    fits = trained.detector_modules()
    names = args.modules.split(",") if args.modules else fits
    unknown = [n for n in names if n not in fits]
    if unknown:
        raise SystemExit(f"gallery_train: {unknown} do not get a trained-detector picture (see sitegen/trained.py)")
    names = sorted(names, key=lambda n: (PRIORITY.index(n) if n in PRIORITY else len(PRIORITY), n))
    todo = [(n, why) for n in names if (why := "--force" if args.force else needs_work(n, args.out, args))]
    for n, why in todo:
        log(f"to do: {why}")
    log(f"{len(todo)} of {len(names)} pictures to make")
    if args.list or not todo:
        return 0

    from ultralytics.utils import LOGGER

    import attnzoo.compare.detect_train  # noqa: F401  (registers the Az* YAML names)
    from attnzoo.compare.detect_data import make_synthetic_detection

    LOGGER.setLevel("WARNING")
    work = args.work.resolve()
    data_yaml = make_synthetic_detection(work / "data" / "synthetic", **DATA)
    base = base_run(work, data_yaml, args.base_epochs)
    base["_run_dir"] = str(work / "base" / f"{NETWORK}-e{args.base_epochs}")
    log(f"plain {NETWORK}: mAP50-95 {base['map50_95']:.3f}, mAP50 {base['map50']:.3f}")
    failed = []
    for name, _ in todo:
        lock = Lock(work / "locks" / f"{name}.lock")
        if not lock.acquire():
            log(f"{name}: another process is on it, skipped")
            continue
        try:
            if not args.force and not needs_work(name, args.out, args):
                continue  # made by another process meanwhile
            if args.before_each:
                subprocess.run(args.before_each, shell=True, check=False)
            t0 = time.perf_counter()
            side = make_picture(name, work, args.out, data_yaml, base, args)
            flat = f"; FLAT: {', '.join(side['flat_maps'])}" if side["flat_maps"] else ""
            m = side["metrics"]["map50_95"]
            log(
                f"{name}: mAP50-95 {m if m is None else round(m, 3)}, flags {side['training']['flags']}, training {side['training']['seconds']:.0f} s, "
                f"total {time.perf_counter() - t0:.0f} s, page {trained.paths(name, args.out)['page'].stat().st_size // 1024} KB{flat}"
            )
        except Exception as e:  # noqa: BLE001  one module's failure does not stop the others
            failed.append(name)
            log(f"{name}: FAILED {type(e).__name__}: {e}")
        finally:
            lock.release()
    if failed:
        log(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

"""One run of ``attnzoo compare --task detect``: Ultralytics' own trainer, driven from Python, in its own folder.

:class:`AttnzooDetectionTrainer` is Ultralytics' ``DetectionTrainer`` plus two things: importing it registers
attnzoo's YAML names (so the DDP workers Ultralytics launches, which re-import the trainer class, parse the same
YAML), and it records the run's health in ``attnzoo_health.json`` (per-epoch mean training loss as Ultralytics
logs it, the number of batches whose loss was not finite).  Everything else (data, augmentation, optimiser,
schedule, EMA, validation, mAP, DDP, checkpoints, resume) is Ultralytics'.

ultralytics is AGPL-3.0: this file only calls it at run time and contains none of its code.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

from ultralytics.models.yolo.detect import DetectionTrainer

from ..integrations.ultralytics import register
from .engine import read_json, write_json
from .health import detect_flags

__all__ = ["AttnzooDetectionTrainer", "train_detect_run", "HEALTH_FILE", "METRIC_KEYS"]

register(prefix="Az")

HEALTH_FILE = "attnzoo_health.json"
#: result key -> Ultralytics' key in the validator's results
METRIC_KEYS = {
    "precision": "metrics/precision(B)",
    "recall": "metrics/recall(B)",
    "map50": "metrics/mAP50(B)",
    "map50_95": "metrics/mAP50-95(B)",
}


def _total(tloss: Any) -> float:
    """Ultralytics' running mean of the epoch's loss items (a dict in 8.4, a tensor in older releases), summed."""
    if tloss is None:
        return float("nan")
    values = tloss.values() if isinstance(tloss, dict) else tloss
    return float(sum(float(v) for v in values))


class AttnzooDetectionTrainer(DetectionTrainer):
    """Ultralytics' detection trainer that writes ``attnzoo_health.json`` into its save folder (rank 0)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.add_callback("on_train_batch_end", _count_nonfinite)
        self.add_callback("on_train_epoch_end", _record_epoch)


def _health_path(trainer: Any) -> Path:
    return Path(trainer.save_dir) / HEALTH_FILE


def _read_health(trainer: Any) -> dict:
    path = _health_path(trainer)
    if not hasattr(trainer, "_attnzoo_health"):
        trainer._attnzoo_health = read_json(path) if path.exists() else {"epoch_losses": {}, "nonfinite_batches": 0}
    return trainer._attnzoo_health


def _count_nonfinite(trainer: Any) -> None:
    loss = getattr(trainer, "loss", None)
    if loss is not None and not bool(loss.isfinite().all()):
        _read_health(trainer)["nonfinite_batches"] += 1


def _record_epoch(trainer: Any) -> None:
    from ultralytics.utils import RANK

    health = _read_health(trainer)
    health["epoch_losses"][str(trainer.epoch + 1)] = _total(trainer.tloss)  # a redone (NaN-recovered) epoch overwrites
    if RANK in (-1, 0):
        Path(trainer.save_dir).mkdir(parents=True, exist_ok=True)
        write_json(_health_path(trainer), health)


def _metrics(trainer: Any) -> dict[str, float | None]:
    m = getattr(trainer, "metrics", None)
    m = getattr(m, "results_dict", m) or {}
    out: dict[str, float | None] = {}
    for key, theirs in METRIC_KEYS.items():
        v = m.get(theirs)
        out[key] = float(v) if v is not None else None
    return out


def _resume(last: Path) -> Any:
    """The YOLO model after Ultralytics' ``resume=True`` from ``last``; None when it cannot resume (a finished or
    unreadable checkpoint) before training a batch.  An error after that (a NaN) propagates."""
    from ultralytics import YOLO

    model: Any = None
    try:
        model = YOLO(str(last))
        model.train(resume=True, trainer=AttnzooDetectionTrainer)
    except Exception:
        trainer: Any = getattr(model, "trainer", None)
        if trainer is not None and getattr(trainer, "epoch", 0) > getattr(trainer, "start_epoch", 0):
            raise
        return None
    return model


def train_detect_run(
    run_dir: Path,
    model_yaml: Path,
    data_yaml: str,
    seed: int,
    train_args: dict,
    static: dict,
) -> dict:
    """Train (or resume, or skip) one run in ``run_dir`` (Ultralytics' save folder) and return its result.

    A finished run (``result.json`` present) is read back, not retrained.  An interrupted one resumes from
    Ultralytics' ``weights/last.pt`` (``resume=True``); if that fails, the folder's training files are removed and
    the run starts again.  ``static``: the module's params, FLOPs, latency... copied into the result.
    """
    from ultralytics import YOLO

    result_path = run_dir / "result.json"
    if result_path.exists():
        return read_json(result_path)
    last = run_dir / "weights" / "last.pt"
    t0 = time.perf_counter()
    error = None
    resumed = False
    trainer: Any = None
    model: Any = None
    try:
        if last.exists():
            model = _resume(last)
            resumed = model is not None
            if not resumed:
                shutil.rmtree(run_dir / "weights", ignore_errors=True)
                (run_dir / HEALTH_FILE).unlink(missing_ok=True)
        if not resumed:
            model = YOLO(str(model_yaml))
            model.train(
                data=data_yaml,
                seed=seed,
                deterministic=True,
                project=str(run_dir.parent),
                name=run_dir.name,
                exist_ok=True,
                trainer=AttnzooDetectionTrainer,
                **train_args,
            )
        trainer = model.trainer
    except Exception as e:  # Ultralytics stops a run whose loss stays NaN with a RuntimeError
        error = f"{type(e).__name__}: {e}"
        trainer = None
    wall = time.perf_counter() - t0
    health = read_json(run_dir / HEALTH_FILE) if (run_dir / HEALTH_FILE).exists() else {}
    if error is not None and not (health.get("nonfinite_batches") or "nan" in error.lower()):
        raise RuntimeError(f"compare: run {run_dir} failed: {error}")  # a crash, not a diverged run: not recorded
    losses = [v for _, v in sorted((int(k), v) for k, v in health.get("epoch_losses", {}).items())]
    metrics = _metrics(trainer) if error is None and trainer is not None else dict.fromkeys(METRIC_KEYS)
    nonfinite = int(health.get("nonfinite_batches", 0))
    if metrics["map50_95"] is not None and not math.isfinite(metrics["map50_95"]):
        metrics["map50_95"] = None
    result = {
        "seed": seed,
        **metrics,
        **static,
        "epoch_losses": losses,
        "nonfinite_batches": nonfinite,
        "wall_time_s": wall,
        "resumed": resumed,
        "error": error,
        "flags": detect_flags(losses, metrics["map50_95"], nonfinite),
    }
    write_json(result_path, json.loads(json.dumps(result, default=str)))
    return result

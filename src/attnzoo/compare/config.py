"""Configuration of ``attnzoo compare`` and the up-front validation that runs before any training."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "CompareConfig",
    "parse_modules",
    "parse_seeds",
    "check_module_names",
    "TRAINING_KEYS",
    "default_lr",
    "default_warmup",
    "default_modules",
]

#: Fields of :class:`CompareConfig` that change what a run computes.  A run folder written with other values of
#: these cannot be resumed or reused (``output``, ``device``, ``workers``... only change where/how fast).
TRAINING_KEYS = (
    "model",
    "dataset",
    "image_size",
    "epochs",
    "batch_size",
    "optimizer",
    "lr",
    "weight_decay",
    "momentum",
    "warmup_epochs",
    "label_smoothing",
    "zero_init_residual",
    "clip_grad_norm",
    "pretrained",
    "stem",
    "where",
)


@dataclass
class CompareConfig:
    """Everything ``attnzoo compare`` needs.  ``None`` means "the default for this dataset / optimizer"."""

    modules: list[str] = field(default_factory=list)  # empty: default_modules for the model's input rank
    model: str = "cifar_resnet20"
    dataset: str = ""  # empty: digits, or video_shapes for a video model
    data_root: str = "data"
    image_size: int | None = None
    epochs: int = 15
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    batch_size: int = 64
    optimizer: str = "sgd"
    lr: float | None = None
    weight_decay: float | None = None
    momentum: float = 0.9
    warmup_epochs: float | None = None
    label_smoothing: float = 0.0
    zero_init_residual: bool | None = None  # None: on for networks with more than 16 residual blocks
    clip_grad_norm: float | None = 5.0
    amp: bool | None = None
    device: str = "auto"
    workers: int | None = None
    threads: int | None = None
    pretrained: str | None = None
    stem: str = "auto"
    where: list[str] | None = None
    output: str = "runs/compare"
    download: bool = True
    quiet: bool = False

    def resolved(self) -> "CompareConfig":
        """A copy with the recipe's defaults filled in (the modules and the dataset for the model, :func:`default_lr`,
        :func:`default_warmup`) and the
        arguments checked (``ValueError`` on a bad one)."""
        c = dataclasses.replace(self, modules=list(self.modules), seeds=list(self.seeds))
        if c.optimizer not in ("sgd", "adamw"):
            raise ValueError(f"compare: optimizer must be 'sgd' or 'adamw', got {c.optimizer!r}")
        if not (isinstance(c.batch_size, int) and c.batch_size >= 2):
            raise ValueError(f"compare: batch_size must be an integer >= 2, got {c.batch_size!r}")
        if not (isinstance(c.epochs, int) and c.epochs >= 1):
            raise ValueError(f"compare: epochs must be an integer >= 1, got {c.epochs!r}")
        from .models import model_rank

        if not c.modules:
            c.modules = default_modules(model_rank(c.model))
        if not c.dataset:
            from .data import default_dataset

            c.dataset = default_dataset(model_rank(c.model))
        if c.lr is None:
            c.lr = default_lr(c.model, c.optimizer, c.batch_size)
        if c.warmup_epochs is None:
            c.warmup_epochs = default_warmup(c.epochs)
        if c.weight_decay is None:
            c.weight_decay = 5e-4 if c.optimizer == "sgd" else 0.05
        checks = [
            ("epochs", c.epochs, isinstance(c.epochs, int) and c.epochs >= 1, "an integer >= 1"),
            ("batch_size", c.batch_size, isinstance(c.batch_size, int) and c.batch_size >= 2, "an integer >= 2"),
            ("lr", c.lr, math.isfinite(c.lr) and c.lr > 0, "a positive number"),
            ("weight_decay", c.weight_decay, math.isfinite(c.weight_decay) and c.weight_decay >= 0, ">= 0"),
            ("momentum", c.momentum, 0 <= c.momentum < 1, "in [0, 1)"),
            ("warmup_epochs", c.warmup_epochs, 0 <= c.warmup_epochs < c.epochs, f"in [0, epochs={c.epochs})"),
            (
                "clip_grad_norm",
                c.clip_grad_norm,
                c.clip_grad_norm is None or (math.isfinite(c.clip_grad_norm) and c.clip_grad_norm > 0),
                "None or a positive number",
            ),
            ("label_smoothing", c.label_smoothing, 0 <= c.label_smoothing < 1, "in [0, 1)"),
            ("image_size", c.image_size, c.image_size is None or c.image_size >= 8, "None or >= 8"),
            ("device", c.device, c.device in ("auto", "cpu", "cuda"), "'auto', 'cpu' or 'cuda'"),
            ("stem", c.stem, c.stem in ("auto", "imagenet", "cifar"), "'auto', 'imagenet' or 'cifar'"),
            ("workers", c.workers, c.workers is None or c.workers >= 0, "None or >= 0"),
            ("threads", c.threads, c.threads is None or c.threads >= 1, "None or >= 1"),
            (
                "seeds",
                c.seeds,
                len(c.seeds) >= 1 and len(set(c.seeds)) == len(c.seeds),
                "a non-empty list of distinct ints",
            ),
            (
                "modules",
                c.modules,
                len(c.modules) >= 1 and len(set(c.modules)) == len(c.modules),
                "a non-empty list of distinct names",
            ),
        ]
        for name, value, ok, expected in checks:
            if not ok:
                raise ValueError(f"compare: {name} must be {expected}, got {value!r}")
        if c.pretrained is not None:
            c.pretrained = str(Path(c.pretrained).expanduser().resolve())
        return c

    def training_dict(self) -> dict[str, Any]:
        """The fields that define what a run computes (see :data:`TRAINING_KEYS`)."""
        return {k: getattr(self, k) for k in TRAINING_KEYS}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def default_lr(model: str, optimizer: str, batch_size: int) -> float:
    """Peak learning rate of the default recipe, scaled linearly with the batch size (Goyal et al. 2017).

    SGD: He et al.'s 0.1 per 128 images (0.05 at batch 64).  Together with the warm-up (:func:`default_warmup`)
    and the gradient-norm clipping of the recipe this trains the torchvision ResNets too: without them, 0.1 at
    batch 64 made a randomly initialised ResNet-18 blow up in its first steps (loss ~7, chance-level accuracy
    after 2 epochs).  AdamW: 1e-3 per 256 images, at least 2.5e-4.
    """
    if optimizer == "adamw":
        return max(2.5e-4, 1e-3 * batch_size / 256)
    return 0.1 * batch_size / 128


def default_modules(rank: int) -> list[str]:
    """The modules compared when none are named: the baseline and four gates; in a video model (``rank`` 3) ``gc``
    stands in for ``coord``, which is 2-D only."""
    return ["none", "se", "eca", "cbam", "coord" if rank == 2 else "gc"]


def default_warmup(epochs: int) -> float:
    """Linear warm-up of the default recipe: a fifth of the run, at most one epoch (0.4 epochs for a 2-epoch run)."""
    return min(1.0, epochs / 5)


def parse_modules(text: str) -> list[str]:
    """``"none,se,eca"`` → ``["none", "se", "eca"]`` (blank entries dropped)."""
    return [m.strip() for m in text.split(",") if m.strip()]


def parse_seeds(text: str | int) -> list[int]:
    """``"3"`` → ``[0, 1, 2]`` (that many seeds); ``"0,5,7"`` → those seeds."""
    s = str(text).strip()
    try:
        if "," in s:
            return [int(v) for v in s.split(",") if v.strip()]
        n = int(s)
    except ValueError:
        raise ValueError(
            f"compare: seeds must be a count (e.g. 3) or a comma-separated list (e.g. 0,5,7), got {text!r}"
        ) from None
    if n < 1:
        raise ValueError(f"compare: seeds must be a count >= 1, got {n}")
    return list(range(n))


def check_module_names(names: list[str]) -> None:
    """Every name is ``none`` or a registered same-shape nchw module with its default arguments (what goes into a
    residual block); otherwise ``ValueError`` (with close matches)."""
    import attnzoo

    for name in names:
        if name == "none":
            continue
        try:
            entry = attnzoo.info(name)
        except ValueError as e:
            raise ValueError(f"compare: unknown module {name!r} ('none' is the baseline): {e}") from None
        entry.require_same_shape_nchw("compare", 64)

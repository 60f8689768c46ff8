"""Datasets for ``attnzoo compare``: ``digits`` (bundled, no download), ``cifar10``/``cifar100``, ``imagefolder:PATH``,
``synthetic`` (tests only) and ``video_shapes`` (clips of moving shapes for the video models, made on the fly).

Every dataset yields 3-channel float tensors (grayscale digits are repeated over three channels so that any
RGB model and any RGB checkpoint applies unchanged) and integer labels.  Training augmentation is the standard
one for each kind of data: random crop with padding for the 32×32 sets (plus horizontal flip for CIFAR, never
for digits: a mirrored 2 is not a 2), random-resized crop and flip for ``imagefolder``.  Augmentation draws from
torch's global generator, which the trainer reseeds at the start of every epoch: a run is reproducible and
resumes exactly at an epoch boundary.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sized, cast

import torch
from torch.utils.data import Dataset

__all__ = [
    "DATASETS",
    "DataBundle",
    "load_dataset",
    "check_dataset_spec",
    "dataset_rank",
    "default_dataset",
    "default_image_size",
]

#: Dataset names accepted by ``--dataset`` (``imagefolder`` is written ``imagefolder:PATH``).
DATASETS = ("digits", "cifar10", "cifar100", "imagefolder:PATH", "synthetic", "video_shapes")
#: Datasets of clips (B×3×T×H×W samples, for the video models); every other one holds images.
VIDEO_DATASETS = ("video_shapes",)

_MEAN_CIFAR = (0.4914, 0.4822, 0.4465)
_STD_CIFAR = (0.2470, 0.2435, 0.2616)
_MEAN_IMAGENET = (0.485, 0.456, 0.406)
_STD_IMAGENET = (0.229, 0.224, 0.225)
_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


@dataclass
class DataBundle:
    """Train and test splits of one dataset plus what a model needs to know about it."""

    name: str
    train: Dataset
    test: Dataset
    num_classes: int
    image_size: int
    in_memory: bool  # tensors in RAM: no DataLoader workers needed

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """Shape of one input: 3×H×W for images, 3×T×H×W for clips (read from the first test sample)."""
        return tuple(self.test[0][0].shape)

    def describe(self) -> str:
        what = "clips" if len(self.sample_shape) == 4 else "images"
        size = "×".join(map(str, self.sample_shape[1:]))
        return f"{self.name}: {len(cast(Sized, self.train))} train / {len(cast(Sized, self.test))} test {what}, {self.num_classes} classes, {size}"


class TensorImages(Dataset):
    """Images held in one N×3×H×W float tensor with an optional per-sample transform."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Callable | None = None) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int):
        x = self.images[i]
        if self.transform is not None:
            x = self.transform(x)
        return x, int(self.labels[i])


class RandomShift:
    """Random crop of an H×W tensor image after zero padding by ``padding`` (a translation by up to ±padding)."""

    def __init__(self, padding: int, flip: bool = False) -> None:
        self.padding, self.flip = padding, flip

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        p = self.padding
        h, w = x.shape[-2:]
        if p > 0:
            x = torch.nn.functional.pad(x, (p, p, p, p))
            i, j = torch.randint(0, 2 * p + 1, (2,)).tolist()
            x = x[..., i : i + h, j : j + w]
        if self.flip and torch.rand(()) < 0.5:
            x = x.flip(-1)
        return x


def dataset_kind(spec: str) -> str:
    return "imagefolder" if spec.startswith("imagefolder:") else spec


def dataset_rank(spec: str) -> int:
    """Spatial rank of the samples: 3 for clips (T×H×W), 2 for images."""
    return 3 if dataset_kind(spec) in VIDEO_DATASETS else 2


def default_dataset(rank: int) -> str:
    """The dataset ``compare`` uses when none is given, for a model taking inputs of this spatial rank."""
    return "video_shapes" if rank == 3 else "digits"


def default_image_size(spec: str) -> int:
    return 224 if dataset_kind(spec) == "imagefolder" else 32


def check_dataset_spec(spec: str, data_root: str | os.PathLike | None = None) -> None:
    """Raise ``ValueError`` for an unknown dataset name or an imagefolder path that cannot be used (no loading)."""
    kind = dataset_kind(spec)
    if kind not in ("digits", "cifar10", "cifar100", "imagefolder", "synthetic", "video_shapes"):
        raise ValueError(f"compare: dataset must be one of {', '.join(DATASETS)}, got {spec!r}")
    if kind == "imagefolder":
        path = Path(spec.split(":", 1)[1]).expanduser()
        if not str(spec.split(":", 1)[1]):
            raise ValueError("compare: dataset imagefolder:PATH needs a path, got 'imagefolder:'")
        if not path.is_dir():
            raise ValueError(f"compare: dataset folder must be an existing directory, got {str(path)!r}")
        _imagefolder_roots(path)  # raises on a folder without class subfolders


def load_dataset(
    spec: str, image_size: int | None = None, data_root: str | os.PathLike = "data", download: bool = True
) -> DataBundle:
    """Load ``spec`` (see :data:`DATASETS`) with training augmentation on the train split."""
    check_dataset_spec(spec, data_root)
    kind = dataset_kind(spec)
    size = image_size or default_image_size(spec)
    if size < 8:
        raise ValueError(f"compare: image size must be >= 8, got {size}")
    if kind == "digits":
        return _digits(size)
    if kind == "synthetic":
        return _synthetic(size)
    if kind == "video_shapes":
        return _video_shapes(size)
    if kind in ("cifar10", "cifar100"):
        return _cifar(kind, size, Path(data_root).expanduser(), download)
    return _imagefolder(Path(spec.split(":", 1)[1]).expanduser(), size)


def _digits(size: int) -> DataBundle:
    """scikit-learn's bundled 8×8 handwritten digits (1,797 images), bilinearly resized, fixed stratified split."""
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ValueError("compare: dataset 'digits' needs scikit-learn (pip install scikit-learn)") from e
    d = load_digits()
    idx = torch.arange(len(d.target)).numpy()
    train_idx, test_idx = train_test_split(idx, test_size=0.2, stratify=d.target, random_state=0)
    x = torch.as_tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0  # N×1×8×8 in [0, 1]
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    mean, std = x[train_idx].mean(), x[train_idx].std()
    x = ((x - mean) / std).expand(-1, 3, -1, -1).contiguous()
    y = torch.as_tensor(d.target, dtype=torch.long)
    train_idx, test_idx = torch.as_tensor(train_idx), torch.as_tensor(test_idx)
    shift = RandomShift(padding=max(1, size // 8), flip=False)
    return DataBundle(
        "digits",
        TensorImages(x[train_idx], y[train_idx], shift),
        TensorImages(x[test_idx], y[test_idx]),
        10,
        size,
        True,
    )


def _synthetic(size: int, num_classes: int = 10, n_train: int = 600, n_test: int = 200) -> DataBundle:
    """Learnable random data for tests: each class is a fixed random template plus noise (seeded, no download)."""
    g = torch.Generator().manual_seed(1234)
    templates = torch.randn(num_classes, 3, size, size, generator=g)

    def make(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(n) % num_classes
        return templates[y] + 1.5 * torch.randn(n, 3, size, size, generator=g), y

    xtr, ytr = make(n_train)
    xte, yte = make(n_test)
    return DataBundle(
        "synthetic", TensorImages(xtr, ytr, RandomShift(1)), TensorImages(xte, yte), num_classes, size, True
    )


def _video_shapes(size: int, frames: int = 4, n_train: int = 512, n_test: int = 128, speed: float = 0.08) -> DataBundle:
    """Clips of one moving coloured shape (disc, square or diamond, random colour, size and start) on a noisy
    background; the class is the direction of motion (right, left, down, up), so a single frame cannot tell it.
    3×``frames``×``size``×``size`` float tensors, drawn once from a fixed seed (no download, a second to make)."""
    g = torch.Generator().manual_seed(4321)
    n = n_train + n_test
    y = torch.arange(n) % 4
    step = speed * size * (1 + 0.5 * torch.rand(n, generator=g))  # pixels per frame
    dx = torch.tensor([1.0, -1.0, 0.0, 0.0])[y] * step
    dy = torch.tensor([0.0, 0.0, 1.0, -1.0])[y] * step
    radius = size * (0.1 + 0.08 * torch.rand(n, generator=g))
    travel = (frames - 1) * step  # start where the whole path stays inside the frame
    lo, span = radius + 1, (size - 2 * radius - 2 - travel).clamp(min=0)
    x0 = lo + span * torch.rand(n, generator=g) + torch.where(dx < 0, travel, torch.zeros(n))
    y0 = lo + span * torch.rand(n, generator=g) + torch.where(dy < 0, travel, torch.zeros(n))
    t = torch.arange(frames, dtype=torch.float32)
    cx = (x0[:, None] + dx[:, None] * t)[:, :, None, None]  # N×T×1×1
    cy = (y0[:, None] + dy[:, None] * t)[:, :, None, None]
    grid = torch.arange(size, dtype=torch.float32) + 0.5
    ox, oy = (grid[None, None, None, :] - cx).abs(), (grid[None, None, :, None] - cy).abs()
    r = radius[:, None, None, None]
    masks = torch.stack([ox**2 + oy**2 <= r**2, torch.maximum(ox, oy) <= r, ox + oy <= 1.3 * r], 1)  # N×3×T×H×W
    shape = torch.randint(0, 3, (n,), generator=g)
    mask = masks[torch.arange(n), shape].float()  # N×T×H×W
    colour = 0.4 + 0.6 * torch.rand(n, 3, generator=g)
    x = colour[:, :, None, None, None] * mask[:, None] + 0.15 * torch.randn(n, 3, frames, size, size, generator=g)
    x = (x - x[:n_train].mean()) / x[:n_train].std()
    shift = RandomShift(padding=max(1, size // 16))  # the same translation for every frame; no flip (it swaps classes)
    return DataBundle(
        "video_shapes",
        TensorImages(x[:n_train], y[:n_train], shift),
        TensorImages(x[n_train:], y[n_train:]),
        4,
        size,
        True,
    )


def _cifar(kind: str, size: int, root: Path, download: bool) -> DataBundle:
    import torchvision
    from torchvision import transforms as T

    cls = torchvision.datasets.CIFAR10 if kind == "cifar10" else torchvision.datasets.CIFAR100
    norm = T.Normalize(_MEAN_CIFAR, _STD_CIFAR)
    resize = [T.Resize(size)] if size != 32 else []
    train_tf = T.Compose([*resize, T.RandomCrop(size, padding=size // 8), T.RandomHorizontalFlip(), T.ToTensor(), norm])
    test_tf = T.Compose([*resize, T.ToTensor(), norm])
    try:
        train = cls(str(root), train=True, transform=train_tf, download=download)
        test = cls(str(root), train=False, transform=test_tf, download=download)
    except Exception as e:  # no network, a proxy, a corrupt archive: say what to do
        raise ValueError(
            f"compare: could not load {kind} under {str(root)!r} ({type(e).__name__}: {e}); on a machine without network, "
            f"put the extracted torchvision archive there (e.g. cifar-10-batches-py/) and pass --data-root"
        ) from e
    return DataBundle(kind, train, test, len(train.classes), size, False)


def _imagefolder_roots(path: Path) -> tuple[Path, Path | None]:
    """(train root, test root or None) of an image folder: ``train/`` + ``val/``|``test/``, or one folder to split."""
    train, test = path / "train", next((path / n for n in ("val", "test") if (path / n).is_dir()), None)
    root = train if train.is_dir() and test is not None else path
    classes = [d for d in root.iterdir() if d.is_dir()] if root.is_dir() else []
    if len(classes) < 2:
        raise ValueError(
            f"compare: dataset folder {str(path)!r} must hold one subfolder of images per class (at least 2), "
            f"or train/ and val/ folders laid out that way; found {len(classes)} class folder(s)"
        )
    has_images = any(f.suffix.lower() in _IMAGE_EXTENSIONS for d in classes for f in d.rglob("*") if f.is_file())
    if not has_images:
        raise ValueError(f"compare: dataset folder {str(path)!r} holds no images ({', '.join(_IMAGE_EXTENSIONS)})")
    return (train, test) if root is train else (path, None)


def _imagefolder(path: Path, size: int) -> DataBundle:
    import torchvision
    from torchvision import transforms as T

    norm = T.Normalize(_MEAN_IMAGENET, _STD_IMAGENET)
    train_tf = T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(), T.ToTensor(), norm])
    test_tf = T.Compose([T.Resize(int(round(size * 256 / 224))), T.CenterCrop(size), T.ToTensor(), norm])
    train_root, test_root = _imagefolder_roots(path)
    if test_root is not None:
        train = torchvision.datasets.ImageFolder(str(train_root), transform=train_tf)
        test = torchvision.datasets.ImageFolder(str(test_root), transform=test_tf)
        if test.classes != train.classes:
            raise ValueError(f"compare: {str(test_root)!r} must have the same class folders as {str(train_root)!r}")
        return DataBundle(f"imagefolder:{path}", train, test, len(train.classes), size, False)
    # One folder: a fixed 80/20 split per class (every class keeps at least one test image when it has two).
    full_train = torchvision.datasets.ImageFolder(str(train_root), transform=train_tf)
    full_test = torchvision.datasets.ImageFolder(str(train_root), transform=test_tf)
    g = torch.Generator().manual_seed(0)
    targets = torch.as_tensor(full_train.targets)
    train_idx, test_idx = [], []
    for c in range(len(full_train.classes)):
        idx = torch.nonzero(targets == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        n_test = max(1, round(0.2 * len(idx))) if len(idx) > 1 else 0
        test_idx += idx[:n_test].tolist()
        train_idx += idx[n_test:].tolist()
    return DataBundle(
        f"imagefolder:{path}",
        torch.utils.data.Subset(full_train, sorted(train_idx)),
        torch.utils.data.Subset(full_test, sorted(test_idx)),
        len(full_train.classes),
        size,
        False,
    )

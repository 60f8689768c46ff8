"""Pyramid (list-of-maps) checks and resizing shared by the fusion necks."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..tracing import is_tracing, traced_size
from .checks import check_arg, fx_leaf
from .norm import init_weights

__all__ = [
    "init_caffe2_xavier",
    "check_level_channels",
    "check_pyramid",
    "fit_to",
    "resize_to",
    "softmax_fp32",
    "stride2_size",
]


def init_caffe2_xavier(module: nn.Module) -> None:
    """``kaiming_uniform_(a=1)``, bias 0 on every conv: torchvision's FPN init, equal to Caffe2's XavierFill
    (U(±√(3/fan_in))) used by Detectron's FPN and the official PANet code."""
    init_weights(module, {nn.Conv2d: lambda m: nn.init.kaiming_uniform_(m.weight, a=1)})


def check_level_channels(channels: Sequence[int], owner: str) -> tuple[int, ...]:
    ok = (
        isinstance(channels, (list, tuple))
        and len(channels) >= 2
        and all(isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in channels)
    )
    check_arg(ok, owner, "channels", "a list of at least 2 positive ints (channels per level, finest first)", channels)
    return tuple(int(c) for c in channels)


def _halves(big: int, small: int) -> bool:
    return small in (big // 2, (big + 1) // 2)


@fx_leaf
def check_pyramid(
    xs: Sequence[torch.Tensor], channels: tuple[int, ...], owner: str, halving: bool
) -> Sequence[torch.Tensor]:
    """Check a list of maps against ``channels`` (finest first); return it unchanged.

    Raises ``ValueError`` naming the module, the level, what was expected and what was received: wrong type or
    number of levels, a level that is not B×C_i×H×W, levels not ordered from fine to coarse (or, with
    ``halving``, not halving from one level to the next), mismatched batch sizes.
    """
    if is_tracing():  # shapes are baked into a trace; the check ran when the trace was recorded
        return xs
    n = len(channels)
    layout = f"a list of {n} maps B×C_i×H_i×W_i with C = {list(channels)}, finest first"
    if not isinstance(xs, (list, tuple)):
        raise ValueError(f"{owner}: expected {layout}, got {type(xs).__name__}")
    if len(xs) != n:
        raise ValueError(f"{owner}: expected {n} pyramid levels ({layout}), got {len(xs)} levels")
    for i, (t, c) in enumerate(zip(xs, channels)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{owner}: level {i} expected a tensor B×{c}×H×W, got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(f"{owner}: level {i} expected a 4-D tensor B×{c}×H×W, got shape {tuple(t.shape)}")
        if t.numel() == 0:
            raise ValueError(f"{owner}: level {i} expected a non-empty tensor B×{c}×H×W, got shape {tuple(t.shape)}")
    for i in range(1, n):
        (h0, w0), (h1, w1) = xs[i - 1].shape[-2:], xs[i].shape[-2:]
        if h1 > h0 or w1 > w0:
            raise ValueError(
                f"{owner}: levels must be ordered finest first: expected level {i} no larger than level {i - 1} "
                f"({h0}×{w0}), got {h1}×{w1} (sizes {[tuple(t.shape[-2:]) for t in xs]})"
            )
        if halving and not (_halves(h0, h1) and _halves(w0, w1)):
            raise ValueError(
                f"{owner}: each level must halve the previous one: expected level {i} of size "
                f"{sorted({h0 // 2, (h0 + 1) // 2})}×{sorted({w0 // 2, (w0 + 1) // 2})} after level {i - 1} "
                f"({h0}×{w0}), got {h1}×{w1}"
            )
    for i, (t, c) in enumerate(zip(xs, channels)):
        if t.shape[1] != c:
            raise ValueError(
                f"{owner}: level {i} expected {c} channels (B×{c}×H×W), got {t.shape[1]} (shape {tuple(t.shape)})"
            )
        if t.shape[0] != xs[0].shape[0]:
            raise ValueError(f"{owner}: level {i} expected batch size {xs[0].shape[0]} (as level 0), got {t.shape[0]}")
    return xs


@fx_leaf
def fit_to(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Crop (bottom / right) or edge-pad ``x`` to the spatial size of ``ref``; ``x`` itself when they agree."""
    h, w = ref.shape[-2], ref.shape[-1]
    if x.shape[-2] > h or x.shape[-1] > w:
        x = x[..., :h, :w]
    ph, pw = h - x.shape[-2], w - x.shape[-1]
    if ph > 0 or pw > 0:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x


@fx_leaf
def resize_to(x: torch.Tensor, ref: torch.Tensor, mode: str = "nearest") -> torch.Tensor:
    """``x`` interpolated (``"nearest"`` or ``"bilinear"`` with ``align_corners=False``) to the exact spatial size
    of ``ref``; ``x`` itself when they agree (both modes are the identity there)."""
    h, w = traced_size(ref)
    if (x.shape[-2], x.shape[-1]) == (h, w):
        return x
    if mode == "nearest":
        return F.interpolate(x, size=(h, w), mode="nearest")
    return F.interpolate(x, size=(h, w), mode=mode, align_corners=False)


@fx_leaf
def softmax_fp32(logits: torch.Tensor, dim: int) -> torch.Tensor:
    """Softmax in at least float32 (bfloat16 / float16 logits are upcast; float64 stays float64)."""
    return torch.softmax(logits, dim, dtype=torch.promote_types(logits.dtype, torch.float32))


def stride2_size(n: int) -> int:
    """Output length of a stride-2 conv / pool with padding (⌈n/2⌉)."""
    return (n + 1) // 2

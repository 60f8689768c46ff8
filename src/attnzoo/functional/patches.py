"""MobileViT's patch layout: a map cut into p×p patches, each in-patch position attending across the patches.

``to_patches`` gives B×C×P×N (P = p² pixels per patch, N patches; channel-first, as MobileViT v2 computes with
1×1 convs on it) by a pixel unshuffle, so no tensor has more than 4 axes (ncnn); ``from_patches`` inverts it.
Maps whose sides are not multiples of p are resized to the next multiple and back (bilinear), the official
MobileViT handling (``fit_to_patches`` / ``resize_back``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..tracing import fx_leaf

__all__ = ["to_patches", "from_patches", "fit_to_patches", "resize_back"]


def to_patches(x: torch.Tensor, patch: int) -> torch.Tensor:
    """B×C×H×W (H, W multiples of ``patch``) → B×C×P×N, ``t[b, c, i·p + j, n] = x[b, c, p·r + i, p·s + j]``
    for patch n = r·(W/p) + s."""
    b, c = x.shape[0], x.shape[1]
    return F.pixel_unshuffle(x, patch).reshape(b, c, patch * patch, -1)


def from_patches(t: torch.Tensor, patch: int, h: int, w: int) -> torch.Tensor:
    """The inverse of :func:`to_patches` for an H×W map: B×C×P×N → B×C×H×W."""
    b, c = t.shape[0], t.shape[1]
    return F.pixel_shuffle(t.reshape(b, c * patch * patch, h // patch, w // patch), patch)


@fx_leaf
def fit_to_patches(x: torch.Tensor, patch: int, align_corners: bool) -> torch.Tensor:
    """``x`` resized (bilinear) up to the next multiple of ``patch`` per side; unchanged when it already is one."""
    h, w = x.shape[-2], x.shape[-1]
    hp, wp = (h + patch - 1) // patch * patch, (w + patch - 1) // patch * patch  # no negative // (export)
    if hp == h and wp == w:
        return x
    return F.interpolate(x, size=(hp, wp), mode="bilinear", align_corners=align_corners)


@fx_leaf
def resize_back(y: torch.Tensor, like: torch.Tensor, align_corners: bool) -> torch.Tensor:
    """``y`` resized (bilinear) to the H×W of ``like``; unchanged when the sizes agree."""
    if y.shape[-2:] == like.shape[-2:]:
        return y
    return F.interpolate(y, size=(like.shape[-2], like.shape[-1]), mode="bilinear", align_corners=align_corners)
